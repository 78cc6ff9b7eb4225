"""Real FreeSWITCH captures: load them (``.raw``, ``.raw.xz``, ``.handshake.raw``,
``.sent``), split them into frames with the library's own parser, and replay
their events through a FakeFreeSWITCH.
"""

from __future__ import annotations

import asyncio
import lzma
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Union

from esl.core import Event, Parser

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.connection import FakeConnection
    from esl.testing.server import FakeFreeSWITCH

__all__ = ["CaptureSource", "events", "frames", "load", "replay", "sent_commands"]

CaptureSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


def load(source: CaptureSource) -> bytes:
    """The bytes of a capture: a path (``.xz`` files are decompressed) or bytes as they are."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    if path.suffix == ".xz":
        with lzma.open(path, "rb") as fh:
            return fh.read()
    return path.read_bytes()


def frames(source: CaptureSource) -> list[Event]:
    """Every message of a server-to-client capture, in order, parsed with ``esl.core.Parser``.

    A trailing partial message (a capture cut short) is left out.
    """
    return Parser().feed(load(source))


def iter_frame_bytes(data: bytes) -> Iterator[tuple[Event, bytes]]:
    """Each message with its exact wire bytes (``Event.raw``)."""
    for ev in Parser().feed(data):
        yield ev, ev.raw


def events(source: CaptureSource) -> list[Event]:
    """Only the ``text/event-*`` messages of a capture."""
    return [ev for ev in frames(source) if ev.is_event]


def sent_commands(source: CaptureSource) -> list[tuple[str, list[tuple[str, str]], str | None]]:
    """The commands of a ``.sent`` file (what a client wrote): (first line, headers, body)."""
    from esl.testing.connection import parse_commands

    buf = bytearray(load(source))
    cmds, _ = parse_commands(buf)
    return [(c.line, c.headers, c.body) for c in cmds]


async def replay(
    fake: FakeFreeSWITCH,
    capture: CaptureSource | list[Event],
    *,
    loops: int = 1,
    rate: float | None = None,
    conn: FakeConnection | None = None,
) -> int:
    """Send the events of ``capture`` to the fake's subscribers; returns how many events were sent.

    ``capture`` is a path, bytes, or a list of already parsed events (``capture.events(...)``,
    to parse a large capture once and replay it many times).

    Each ``text/event-*`` message is re-delivered to every authenticated
    connection whose subscriptions and filters accept it (or only to ``conn``).
    A connection reading the capture's own format gets the original bytes
    unchanged; others get the event re-serialized in their format. Command
    replies and notices in the capture are skipped. ``rate`` limits events per
    second (None: as fast as the loop allows, yielding every 256 events).
    """
    evs = list(capture) if isinstance(capture, (list, tuple)) else events(capture)
    sent = 0
    delay = 1.0 / rate if rate else 0.0
    batch: dict[FakeConnection, list[bytes]] = {}

    def flush() -> None:
        for target, messages in batch.items():
            target.deliver_many(messages)
        batch.clear()

    for _ in range(max(loops, 0)):
        for i, ev in enumerate(evs):
            targets = [conn] if conn is not None else list(fake.connections)
            frames_by_fmt: dict[str, bytes] = {}
            for target in targets:
                if not target.accepts(ev):
                    continue
                fmt = target.format
                data = frames_by_fmt.get(fmt)
                if data is None:
                    data = ev.raw if ev.format == fmt else ev.frame(fmt)
                    frames_by_fmt[fmt] = data
                batch.setdefault(target, []).append(data)
            sent += 1
            if delay:
                flush()
                await asyncio.sleep(delay)
            elif i % 256 == 255:
                flush()
                await _drain(targets)
        flush()
    return sent


async def _drain(targets: list[FakeConnection]) -> None:
    """Let the loop run, and wait while a client's socket buffer is full (TCP backpressure)."""
    await asyncio.sleep(0)
    for target in targets:
        transport = target.transport
        while (
            transport is not None
            and not transport.is_closing()
            and transport.get_write_buffer_size() > 4 * 1024 * 1024
        ):
            await asyncio.sleep(0.001)
