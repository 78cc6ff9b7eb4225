"""Core throughput on the real captures: the compiled core, the pure-Python twin, genesis.

(a) ``frame``: framing plus the routing key (``event.uuid``) of every message;
(b) ``three``: a realistic handler: ``event.uuid``, ``event["Channel-State"]`` and
    ``event.get("Caller-Caller-ID-Number")`` of every message;
(c) ``decode``: the full header mapping and body of every message;
(d) ``route``: every message through the UUID filter with 10,000 routes, 1% of events matching.

Each runs on both captures: ``events`` (loopback legs, 69 headers, 2.4 KB per
event) and ``sip-events`` (SIP legs, ~93 headers, 5.9 KB, large %-escaped
variables, duplicated headers). ``test_retained_memory`` measures what 1,000
events kept by user code hold, against their frames' size.

The compiled core and the twin are fed 64 KiB chunks, as from a socket.
genesis 2026.10.18 is fed the way its own reader does it: header blocks split
at ``\\n\\n`` and decoded to str, ``ESLReaderFSM.process_headers``, then
``process_body`` with Content-Length bytes; its parser builds the full header
dict at once, so (a) and (b) are the same work for it, and (c) adds a dict
lookup of ``Unique-ID`` (``Job-UUID`` for BACKGROUND_JOB) in the same 10,000
routes. genesis does not decode json or xml events (it leaves the payload as a
string body), so only its plain figures are a like-for-like comparison.

Run: ``pytest benchmarks/test_core.py`` (the table comes at the end). On a
shared machine add ``--benchmark-timer=time.process_time`` so time spent
descheduled is not counted.
"""

from __future__ import annotations

import gc
import random
import tracemalloc
import uuid
from collections import Counter
from typing import Any, Callable

import pytest

import esl.core
from conftest import MEMORY, chunks, load_stream

FORMATS = ["plain", "json", "xml"]
CAPTURES = ["events", "sip-events"]
IMPLS = ["cython", "python", "genesis"]
SAMPLE = 6 << 20  # bytes given to the slow implementations (python twin, genesis)
ROUTES = 10_000


def _data(fmt: str, impl: str, capture: str = "events") -> bytes:
    data = load_stream(fmt, capture)
    return data if impl == "cython" else data[:SAMPLE]


def _rounds(impl: str) -> dict[str, int]:
    return {"rounds": 5 if impl == "cython" else 3, "iterations": 1, "warmup_rounds": 1}


def _route_table(data: bytes) -> tuple[list[str], set[str]]:
    """10,000 route keys of which the matched ones cover about 1% of the events in ``data``."""
    events = [e for e in esl.core.load("cython" if "cython" in esl.core.backends() else "python").Parser().feed(data)]
    keys = Counter(e.job_uuid if e.name == "BACKGROUND_JOB" else e.uuid for e in events if e.is_event)
    keys.pop(None, None)
    rng = random.Random(1)
    candidates = sorted(keys)
    rng.shuffle(candidates)
    target = len(events) // 100
    chosen: set[str] = set()
    covered = 0
    for key in candidates:
        if covered >= target:
            break
        if covered + keys[key] <= target * 1.2:
            chosen.add(key)
            covered += keys[key]
    table = list(chosen) + [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(ROUTES - len(chosen))]
    return table, chosen


# -- the work, per implementation ----------------------------------------------


def _core_work(core: Any, op: str, pieces: list[bytes], routes: list[str]) -> Callable[[], int]:
    Parser = core.Parser
    if op == "frame":

        def run() -> int:
            parser = Parser()
            n = 0
            for piece in pieces:
                for ev in parser.feed(piece):
                    ev.uuid
                    n += 1
            return n

    elif op == "three":

        def run() -> int:
            parser = Parser()
            n = 0
            for piece in pieces:
                for ev in parser.feed(piece):
                    ev.uuid
                    ev.get("Channel-State")
                    ev.get("Caller-Caller-ID-Number")
                    n += 1
            return n

    elif op == "decode":

        def run() -> int:
            parser = Parser()
            n = 0
            for piece in pieces:
                for ev in parser.feed(piece):
                    len(ev)  # the whole header mapping
                    ev.body
                    n += 1
            return n

    else:
        sink: list[Any] = []
        router = core.Router()
        for key in routes:
            router.add(key, sink.append)

        def run() -> int:
            parser = Parser()
            n = 0
            del sink[:]
            for piece in pieces:
                events = parser.feed(piece)
                router.dispatch(events)
                n += len(events)
            return n

    return run


