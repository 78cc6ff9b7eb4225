"""Shared call state and cross-process limits (esl.bus.calls, esl.bus.limits) on a real Redis."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator

import pytest

aioredis = pytest.importorskip("redis.asyncio")

from esl.bus.calls import CallRegistry
from esl.bus.limits import LimitExceeded, Limits
from esl.testing.redisserver import RedisServer

_prefixes = itertools.count()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(persist=False).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    c = aioredis.Redis.from_url(redis_server.url)
    try:
        yield c
    finally:
        await c.aclose()


@pytest.fixture
def prefix() -> str:
    return f"t{next(_prefixes)}"


def run_workers(code: str, url: str, n: int, timeout: float = 60.0) -> list[list[object]]:
    """Run ``code`` in ``n`` processes (argv: url, index); each prints one JSON list. Returns them in order."""
    procs = [
        subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), url, str(i)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(n)
    ]  # fmt: skip
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        assert p.returncode == 0, stderr
        out.append(json.loads(stdout))
    return out


# -- the call registry -------------------------------------------------------------------------


async def test_claim_owner_release(client: aioredis.Redis, prefix: str) -> None:
    async with CallRegistry(client, worker="w1", prefix=prefix) as w1, \
            CallRegistry(client, worker="w2", prefix=prefix) as w2:  # fmt: skip
        assert await w1.claim("call-1", "fs1", campaign="42")
        owner = await w2.owner("call-1")
        assert owner is not None
        assert (owner.worker, owner.node, owner.alive, owner.meta) == ("w1", "fs1", True, {"campaign": "42"})
        assert await w2.node_of("call-1") == "fs1"
        assert not await w2.claim("call-1", "fs2")  # a live owner keeps it
        assert not await w2.adopt("call-1")
        assert not await w2.release("call-1")  # not w2's to release
        assert await w1.calls() == {"call-1"}
        assert await w1.release("call-1")
        assert await w2.owner("call-1") is None and await w2.node_of("call-1") is None
        assert await w1.calls() == set()


async def test_many_calls_leave_nothing_behind(client: aioredis.Redis, prefix: str) -> None:
    async with CallRegistry(client, worker="w", prefix=prefix) as reg:
        for i in range(300):
            assert await reg.claim(f"c{i}", "fs1")
        assert len(await reg.calls()) == 300
        for i in range(300):
            assert await reg.release(f"c{i}")
    # only the worker list remains (its heartbeat went with close())
    assert sorted(k.decode() for k in await client.keys(f"{prefix}:*")) == [f"{prefix}:workers"]
    assert await CallRegistry(client, worker="other", prefix=prefix).orphans() == {}
    assert await client.keys(f"{prefix}:*") == []  # the dead, empty worker was forgotten


async def test_killed_worker_calls_are_found_and_adopted(
    client: aioredis.Redis, redis_server: RedisServer, prefix: str
) -> None:
    code = f"""
        import asyncio, sys, redis.asyncio as r
        from esl.bus.calls import CallRegistry
        async def main():
            reg = CallRegistry(r.Redis.from_url(sys.argv[1]), worker="doomed", prefix={prefix!r}, lease=0.5)
            await reg.start()
            for u in ("a", "b", "c"):
                await reg.claim(u, "fs2", app="ivr")
            print("ready", flush=True)
            await asyncio.sleep(3600)
        asyncio.run(main())
    """
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), redis_server.url],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        async with CallRegistry(client, worker="survivor", prefix=prefix, lease=0.5) as me:
            owner = await me.owner("b")
            assert owner is not None and owner.worker == "doomed" and owner.alive
            assert await me.orphans() == {}
            proc.kill()
            proc.wait(10)
            for _ in range(100):  # the heartbeat lapses within the lease
                if await me.orphans():
                    break
                await asyncio.sleep(0.05)
            orphans = await me.orphans()
            assert orphans == {"doomed": {"a", "b", "c"}}
            owner = await me.owner("b")
            assert owner is not None and not owner.alive
            for u in sorted(orphans["doomed"]):
                assert await me.adopt(u, "doomed")
            owner = await me.owner("b")
            assert owner is not None and (owner.worker, owner.node, owner.alive) == ("survivor", "fs2", True)
            assert owner.meta == {"app": "ivr"}
            assert await me.calls() == {"a", "b", "c"} and await me.orphans() == {}
            # an orphan whose entry expired is dropped from the dead worker's list by adopt()
            await client.sadd(f"{prefix}:worker:ghost:calls", "gone")
            await client.sadd(f"{prefix}:workers", "ghost")
            assert await me.orphans() == {"ghost": {"gone"}}
            assert not await me.adopt("gone", "ghost")
            assert await me.orphans() == {}
    finally:
        proc.kill()
        proc.wait(10)


# -- limits ----------------------------------------------------------------------------------------


async def test_concurrency_limit(client: aioredis.Redis, prefix: str) -> None:
    lim = Limits(client, prefix).concurrency("campaign", 2, lease=0.3)
    assert await lim.try_acquire("42", "u1") and await lim.try_acquire("42", "u2")
    assert await lim.try_acquire("42", "u1")  # re-entrant: renews
    assert not await lim.try_acquire("42", "u3")
    assert await lim.try_acquire("43", "u3")  # another key has its own slots
    with pytest.raises(LimitExceeded, match="'campaign' reached for '42'"):
        await lim.acquire("42", "u3", timeout=0)
    assert await lim.count("42") == 2
    assert await lim.release("42", "u1") and not await lim.release("42", "u1")
    await lim.acquire("42", "u3", timeout=0)
    # a holder that never releases lapses after the lease; a waiter then gets in
    await lim.acquire("42", "u4", timeout=2.0)
    assert await lim.count("42") <= 2


async def test_rate_limit_and_gate(client: aioredis.Redis, prefix: str) -> None:
    limits = Limits(client, prefix)
    rate = limits.rate("tenant", 20, burst=2)
    assert await rate.try_acquire("acme") == 0.0 and await rate.try_acquire("acme") == 0.0
    wait = await rate.try_acquire("acme")
    assert 0 < wait <= 0.05
    with pytest.raises(LimitExceeded) as info:
        await rate.acquire("acme", timeout=0)
    assert info.value.retry_after is not None and info.value.retry_after > 0
    await rate.acquire("acme", timeout=1.0)  # waits its turn
    gate = limits.gate(concurrency=limits.concurrency("camp", 1), rate=limits.rate("r", 1000))
    lease = await gate.admit("call-1", concurrency_key="c", rate_key="t")
    with pytest.raises(LimitExceeded):
        await gate.admit("call-2", concurrency_key="c", rate_key="t", timeout=0.05)
    await lease.release()
    await lease.release()  # idempotent
    lease2 = await gate.admit("call-2", concurrency_key="c", rate_key="t")
    assert await lease2.renew()
    # a call refused by the rate gives its concurrency slot back
    slow = limits.gate(concurrency=limits.concurrency("camp2", 5), rate=limits.rate("slow", 0.01))
    await slow.admit("x1", concurrency_key="c", rate_key="t")
    with pytest.raises(LimitExceeded):
        await slow.admit("x2", concurrency_key="c", rate_key="t", timeout=0.1)
    assert await limits.concurrency("camp2", 5).count("c") == 1


def test_concurrency_limit_holds_across_four_processes(redis_server: RedisServer, prefix: str) -> None:
    code = f"""
        import asyncio, json, random, sys, time, redis.asyncio as r
        from esl.bus.limits import Limits
        async def main():
            c = r.Redis.from_url(sys.argv[1])
            lim = Limits(c, {prefix!r}).concurrency("campaign", 5)
            spans = []
            for i in range(25):
                holder = f"{{sys.argv[2]}}-{{i}}"
                await lim.acquire("42", holder, timeout=None)
                start = time.time()
                await asyncio.sleep(random.uniform(0.005, 0.02))
                spans.append((start, time.time()))
                await lim.release("42", holder)
            print(json.dumps(spans))
            await c.aclose()
        asyncio.run(main())
    """
    spans = [tuple(s) for spans in run_workers(code, redis_server.url, 4) for s in spans]  # type: ignore[union-attr]
    assert len(spans) == 100
    points = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda p: (p[0], p[1]))
    level = peak = 0
    for _, d in points:
        level += d
        peak = max(peak, level)
    assert 2 <= peak <= 5  # contention happened, and the limit held


def test_rate_limit_holds_across_four_processes(redis_server: RedisServer, prefix: str) -> None:
    code = f"""
        import asyncio, json, sys, time, redis.asyncio as r
        from esl.bus.limits import Limits
        async def main():
            c = r.Redis.from_url(sys.argv[1])
            rate = Limits(c, {prefix!r}).rate("cps", 50)
            admitted = []
            t0 = time.time()
            while time.time() - t0 < 1.5:
                if await rate.try_acquire("dialer") == 0.0:
                    s, us = await c.time()
                    admitted.append(s + us / 1e6)
            print(json.dumps(admitted))
            await c.aclose()
        asyncio.run(main())
    """
    stamps = sorted(t for ts in run_workers(code, redis_server.url, 4) for t in ts)  # type: ignore[union-attr]
    # every window of one second (by the Redis clock) admitted at most 50 (+1 for the window's edges)
    j = 0
    for i, t in enumerate(stamps):
        while stamps[j] <= t - 1.0:
            j += 1
        assert i - j + 1 <= 51
    assert len(stamps) >= 40  # and the processes were admitted, not starved
