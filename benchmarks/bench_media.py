"""The sender side of benchmarks/test_media.py: N websocket streams shaped like mod_audio_stream's.

Run as a separate process::

    python benchmarks/bench_media.py --port 8765 --streams 200 --seconds 10 [--cpu 1]

Each stream connects to ``ws://127.0.0.1:<port>/<uuid>``, sends esl's metadata as its first text
message, then one 640-byte binary frame (16 kHz mono, 20 ms) every 20 ms on an absolute
schedule (the streams' phases spread over the 20 ms), then closes with 1000. The first 12 bytes
of each frame are the CLOCK_MONOTONIC time it was handed to the websocket (a double, shared by
every process on the machine) and its sequence number, so the receiver can measure the added
latency and find lost frames. Prints one JSON line: frames sent, how late the sends were, and
the sender's CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import sys
import time

STAMP = struct.Struct("<dI")
FRAME = 640
PERIOD = 0.020


def uuid_of(i: int) -> str:
    """The channel uuid of stream ``i``."""
    return f"00000000-0000-4000-8000-{i:012d}"


async def one_stream(port: int, i: int, n: int, start: float, seconds: float, lateness: list[float]) -> int:
    from websockets.asyncio.client import connect

    uuid = uuid_of(i)
    meta = json.dumps({"uuid": uuid, "mix": "mono", "rate": 16000, "channels": 1}, separators=(",", ":"))
    payload = bytearray(FRAME)
    sent = 0
    async with connect(f"ws://127.0.0.1:{port}/{uuid}", compression=None, ping_interval=None,
                       max_queue=None) as ws:
        await ws.send(meta)
        loop = asyncio.get_running_loop()
        due = start + PERIOD * i / n
        end = start + seconds
        monotonic = time.monotonic
        while due < end:
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = monotonic()
            lateness.append(now - due)
            STAMP.pack_into(payload, 0, now, sent)
            await ws.send(bytes(payload))
            sent += 1
            due += PERIOD
        await ws.close(1000, "done")
    return sent


async def main(port: int, streams: int, seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    lateness: list[float] = []
    start = loop.time() + 1.0  # all connected before the first frame
    cpu0 = time.process_time()
    counts = await asyncio.gather(*(one_stream(port, i, streams, start, seconds, lateness) for i in range(streams)))
    cpu = time.process_time() - cpu0
    lateness.sort()
    return {
        "sent": float(sum(counts)),
        "late_p50_ms": lateness[len(lateness) // 2] * 1000 if lateness else 0.0,
        "late_p99_ms": lateness[int(len(lateness) * 0.99)] * 1000 if lateness else 0.0,
        "sender_cpu_s": cpu,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--streams", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    args = p.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    result = asyncio.run(main(args.port, args.streams, args.seconds))
    sys.stdout.write(json.dumps(result) + "\n")
