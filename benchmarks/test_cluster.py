"""Cluster fan-in under pytest-benchmark: events/s into one ``esl.Cluster`` "*" handler from several nodes.

Each node is ``bench_inbound``'s replay server in its own process, writing the
real plain capture over loopback as fast as the socket takes it (so the nodes
are not the bottleneck the fake FreeSWITCH would be). The cluster connects
outside the timed window; a round is ``cluster.subscribe("ALL")`` on every node
and ends when the handler has seen every node's events, each tagged with its
node (a ``NodeEvent``). One node through the same Cluster is the baseline.

Run: ``pytest benchmarks/test_cluster.py`` (the table comes at the end). On a
2-core machine the four servers compete with the client for CPU: the figure
is a floor.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import bench_inbound
from conftest import Table, add_row

from esl import Inbound
from esl.cluster import Cluster

EVENTS_PER_NODE = 50_000

TABLE = Table(
    "Cluster fan-in: events/s into one '*' handler (real plain capture; best round)",
    [("nodes", "nodes", ",.0f"), ("events", "events", ",.0f"), ("events_per_s", "events/s", ",.0f"),
     ("events_per_cpu_s", "events/CPU s", ",.0f")],
    key="events_per_s",
    baselines=("1-node",),
)


@pytest.mark.parametrize("nodes", [1, 4])
def test_cluster_fan_in(benchmark: Any, nodes: int) -> None:
    frames = bench_inbound.load_event_frames()
    servers = [bench_inbound.start_server(frames) for _ in range(nodes)]
    loop = asyncio.new_event_loop()
    total = EVENTS_PER_NODE * nodes
    cpu: list[float] = []
    state: dict[str, Any] = {}

    async def connect() -> None:
        cluster = Cluster({f"fs{i}": Inbound("127.0.0.1", port, "ClueCon", timeout=60)
                           for i, (_, port) in enumerate(servers)}, heartbeat=False, load_interval=None)  # fmt: skip
        await cluster.connect()
        seen = {"n": 0, "tagged": 0}
        done = loop.create_future()

        def handler(ev: Any) -> None:
            seen["n"] += 1
            if ev.node:
                seen["tagged"] += 1
            if seen["n"] == total:
                done.set_result(None)

        cluster.on("*", handler)
        for client in cluster.nodes.values():
            await client.send(f"bench {EVENTS_PER_NODE}")
        state.update(cluster=cluster, done=done, seen=seen)

    async def one_round() -> None:
        cluster, done = state["cluster"], state["done"]
        c0 = time.process_time()
        await cluster.subscribe("ALL")
        await asyncio.wait_for(done, 600)
        cpu.append(time.process_time() - c0)
        assert state["seen"]["tagged"] == total
        await cluster.close()

    try:
        benchmark.group = "cluster"
        benchmark.pedantic(lambda: loop.run_until_complete(one_round()),
                           setup=lambda: loop.run_until_complete(connect()), rounds=3, iterations=1)  # fmt: skip
    finally:
        loop.close()
        for proc, _ in servers:
            proc.terminate()
    best = benchmark.stats.stats.min
    add_row(TABLE, f"{nodes}-node", benchmark, {
        "nodes": nodes, "events": total, "events_per_s": total / best, "events_per_cpu_s": total / min(cpu),
    })  # fmt: skip
