"""Outbound calls handled per second, and memory per concurrent session: esl vs genesis.

Each run has two processes (so each side has a core):

* the *switch*: this script's parent process runs ``esl.testing.FakeFreeSWITCH``,
  whose dialplan hands every call to the app under test
  (``socket 127.0.0.1:<port> async full``) and which keeps ``--concurrency``
  calls in flight;
* the *app*: a fresh subprocess running ``esl.Outbound`` or ``genesis.Outbound``
  with the same call flow: connect -> answer -> playback (blocking) -> hangup.

Throughput: ``--calls`` calls are placed, at most ``--concurrency`` at a time;
the rate is calls completed (the fake saw the hangup and the app closed the
socket) per second of wall time. Memory: the app's handler answers and then
holds the call; when ``--sessions`` calls are held at once, the app reads its
own RSS and the growth over its idle RSS divided by the session count is the
memory per concurrent session (including the handler task, the protocol object,
its buffers, and the events kept per call).

Run: ``python benchmarks/bench_outbound.py [--calls 2000] [--concurrency 50]
[--sessions 1000] [--clients esl,genesis]``. Both clients always run in the
same invocation so their figures are comparable. The app subprocess runs the
installed package; ``ESL_BENCH_TREE=1`` runs it from the source tree instead.
The same machinery runs under pytest-benchmark in ``benchmarks/test_outbound.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROMPT = "ivr/bench.wav"


def rss_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``; falls back to ru_maxrss)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- the app side (subprocess) ----------------------------------------------------


def _esl_app(mode: str, target: int, report: Any) -> tuple[Any, Any]:
    import esl

    held: list[Any] = []

    async def flow(session: Any) -> None:
        ch = session.channel
        await ch.answer()
        await ch.playback(PROMPT)
        await ch.hangup()

    async def hold(session: Any) -> None:
        ch = session.channel
        await ch.answer()
        held.append(session)
        if len(held) == target:
            report()
        try:
            await ch.wait(esl.ChannelState.HANGUP, timeout=None)
        except esl.exceptions.ESLError:
            pass

    app = esl.Outbound(flow if mode == "calls" else hold, "127.0.0.1", 0, linger=False)

    async def start() -> int:
        await app.start(block=False)
        return app.port

    return app, start


def _genesis_app(mode: str, target: int, report: Any) -> tuple[Any, Any]:
    import logging

    import genesis

    logging.getLogger("genesis").setLevel(logging.CRITICAL)
    held: list[Any] = []

    async def flow(session: Any) -> None:
        ch = session.channel
        await ch.answer()
        await ch.playback(PROMPT, block=True)
        await ch.hangup()

    async def hold(session: Any) -> None:
        ch = session.channel
        await ch.answer()
        held.append(session)
        if len(held) == target:
            report()
        try:
            await ch.wait("CHANNEL_HANGUP", timeout=600)
        except Exception:  # noqa: BLE001 - the session ends either way
            pass

    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    app = genesis.Outbound(flow if mode == "calls" else hold, "127.0.0.1", port)

    async def start() -> int:
        await app.start(block=False)
        return port

    return app, start


def serve(client: str, mode: str, target: int) -> None:
    """Subprocess entry: run one app, print READY <port>, then MEM <json> in hold mode."""

    if client == "esl-cython":
        import esl.core

        if esl.core.BACKEND != "cython":
            raise SystemExit("the compiled core is not built")

    async def main() -> None:
        base: dict[str, int] = {}

        def report() -> None:
            gc.collect()
            rss = rss_bytes()
            print("MEM " + json.dumps({"rss": rss, "base": base["rss"], "sessions": target}), flush=True)

        factory = _esl_app if client.startswith("esl") else _genesis_app
        app, start = factory(mode, target, report)
        port = await start()
        gc.collect()
        base["rss"] = rss_bytes()
        print(f"READY {port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
        await app.stop()

    asyncio.run(main())


# -- the switch side (parent) ---------------------------------------------------------


def _spawn(client: str, mode: str, target: int) -> tuple[subprocess.Popen[str], int]:
    env = dict(os.environ)
    if os.environ.get("ESL_BENCH_TREE"):  # measure the source tree instead of the installed package
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if client == "esl-python":
        env["ESL_NO_EXTENSIONS"] = "1"
    else:
        env.pop("ESL_NO_EXTENSIONS", None)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", client, "--mode", mode, "--sessions", str(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY "):
        proc.kill()
        raise RuntimeError(f"{client} app did not start: {line!r}")
    return proc, int(line.split()[1])


def _stop(proc: subprocess.Popen[str]) -> None:
    try:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)
    except Exception:  # noqa: BLE001
        proc.kill()


def _child_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def process_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) a running process has used so far; None where ``/proc`` is missing."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@asynccontextmanager
async def switch(client: str) -> AsyncIterator[tuple[Any, subprocess.Popen[str]]]:
    """A fake FreeSWITCH whose ``bench`` extension hands calls to a fresh ``client`` app subprocess (flow mode).

    Yields (the fake, the app process).
    """
    from esl.testing import FakeFreeSWITCH, Timings

    proc, port = _spawn(client, "calls", 0)
    try:
        async with FakeFreeSWITCH(timings=Timings(playback=0.0, connect_timeout=60.0)) as fake:
            fake.dialplan["bench"] = [("socket", f"127.0.0.1:{port} async full")]
            yield fake, proc
    finally:
        _stop(proc)


async def place_calls(fake: Any, calls: int, concurrency: int) -> int:
    """Place ``calls`` calls to ``bench``, at most ``concurrency`` at a time, each until hung up; unanswered count."""
    sem = asyncio.Semaphore(concurrency)
    failures = 0

    async def one() -> None:
        nonlocal failures
        async with sem:
            ch = await fake.call("bench", caller_id_number="1000")
            await ch.wait_hangup(30)
            if not ch.answered:
                failures += 1

    await asyncio.gather(*(one() for _ in range(calls)))
    return failures


async def _throughput(client: str, calls: int, concurrency: int) -> dict[str, Any]:
    cpu0 = _child_cpu()
    async with switch(client) as (fake, _):
        await place_calls(fake, min(20, calls), concurrency)  # warm-up
        t0 = time.perf_counter()
        failures = await place_calls(fake, calls, concurrency)
        elapsed = time.perf_counter() - t0
    result = {"calls": calls, "seconds": round(elapsed, 3), "calls_per_s": round(calls / elapsed, 1),
              "unanswered": failures}
    # CPU the app process spent in all (start-up and warm-up included): the cost per call on its side
    result["app_cpu_ms_per_call"] = round((_child_cpu() - cpu0) * 1000 / (calls + min(20, calls)), 2)
    return result


async def memory_per_session(client: str, sessions: int) -> dict[str, Any]:
    """Hold ``sessions`` answered calls in a fresh ``client`` app; its RSS growth per session."""
    from esl.testing import FakeFreeSWITCH, Timings

    proc, port = _spawn(client, "hold", sessions)
    loop = asyncio.get_running_loop()
    try:
        async with FakeFreeSWITCH(timings=Timings(playback=0.0, connect_timeout=60.0)) as fake:
            fake.dialplan["hold"] = [("socket", f"127.0.0.1:{port} async full")]
            chans: list[Any] = []
            for start in range(0, sessions, 50):  # in waves, so no app is judged on a connect stampede
                wave = await asyncio.gather(*(fake.call("hold") for _ in range(min(50, sessions - start))))
                chans += wave
                deadline = loop.time() + 60
                while not all(ch.answered or ch.down for ch in wave) and loop.time() < deadline:
                    await asyncio.sleep(0.01)
            assert proc.stdout is not None
            line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), 120)
            if not line.startswith("MEM "):
                raise RuntimeError(f"{client}: no memory report: {line!r}")
            mem = json.loads(line[4:])
            for ch in chans:
                ch.hangup("NORMAL_CLEARING")
            await asyncio.gather(*(ch.wait_hangup(30) for ch in chans), return_exceptions=True)
        per = (mem["rss"] - mem["base"]) / sessions
        return {"sessions": sessions, "rss_mb": round(mem["rss"] / 2**20, 1),
                "bytes_per_session": int(per), "kib_per_session": round(per / 1024, 1)}
    finally:
        _stop(proc)


def available(client: str) -> bool:
    """Whether ``client`` (esl, esl-cython, esl-python, genesis) can run here."""
    if client.startswith("esl"):
        if client == "esl-cython":
            try:
                import esl._core  # noqa: F401
            except ImportError:
                return False
        return True
    try:
        import genesis  # noqa: F401
    except ImportError:
        return False
    return True


def run(clients: list[str], calls: int, concurrency: int, sessions: int) -> dict[str, Any]:
    """Measure every available client; returns {client: {"throughput":..., "memory":...}}."""
    results: dict[str, Any] = {}
    for client in clients:
        if not available(client):
            results[client] = {"skipped": "not installed"}
            continue
        results[client] = {
            "throughput": asyncio.run(_throughput(client, calls, concurrency)),
            "memory": asyncio.run(memory_per_session(client, sessions)),
        }
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--clients", default="esl,genesis",
                        help="comma list of esl (compiled core if built), esl-python, genesis")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="calls", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.mode, args.sessions)
        return
    results = run(args.clients.split(","), args.calls, args.concurrency, args.sessions)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'client':<12} {'calls/s':>9} {'app CPU ms/call':>16} {'unanswered':>10} {'KiB/session':>12} {'sessions':>9}")
    for client, r in results.items():
        if "skipped" in r:
            print(f"{client:<12} skipped ({r['skipped']})")
            continue
        t, m = r["throughput"], r["memory"]
        print(f"{client:<12} {t['calls_per_s']:>9} {t['app_cpu_ms_per_call']:>16} {t['unanswered']:>10} "
              f"{m['kib_per_session']:>12} {m['sessions']:>9}")


if __name__ == "__main__":
    main()
