"""Outbound on 1 vs 2 worker processes under pytest-benchmark: calls/s and the workers' CPU per call.

``bench_outbound``'s rig: this process runs ``esl.testing.FakeFreeSWITCH``, whose
dialplan hands every call to ``socket 127.0.0.1:<port> async full``; the app is
``esl outbound run benchapp:flow --workers N`` in a subprocess (connect ->
answer -> playback (blocking) -> hangup). Calls are placed ``CONCURRENCY`` at a
time; a round is ``CALLS`` calls until the fake has seen each hang up.

``calls_per_s`` is calls / best round. ``worker_cpu_ms_per_call`` is the CPU the
workers used over all timed rounds, per call. On a 2-core machine the fake (pure
Python, in this process) takes one core, so the wall-clock rate of 2 workers is
capped by it; the spread of calls over the workers and the CPU per call are
what to read.

Run: ``pytest benchmarks/test_workers.py`` (the table comes at the end).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest

import bench_outbound
from conftest import Table, add_row

CALLS = 300
CONCURRENCY = 50
ROUNDS = 3

TABLE = Table(
    f"Outbound on worker processes (connect, answer, playback, hangup; {CONCURRENCY} in flight; best round)",
    [("workers", "workers", ",.0f"), ("calls", "calls", ",.0f"), ("calls_per_s", "calls/s", ",.1f"),
     ("worker_cpu_ms_per_call", "worker CPU ms/call", ",.2f")],
    key="calls_per_s",
    baselines=("1-worker",),
)

APP = """
    async def flow(session):
        ch = session.channel
        await ch.answer()
        await ch.playback("ivr/bench.wav")
        await ch.hangup()
"""


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _cpu(pids: list[int]) -> float:
    return sum(bench_outbound.process_cpu(p) or 0.0 for p in pids)


@pytest.mark.skipif(sys.platform == "win32", reason="workers are forked")
@pytest.mark.parametrize("workers", [1, 2])
def test_outbound_workers(benchmark: Any, workers: int) -> None:
    from esl.testing import FakeFreeSWITCH, Timings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tempfile.TemporaryDirectory()
    Path(tmp.name, "benchapp.py").write_text(textwrap.dedent(APP))
    proc = subprocess.Popen(
        [sys.executable, "-m", "esl", "outbound", "run", "benchapp:flow", "--workers", str(workers),
         "--port", str(port), "--log-level", "warning", "--grace", "1"],
        cwd=tmp.name, stderr=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=tmp.name),
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "listening" in line, line
    loop = asyncio.new_event_loop()
    fake = FakeFreeSWITCH(timings=Timings(playback=0.0, connect_timeout=60.0))
    loop.run_until_complete(fake.start())
    fake.dialplan["bench"] = [("socket", f"127.0.0.1:{port} async full")]
    unanswered: list[int] = []
    try:
        loop.run_until_complete(bench_outbound.place_calls(fake, 40, CONCURRENCY))  # warm-up, untimed
        pids = _children(proc.pid)
        assert len(pids) == workers

        def one_round() -> None:
            unanswered.append(loop.run_until_complete(bench_outbound.place_calls(fake, CALLS, CONCURRENCY)))

        benchmark.group = "outbound-workers"
        cpu0 = _cpu(pids)
        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
        cpu1 = _cpu(pids)
    finally:
        loop.run_until_complete(fake.stop())
        loop.close()
        proc.terminate()
        proc.wait(30)
        tmp.cleanup()
    assert max(unanswered) == 0
    add_row(TABLE, f"{workers}-worker", benchmark, {
        "workers": workers, "calls": CALLS, "calls_per_s": CALLS / benchmark.stats.stats.min,
        "worker_cpu_ms_per_call": (cpu1 - cpu0) * 1000 / (CALLS * ROUNDS),
    })  # fmt: skip
