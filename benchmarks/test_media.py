"""200 concurrent 16 kHz mono streams into one esl.media server on one core: frame loss and
added latency (a benchmark, not a test).

The senders (``bench_media.py``, a separate process pinned to another CPU when there is one)
play mod_audio_stream: ``STREAMS`` websockets, esl's metadata, then a 640-byte frame every
20 ms each for ``SECONDS`` s (10,000 frames/s for 200 streams). This process runs the server
pinned to one CPU, and an app that reads every stream with ``async for frame in stream``.
Figures: frames the app got of those sent (``lost`` = sent - received, ``dropped`` = thrown away
by full buffers), the added latency from the sender's ``send`` to the app's ``async for``
(p50/p99/max: loopback TCP, websocket framing, esl.media's buffering and the event loop), and
the server process's CPU use over the run (% of one core, and per frame: the figure a loaded
machine disturbs least; latency percentiles move with whatever else runs on the machine). The
same senders against a bare ``websockets`` handler (``async for message in ws``, no esl.media)
give the baseline: the ratio column is server CPU per frame, esl.media / bare websockets.

Run: ``pytest benchmarks/test_media.py`` (the table comes at the end).
"""

from __future__ import annotations

import array
import asyncio
import json
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Table, add_row

STREAMS = int(os.environ.get("ESL_BENCH_STREAMS", "200"))
SECONDS = float(os.environ.get("ESL_BENCH_SECONDS", "10"))
STAMP = struct.Struct("<dI")
SENDER = Path(__file__).with_name("bench_media.py")

TABLE = Table(
    f"Media: {STREAMS} concurrent 16 kHz mono streams (640 B / 20 ms) into one server on one core, {SECONDS:.0f} s",
    [("sent", "frames sent", ",.0f"), ("received", "received", ",.0f"), ("lost", "lost", ",.0f"),
     ("dropped", "dropped", ",.0f"), ("p50_ms", "latency p50 ms", ",.2f"), ("p99_ms", "p99 ms", ",.2f"),
     ("max_ms", "max ms", ",.1f"), ("cpu_pct", "server CPU %", ",.0f"), ("cpu_us_per_frame", "server CPU us/frame", ",.1f"),
     ("frames_per_s", "frames/s", ",.0f"),
     ("sender_late_p99_ms", "sender late p99 ms", ",.1f")],
    key="cpu_us_per_frame",
    baselines=("websockets (bare)",),
)


def _cpus() -> tuple[int | None, int | None]:
    """(CPU for the server, CPU for the senders), or Nones where affinity is unavailable."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return cpus[0], None
    return cpus[0], cpus[1]


class Receiver:
    """What the app saw: latency of every frame, frames per stream."""

    def __init__(self) -> None:
        self.latency = array.array("d")
        self.received = 0
        self.streams = 0

    def frame(self, frame: bytes, now: float) -> None:
        stamp, _seq = STAMP.unpack_from(frame)
        self.latency.append(now - stamp)
        self.received += 1


async def _run(impl: str) -> dict[str, float]:
    receiver = Receiver()
    monotonic = time.monotonic
    dropped = 0
    if impl == "esl.media":
        from esl.media import AudioStream, MediaServer

        async def handler(stream: AudioStream) -> None:
            receiver.streams += 1
            async for frame in stream:
                receiver.frame(frame, monotonic())

        server: Any = MediaServer(handler, ping_interval=None)
        await server.start()
        port = server.port
    else:
        from websockets.asyncio.server import ServerConnection, serve

        async def bare(ws: ServerConnection) -> None:
            receiver.streams += 1
            await ws.recv()  # the metadata
            async for message in ws:
                if isinstance(message, bytes):
                    receiver.frame(message, monotonic())

        server = await serve(bare, "127.0.0.1", 0, compression=None, ping_interval=None, max_queue=None)
        port = next(iter(server.sockets)).getsockname()[1]
    server_cpu, sender_cpu = _cpus()
    before = os.sched_getaffinity(0) if server_cpu is not None else None
    cmd = [sys.executable, str(SENDER), "--port", str(port), "--streams", str(STREAMS), "--seconds", str(SECONDS)]
    if sender_cpu is not None:
        cmd += ["--cpu", str(sender_cpu)]
    try:
        if server_cpu is not None:
            os.sched_setaffinity(0, {server_cpu})
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        cpu0, t0 = time.process_time(), monotonic()
        out, _ = await proc.communicate()
        cpu, wall = time.process_time() - cpu0, monotonic() - t0
        await asyncio.sleep(0.2)  # the last frames
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)
        if impl == "esl.media":
            dropped = server.stats.dropped
            await server.close()
        else:
            server.close()
            await server.wait_closed()
    sent = json.loads(out.decode().strip().splitlines()[-1])
    lat = sorted(receiver.latency)
    n = len(lat)
    return {
        "streams": float(receiver.streams),
        "sent": sent["sent"],
        "received": float(receiver.received),
        "lost": sent["sent"] - receiver.received,
        "dropped": float(dropped),
        "p50_ms": lat[n // 2] * 1000 if n else float("nan"),
        "p99_ms": lat[int(n * 0.99)] * 1000 if n else float("nan"),
        "max_ms": lat[-1] * 1000 if n else float("nan"),
        "cpu_pct": 100 * cpu / wall,
        "cpu_us_per_frame": 1e6 * cpu / max(1, receiver.received),
        "frames_per_s": receiver.received / SECONDS,
        "sender_late_p99_ms": sent["late_p99_ms"],
    }


@pytest.mark.parametrize("impl", ["websockets (bare)", "esl.media"])
def test_media_streams(benchmark: Any, impl: str) -> None:
    figures: dict[str, float] = {}

    def run() -> None:
        figures.update(asyncio.run(_run(impl)))

    benchmark.pedantic(run, rounds=1, iterations=1)
    add_row(TABLE, impl, benchmark, figures)
    assert figures["streams"] == STREAMS, figures
