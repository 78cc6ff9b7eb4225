"""Outbound calls handled per second, and memory per concurrent session, under pytest-benchmark: esl vs genesis.

The machinery is ``bench_outbound.py``'s: this process runs
``esl.testing.FakeFreeSWITCH``, whose ``bench`` extension hands every call to
the app under test (``socket 127.0.0.1:<port> async full``) running in its own
subprocess: ``esl.Outbound`` (compiled core, or the Python twin) or
``genesis.Outbound``, each doing connect -> answer -> playback (blocking) ->
hangup.

* ``test_outbound_calls``: the app is started and warmed up (20 calls) outside
  the timed window; a round places ``CALLS`` calls, at most ``CONCURRENCY`` at a
  time, each until the fake has seen its hangup. ``extra_info["calls_per_s"]``
  is calls / best round; ``app_cpu_ms_per_call`` is the app process's CPU time
  over all timed rounds per call (its own cost, which a busy machine and the
  fake's speed disturb much less than the wall-clock rate). The fake runs in
  pure Python in this process and is the ceiling for the wall-clock rate of a
  fast app (the compiled core and the twin then come out alike); the app's CPU
  per call is where they differ.
* ``test_outbound_memory``: a fresh app answers and holds ``SESSIONS`` calls at
  once and reports its RSS growth over its idle RSS; ``kib_per_session`` is that
  growth per session (lower is better). One round; its time (app start-up,
  ``SESSIONS`` answered calls, their hangups) is not a figure of merit.

Run: ``pytest benchmarks/test_outbound.py`` (the tables come at the end).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import bench_outbound
from conftest import Table, add_row

CLIENTS = ["esl-cython", "esl-python", "genesis"]
CALLS = 300  # per round
CONCURRENCY = 50
ROUNDS = 3
SESSIONS = 500

CALLS_TABLE = Table(
    f"Outbound calls/s against the fake (connect, answer, playback, hangup; {CONCURRENCY} in flight; best round)",
    [("calls", "calls", ",.0f"), ("calls_per_s", "calls/s", ",.1f"), ("app_cpu_ms_per_call", "app CPU ms/call", ",.2f"),
     ("unanswered", "unanswered", ",.0f")],
    key="calls_per_s",
)
MEMORY_TABLE = Table(
    f"Outbound memory per concurrent session ({SESSIONS} answered calls held; RSS growth; lower is better)",
    [("sessions", "sessions", ",.0f"), ("kib_per_session", "KiB/session", ",.1f"), ("rss_mb", "app RSS MB", ",.1f")],
    key="kib_per_session",
)


def _check_available(client: str) -> None:
    if not bench_outbound.available(client):
        what = "the compiled core esl._core is not built" if client == "esl-cython" else f"{client} not installed"
        pytest.skip(f"{what} (pip install '.[bench]')")


@pytest.mark.parametrize("client", CLIENTS)
def test_outbound_calls(benchmark: Any, client: str) -> None:
    _check_available(client)
    loop = asyncio.new_event_loop()
    rig = bench_outbound.switch(client)
    fake, app = loop.run_until_complete(rig.__aenter__())
    unanswered: list[int] = []
    try:
        loop.run_until_complete(bench_outbound.place_calls(fake, 20, CONCURRENCY))  # warm-up, untimed

        def one_round() -> None:
            unanswered.append(loop.run_until_complete(bench_outbound.place_calls(fake, CALLS, CONCURRENCY)))

        benchmark.group = "outbound-calls"
        cpu0 = bench_outbound.process_cpu(app.pid)
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
        cpu1 = bench_outbound.process_cpu(app.pid)
    finally:
        loop.run_until_complete(rig.__aexit__(None, None, None))
        loop.close()
    figures = {"calls": CALLS, "calls_per_s": CALLS / benchmark.stats.stats.min, "unanswered": max(unanswered)}
    if cpu0 is not None and cpu1 is not None:
        figures["app_cpu_ms_per_call"] = (cpu1 - cpu0) * 1000 / (CALLS * ROUNDS)
    add_row(CALLS_TABLE, client, benchmark, figures)


@pytest.mark.parametrize("client", CLIENTS)
def test_outbound_memory(benchmark: Any, client: str) -> None:
    _check_available(client)
    found: dict[str, Any] = {}

    def run() -> None:
        found.update(asyncio.run(bench_outbound.memory_per_session(client, SESSIONS)))

    benchmark.group = "outbound-memory"
    start = time.perf_counter()
    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    add_row(MEMORY_TABLE, client, benchmark, {
        "sessions": found["sessions"],
        "kib_per_session": found["kib_per_session"],
        "bytes_per_session": found["bytes_per_session"],
        "rss_mb": found["rss_mb"],
        "run_seconds": time.perf_counter() - start,
    })
