"""Production tooling under pytest-benchmark: the exporter's cost, and HTTP scenario starts per second.

* ``test_exporter_overhead``: end-to-end inbound throughput (``bench_serve.py``: the real plain capture
  replayed over loopback to a client subprocess) with the Prometheus exporter off and on, interleaved
  round by round (the "paired CPU ratio" is the median over rounds of each mode's events per
  client CPU-second over the same round's "off" run), plus "idle" (the exporter serving, nobody scraping); "scraped" has ``/metrics``
  scraped every 0.5 s during the window. The ratio on/off
  is the figure (the issue asks for at most 3% apart); the table compares events per client
  CPU-second, which a busy machine disturbs far less than wall-clock events/s (both are shown).
* ``test_http_scenario_starts``: ``esl fake`` and ``esl serve`` each in their own process; the
  benchmark process POSTs 500 scenario starts at once over a real HTTP client and measures the 202
  replies per second, then the calls completed per second (placed, answered, scenario run, hung up).

Run: ``pytest benchmarks/test_serve.py`` (tables at the end).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bench_inbound
import bench_serve
import pytest
from conftest import Table, add_row

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("prometheus_client")

EVENTS = 1_000_000
ROUNDS = 8
STARTS = 500

OVERHEAD = Table(
    "Exporter cost: inbound end to end with the Prometheus exporter off/on, /metrics scraped every 0.5 s "
    "(best of interleaved rounds)",
    [("events", "events", ",.0f"), ("events_per_s", "events/s", ",.0f"),
     ("events_per_cpu_s", "ev/client-CPU-s", ",.0f"), ("paired", "paired CPU ratio", ".3f"),
     ("scrapes", "scrapes", ",.0f")],
    key="events_per_cpu_s",
    baselines=("exporter off",),
)
STARTS_TABLE = Table(
    "HTTP scenario starts: 500 POST /scenarios at once to esl serve (fake FreeSWITCH in its own process)",
    [("starts", "starts", ",.0f"), ("starts_per_s", "202 replies/s", ",.0f"),
     ("calls_per_s", "calls completed/s", ",.0f")],
    key="starts_per_s",
    baselines=(),
)


@pytest.fixture(scope="module")
def replay_port() -> Iterator[int]:
    try:
        frames = bench_inbound.load_event_frames()
    except SystemExit as exc:
        pytest.skip(f"no plain capture: {exc}")
    if not frames:
        pytest.skip("no plain capture (set ESL_CAPTURES)")
    server, port = bench_inbound.start_server(frames)
    try:
        yield port
    finally:
        server.terminate()
        server.join(10)


def test_exporter_overhead(benchmark: Any, replay_port: int) -> None:
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in bench_serve.MODES}

    def one_of_each() -> None:
        for mode in bench_serve.MODES:
            results[mode].append(bench_serve.Run(replay_port, EVENTS, mode).finish())

    benchmark.group = "serve-exporter"
    benchmark.pedantic(one_of_each, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    best = {mode: max(runs, key=lambda r: r["events_per_s"]) for mode, runs in results.items()}
    cpu = {mode: max(r["events_per_cpu_s"] for r in runs) for mode, runs in results.items()}
    assert best["scraped"]["scrapes"] > 0 and "esl_events_received_total" in best["scraped"]["last_scrape"]
    # the same round's "off" run is the reference: slow drifts of the machine's load cancel out
    paired = {mode: statistics.median(r["events_per_cpu_s"] / off["events_per_cpu_s"]
                                      for r, off in zip(results[mode], results["off"]))
              for mode in bench_serve.MODES}
    for mode in bench_serve.MODES:
        add_row(OVERHEAD, f"exporter {mode}", benchmark, {
            "events": EVENTS, "events_per_s": best[mode]["events_per_s"], "events_per_cpu_s": cpu[mode],
            "paired": paired[mode], "scrapes": best[mode]["scrapes"]})
    for mode in ("idle", "scraped"):
        benchmark.extra_info[f"{mode}_over_off_wall"] = best[mode]["events_per_s"] / best["off"]["events_per_s"]
        benchmark.extra_info[f"{mode}_over_off_cpu"] = cpu[mode] / cpu["off"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def serve_stack(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``esl fake`` and ``esl serve`` as processes; yields (base URL, token)."""
    fake = subprocess.Popen([sys.executable, "-m", "esl", "fake", "--port", "0"], stderr=subprocess.PIPE,
                            text=True)
    assert fake.stderr is not None
    line = fake.stderr.readline()
    match = re.search(r"listening on ([\d.]+):(\d+)", line)
    assert match, line
    (tmp_path / "svc_bench.py").write_text(textwrap.dedent("""
        import esl, esl.serve
        app = esl.serve.App(variable=None, max_concurrent=1000, max_finished=2000)

        @app.scenario("hello")
        async def hello(call: esl.Call, data: dict) -> None:
            esl.serve.report("hello", i=data.get("i"))
    """))
    token = "bench-token-0123456789"
    port = _free_port()
    env = {**os.environ, "ESL_SERVE_TOKEN": token, "PYTHONPATH": str(tmp_path)}
    serve = subprocess.Popen([sys.executable, "-m", "esl", "serve", "svc_bench:app", "--listen",
                              f"127.0.0.1:{port}", "--host", match[1], "--port", match[2],
                              "--log-level", "warning"], cwd=tmp_path, env=env,
                             stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}", token
    finally:
        for proc in (serve, fake):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _starts(base: str, token: str, count: int) -> tuple[float, float]:
    """POST ``count`` starts at once; seconds until every 202, and until every call ended."""
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=0)) as http:
        for _ in range(200):
            try:
                async with http.get(f"{base}/readyz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)

        async def one(i: int) -> str:
            async with http.post(f"{base}/scenarios/hello", json={"destination": "user/1000", "data": {"i": i}}) as r:
                assert r.status == 202, await r.text()
                return str((await r.json())["id"])

        t0 = time.perf_counter()
        ids = set(await asyncio.gather(*(one(i) for i in range(count))))
        accepted = time.perf_counter() - t0
        while True:
            async with http.get(f"{base}/calls?limit={STARTS}") as r:
                listing = await r.json()
            done = {c["id"] for c in listing["ended"] if c["outcome"] == "completed"}
            if ids <= done:
                break
            assert all(c["outcome"] == "completed" for c in listing["ended"])
            await asyncio.sleep(0.1)
        return accepted, time.perf_counter() - t0


def test_http_scenario_starts(benchmark: Any, serve_stack: tuple[str, str]) -> None:
    base, token = serve_stack
    runs: list[tuple[float, float]] = []

    def one_round() -> None:
        runs.append(asyncio.run(_starts(base, token, STARTS)))

    benchmark.group = "serve-starts"
    benchmark.pedantic(one_round, rounds=3, iterations=1, warmup_rounds=1)
    accepted = min(r[0] for r in runs)
    finished = min(r[1] for r in runs)
    add_row(STARTS_TABLE, "esl serve", benchmark, {"starts": STARTS, "starts_per_s": STARTS / accepted,
                                                   "calls_per_s": STARTS / finished})


def test_scrape_cost(benchmark: Any) -> None:
    """CPU cost of one scrape (collect + text exposition) of a busy connection: 200 event names,
    12 command kinds with latency histograms. Divided by the scrape interval it is the exporter's
    whole cost: nothing is done per event."""
    from prometheus_client import CollectorRegistry, generate_latest

    from esl.serve.metrics import register
    from esl.stats import LATENCY_BUCKETS, ConnectionStats, LatencyHistogram

    hist = LatencyHistogram(counts=tuple(range(len(LATENCY_BUCKETS) + 1)), sum=12.5, count=120)
    stats = ConnectionStats(
        connected=True, pending_commands=3, jobs=2, channels=500, owners=1500, events_received=10**9,
        events_dropped=0, events_malformed=0, events_lost=0, queue_depth=0, paused=False, pauses=0,
        handler_errors=0, reconnects=0, events_by_name={f"EVENT_{i}": i for i in range(200)},
        command_latency={f"cmd{i}": hist for i in range(12)},
    )

    class Busy:
        host, port = "fs", 8021

        def stats(self) -> ConnectionStats:
            return stats

    source = Busy()
    registry = CollectorRegistry()
    register(source, registry=registry)
    body = benchmark(generate_latest, registry)
    assert b"esl_events_total" in body
    per_scrape = benchmark.stats.stats.min
    benchmark.extra_info["scrape_seconds"] = per_scrape
    benchmark.extra_info["share_of_a_core_at_15s"] = per_scrape / 15