def _genesis_work(op: str, data: bytes, routes: list[str]) -> Callable[[], int]:
    reader_fsm = pytest.importorskip("genesis.protocol.reader_fsm")
    table = {key: (lambda ev: None) for key in routes}

    def run() -> int:
        fsm = reader_fsm.ESLReaderFSM()
        pos = 0
        end = len(data)
        n = 0
        out: list[Any] = []
        while True:
            while pos < end and data[pos] == 10:
                pos += 1
            stop = data.find(b"\n\n", pos)
            if stop < 0:
                break
            block = data[pos : stop + 2].decode("utf-8")
            pos = stop + 2
            events, length = fsm.process_headers(block)
            if length:
                if pos + length > end:
                    break
                events = events + fsm.process_body(data[pos : pos + length])
                pos += length
            for ev in events:
                n += 1
                if op == "route":
                    key = ev.get("Job-UUID") if ev.get("Event-Name") == "BACKGROUND_JOB" else ev.get("Unique-ID")
                    call = table.get(key) if isinstance(key, str) else None
                    if call is not None:
                        call(ev)
                elif op == "frame":
                    ev.get("Unique-ID")
                elif op == "three":
                    ev.get("Unique-ID")
                    ev.get("Channel-State")
                    ev.get("Caller-Caller-ID-Number")
        out.clear()
        return n

    return run


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("op", ["frame", "three", "decode", "route"])
@pytest.mark.parametrize("capture", CAPTURES)
def test_core(benchmark: Any, record: Any, capture: str, op: str, fmt: str, impl: str) -> None:
    data = _data(fmt, impl, capture)
    routes: list[str] = []
    if op == "route":
        routes, _ = _route_table(load_stream(fmt, capture))
    if impl == "genesis":
        run = _genesis_work(op, data, routes)
    else:
        try:
            core = esl.core.load(impl)
        except ImportError:
            pytest.skip("compiled core not built")
        run = _core_work(core, op, chunks(data), routes)
    benchmark.group = f"{capture}-{op}-{fmt}"
    events = benchmark.pedantic(run, **_rounds(impl))
    record(op, fmt, impl, events, len(data), capture)
    assert events > 0


@pytest.mark.parametrize("impl", ["cython", "python"])
@pytest.mark.parametrize("lookups", [False, True])
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("capture", CAPTURES)
def test_retained_memory(benchmark: Any, capture: str, fmt: str, lookups: bool, impl: str) -> None:
    """Memory held by 1,000 events kept by user code (every 5th of the stream), against their frames' size.

    ``lookups``: the handler read ``Channel-State`` and ``Caller-Caller-ID-Number``
    from each kept event first (the compiled core then also holds the values it
    decoded and, for json and xml, where each pair of the event lies).
    """
    try:
        core = esl.core.load(impl)
    except ImportError:
        pytest.skip("compiled core not built")
    pieces = chunks(load_stream(fmt, capture)[: 64 << 20])  # 5,000+ events of any capture
    result: dict[str, float] = {}

    def run() -> None:
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            parser = core.Parser()
            kept: list[Any] = []
            seen = 0
            for piece in pieces:
                for ev in parser.feed(piece):
                    seen += 1
                    if seen % 5 == 0 and len(kept) < 1000:
                        if lookups:
                            ev.get("Channel-State")
                            ev.get("Caller-Caller-ID-Number")
                        kept.append(ev)
            parser.feed(b"")
            del parser
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - base
        finally:
            tracemalloc.stop()
        frames = sum(len(e.raw) for e in kept)
        result.update(kept=len(kept), frames_bytes=frames, held_bytes=held, ratio=held / frames)

    benchmark.group = f"memory-{capture}"
    benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(result)
    MEMORY[(capture, fmt, impl, lookups)] = result
    assert result["kept"] == 1000

