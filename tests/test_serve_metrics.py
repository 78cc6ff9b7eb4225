"""esl.serve.metrics: the Prometheus exporter reads stats() at scrape time; scraped values match it."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

pytest.importorskip("prometheus_client")
aiohttp = pytest.importorskip("aiohttp")

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import esl
import esl.serve
from esl.serve import metrics
from esl.stats import LATENCY_BUCKETS, ConnectionStats, LatencyHistogram, OutboundStats
from esl.testing import FakeFreeSWITCH


def conn_stats(**over: Any) -> ConnectionStats:
    base: dict[str, Any] = dict(
        connected=True, pending_commands=3, jobs=2, channels=7, owners=9, events_received=1000,
        events_dropped=4, events_malformed=1, events_lost=5, queue_depth=6, paused=False, pauses=8,
        handler_errors=2, reconnects=1,
        events_by_name={"CHANNEL_ANSWER": 400, "HEARTBEAT": 10, "CUSTOM::sofia::register": 590},
        command_latency={"api": LatencyHistogram(counts=(1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1),
                                                 sum=10.5, count=4)},
    )
    base.update(over)
    return ConnectionStats(**base)


class Source:
    """An object with a ``stats()`` method, as Inbound/Session/Outbound have."""

    def __init__(self, stats: Any, host: str = "fs1", port: int = 8021) -> None:
        self._stats = stats
        self.host, self.port = host, port
        self.calls = 0

    def stats(self) -> Any:
        self.calls += 1
        return self._stats


def scrape(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry's text exposition, keyed by (name, sorted labels)."""
    text = generate_latest(registry).decode()
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def lab(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_connection_stats_become_metrics() -> None:
    registry = CollectorRegistry()
    src = Source(conn_stats())
    metrics.register(("fs1", src), registry=registry)
    assert src.calls == 0  # nothing read until a scrape
    got = scrape(registry)
    assert src.calls == 1
    c = dict(connection="fs1", kind="source")
    assert got[("esl_connected", lab(**c))] == 1
    assert got[("esl_events_received_total", lab(**c))] == 1000
    assert got[("esl_events_dropped_total", lab(**c))] == 4
    assert got[("esl_events_malformed_total", lab(**c))] == 1
    assert got[("esl_events_lost_total", lab(**c))] == 5
    assert got[("esl_handler_errors_total", lab(**c))] == 2
    assert got[("esl_reconnects_total", lab(**c))] == 1
    assert got[("esl_flow_pauses_total", lab(**c))] == 8
    assert got[("esl_flow_paused", lab(**c))] == 0
    assert got[("esl_queue_depth", lab(**c))] == 6
    assert got[("esl_pending_commands", lab(**c))] == 3
    assert got[("esl_pending_jobs", lab(**c))] == 2
    assert got[("esl_channels", lab(**c))] == 7
    assert got[("esl_owners", lab(**c))] == 9
    assert got[("esl_events_total", lab(event="CHANNEL_ANSWER", **c))] == 400
    assert got[("esl_events_total", lab(event="CUSTOM::sofia::register", **c))] == 590
    # the histogram: cumulative buckets ending in +Inf, sum and count
    api = dict(command="api", **c)
    assert got[("esl_command_latency_seconds_bucket", lab(le="0.0005", **api))] == 1
    assert got[("esl_command_latency_seconds_bucket", lab(le="0.001", **api))] == 3
    assert got[("esl_command_latency_seconds_bucket", lab(le="10.0", **api))] == 3
    assert got[("esl_command_latency_seconds_bucket", lab(le="+Inf", **api))] == 4
    assert got[("esl_command_latency_seconds_count", lab(**api))] == 4
    assert got[("esl_command_latency_seconds_sum", lab(**api))] == 10.5
    assert len([k for k in got if k[0] == "esl_command_latency_seconds_bucket"]) == len(LATENCY_BUCKETS) + 1


def test_event_name_labels_are_bounded() -> None:
    names = {f"EV_{i:03d}": i + 1 for i in range(300)}
    registry = CollectorRegistry()
    src = Source(conn_stats(events_by_name=names))
    collector = metrics.register(("x", src), registry=registry)
    collector.max_event_names = 50
    got = scrape(registry)
    by_name = {dict(k[1])["event"]: v for k, v in got.items() if k[0] == "esl_events_total"}
    assert len(by_name) == 51 and "other" in by_name
    assert sum(by_name.values()) == sum(names.values())
    assert by_name["EV_299"] == 300  # the busiest names keep their own series


def test_outbound_cluster_and_scenario_sources() -> None:
    registry = CollectorRegistry()
    out = OutboundStats(serving=True, sessions=3, sessions_total=40, sessions_failed=2,
                        connections=conn_stats(events_received=77))
    cluster = {"fs-a": conn_stats(events_received=1), "fs-b": conn_stats(events_received=2, connected=False)}
    app = esl.serve.App(max_concurrent=5)
    app._started["callback"] = 3
    app._outcomes[("callback", "completed")] = 2
    app._refused["limit"] = 4
    sources = [Source(out), Source(cluster)]
    metrics.register(("out", sources[0]), ("cl", sources[1]), ("app", app), registry=registry)
    got = scrape(registry)
    assert got[("esl_outbound_serving", lab(server="out"))] == 1
    assert got[("esl_outbound_sessions_active", lab(server="out"))] == 3
    assert got[("esl_outbound_sessions_accepted_total", lab(server="out"))] == 40
    assert got[("esl_outbound_sessions_failed_total", lab(server="out"))] == 2
    assert got[("esl_events_received_total", lab(connection="out", kind="outbound"))] == 77
    assert got[("esl_events_received_total", lab(connection="cl/fs-a", kind="source"))] == 1
    assert got[("esl_connected", lab(connection="cl/fs-b", kind="source"))] == 0
    assert got[("esl_scenarios_live", lab(app="app"))] == 0
    assert got[("esl_scenarios_max", lab(app="app"))] == 5
    assert got[("esl_scenarios_started_total", lab(app="app", scenario="callback"))] == 3
    assert got[("esl_scenarios_ended_total", lab(app="app", scenario="callback", outcome="completed"))] == 2
    assert got[("esl_scenarios_refused_total", lab(app="app", reason="limit"))] == 4


def test_register_twice_adds_to_one_collector_and_objects_are_weak() -> None:
    registry = CollectorRegistry()
    a, b = Source(conn_stats(), "a", 1), Source(conn_stats(), "b", 2)
    c1 = metrics.register(a, registry=registry)
    c2 = metrics.register(b, registry=registry)
    assert c1 is c2
    conns = {dict(k[1])["connection"] for k in scrape(registry) if k[0] == "esl_connected"}
    assert conns == {"a:1", "b:2"}
    del b
    gc.collect()
    conns = {dict(k[1])["connection"] for k in scrape(registry) if k[0] == "esl_connected"}
    assert conns == {"a:1"}
    metrics.unregister(a, registry=registry)
    assert not [k for k in scrape(registry) if k[0] == "esl_connected"]
    with pytest.raises(TypeError):
        metrics.register(object(), registry=registry)


async def test_real_inbound_scraped_over_http_matches_stats(freeswitch: FakeFreeSWITCH) -> None:
    registry = CollectorRegistry()
    async with esl.Inbound(freeswitch.host, freeswitch.port, freeswitch.password) as client:
        await client.subscribe("ALL")
        server = await metrics.start_metrics_server(0, ("fs", client), registry=registry)
        try:
            for i in range(50):
                await client.sendevent("CUSTOM", {"Event-Subclass": "test::tick", "n": str(i)})
            await client.api("status")
            for _ in range(100):
                if metrics.snapshot(client).events_received >= 50:
                    break
                await asyncio.sleep(0.01)
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://127.0.0.1:{server.port}/metrics") as r:
                    assert r.status == 200
                    assert r.headers["Content-Type"].startswith("text/plain")
                    text = await r.text()
            expected = metrics.snapshot(client)
        finally:
            await server.stop()
    assert isinstance(expected, ConnectionStats)
    got: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            got[(s.name, tuple(sorted(s.labels.items())))] = s.value
    c = dict(connection="fs", kind="inbound")
    assert expected.events_received >= 50
    assert got[("esl_events_received_total", lab(**c))] == expected.events_received
    assert got[("esl_events_dropped_total", lab(**c))] == expected.events_dropped
    assert got[("esl_connected", lab(**c))] == 1
    assert got[("esl_pending_commands", lab(**c))] == expected.pending_commands
    assert got[("esl_reconnects_total", lab(**c))] == expected.reconnects
    for name, n in expected.events_by_name.items():
        assert got[("esl_events_total", lab(event=name, **c))] == n
    for command, h in expected.command_latency.items():
        assert got[("esl_command_latency_seconds_count", lab(command=command, **c))] == h.count


async def test_scrape_from_another_thread_reads_on_the_loop(freeswitch: FakeFreeSWITCH) -> None:
    registry = CollectorRegistry()
    async with esl.Inbound(freeswitch.host, freeswitch.port, freeswitch.password) as client:
        metrics.register(("fs", client), registry=registry)
        text = (await asyncio.to_thread(generate_latest, registry)).decode()
    assert 'esl_connected{connection="fs",kind="inbound"} 1.0' in text


async def test_scenario_server_metrics_match_app_stats(freeswitch: FakeFreeSWITCH) -> None:
    registry = CollectorRegistry()
    app = esl.serve.App(host=freeswitch.host, port=freeswitch.port, password=freeswitch.password,
                        variable=None, max_concurrent=2)

    @app.scenario("hello")
    async def hello(call: esl.Call, data: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)

    await app.start()
    try:
        metrics.register(("svc", app), registry=registry)
        records = [app.start_call("hello", "user/1000") for _ in range(2)]
        with pytest.raises(esl.serve.LimitExceeded):
            app.start_call("hello", "user/1000")
        live = scrape(registry)
        assert live[("esl_scenarios_live", lab(app="svc"))] == 2
        await asyncio.wait_for(asyncio.gather(*(r.ended.wait() for r in records)), 10)
        got = scrape(registry)
        stats = app.stats()
    finally:
        await app.stop()
    assert got[("esl_scenarios_live", lab(app="svc"))] == stats.live == 0
    assert got[("esl_scenarios_started_total", lab(app="svc", scenario="hello"))] == stats.started["hello"] == 2
    assert (got[("esl_scenarios_ended_total", lab(app="svc", scenario="hello", outcome="completed"))]
            == stats.outcomes[("hello", "completed")] == 2)
    assert got[("esl_scenarios_refused_total", lab(app="svc", reason="limit"))] == stats.refused["limit"] == 1
    # the app's own connection is exported too
    assert ("esl_connected", lab(connection=f"{freeswitch.host}:{freeswitch.port}", kind="inbound")) in got


def test_grafana_dashboard_uses_only_exported_metrics() -> None:
    """contrib/grafana/esl.json is valid JSON and every esl_* series it queries is one the exporter makes."""
    import json
    import re
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "contrib" / "grafana" / "esl.json"
    dashboard = json.loads(path.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    used = {m for e in exprs for m in re.findall(r"\besl_[a-z_]+", e)}
    registry = CollectorRegistry()
    out = OutboundStats(serving=True, sessions=1, sessions_total=1, sessions_failed=0, connections=conn_stats())
    app = esl.serve.App()
    app._started["s"] = 1
    app._outcomes[("s", "completed")] = 1
    app._refused["limit"] = 1
    sources = [Source(conn_stats()), Source(out)]
    metrics.register(("c", sources[0]), ("o", sources[1]), ("a", app), registry=registry)
    exported = {name for name, _ in scrape(registry)}
    # every family is declared once (Prometheus rejects a second TYPE line for a name)
    types = [line.split()[2] for line in generate_latest(registry).decode().splitlines()
             if line.startswith("# TYPE")]
    assert len(types) == len(set(types)), sorted(t for t in types if types.count(t) > 1)
    missing = {m for m in used if m not in exported and f"{m}_total" not in exported}
    assert not missing, missing
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
