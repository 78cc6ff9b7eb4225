"""Reading and writing capture files: the raw bytes a client received after its ``auth`` reply.

This is the format of the shared real captures and of the one bundled in the package
(``esl/data/events-plain.raw.xz``): the reply to the subscription command, the
``text/event-*`` messages, any other replies, and usually the ``exit`` reply and the
``text/disconnect-notice``. A name ending in ``.xz`` means xz-compressed; compressed
input is recognised by its magic bytes whatever its name.
"""

from __future__ import annotations

import lzma
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from esl.cli._common import CLIError

__all__ = [
    "BUNDLED_NAME", "Capture", "CaptureWriter", "bundled_path", "check", "load", "looks_like_esl",
    "read_bytes",
]

XZ_MAGIC = b"\xfd7zXZ\x00"
BUNDLED_NAME = "events-plain.raw.xz"


def bundled_path() -> Path:
    """Path of the capture shipped inside the package."""
    return Path(str(resources.files("esl") / "data" / BUNDLED_NAME))


@dataclass
class Capture:
    """A capture read into memory and checked: whole messages only, at least one event."""

    path: str
    data: bytes
    format: str
    events: int
    messages: int
    names: dict[str, int] = field(default_factory=dict)

    def event_bytes(self) -> bytes:
        """Only the ``text/event-*`` messages, byte for byte (what peers are fed in benchmarks)."""
        from esl.core import Parser

        return b"".join(m.raw for m in Parser().feed(self.data) if m.is_event)


def read_bytes(path: str | Path) -> bytes:
    """The decompressed bytes of a capture file; ``CLIError`` when unreadable or a broken xz stream."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(6)
            f.seek(0)
            if head == XZ_MAGIC or p.name.endswith(".xz"):
                with lzma.open(f, "rb") as z:
                    return z.read()
            return f.read()
    except FileNotFoundError:
        raise CLIError(f"cannot read capture {str(p)!r}: no such file") from None
    except IsADirectoryError:
        raise CLIError(f"cannot read capture {str(p)!r}: is a directory") from None
    except PermissionError:
        raise CLIError(f"cannot read capture {str(p)!r}: permission denied") from None
    except (lzma.LZMAError, EOFError) as exc:
        raise CLIError(f"cannot read capture {str(p)!r}: broken or truncated xz data ({exc})") from None
    except OSError as exc:
        raise CLIError(f"cannot read capture {str(p)!r}: {exc.strerror or exc}") from None


#: The first line of an ESL message: a header (``Content-Type: command/reply``).
_HEADER_LINE = re.compile(rb"[A-Za-z][A-Za-z0-9_.-]*: [^\x00\r\n]*\r?\n")


def looks_like_esl(data: bytes) -> bool:
    """True when ``data`` starts as an ESL stream does: a header line, and no NUL byte early on."""
    return bool(_HEADER_LINE.match(data, 0, 4096)) and b"\x00" not in data[:4096]


def check(data: bytes, path: str) -> Capture:
    """Frame ``data`` with the core parser; ``CLIError`` on a truncated or malformed capture."""
    from esl.core import Parser
    from esl.exceptions import ProtocolError

    if not data:
        raise CLIError(f"capture {path!r} is empty")
    if not looks_like_esl(data):
        kind = "binary data" if b"\x00" in data[:4096] or not _mostly_text(data[:4096]) else "text"
        raise CLIError(f"{path!r} is not an ESL capture: it starts with {kind}, not an ESL header line")
    parser = Parser()
    try:
        messages = parser.feed(data)
    except ProtocolError as exc:
        raise CLIError(f"capture {path!r} is not an ESL stream: {exc}") from None
    if parser.buffered:
        raise CLIError(
            f"capture {path!r} is truncated: {parser.buffered} bytes of an incomplete message at the end"
        )
    names: dict[str, int] = {}
    fmt = None
    events = 0
    for m in messages:
        if m.is_event:
            events += 1
            fmt = fmt or m.format
            name = m.name or "?"
            names[name] = names.get(name, 0) + 1
    if not events:
        raise CLIError(f"capture {path!r} holds no events")
    return Capture(path=path, data=data, format=fmt or "plain", events=events, messages=len(messages), names=names)


def _mostly_text(head: bytes) -> bool:
    printable = sum(1 for b in head if b in (9, 10, 13) or 32 <= b < 127)
    return printable >= 0.95 * len(head)


def load(path: str | Path | None) -> Capture:
    """Read and check a capture; ``None`` means the bundled one."""
    p = bundled_path() if path is None else Path(path)
    label = "bundled capture" if path is None else str(p)
    capture = check(read_bytes(p), label)
    capture.path = label if path is None else str(p)
    return capture


class CaptureWriter:
    """Writes a capture file, xz-compressed when the name ends in ``.xz``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.compressed = self.path.name.endswith(".xz")
        try:
            raw = open(self.path, "wb")
        except OSError as exc:
            raise CLIError(f"cannot write {str(self.path)!r}: {exc.strerror or exc}") from None
        self._file: BinaryIO = lzma.open(raw, "wb") if self.compressed else raw  # type: ignore[assignment]
        self._raw = raw
        self.written = 0

    def write(self, data: bytes) -> None:
        """Append bytes."""
        if data:
            self._file.write(data)
            self.written += len(data)

    def close(self) -> None:
        """Finish the file (and the xz stream)."""
        self._file.close()
        if self._file is not self._raw:
            self._raw.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
