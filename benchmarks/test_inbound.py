"""End-to-end inbound throughput under pytest-benchmark: esl (compiled core, Python twin), genesis, greenswitch.

The machinery is ``bench_inbound.py``'s: a replay server in its own process
answers ``auth`` and ``event plain ALL`` as FreeSWITCH does and then writes the
real plain captures' events byte for byte over loopback (the loopback legs'
``events`` and the SIP legs' ``sip-events``); each client runs in a fresh
subprocess with one ``"*"`` handler reading ``Unique-ID`` (``esl-cython-3h``:
a realistic handler reading three headers, the row users compare). The client
connects and authenticates outside the timed window (pedantic ``setup``); a
round is the subscription plus the whole event stream, from the parent's
"go" to the client's report of its last event. Each client is its own test,
all in the same run, so the ratios compare like with like.

Recorded in ``benchmark.extra_info``: ``events_per_s`` (the client's own
wall-clock window in its best round, the figure the ratios use: it holds
whatever ``--benchmark-timer`` is chosen, since the work happens in the client
process), ``parent_events_per_s`` (events / best round as pytest-benchmark timed
it from the parent; meaningful only with the default wall-clock timer) and
``events_per_cpu_s`` (the client's CPU time; what a busy machine disturbs least). The peers are much slower,
so they get fewer events per round; rates are per second either way.

Run: ``pytest benchmarks/test_inbound.py`` (the table comes at the end).
"""

from __future__ import annotations

import importlib.util
from typing import Any, Iterator

import pytest

import bench_inbound
from conftest import Table, add_row

# events per round and rounds, per client: enough for a stable rate, a few seconds each
PLAN = {
    "esl-cython": (200_000, 5),
    "esl-cython-3h": (200_000, 5),
    "esl-python": (50_000, 3),
    "genesis": (10_000, 3),
    "greenswitch": (10_000, 3),
}
NEEDS = {"genesis": ["genesis"], "greenswitch": ["greenswitch", "gevent"]}

CAPTURES = ["events", "sip-events"]
TABLES = {
    capture: Table(
        f"Inbound end to end: replayed {capture}-plain over loopback, one '*' handler reading Unique-ID "
        "(esl-cython-3h: three headers) (best round)",
        [("events", "events", ",.0f"), ("events_per_s", "events/s", ",.0f"),
         ("events_per_cpu_s", "ev/client-CPU-s", ",.0f")],
        key="events_per_s",
        baselines=("genesis", "greenswitch", "esl-cython"),
    )
    for capture in CAPTURES
}


@pytest.fixture(scope="module", params=CAPTURES)
def server_port(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """The replay server (own process) of one capture for the whole module."""
    try:
        frames = bench_inbound.load_event_frames(request.param)
    except SystemExit as exc:
        pytest.skip(f"no plain capture: {exc}")
    server, port = bench_inbound.start_server(frames)
    try:
        yield request.param, port
    finally:
        server.terminate()
        server.join(10)


def _check_available(name: str) -> None:
    if name.startswith("esl-cython"):
        import esl.core

        try:
            esl.core.load("cython")
        except ImportError:
            pytest.skip("the compiled core esl._core is not built")
    for module in NEEDS.get(name, []):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} not installed (pip install '.[bench]')")


@pytest.mark.parametrize("name", list(PLAN))
def test_inbound(benchmark: Any, server_port: tuple[str, int], name: str) -> None:
    capture, port = server_port
    _check_available(name)
    count, rounds = PLAN[name]
    clients: list[bench_inbound.Client] = []
    results: list[dict[str, Any]] = []

    def setup() -> tuple[tuple[bench_inbound.Client], dict[str, Any]]:
        # the previous round's client has gone before the next connects (the server takes one at a time)
        if clients:
            clients[-1].reap()
        clients.append(bench_inbound.Client(name, port, count))
        return (clients[-1],), {}

    def one_round(client: bench_inbound.Client) -> None:
        results.append(client.finish())

    benchmark.group = f"inbound-e2e-{capture}"
    try:
        benchmark.pedantic(one_round, setup=setup, rounds=rounds, iterations=1, warmup_rounds=0)
    finally:
        if clients:
            clients[-1].reap()
    best = min(results, key=lambda r: r["seconds"])
    add_row(TABLES[capture], name, benchmark, {
        "events": count,
        "events_per_s": best["events_per_s"],
        "parent_events_per_s": count / benchmark.stats.stats.min,
        "events_per_cpu_s": max(r["events_per_cpu_s"] for r in results),
    })
