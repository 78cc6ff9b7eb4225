"""The twin's ``Parser``: bytes in, complete messages out (the framing of ESL-PROTOCOL.md)."""

from __future__ import annotations

from esl._pycore.event import Event
from esl.exceptions import ProtocolError

__all__ = ["DEFAULT_MAX_SIZE", "Parser"]

#: FreeSWITCH's own cap on a message (MAX_CONTENT_LENGTH, libesl's ESL_MAX_CONTENT_LENGTH).
DEFAULT_MAX_SIZE = 16 * 1024 * 1024


class Parser:
    """Incremental ESL framer: bytes in, complete messages (``Event``) out.

    ``feed`` may be given any split of the stream, down to one byte at a time,
    and frames it the same way whatever the split; it never re-scans bytes it
    has already searched. A header block ends at ``\\n\\n`` or ``\\n\\r\\n`` (as
    libesl and mod_event_socket read it).

    A Content-Length that is not a decimal number, or a header block or body
    over ``max_size`` bytes, raises :class:`ProtocolError`. The messages that
    the same ``feed`` call completed before the bad frame are not lost: they
    are on the exception as ``exc.messages`` (a list, in order; empty when
    there were none). After the error the parser refuses more input until
    ``reset()``, so nothing after it can be mis-framed silently.
    """

    __slots__ = ("_buf", "_ctype", "_error", "_need", "_outer", "_scan", "_sep", "max_size")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        self.max_size = max_size
        self.reset()

    def reset(self) -> None:
        """Drop buffered bytes and any error state."""
        self._buf = bytearray()
        self._scan = 0  # where the search for the header terminator resumes
        self._need = -1  # body bytes still expected; -1 while reading headers
        self._outer = b""
        self._sep = b"\n\n"
        self._ctype = ""
        self._error: ProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message (its header block included)."""
        return len(self._buf) + (len(self._outer) + len(self._sep) if self._need >= 0 else 0)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Add bytes; return the messages they complete, in order.

        On a framing error raises :class:`ProtocolError` whose ``messages``
        holds the messages completed earlier in this same call.
        """
        if self._error is not None:
            stopped = ProtocolError(f"parser stopped after an earlier error: {self._error}")
            stopped.messages = []
            raise stopped
        buf = self._buf
        buf += data
        out: list[Event] = []
        pos = 0
        n = len(buf)
        try:
            while True:
                if self._need < 0:
                    while pos < n and buf[pos] in (10, 13):  # stray line ends between messages
                        pos += 1
                    end, tlen = _find_terminator(buf, max(self._scan, pos), n)
                    if end < 0:
                        self._scan = max(pos, n - 2)
                        pending = n - pos
                        if buf.endswith(b"\n"):
                            pending -= 1
                        elif buf.endswith(b"\n\r"):
                            pending -= 2
                        if pending > self.max_size:
                            raise ProtocolError(f"header block larger than {self.max_size} bytes")
                        break
                    if end - pos > self.max_size:
                        raise ProtocolError(f"header block larger than {self.max_size} bytes")
                    outer = bytes(buf[pos:end])
                    sep = bytes(buf[end : end + tlen])
                    ctype, length = _frame_fields(outer, self.max_size)
                    pos = end + tlen
                    self._scan = pos
                    if length <= 0:
                        out.append(Event(outer + sep, ctype, outer, None))
                        continue
                    self._outer, self._sep, self._ctype, self._need = outer, sep, ctype, length
                if n - pos < self._need:
                    break
                body_end = pos + self._need
                body = bytes(buf[pos:body_end])
                outer = self._outer
                out.append(Event(outer + self._sep + body, self._ctype, outer, body))
                pos = body_end
                self._scan = pos
                self._need = -1
                self._outer = b""
        except ProtocolError as exc:
            self._error = exc
            del buf[:]
            exc.messages = out
            raise
        if pos:
            del buf[:pos]
            self._scan = max(0, self._scan - pos)
        return out


def _find_terminator(buf: bytearray, start: int, n: int) -> tuple[int, int]:
    """The first ``\\n\\n`` or ``\\n\\r\\n`` in buf[start:n] and its length; (-1, 0) if none."""
    lf = buf.find(b"\n\n", start)
    crlf = buf.find(b"\n\r\n", start, lf + 2 if lf >= 0 else n)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 3
    return lf, 2


def _frame_fields(outer: bytes, cap: int) -> tuple[str, int]:
    """Content-Type and Content-Length (-1 when absent) of an outer header block."""
    ctype = ""
    length = -1
    text = b""
    for line in outer.split(b"\n"):
        colon = line.find(b":")
        if colon <= 0:
            continue
        key = line[:colon].lower()
        if key == b"content-type":
            ctype = line[colon + 1 :].strip().decode("latin-1")
        elif key == b"content-length":
            text = line[colon + 1 :].strip()
            if not (text.isdigit() and text.isascii()):
                raise ProtocolError(f"malformed Content-Length: {bytes(text)[:40]!r}")
            digits = text.lstrip(b"0") or b"0"
            length = int(digits) if len(digits) <= 18 else cap + 1  # int() refuses > 4300 digits
    if length > cap:
        digits = text.lstrip(b"0") or b"0"
        shown = digits.decode("ascii") if len(digits) <= 40 else f"of {len(digits)} digits"
        raise ProtocolError(f"Content-Length {shown} exceeds the {cap}-byte cap")
    return ctype, length


