#!/usr/bin/env python3
"""Regenerate ``esl/data/events-plain.*``, the capture bundled in the package for ``esl bench``.

It cuts the first ``--events`` events (default 5,000) out of the shared real capture
``events-plain.raw.xz`` at message boundaries, found with ``esl.core.Parser``, and keeps the
capture format of the shared captures:

* ``events-plain.raw.xz``: what the client received after its ``auth`` reply: the
  ``+OK event listener enabled plain`` reply, the events, then the ``exit`` reply and the
  ``text/disconnect-notice`` (the command replies in the middle of the shared stream are left out
  with the commands that caused them);
* ``events-plain.handshake.raw``: the bytes received before and including the auth reply;
* ``events-plain.sent``: what the client sent after ``auth`` (``event plain ALL``, ``exit``).

Usage: ``python tools/make_bundled_capture.py [--source DIR] [--events N] [--out DIR]``
"""

from __future__ import annotations

import argparse
import lzma
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def cut(stream: bytes, count: int) -> tuple[bytes, int]:
    """The leading reply, the first ``count`` events and the closing messages of ``stream``."""
    sys.path.insert(0, str(ROOT))
    from esl.core import Parser

    messages = Parser().feed(stream)
    head = [m for m in messages[:1] if m.content_type == "command/reply"]
    events = [m for m in messages if m.is_event][:count]
    tail = [m for m in messages[-2:] if not m.is_event]
    if not head or len(tail) != 2:
        raise SystemExit("the source capture does not have the expected shape (reply, events, exit, notice)")
    return b"".join(m.raw for m in head + events + tail), len(events)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=ROOT.parent / "shared" / "captures")
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--out", type=Path, default=ROOT / "esl" / "data")
    args = ap.parse_args(argv)

    with lzma.open(args.source / "events-plain.raw.xz", "rb") as f:
        stream = f.read()
    data, n = cut(stream, args.events)
    args.out.mkdir(parents=True, exist_ok=True)
    with lzma.open(args.out / "events-plain.raw.xz", "wb", preset=9 | lzma.PRESET_EXTREME) as f:
        f.write(data)
    (args.out / "events-plain.handshake.raw").write_bytes(
        (args.source / "events-plain.handshake.raw").read_bytes()
    )
    (args.out / "events-plain.sent").write_bytes(b"event plain ALL\n\nexit\n\n")
    size = (args.out / "events-plain.raw.xz").stat().st_size
    print(f"{n} events, {len(data):,} bytes raw, {size:,} bytes xz -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
