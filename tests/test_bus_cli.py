"""``esl bridge`` and ``esl events --from``: real processes, a fake FreeSWITCH and a real Redis."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
from collections.abc import Iterator

import pytest

pytest.importorskip("redis.asyncio")

from esl.testing import FakeFreeSWITCH
from esl.testing.redisserver import RedisServer

ESL = [sys.executable, "-m", "esl"]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


async def _wait_for(pred: object, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await pred():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_bridge_publishes_and_events_from_tails(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_server.url)
    async with FakeFreeSWITCH(hostname="fsX") as fake:
        bridge = await asyncio.create_subprocess_exec(
            *ESL, "bridge", redis_server.url, "--stream", "cli", "--node", "fsX", "--stats-interval", "0.2",
            "--host", fake.host, "--port", str(fake.port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        tail = await asyncio.create_subprocess_exec(
            *ESL, "events", "--from", redis_server.url, "--stream", "cli", "--json", "-n", "3", "CHANNEL_ANSWER",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await fake.wait_for_connection(timeout=20)

            async def subscribed() -> bool:
                return bool(fake.connections) and bool(fake.connections[-1].subscriptions.enabled)

            await _wait_for(subscribed)

            async def tail_ready() -> bool:
                return await r.exists("cli") and len(await r.xinfo_groups("cli")) == 1

            await _wait_for(tail_ready)
            for i in range(3):
                await fake.fire(fake.make_event("CHANNEL_CREATE", {"Unique-ID": f"c{i}"}))
                await fake.fire(fake.make_event("CHANNEL_ANSWER", {"Unique-ID": f"c{i}"}))

            async def six() -> bool:
                return int(await r.xlen("cli")) == 6

            await _wait_for(six)
            out, err = await asyncio.wait_for(tail.communicate(), 20)
            assert tail.returncode == 0, err
            lines = [json.loads(x) for x in out.decode().splitlines()]
            assert [x["Unique-ID"] for x in lines] == ["c0", "c1", "c2"]
            assert {x["_node"] for x in lines} == {"fsX"} and {x["Event-Name"] for x in lines} == {"CHANNEL_ANSWER"}
            assert b"3 events" in err
            assert await r.xinfo_groups("cli") == []  # its own group removed at exit
        finally:
            if tail.returncode is None:
                tail.kill()
            bridge.send_signal(signal.SIGINT)
            out, err = await asyncio.wait_for(bridge.communicate(), 20)
    assert bridge.returncode == 0, err
    text = err.decode()
    assert "bridging fsX" in text and "published=6" in text and "dropped=0" in text
    assert "ClueCon" not in text
    await r.aclose()


def test_bridge_refuses_unknown_scheme() -> None:
    import subprocess

    # run outside the checkout: `python -m esl` from its root imports the sources there (and warns
    # when their compiled core is not built beside them) instead of the installed package
    proc = subprocess.run([*ESL, "bridge", "kafka://x"], capture_output=True, text=True, timeout=60,
                          cwd=tempfile.gettempdir())
    assert proc.returncode == 1
    assert proc.stderr.startswith("esl: error: no event bus backend for 'kafka'")


async def test_bridge_cluster_tags_each_node(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(redis_server.url)
    async with FakeFreeSWITCH(hostname="ha") as fa, FakeFreeSWITCH(hostname="hb") as fb:
        bridge = await asyncio.create_subprocess_exec(
            *ESL, "bridge", redis_server.url, "CHANNEL_CREATE", "--stream", "clu", "--stats-interval", "0",
            "--cluster", f"a={fa.host}:{fa.port}", "--cluster", f"{fb.host}:{fb.port}",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            for fake in (fa, fb):
                await fake.wait_for_connection(timeout=20)

            async def subscribed() -> bool:
                return all(f.connections and "CHANNEL_CREATE" in f.connections[-1].subscriptions.names
                           for f in (fa, fb))

            await _wait_for(subscribed)
            await fa.fire(fa.make_event("CHANNEL_CREATE", {"Unique-ID": "1"}))
            await fb.fire(fb.make_event("CHANNEL_CREATE", {"Unique-ID": "2"}))

            async def two() -> bool:
                return int(await r.xlen("clu")) == 2

            await _wait_for(two)
            nodes = sorted(f[b"node"].decode() for _id, f in await r.xrange("clu"))
            assert nodes == sorted(["a", f"{fb.host}:{fb.port}"])
        finally:
            bridge.send_signal(signal.SIGINT)
            _, err = await asyncio.wait_for(bridge.communicate(), 20)
    assert bridge.returncode == 0, err
    await r.aclose()


def test_bridge_cluster_bad_spec() -> None:
    import subprocess

    proc = subprocess.run([*ESL, "bridge", "redis://127.0.0.1:1/0", "--cluster", "a=host:notaport"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 1 and "--cluster expects [NAME=]HOST[:PORT]" in proc.stderr
