"""Soak: simulated calls per second through one Inbound, and what memory does meanwhile.

``esl.testing.soak`` drives one ``esl.Inbound`` with attached Channels, CHANNEL_UUID
renames, bgapi jobs, two forced reconnects and a now-and-then slow handler (see
its docstring); this reports calls/s, events/s, the traced memory growth after
the warm-up (the fake's allocations left out) and the process RSS, for each
flow-control policy. A benchmark, not a test: ``tests/test_soak.py`` asserts the
tables end empty.

Run: ``pytest benchmarks/test_soak.py`` (``ESL_SOAK_CALLS`` sets the calls, default 200,000).
"""

from __future__ import annotations

import asyncio
import os
import resource
from typing import Any

import pytest

from conftest import Table, add_row
from esl import Inbound
from esl.testing import FakeFreeSWITCH
from esl.testing.soak import SoakReport, soak

CALLS = int(os.environ.get("ESL_SOAK_CALLS", "200000"))

TABLE = Table(
    f"Soak: {CALLS:,} simulated calls through one Inbound (renames, jobs, 2 reconnects, slow handler)",
    [("calls_per_s", "calls/s", ",.0f"), ("events_per_s", "events/s", ",.0f"),
     ("growth_kib", "traced growth KiB", ",.1f"), ("rss_mb", "max RSS MB", ",.1f"),
     ("dropped", "user deliveries dropped", ",.0f"), ("unfinished", "unfinished calls", ",.0f")],
    key="calls_per_s", baselines=(),
)


async def _run(policy: str, trace: bool) -> SoakReport:
    async with FakeFreeSWITCH() as fake:
        async with Inbound(fake.host, fake.port, policy=policy, max_queue=200, reconnect=True,
                           reconnect_delay=0.01) as client:
            return await soak(fake, client, calls=CALLS, batch=1000, trace=trace, timeout=120)


@pytest.mark.parametrize("policy", ["pause", "drop"])
def test_soak(benchmark: Any, policy: str) -> None:
    reports: list[SoakReport] = []
    benchmark.group = "soak"
    benchmark.pedantic(lambda: reports.append(asyncio.run(_run(policy, trace=False))), rounds=1, iterations=1)
    speed = reports[0]
    traced = asyncio.run(_run(policy, trace=True))  # tracemalloc slows the run: its speed is not reported
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    add_row(TABLE, f"esl-cython {policy}", benchmark, {
        "calls_per_s": speed.calls_per_s,
        "events_per_s": speed.events / speed.seconds,
        "growth_kib": (traced.memory_growth or 0) / 1024,
        "rss_mb": rss,
        "dropped": speed.stats.events_dropped,
        "unfinished": speed.unfinished + traced.unfinished,
    })
    assert speed.stats.owners == 0 and traced.stats.owners == 0
