"""The pure-Python twin of the compiled core: ``Parser``, ``Event`` and ``Router``.

It has exactly the interface of ``esl._core`` (the Cython build) and serves where
no compiler is at hand, under ``ESL_NO_EXTENSIONS=1``, and as the reference the
differential tests hold the compiled core to.

Wire facts used here (see ESL-PROTOCOL.md):

* a message is a header block ended by ``\\n\\n``, then ``Content-Length`` bytes
  of body if that header is present;
* a ``text/event-*`` message carries one serialized event as its body; a plain
  event is itself a header block, optionally followed by
  ``Content-Length: n\\n\\n`` and *n* bytes of inner body;
* plain and xml header values are percent-encoded by FreeSWITCH; header names
  are not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypedDict

from esl import _codec
from esl.exceptions import ProtocolError

__all__ = ["DEFAULT_MAX_SIZE", "Event", "Parser", "Router", "Tally"]

#: FreeSWITCH's own cap on a message (MAX_CONTENT_LENGTH, libesl's ESL_MAX_CONTENT_LENGTH).
DEFAULT_MAX_SIZE = 16 * 1024 * 1024

_EVENT_PREFIX = "text/event-"
_FORMATS = {"text/event-plain": "plain", "text/event-json": "json", "text/event-xml": "xml"}

# Routing keys and channel fields of a plain event, found by a byte search without
# decoding the rest. A key is the value of the first line named exactly so (the last
# for Event-Name), else of the first line whose name matches case-insensitively:
# what ``get`` gives.
_EXACT = {
    b"Event-Name": "name",
    b"Unique-ID": "uuid",
    b"Job-UUID": "job_uuid",
    b"Application-UUID": "application_uuid",
    b"Event-Subclass": "subclass",
    b"Event-Sequence": "sequence",
    b"Channel-State": "channel_state",
    b"Channel-State-Number": "channel_state_number",
    b"Channel-Call-State": "call_state",
    b"Answer-State": "answer_state",
    b"Hangup-Cause": "hangup_cause",
    b"Other-Leg-Unique-ID": "other_leg_uuid",
    b"DTMF-Digit": "dtmf_digit",
    b"Application": "application",
    b"Application-Response": "application_response",
    b"Application-Data": "application_data",
}
_NAMES = {v: k.decode() for k, v in _EXACT.items()}
_LOWER = {k.lower(): v for k, v in _EXACT.items()}
_KEY_LINE = re.compile(
    rb"^(" + b"|".join(re.escape(k) for k in sorted(_EXACT, key=len, reverse=True)) + rb"):[ ]*([^\n]*)",
    re.IGNORECASE | re.MULTILINE,
)


class _Keys(TypedDict):
    """An event's routing keys and channel fields (the Event properties of the same names)."""

    name: str | None
    uuid: str | None
    job_uuid: str | None
    application_uuid: str | None
    subclass: str | None
    sequence: int | None
    channel_state: str | None
    channel_state_number: int | None
    call_state: str | None
    answer_state: str | None
    hangup_cause: str | None
    other_leg_uuid: str | None
    dtmf_digit: str | None
    application: str | None
    application_response: str | None
    application_data: str | None


def _plain_keys(raw: bytes, start: int, end: int) -> dict[str, bytes | None]:
    """The raw values of the routing keys in the plain header block raw[start:end] (start follows a newline)."""
    exact: dict[str, bytes] = {}
    loose: dict[str, bytes] = {}
    for m in _KEY_LINE.finditer(raw, start, end):
        name = m.group(1)
        key = _EXACT.get(name)
        value = m.group(2)
        if value[-1:] == b"\r":  # a CRLF line: the CR is not part of the value
            value = value[:-1]
        if key is not None:
            if key == "name" or key not in exact:
                exact[key] = value
        else:
            loose.setdefault(_LOWER[name.lower()], value)
    return {k: exact.get(k, loose.get(k)) for k in _EXACT.values()}


