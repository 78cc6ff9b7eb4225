"""Shared set-up for the pytest-benchmark suites: the real captures, and a summary table.

Run with ``pytest benchmarks/`` (the default test run only collects ``tests/``).
Every benchmark records its figures (events/s and MB/s for the core; events/s,
calls/s, KiB/session end to end) in ``benchmark.extra_info``; the tables
printed at the end put the compiled core, the pure-Python twin and the peers
side by side, with the ratios the issues ask for. The captures are found via
``ESL_CAPTURES`` if set, else ``<checkout>/../shared/captures``.
"""

from __future__ import annotations

import lzma
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CAPTURES_DIR = Path(os.environ.get("ESL_CAPTURES") or Path(__file__).resolve().parents[2] / "shared" / "captures")
CHUNK = 65536  # what one socket read typically hands the parser

_streams: dict[str, bytes] = {}
#: (capture, op, fmt, impl) -> figures; capture is "events" (loopback legs) or "sip-events" (SIP legs)
RESULTS: dict[tuple[str, str, str, str], dict[str, float]] = {}
#: (capture, impl, lookups) -> memory held by 1,000 kept events (test_core.test_retained_memory)
MEMORY: dict[tuple[str, str, str, bool], dict[str, float]] = {}


@dataclass
class Table:
    """One end-to-end summary table: a row of figures per implementation, compared on ``key``."""

    title: str
    columns: list[tuple[str, str, str]]  # (extra_info key, heading, format spec)
    key: str  # the figure the "x <baseline>" columns divide
    baselines: tuple[str, ...] = ("genesis",)
    rows: dict[str, dict[str, float]] = field(default_factory=dict)


TABLES: dict[str, Table] = {}


def add_row(table: Table, impl: str, benchmark: Any, figures: dict[str, float]) -> None:
    """Put ``figures`` in ``benchmark.extra_info`` and in ``table`` (printed at the end of the session)."""
    benchmark.extra_info.update(figures)
    TABLES.setdefault(table.title, table).rows[impl] = figures


def load_stream(fmt: str, capture: str = "events") -> bytes:
    """The inbound event stream ``<capture>-<fmt>.raw.xz`` (decompressed once)."""
    name = f"{capture}-{fmt}"
    if name not in _streams:
        path = CAPTURES_DIR / f"{name}.raw.xz"
        if not path.exists():
            pytest.skip(f"capture not found: {path}")
        _streams[name] = lzma.open(path, "rb").read()
    return _streams[name]


def chunks(data: bytes, size: int = CHUNK) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: Any) -> None:
    """Benchmarks run in one process, one at a time: the ``-n 2`` the test suite's addopts give is undone
    (pytest-benchmark does not time under xdist, and two workers would time each other)."""
    if getattr(config.option, "dist", "no") != "no" or getattr(config.option, "numprocesses", None):
        config.option.dist = "no"
        config.option.numprocesses = None


@pytest.fixture
def record(benchmark: Any) -> Any:
    """Call after ``benchmark.pedantic``: stores events/s and MB/s (best round) in extra_info."""

    def _record(op: str, fmt: str, impl: str, events: int, nbytes: int, capture: str = "events") -> None:
        best = benchmark.stats.stats.min
        info = {"events": events, "bytes": nbytes, "events_per_s": events / best, "mb_per_s": nbytes / best / 1e6}
        benchmark.extra_info.update(info)
        RESULTS[(capture, op, fmt, impl)] = info

    return _record


def pytest_terminal_summary(terminalreporter: Any) -> None:
    w = terminalreporter.write_line
    for table in TABLES.values():
        _write_table(w, table)
    if MEMORY:
        w("")
        w("Memory held by 1,000 kept events (every 5th of the stream), against their frames' size")
        w(f"{'capture':<11} {'fmt':<6} {'impl':<8} {'lookups':<8} {'frames MB':>10} {'held MB':>9} {'ratio':>6}")
        for (capture, fmt, impl, lookups), m in sorted(MEMORY.items()):
            w(f"{capture:<11} {fmt:<6} {impl:<8} {str(lookups):<8} {m['frames_bytes'] / 1e6:>10.2f} "
              f"{m['held_bytes'] / 1e6:>9.2f} {m['ratio']:>6.2f}")
    if not RESULTS:
        return
    w("")
    w("ESL core throughput (best round; cython/python fed in 64 KiB chunks, genesis per frame)")
    w(f"{'capture':<11} {'op':<8} {'fmt':<6} {'impl':<8} {'events/s':>12} {'MB/s':>9} {'x genesis':>10} "
      f"{'x python':>9} {'x frame':>8}")
    for (capture, op, fmt, impl), info in sorted(RESULTS.items()):
        gen = RESULTS.get((capture, op, fmt, "genesis"))
        py = RESULTS.get((capture, op, fmt, "python"))
        keys = RESULTS.get((capture, "frame", fmt, impl))
        xg = f"{info['events_per_s'] / gen['events_per_s']:.1f}" if gen and impl != "genesis" else ""
        xp = f"{info['events_per_s'] / py['events_per_s']:.1f}" if py and impl == "cython" else ""
        xk = f"{info['events_per_s'] / keys['events_per_s']:.2f}" if keys and op == "three" else ""
        w(f"{capture:<11} {op:<8} {fmt:<6} {impl:<8} {info['events_per_s']:>12,.0f} {info['mb_per_s']:>9,.1f} "
          f"{xg:>10} {xp:>9} {xk:>8}")
    for capture in ("events", "sip-events"):
        for fmt in ("plain", "json", "xml"):
            route = RESULTS.get((capture, "route", fmt, "cython"))
            decode = RESULTS.get((capture, "decode", fmt, "cython"))
            if route and decode:
                ratio = decode["events_per_s"] / route["events_per_s"]
                w(f"cython {capture}-{fmt}: a routed-away event costs {ratio:.3f} of a fully decoded one")


def _write_table(w: Any, table: Table) -> None:
    head = f"{'impl':<12}" + "".join(f" {h:>{max(len(h), 10)}}" for _, h, _ in table.columns)
    head += "".join(f" {'x ' + b:>{max(len(b) + 2, 10)}}" for b in table.baselines)
    w("")
    w(table.title)
    w(head)
    for impl, figs in sorted(table.rows.items()):
        line = f"{impl:<12}" + "".join(
            f" {format(figs[k], spec) if k in figs else '-':>{max(len(h), 10)}}" for k, h, spec in table.columns)
        for b in table.baselines:
            base = table.rows.get(b, {}).get(table.key)
            ratio = f"{figs[table.key] / base:.2f}" if base and impl != b and table.key in figs else ""
            line += f" {ratio:>{max(len(b) + 2, 10)}}"
        w(line)
