"""esl.Cluster over several fake FreeSWITCH nodes (different ports, hostnames and Core-UUIDs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

import esl
from esl.cluster import Cluster, NoNodeAvailable, RoundRobin
from esl.exceptions import ConnectionError
from esl.tagged import NodeEvent
from esl.testing import FakeFreeSWITCH


@pytest.fixture
async def fakes() -> AsyncIterator[list[FakeFreeSWITCH]]:
    nodes = [FakeFreeSWITCH(hostname=f"host{i}") for i in range(3)]
    for f in nodes:
        await f.start()
    try:
        yield nodes
    finally:
        for f in nodes:
            await f.stop()


def make_cluster(fakes: list[FakeFreeSWITCH], **kwargs: object) -> Cluster:
    nodes = {f"fs{i}": esl.Inbound(f.host, f.port, f.password, reconnect=True, reconnect_delay=0.05,
                                   reconnect_max_delay=0.2, timeout=2.0)
             for i, f in enumerate(fakes)}  # fmt: skip
    return Cluster(nodes, load_interval=600, join_delay=0.05, join_max_delay=0.2, **kwargs)  # type: ignore[arg-type]


async def until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not pred():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def test_api_on_a_node_and_on_all(fakes: list[FakeFreeSWITCH]) -> None:
    async with make_cluster(fakes) as cluster:
        assert cluster.up() == ["fs0", "fs1", "fs2"]
        assert await cluster.api("global_getvar hostname", node="fs1") == "host1"
        with pytest.raises(KeyError, match="fs9"):
            await cluster.api("status", node="fs9")
        res = await cluster.api_all("global_getvar hostname")
        assert res == {"fs0": "host0", "fs1": "host1", "fs2": "host2"}
        job = await cluster.bgapi("global_getvar hostname", node="fs2")
        assert job.node == "fs2" and await job == "host2"
        # one node gone: its entry is the error, naming it; the others still answer
        await fakes[1].stop()
        await until(lambda: "fs1" not in cluster.up())
        res = await cluster.api_all("global_getvar hostname")
        assert res["fs0"] == "host0" and res["fs2"] == "host2"
        assert isinstance(res["fs1"], ConnectionError) and "node fs1" in str(res["fs1"])
        stats = cluster.stats()
        assert set(stats) == {"fs0", "fs1", "fs2"}
        assert not stats["fs1"].connected and stats["fs0"].connected and stats["fs0"].events_received >= 0


async def test_merged_events_tagged_with_node(fakes: list[FakeFreeSWITCH]) -> None:
    got: list[NodeEvent] = []
    got_async: list[str] = []
    async with make_cluster(fakes) as cluster:

        @cluster.on("CHANNEL_ANSWER")
        def answered(ev: NodeEvent) -> None:
            got.append(ev)

        async def any_event(ev: NodeEvent) -> None:
            await asyncio.sleep(0)
            got_async.append(f"{ev.node}/{ev.name}")

        cluster.on("*", any_event)
        await cluster.subscribe("CHANNEL_ANSWER", "CHANNEL_HANGUP")
        for i, f in enumerate(fakes):
            await f.fire(f.make_event("CHANNEL_ANSWER", {"Unique-ID": f"u{i}"}))
            await f.fire(f.make_event("CHANNEL_HANGUP", {"Unique-ID": f"u{i}"}))
        await until(lambda: len(got) == 3 and len(got_async) == 6)
        cluster.remove("CHANNEL_ANSWER", answered)
        await fakes[0].fire(fakes[0].make_event("CHANNEL_ANSWER", {"Unique-ID": "late"}))
        await until(lambda: len(got_async) == 7)
    assert sorted((e.node, e.uuid, e.hostname) for e in got) == [
        ("fs0", "u0", "host0"), ("fs1", "u1", "host1"), ("fs2", "u2", "host2"),
    ]  # fmt: skip
    assert len({e.core_uuid for e in got}) == 3 and got[0]["Unique-ID"] == got[0].uuid
    assert sorted(got_async[:6]) == sorted(f"fs{i}/{n}" for i in range(3) for n in ("CHANNEL_ANSWER", "CHANNEL_HANGUP"))


async def test_placement_fewest_sessions_limits_and_down_nodes(fakes: list[FakeFreeSWITCH]) -> None:
    for f, n in zip(fakes, (3, 1, 2)):
        f.dialplan["hold"] = [("park", "")]
        for _ in range(n):
            await f.call("hold")
    async with make_cluster(fakes, max_sessions={"fs1": 2}) as cluster:
        assert cluster.sessions() == {"fs0": 3, "fs1": 1, "fs2": 2}
        assert cluster.pick_name() == "fs1"  # fewest; now counted as 2 = its limit
        assert cluster.pick_name() == "fs2"  # fs1 is at its limit; fs2 (2) before fs0 (3)
        assert cluster.pick() is cluster.node("fs0")  # 3 vs 3: first given
        # a HEARTBEAT brings a fresh figure
        await cluster.subscribe("HEARTBEAT")
        await fakes[0].fire(fakes[0].make_event("HEARTBEAT", {"Session-Count": "0"}))
        await until(lambda: cluster.sessions()["fs0"] == 0)
        assert cluster.pick_name() == "fs0"
        assert await cluster.refresh_load() == {"fs0": 3, "fs1": 1, "fs2": 2}
        # a node that goes down is skipped
        await fakes[1].stop()
        await until(lambda: "fs1" not in cluster.up())
        assert cluster.pick_name() == "fs2"
        assert cluster.pick_name(exclude=["fs2"]) == "fs0"
        # nothing left
        await fakes[0].stop()
        await fakes[2].stop()
        await until(lambda: cluster.up() == [])
        with pytest.raises(NoNodeAvailable, match="fs0 down, fs1 down, fs2 down"):
            cluster.pick()


async def test_round_robin_policy(fakes: list[FakeFreeSWITCH]) -> None:
    async with make_cluster(fakes, policy=RoundRobin()) as cluster:
        assert [cluster.pick_name() for _ in range(4)] == ["fs0", "fs1", "fs2", "fs0"]


async def test_node_dropping_mid_command_fails_it_naming_the_node(fakes: list[FakeFreeSWITCH]) -> None:
    async with make_cluster(fakes) as cluster:
        fakes[2].stall()  # fs2 stops answering
        pending = asyncio.ensure_future(cluster.api("originate user/1000 &park", node="fs2"))
        job = await asyncio.wait_for(cluster.bgapi("status", node="fs1"), 2)
        await asyncio.sleep(0.05)
        await fakes[2].drop_all()
        with pytest.raises(ConnectionError, match="node fs2"):
            await pending
        assert await job  # the other nodes go on
        assert await cluster.api("status", node="fs0")
        # the node rejoins after its reconnect; placement sees it again
        fakes[2].stall(False)
        await until(lambda: "fs2" in cluster.up())
        assert await cluster.api("global_getvar hostname", node="fs2") == "host2"


async def test_node_down_at_start_joins_later(fakes: list[FakeFreeSWITCH]) -> None:
    port = fakes[1].port
    await fakes[1].stop()
    got: list[str] = []
    cluster = make_cluster(fakes)
    cluster.on("CUSTOM", lambda ev: got.append(ev.node))
    async with cluster:
        await cluster.subscribe("CUSTOM", "my::event")
        assert cluster.up() == ["fs0", "fs2"]
        again = FakeFreeSWITCH(hostname="host1", port=port)
        await again.start()
        try:
            await until(lambda: "fs1" in cluster.up())
            # the cluster's subscriptions were applied to the node that joined
            await until(lambda: bool(again.connections) and "my::event" in again.connections[-1].subscriptions.custom)
            await again.fire(again.make_event("CUSTOM", {"Unique-ID": "x"}, subclass="my::event"))
            await until(lambda: got == ["fs1"])
        finally:
            await cluster.close()
            await again.stop()


async def test_no_node_at_all(fakes: list[FakeFreeSWITCH]) -> None:
    for f in fakes:
        await f.stop()
    with pytest.raises(NoNodeAvailable, match="no node could be connected"):
        await make_cluster(fakes).connect()


async def test_publisher_attached_to_cluster() -> None:
    pytest.importorskip("redis.asyncio")
    from esl.bus.redis_streams import RedisBus
    from esl.testing.redisserver import RedisServer

    with RedisServer(persist=False) as server:
        async with FakeFreeSWITCH(hostname="a") as fa, FakeFreeSWITCH(hostname="b") as fb:
            async with make_cluster([fa, fb]) as cluster, RedisBus(server.url, stream="c") as bus:
                async with bus.publisher() as pub:
                    pub.attach(cluster)
                    await cluster.subscribe("CHANNEL_CREATE")
                    await fa.fire(fa.make_event("CHANNEL_CREATE", {"Unique-ID": "1"}))
                    await fb.fire(fb.make_event("CHANNEL_CREATE", {"Unique-ID": "2"}))
                    await until(lambda: pub.stats().published + pub.stats().buffered == 2)
                    await pub.flush(5)
                async with bus.events(group="g", consumer="c", start="0") as sub:
                    got = []
                    async for ev in sub:
                        got.append((ev.node, ev.uuid, ev.hostname))
                        if len(got) == 2:
                            break
    assert sorted(got) == [("fs0", "1", "a"), ("fs1", "2", "b")]


async def test_node_without_reconnect_is_joined_back(fakes: list[FakeFreeSWITCH]) -> None:
    nodes = {"a": esl.Inbound(fakes[0].host, fakes[0].port, timeout=2.0),
             "b": esl.Inbound(fakes[1].host, fakes[1].port, timeout=2.0)}  # fmt: skip
    port = fakes[1].port
    async with Cluster(nodes, load_interval=None, join_delay=0.05, join_max_delay=0.2) as cluster:
        await cluster.subscribe("CHANNEL_CREATE")
        await fakes[1].stop()
        await until(lambda: cluster.up() == ["a"])
        again = FakeFreeSWITCH(hostname="again", port=port)
        await again.start()
        try:
            await until(lambda: cluster.up() == ["a", "b"])
            assert await cluster.api("global_getvar hostname", node="b") == "again"
            await until(lambda: bool(again.connections) and again.connections[-1].subscriptions.enabled)
        finally:
            await cluster.close()
            await again.stop()


async def test_merged_event_stream(fakes: list[FakeFreeSWITCH]) -> None:
    async with make_cluster(fakes) as cluster:
        await cluster.subscribe("CHANNEL_ANSWER", "CHANNEL_HANGUP")
        async with cluster.events("CHANNEL_ANSWER", maxsize=4) as stream:
            for i, f in enumerate(fakes):
                await f.fire(f.make_event("CHANNEL_ANSWER", {"Unique-ID": f"a{i}"}))
                await f.fire(f.make_event("CHANNEL_HANGUP", {"Unique-ID": f"h{i}"}))
            got = [await stream.get(timeout=5) for _ in range(3)]
            assert sorted((e.node, e.uuid) for e in got) == [("fs0", "a0"), ("fs1", "a1"), ("fs2", "a2")]
            with pytest.raises(esl.exceptions.TimeoutError):
                await stream.get(timeout=0.05)
            for _ in range(6):  # more than maxsize: the rest are dropped and counted
                await fakes[0].fire(fakes[0].make_event("CHANNEL_ANSWER", {"Unique-ID": "x"}))
            await until(lambda: len(stream) + stream.dropped == 6)
            assert len(stream) == 4 and stream.dropped == 2
        assert not cluster._handlers  # closing it unregistered it from every node
        ended = cluster.events()
    assert [e async for e in ended] == []  # closing the cluster ended the open stream


async def test_channel_create_places_the_call_on_a_node(fakes: list[FakeFreeSWITCH]) -> None:
    for f, n in zip(fakes, (2, 0, 1)):
        f.dialplan["hold"] = [("park", "")]
        for _ in range(n):
            await f.call("hold")
    async with make_cluster(fakes) as cluster:
        channel = await esl.Channel.create(cluster, "user/1000")  # fewest sessions: fs1
        assert channel.connection is cluster.node("fs1")
        await channel.wait("CHANNEL_ANSWER", timeout=5)
        assert channel.uuid in fakes[1].channels and channel.host == "host1"
        pinned = await esl.Channel.create(cluster, "user/1000", node="fs2")
        assert pinned.connection is cluster.node("fs2")
        await pinned.wait("CHANNEL_ANSWER", timeout=5)
        for ch in (channel, pinned):
            await ch.hangup()
        await fakes[1].stop()  # a node down: placement skips it
        await until(lambda: "fs1" not in cluster.up())
        other = await esl.Channel.create(cluster, "user/1000")
        assert other.connection is not cluster.node("fs1")
        await other.hangup()


async def test_cluster_metrics_per_node(fakes: list[FakeFreeSWITCH]) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from esl.serve.metrics import register

    async with make_cluster(fakes) as cluster:
        await cluster.api_all("status")
        registry = CollectorRegistry()
        register(cluster, registry=registry)
        text = generate_latest(registry).decode()
        stats = cluster.stats()
    for name, node in stats.items():
        line = next(ln for ln in text.splitlines()
                    if ln.startswith("esl_pending_commands{") and f"/{name}\"" in ln)
        assert float(line.rsplit(" ", 1)[1]) == node.pending_commands
    assert 'kind="cluster"' in text and "esl_command_latency_seconds_count" in text


async def test_a_node_dropping_mid_originate_fails_its_channel_naming_the_node(fakes: list[FakeFreeSWITCH]) -> None:
    from esl.testing import Endpoint

    fakes[0].endpoints["user/slow"] = Endpoint(answer_after=None)  # rings until the node goes away
    async with make_cluster(fakes) as cluster:
        channel = await esl.Channel.create(cluster, "user/slow", node="fs0")
        waiting = asyncio.ensure_future(channel.wait("CHANNEL_ANSWER", timeout=10))
        await asyncio.sleep(0.05)
        await fakes[0].drop_all()
        with pytest.raises(esl.exceptions.ConnectionError, match="node fs0"):
            await waiting
        assert channel.job is not None and "node fs0" in str(channel.job.exception())
        other = await esl.Channel.create(cluster, "user/1000")  # the others go on
        assert other.connection is not cluster.node("fs0")
        await other.hangup()


async def test_two_readers_of_the_merged_stream_are_both_served(fakes: list[FakeFreeSWITCH]) -> None:
    async with make_cluster(fakes) as cluster:
        await cluster.subscribe("CHANNEL_ANSWER")
        async with cluster.events("CHANNEL_ANSWER") as stream:
            first = asyncio.ensure_future(stream.get(timeout=5))
            second = asyncio.ensure_future(stream.get(timeout=5))
            await asyncio.sleep(0.01)
            for i in range(2):
                await fakes[i].fire(fakes[i].make_event("CHANNEL_ANSWER", {"Unique-ID": f"r{i}"}))
            got = await asyncio.gather(first, second)
        assert sorted(e.uuid for e in got) == ["r0", "r1"]