class Event(Mapping[str, str]):
    """One message read from FreeSWITCH: an event, a command reply, an api response...

    ``content_type`` tells which. For ``text/event-plain|json|xml`` messages the
    mapping holds the headers of the event inside and ``body`` its inner body;
    for every other message it holds the message's own headers and ``body`` is
    the message body. Lookups are exact first, then case-insensitive; ``getall``
    returns every occurrence with ``ARRAY::`` values split. Values are ``str``,
    percent-decoded for plain and xml, and bytes that are not UTF-8 are kept
    losslessly as surrogates (``surrogateescape``).
    """

    __slots__ = (
        "_body",
        "_bs",
        "_first",
        "_fmt",
        "_hend",
        "_keys",
        "_lower",
        "_pairs",
        "content_type",
        "raw",
    )

    content_type: str
    raw: bytes

    def __init__(self, raw: bytes, content_type: str, outer: bytes, inner: bytes | None) -> None:
        # raw is outer + b"\n\n" (or b"\n\r\n") + (inner or b"")
        sep = raw[len(outer) : len(raw) - (len(inner) if inner is not None else 0)]
        if sep not in (b"\n\n", b"\n\r\n") or not raw.startswith(outer):
            raise ValueError("raw must be outer + b'\\n\\n' + inner")
        self.raw = raw
        self.content_type = content_type
        self._fmt = _FORMATS.get(content_type)
        # only raw is kept (an event holds its frame once): the outer block ends at
        # _hend, the inner payload starts at _bs (None: no inner payload)
        self._hend = len(outer)
        self._bs = len(raw) - len(inner) if inner is not None else None
        self._pairs: list[tuple[str, str]] | None = None
        self._first: dict[str, str] | None = None
        self._lower: dict[str, str] | None = None
        self._body: str | None = None
        self._keys: _Keys | None = None

    # -- construction -----------------------------------------------------

    @classmethod
    def build(
        cls,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: str | bytes | None = None,
        fmt: str = "plain",
    ) -> Event:
        """An event with these headers (in order) and body, as if read in format ``fmt``."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        payload = _codec.serialize(pairs, body, fmt)
        return Parser().feed(_codec.frame(payload, fmt))[0]

    # -- format -----------------------------------------------------------

    @property
    def format(self) -> str | None:
        """``"plain"``, ``"json"`` or ``"xml"`` for events; ``None`` for other messages."""
        return self._fmt

    @property
    def is_event(self) -> bool:
        """True for ``text/event-*`` messages."""
        return self._fmt is not None

    # -- routing keys -----------------------------------------------------

    def _routing(self) -> _Keys:
        keys = self._keys
        if keys is None:
            keys = self._keys = self._scan_keys()
        return keys

    def _scan_keys(self) -> _Keys:
        bs = self._bs
        text: dict[str, str | None]
        if self._fmt == "plain" and bs is not None:
            head_end = self.raw.find(b"\n\n", bs)
            raw = _plain_keys(self.raw, bs, head_end if head_end >= 0 else len(self.raw))
            text = {k: _opt(v) for k, v in raw.items()}
        else:
            text = {k: self.get(name) for k, name in _NAMES.items()}
        return _Keys(
            name=text["name"],
            uuid=text["uuid"],
            job_uuid=text["job_uuid"],
            application_uuid=text["application_uuid"],
            subclass=text["subclass"],
            sequence=_int_text(text["sequence"]),
            channel_state=text["channel_state"],
            channel_state_number=_int_text(text["channel_state_number"]),
            call_state=text["call_state"],
            answer_state=text["answer_state"],
            hangup_cause=text["hangup_cause"],
            other_leg_uuid=text["other_leg_uuid"],
            dtmf_digit=text["dtmf_digit"],
            application=text["application"],
            application_response=text["application_response"],
            application_data=text["application_data"],
        )

    @property
    def name(self) -> str | None:
        """``Event-Name`` (the last one, as libesl does); ``None`` for non-events."""
        return self._routing()["name"]

    @property
    def subclass(self) -> str | None:
        """``Event-Subclass`` of a CUSTOM event."""
        return self._routing()["subclass"]

    @property
    def uuid(self) -> str | None:
        """``Unique-ID``: the channel the event belongs to."""
        return self._routing()["uuid"]

    @property
    def job_uuid(self) -> str | None:
        """``Job-UUID`` of a BACKGROUND_JOB event or a bgapi reply."""
        return self._routing()["job_uuid"]

    @property
    def application_uuid(self) -> str | None:
        """``Application-UUID`` of CHANNEL_EXECUTE(_COMPLETE): the sendmsg ``Event-UUID``."""
        return self._routing()["application_uuid"]

    @property
    def sequence(self) -> int | None:
        """``Event-Sequence`` as an int."""
        return self._routing()["sequence"]

    # -- channel fields (located with the routing keys) -------------------

    @property
    def channel_state(self) -> str | None:
        """``Channel-State`` (``CS_EXECUTE``...)."""
        return self._routing()["channel_state"]

    @property
    def channel_state_number(self) -> int | None:
        """``Channel-State-Number`` as an int; ``None`` when absent or not a number."""
        return self._routing()["channel_state_number"]

    @property
    def call_state(self) -> str | None:
        """``Channel-Call-State`` (``ACTIVE``, ``HELD``...)."""
        return self._routing()["call_state"]

    @property
    def answer_state(self) -> str | None:
        """``Answer-State`` (``ringing``, ``early``, ``answered``, ``hangup``)."""
        return self._routing()["answer_state"]

    @property
    def hangup_cause(self) -> str | None:
        """``Hangup-Cause`` (``NORMAL_CLEARING``...)."""
        return self._routing()["hangup_cause"]

    @property
    def other_leg_uuid(self) -> str | None:
        """``Other-Leg-Unique-ID``: the bridged peer."""
        return self._routing()["other_leg_uuid"]

    @property
    def dtmf_digit(self) -> str | None:
        """``DTMF-Digit`` of a DTMF event."""
        return self._routing()["dtmf_digit"]

    @property
    def application(self) -> str | None:
        """``Application`` of CHANNEL_EXECUTE(_COMPLETE)."""
        return self._routing()["application"]

    @property
    def application_response(self) -> str | None:
        """``Application-Response`` of CHANNEL_EXECUTE_COMPLETE."""
        return self._routing()["application_response"]

    @property
    def application_data(self) -> str | None:
        """``Application-Data`` of CHANNEL_EXECUTE(_COMPLETE)."""
        return self._routing()["application_data"]

    # -- headers ----------------------------------------------------------

    def _inner(self) -> bytes | None:
        """The bytes after the outer header block (the serialized event, the body), or None."""
        return None if self._bs is None else self.raw[self._bs :]

    def _decode(self) -> list[tuple[str, str]]:
        pairs = self._pairs
        if pairs is None:
            if self._fmt is None:
                pairs = _codec.parse_header_block(self.raw, True, 0, self._hend)
                body = self._inner()
                self._body = _codec.to_str(body) if body else None
            else:
                pairs, self._body = _codec.parse_event(self.raw, self._fmt, len(self.raw) if self._bs is None else self._bs)
            self._pairs = pairs
        return pairs

    def _first_map(self) -> dict[str, str]:
        first = self._first
        if first is None:
            first = {}
            for k, v in self._decode():
                if k not in first:
                    first[k] = v
            for k, v in self._pairs or ():
                if k == "Event-Name":
                    first[k] = v  # last wins, as libesl
            self._first = first
        return first

    def __getitem__(self, name: str) -> str:
        first = self._first_map()
        try:
            return first[name]
        except KeyError:
            pass
        lower = self._lower
        if lower is None:
            lower = {}
            for k, v in first.items():
                lower.setdefault(k.lower(), v)
            self._lower = lower
        return lower[name.lower()]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._first_map())

    def __len__(self) -> int:
        return len(self._first_map())

    def getall(self, name: str) -> list[str]:
        """Every value of header ``name`` (any casing), repeated lines and ``ARRAY::`` items flattened."""
        lname = name.lower()
        out: list[str] = []
        for k, v in self._decode():
            if k == name or k.lower() == lname:
                out.extend(_codec.split_array(v))
        return out

    def items_all(self) -> list[tuple[str, str]]:
        """Every header line in wire order, duplicates included."""
        return list(self._decode())

    @property
    def headers(self) -> dict[str, str]:
        """A plain ``dict`` copy of the headers (first occurrence, Event-Name last)."""
        return dict(self._first_map())

    @property
    def body(self) -> str | None:
        """The inner body of an event, the output of an api/response; ``None`` when absent."""
        if self._pairs is None:
            self._decode()
        return self._body

    # -- output -----------------------------------------------------------

    def serialize(self, fmt: str = "plain") -> bytes:
        """The event as FreeSWITCH would serialize it in ``fmt`` (without the outer frame)."""
        return _codec.serialize(self._decode(), self.body, fmt)

    def frame(self, fmt: str = "plain") -> bytes:
        """The full wire message FreeSWITCH would write for this event in ``fmt``."""
        return _codec.frame(self.serialize(fmt), fmt)

    def __repr__(self) -> str:
        if self._fmt is not None:
            return f"<Event {self.name} uuid={self.uuid} seq={self.sequence}>"
        return f"<Event {self.content_type} {self.get('Reply-Text', '')!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping) or not hasattr(other, "items_all"):
            return NotImplemented
        if self.items_all() != other.items_all():
            return False
        body: str | None = other.body  # type: ignore[attr-defined]  # hasattr narrowed only items_all
        return self.body == body

    __hash__ = None  # type: ignore[assignment]


def _opt(raw: bytes | None) -> str | None:
    return None if raw is None else _codec.decode_value(raw)


def _int_text(text: str | None) -> int | None:
    """``int`` of a header value's bytes (ASCII digits), ``None`` when absent or not a number."""
    if text is None:
        return None
    return _int_or_none(text.encode("utf-8", "surrogatepass"))  # a lone surrogate is just not a number


