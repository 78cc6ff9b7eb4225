"""The Redis Streams event bus against a real redis-server started by the test run (see esl.testing.redisserver)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

redis = pytest.importorskip("redis.asyncio")

import esl
from esl.bus import BusEvent, connect
from esl.bus.redis_streams import RedisBus
from esl.core import Parser
from esl.testing import FakeFreeSWITCH
from esl.testing.redisserver import RedisServer

_names = itertools.count()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A server of the test's own, to kill and restart."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def bus(redis_server: RedisServer) -> AsyncIterator[RedisBus]:
    b = RedisBus(redis_server.url, stream=f"test:{next(_names)}", socket_timeout=10.0)
    try:
        yield b
    finally:
        await b.close()


def make_events(n: int, name: str = "CHANNEL_CREATE", start: int = 0) -> list[esl.Event]:
    return [
        esl.Event.build([("Event-Name", name), ("Unique-ID", f"u-{i}"), ("Event-Sequence", str(i)), ("X", "a b%")])
        for i in range(start, start + n)
    ]


async def take(stream: AsyncIterator[BusEvent], n: int, timeout: float = 10.0) -> list[BusEvent]:
    out: list[BusEvent] = []

    async def run() -> None:
        async for ev in stream:
            out.append(ev)
            if len(out) >= n:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_connect_picks_backend(redis_server: RedisServer) -> None:
    b = connect(redis_server.url, stream="s")
    assert isinstance(b, RedisBus) and b.stream == "s"
    await b.close()
    with pytest.raises(ValueError, match="kafka"):
        connect("kafka://x")


async def test_capture_events_round_trip_unchanged(bus: RedisBus, captures: object) -> None:
    data = captures.events("plain")  # type: ignore[attr-defined]
    events = [e for e in Parser().feed(data[:6_000_000]) if e.is_event][:2000]
    assert len(events) == 2000
    async with bus.events(group="g", consumer="c1", start="0") as sub, bus.publisher() as pub:
        for e in events:
            assert pub.publish(e, "fs1")
        await pub.flush(5)
        got = await take(sub, len(events))
    assert [g.raw for g in got] == [e.raw for e in events]
    assert all(g.node == "fs1" and g.deliveries == 1 for g in got)
    for g, e in zip(got[:200], events[:200]):
        assert g.items_all() == e.items_all() and g.body == e.body and g.name == e.name
        assert g["Unique-ID"] == e["Unique-ID"] if "Unique-ID" in e else True
    st = pub.stats()
    assert st.published == 2000 and st.dropped == 0 and st.buffered == 0 and st.connected
    assert sub.stats().delivered == 2000
    assert await bus.client.xpending(bus.stream, "g") == {
        "pending": 0, "min": None, "max": None, "consumers": [],
    }  # fmt: skip


async def test_publisher_attached_to_inbound_tags_node(bus: RedisBus) -> None:
    async with FakeFreeSWITCH(hostname="fsA") as fake:
        async with esl.Inbound(fake.host, fake.port, fake.password) as client, bus.publisher() as pub:
            pub.attach(client, node="fsA")
            await client.subscribe("ALL")
            for i in range(50):
                await fake.fire(fake.make_event("CHANNEL_ANSWER", {"Unique-ID": f"call-{i}"}))
            async with bus.events(group="g", consumer="c", start="0") as sub:
                got = await take(sub, 50)
            pub.detach(client)
            await fake.fire(fake.make_event("CHANNEL_ANSWER", {"Unique-ID": "after-detach"}))
            await asyncio.sleep(0.05)
            await pub.flush(5)
    assert [g.uuid for g in got] == [f"call-{i}" for i in range(50)]
    assert {g.node for g in got} == {"fsA"} and {g.hostname for g in got} == {"fsA"}
    assert await bus.client.xlen(bus.stream) == 50


async def test_group_members_share_the_work(bus: RedisBus) -> None:
    async with bus.publisher() as pub:
        a = bus.events(group="g", consumer="a", start="0", batch=10)
        b = bus.events(group="g", consumer="b", start="0", batch=10)
        for e in make_events(200):
            pub.publish(e, "n")
        await pub.flush(5)
        got_a: list[BusEvent] = []
        got_b: list[BusEvent] = []

        async def run(sub: object, out: list[BusEvent]) -> None:
            async for ev in sub:  # type: ignore[attr-defined]
                out.append(ev)
                await asyncio.sleep(0)
                if len(got_a) + len(got_b) >= 200:
                    return

        async with a, b:
            tasks = [asyncio.ensure_future(run(a, got_a)), asyncio.ensure_future(run(b, got_b))]
            await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    ids = [e.id for e in got_a + got_b]
    redelivered = [(e.id, e.deliveries) for e in got_a + got_b if ids.count(e.id) > 1]
    assert len(ids) == len(set(ids)) == 200, (redelivered, a.stats(), b.stats())
    assert got_a and got_b


async def test_other_group_sees_everything_and_names_filter(bus: RedisBus) -> None:
    async with bus.publisher() as pub:
        for e in make_events(30, "CHANNEL_CREATE") + make_events(20, "CHANNEL_HANGUP", 100):
            pub.publish(e, "n")
        await pub.flush(5)
    async with bus.events(group="hangups", consumer="x", start="0", names=["CHANNEL_HANGUP"]) as sub:
        got = await take(sub, 20)
    assert {g.name for g in got} == {"CHANNEL_HANGUP"}
    async with bus.events(group="all", consumer="x", start="0") as sub:
        assert len(await take(sub, 50)) == 50
    # the filtered-out events were acknowledged for the group that skipped them
    assert (await bus.client.xpending(bus.stream, "hangups"))["pending"] == 0


async def test_failed_handler_leaves_event_pending_and_another_member_claims_it(bus: RedisBus) -> None:
    async with bus.publisher() as pub:
        for e in make_events(10):
            pub.publish(e, "n")
        await pub.flush(5)
    handled: list[str] = []
    sub = bus.events(group="g", consumer="dies", start="0")
    with pytest.raises(RuntimeError):
        async with sub:
            async for ev in sub:
                if ev.uuid == "u-3":
                    raise RuntimeError("handler crashed")
                handled.append(ev.uuid)
    assert handled == ["u-0", "u-1", "u-2"]
    # u-3 (in the body when it raised) and u-4.. (read but never handed out) are pending, not acknowledged
    pending = await bus.client.xpending_range(bus.stream, "g", "-", "+", 100)
    assert len(pending) == 7 and {p["consumer"] for p in pending} == {b"dies"}
    # a second member takes them over once they have been idle for claim_idle
    async with bus.events(group="g", consumer="survivor", claim_idle=0.2, claim_interval=0.1) as other:
        await asyncio.sleep(0.3)
        got = await take(other, 7)
    assert [g.uuid for g in got] == [f"u-{i}" for i in range(3, 10)]
    assert all(g.deliveries >= 2 for g in got)
    assert other.stats().claimed == 7
    assert (await bus.client.xpending(bus.stream, "g"))["pending"] == 0


async def test_restarted_consumer_reads_its_own_pending_first(bus: RedisBus) -> None:
    async with bus.publisher() as pub:
        for e in make_events(5):
            pub.publish(e, "n")
        await pub.flush(5)
        sub = bus.events(group="g", consumer="w1", start="0", ack="manual")
        first = await take(sub, 5)
        await sub.ack(first[0])
        await sub.close()  # "dies" with 4 unacknowledged
        for e in make_events(2, start=5):
            pub.publish(e, "n")
        await pub.flush(5)
    async with bus.events(group="g", consumer="w1") as again:
        got = await take(again, 6)
    assert [g.uuid for g in got] == ["u-1", "u-2", "u-3", "u-4", "u-5", "u-6"]
    assert [g.deliveries > 1 for g in got] == [True] * 4 + [False] * 2


async def test_malformed_and_trimmed_entries_are_skipped(bus: RedisBus) -> None:
    await bus.client.xadd(bus.stream, {"raw": b"not a frame", "name": "X", "node": "n"})
    await bus.client.xadd(bus.stream, {"name": "X", "node": "n"})
    async with bus.publisher() as pub:
        pub.publish(make_events(1)[0], "n")
        await pub.flush(5)
    async with bus.events(group="g", consumer="c", start="0") as sub:
        got = await take(sub, 1)
    assert got[0].uuid == "u-0"
    assert sub.stats().malformed == 2
    assert (await bus.client.xpending(bus.stream, "g"))["pending"] == 0


async def test_maxlen_bounds_the_stream(redis_server: RedisServer) -> None:
    async with RedisBus(redis_server.url, stream=f"test:{next(_names)}", maxlen=1000) as b:
        async with b.publisher(batch_size=500) as pub:
            for e in make_events(20_000):
                pub.publish(e, "n")
            await pub.flush(10)
        n = await b.client.xlen(b.stream)
    assert 1000 <= n < 3000  # MAXLEN ~ trims whole radix-tree nodes


async def test_buffer_is_bounded_while_redis_is_frozen(own_redis: RedisServer) -> None:
    b = RedisBus(own_redis.url, stream="s", socket_timeout=0.5)
    pub = b.publisher(max_buffer=500, batch_size=100)
    await pub.start()
    try:
        own_redis.pause()
        await asyncio.sleep(0.05)
        accepted = sum(pub.publish(e, "n") for e in make_events(2000))
        st = pub.stats()
        assert st.buffered <= 500 and st.dropped == 2000 - accepted and accepted <= 500
        await asyncio.sleep(0.8)  # the write times out and is retried
        assert pub.stats().errors >= 1 and not pub.stats().connected
        own_redis.resume()
        await pub.flush(10)
        st = pub.stats()
        assert st.buffered == 0 and st.connected
        n = await b.client.xlen("s")
        assert accepted <= n <= accepted + 100  # a batch cut off by the timeout may be written twice
    finally:
        own_redis.resume()
        await pub.close()
        await b.close()


async def test_close_with_redis_down_counts_unwritten_as_dropped(own_redis: RedisServer) -> None:
    b = RedisBus(own_redis.url, stream="s", socket_timeout=0.5)
    pub = b.publisher(max_buffer=100)
    await pub.start()
    own_redis.kill()
    for e in make_events(150):
        pub.publish(e, "n")
    await pub.close(timeout=0.3)
    st = pub.stats()
    assert st.buffered == 0 and st.published == 0 and st.dropped == 150
    assert not pub.publish(make_events(1)[0], "n")  # a closed publisher refuses, counted
    assert pub.stats().dropped == 151
    await b.close()


async def test_redis_restart_under_running_publisher_and_consumer(own_redis: RedisServer) -> None:
    """Kill Redis mid-stream and start it again: nothing acknowledged unhandled, nothing lost but counted drops."""
    b = RedisBus(own_redis.url, stream="s", socket_timeout=0.5)
    pub = b.publisher(max_buffer=5000, batch_size=50)
    sub = b.events(group="g", consumer="c", start="0", block=0.1)
    sub.max_backoff = 0.2
    pub.max_backoff = 0.2
    handled: set[str] = set()
    total = 3000
    stop = asyncio.Event()

    async def produce() -> None:
        for i, e in enumerate(make_events(total)):
            pub.publish(e, "n")
            if i % 15 == 0:  # about two seconds in all
                await asyncio.sleep(0.01)
        stop.set()

    async def consume() -> None:
        async for ev in sub:
            handled.add(ev.uuid)

    async def caught_up() -> None:
        while True:
            info = (await b.client.xinfo_groups(b.stream))[0]
            last = (await b.client.xinfo_stream(b.stream))["last-generated-id"]
            if info["pending"] == 0 and info["last-delivered-id"] == last:
                return
            await asyncio.sleep(0.05)

    await pub.start()
    producer = asyncio.ensure_future(produce())
    consumer = asyncio.ensure_future(consume())
    await asyncio.sleep(0.5)
    assert handled and not producer.done()
    own_redis.kill()
    await asyncio.sleep(0.6)
    assert not consumer.done() and not producer.done()
    own_redis.start()
    await asyncio.wait_for(producer, 30)
    await pub.flush(30)
    await asyncio.wait_for(caught_up(), 30)
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    await sub.close()
    st = pub.stats()
    assert st.errors >= 1 and st.published >= total - st.dropped
    expected = {f"u-{i}" for i in range(total)}
    assert len(expected - handled) <= st.dropped  # only counted drops are missing
    # nothing is pending, so every entry was acknowledged: each one was handed to the loop body
    assert (await b.client.xpending(b.stream, "g"))["pending"] == 0
    written = {Parser().feed(f[b"raw"])[0].uuid for _id, f in await b.client.xrange(b.stream)}
    assert written <= handled
    await pub.close()
    await b.close()


async def test_consumer_recreates_its_group_after_redis_lost_everything() -> None:
    server = RedisServer(persist=False).start()
    try:
        b = RedisBus(server.url, stream="s", socket_timeout=0.5)
        sub = b.events(group="g", consumer="c", start="0", block=0.1)
        sub.max_backoff = 0.1
        async with b.publisher() as pub:
            pub.max_backoff = 0.1  # type: ignore[attr-defined]
            for e in make_events(3):
                pub.publish(e, "n")
            await pub.flush(5)
            assert [e.uuid for e in await take(sub, 3)] == ["u-0", "u-1", "u-2"]
            server.kill()
            server.start()  # an empty Redis: no stream, no group
            for e in make_events(2, start=3):
                pub.publish(e, "n")
            await pub.flush(10)
            assert [e.uuid for e in await take(sub, 2)] == ["u-3", "u-4"]
        assert (await b.client.xpending("s", "g"))["pending"] == 2  # u-4 in hand, u-3 acked on the next read
        await sub.close()  # close() alone does not acknowledge the event in hand (its body may have failed)
        assert (await b.client.xpending("s", "g"))["pending"] == 1
        await sub.__aexit__(None, None, None)  # leaving ``async with`` normally does
        assert (await b.client.xpending("s", "g"))["pending"] == 0
        await b.close()
    finally:
        server.stop()


async def test_prune_removes_idle_members_without_pending(bus: RedisBus) -> None:
    async with bus.publisher() as pub:
        for e in make_events(2):
            pub.publish(e, "n")
        await pub.flush(5)
    async with bus.events(group="g", consumer="done", start="0") as sub:
        await take(sub, 2)
    keeps = bus.events(group="g", consumer="holds", start="0", ack="manual")
    await bus.client.xgroup_setid(bus.stream, "g", "0")
    await take(keeps, 1)  # delivered, never acknowledged
    await keeps.close()
    await asyncio.sleep(0.05)
    assert await bus.prune("g", idle=0.01) == ["done"]
    names = {c["name"] for c in await bus.client.xinfo_consumers(bus.stream, "g")}
    assert names == {b"holds"}


async def test_a_read_cancelled_by_a_timeout_loses_nothing(bus: RedisBus) -> None:
    sub = bus.events(group="g", consumer="c", start="$", block=5.0)
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sub.__anext__(), 0.3)  # cancelled inside a blocking read
    async with bus.publisher() as pub:
        for e in make_events(3):
            pub.publish(e, "n")
        await pub.flush(5)
    async with sub:
        got = await take(sub, 3)
    assert [g.uuid for g in got] == ["u-0", "u-1", "u-2"]
    assert (await bus.client.xpending(bus.stream, "g"))["pending"] == 0