def _int_or_none(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


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


class Router:
    """The UUID event filter: sends each event to the owner of its UUID.

    The key of an event is its ``Job-UUID`` for BACKGROUND_JOB and its
    ``Unique-ID`` otherwise. A target is a callable or anything with
    ``put_nowait`` (an ``asyncio.Queue``). Events whose key has no route go to
    ``default`` (or are dropped when it is ``None``) without their headers
    being decoded. A ``CHANNEL_UUID`` event moves the route of
    ``Old-Unique-ID`` to the new ``Unique-ID`` so a channel keeps its events.
    """

    __slots__ = ("_default", "_default_call", "_routes", "_targets", "matched", "unmatched")

    def __init__(self, default: Any = None) -> None:
        self._routes: dict[str, Callable[[Event], Any]] = {}
        self._targets: dict[str, Any] = {}
        self.default = default
        self.matched = 0
        self.unmatched = 0

    @property
    def default(self) -> Any:
        """Where events with no route go; ``None`` drops them."""
        return self._default

    @default.setter
    def default(self, target: Any) -> None:
        self._default = target
        self._default_call = None if target is None else _deliverer(target)

    def add(self, key: str, target: Any) -> None:
        """Route events whose UUID is ``key`` to ``target`` (replacing any earlier route)."""
        self._routes[key] = _deliverer(target)
        self._targets[key] = target

    def discard(self, key: str) -> None:
        """Remove the route for ``key`` if there is one."""
        self._routes.pop(key, None)
        self._targets.pop(key, None)

    def get(self, key: str) -> Any:
        """The target routed for ``key``, or ``None``."""
        return self._targets.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._routes

    def __len__(self) -> int:
        return len(self._routes)

    def lookup(self, event: Event) -> Any:
        """The target owning ``event``, or ``None``; follows CHANNEL_UUID renames."""
        key = event.job_uuid if event.name == "BACKGROUND_JOB" else event.uuid
        if key is None:
            return None
        target = self._targets.get(key)
        if target is None and event.name == "CHANNEL_UUID":
            old = event.get("Old-Unique-ID")
            if old is not None and old in self._routes:
                self._routes[key] = self._routes.pop(old)
                target = self._targets[key] = self._targets.pop(old)
        return target

    def route(self, event: Event) -> bool:
        """Deliver one event; True when a route matched."""
        key = event.job_uuid if event.name == "BACKGROUND_JOB" else event.uuid
        call = self._routes.get(key) if key is not None else None
        if call is None and event.name == "CHANNEL_UUID" and self.lookup(event) is not None:
            call = self._routes.get(key) if key is not None else None
        if call is not None:
            self.matched += 1
            call(event)
            return True
        self.unmatched += 1
        if self._default_call is not None:
            self._default_call(event)
        return False

    def dispatch(self, events: Iterable[Event]) -> int:
        """Deliver each event; return how many matched a route."""
        matched = 0
        for event in events:
            if self.route(event):
                matched += 1
        return matched


def _deliverer(target: Any) -> Callable[[Event], Any]:
    put = getattr(target, "put_nowait", None)
    if put is not None:
        return put  # type: ignore[no-any-return]
    if not callable(target):
        raise TypeError(f"route target must be callable or have put_nowait, not {type(target).__name__}")
    return target  # type: ignore[no-any-return]




class Tally:
    """A connection's per-event counters: events by name, and Event-Sequence in order.

    ``count(event)`` counts the event under its name (at most ``max_names``
    names, the rest under ``"other"``; ``counts()`` gives them as a dict) and,
    while ``track`` is on, follows ``Event-Sequence``: a number equal to
    ``next`` just moves it on; a jump ahead is recorded in ``gaps`` as
    ``(next, seq)`` (``(-1, seq)`` when ``next`` is below 0: a start); a
    number below ``next`` in ``fills``. It returns True once those lists hold
    ``limit`` entries, for the connection to hand them to its
    :class:`esl.sequence.SequenceTracker`.
    """

    __slots__ = ("_names", "gaps", "fills", "next", "track", "max_names", "limit")

    def __init__(self, max_names: int = 256, limit: int = 4096) -> None:
        self._names: dict[str | None, int] = {}
        self.gaps: list[tuple[int, int]] = []
        self.fills: list[int] = []
        self.next = -1
        self.track = False
        self.max_names = max_names
        self.limit = limit

    def count(self, event: Event) -> bool:
        """Count one event; True when ``gaps``/``fills`` are due to be taken."""
        name = event.name
        names = self._names
        n = names.get(name)
        if n is not None:
            names[name] = n + 1
        elif len(names) < self.max_names:
            names[name] = 1
        else:
            names["other"] = names.get("other", 0) + 1
        if not self.track:
            return False
        seq = event.sequence
        if seq is None:
            return False
        if seq == self.next:
            self.next = seq + 1
            return False
        if self.next < 0:
            self.gaps.append((-1, seq))
            self.next = seq + 1
        elif seq > self.next:
            self.gaps.append((self.next, seq))
            self.next = seq + 1
        else:
            self.fills.append(seq)
        return len(self.gaps) + len(self.fills) >= self.limit

    def counts(self) -> dict[str | None, int]:
        """Events by name so far (``None``: messages without a name; ``"other"``: past ``max_names``)."""
        return dict(self._names)

    def total(self) -> int:
        """Events counted."""
        return sum(self._names.values())
