"""What the production tooling costs: event throughput with the Prometheus exporter on vs off.

The replay server and the timed window are ``bench_inbound.py``'s (the real
plain capture, byte for byte over loopback, one ``"*"`` handler reading
Unique-ID). The client under test runs in its own subprocess; with
``--metrics`` it also serves ``/metrics`` for its Inbound (``esl.serve.metrics``)
and the parent scrapes it every ``SCRAPE_INTERVAL`` seconds for the whole
window — 30 times as often as Prometheus' default 15 s, so the figure is an
upper bound on the exporter's cost. Mode ``idle`` serves the exporter but nobody
scrapes: it shows the per-event path pays nothing.

Run: ``python benchmarks/bench_serve.py [--events 200000] [--repeat 5]``; under
pytest-benchmark in ``benchmarks/test_serve.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from typing import Any

import bench_inbound

HERE = Path(__file__).resolve().parent
#: Seconds between scrapes of the client's /metrics while events flow.
SCRAPE_INTERVAL = 0.5


def client(port: int, count: int, metrics: bool) -> None:
    """Subprocess: connect, optionally serve metrics, READY, then the timed event stream."""
    import asyncio

    import esl

    window = bench_inbound.Window("esl-metrics" if metrics else "esl", count, handshake=True)

    async def run() -> None:
        done = asyncio.get_running_loop().create_future()
        seen = 0

        def handler(event: Any) -> None:
            nonlocal seen
            if event.uuid is not None:
                pass
            seen += 1
            if seen == count:
                done.set_result(None)

        async with esl.Inbound("127.0.0.1", port, "ClueCon", timeout=60) as inbound:
            inbound.on("*", handler)
            exporter = None
            if metrics:
                from prometheus_client import CollectorRegistry

                from esl.serve.metrics import start_metrics_server

                exporter = await start_metrics_server(0, ("bench", inbound), registry=CollectorRegistry())
                print(f"METRICS {exporter.port}", flush=True)
            await inbound.send(f"bench {count}")
            await asyncio.get_running_loop().run_in_executor(None, window.start)
            await inbound.send("event plain ALL")
            await asyncio.wait_for(done, 600)
            window.stop()
            if exporter is not None:
                await exporter.stop()
            inbound.protocol.close()  # type: ignore[union-attr]

    asyncio.run(run())


class Scraper(threading.Thread):
    """Scrapes ``http://127.0.0.1:port/metrics`` every SCRAPE_INTERVAL until stopped; counts the scrapes."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.stop = threading.Event()
        self.scrapes = 0
        self.last = ""

    def run(self) -> None:
        while not self.stop.wait(SCRAPE_INTERVAL):
            try:
                with urllib.request.urlopen(self.url, timeout=10) as r:
                    self.last = r.read().decode()
            except OSError:  # the client closed its endpoint as the window ended
                return
            self.scrapes += 1


#: Client modes: no exporter; an exporter nobody scrapes; an exporter scraped every SCRAPE_INTERVAL.
MODES = ("off", "idle", "scraped")


class Run:
    """One client subprocess in ``mode`` (see MODES), connected and READY; ``finish()`` runs the window."""

    def __init__(self, port: int, count: int, mode: str) -> None:
        cmd = [sys.executable, __file__, "--client", "--port", str(port), "--count", str(count)]
        if mode != "off":
            cmd.append("--metrics")
        self.mode = mode
        self.err = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(cmd, env=dict(os.environ), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True)
        self.scraper: Scraper | None = None
        line = self._line()
        if line.startswith("METRICS "):
            if mode == "scraped":
                self.scraper = Scraper(int(line.split()[1]))
            line = self._line()
        if line.strip() != "READY":
            self._fail()

    def finish(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        if self.scraper is not None:
            self.scraper.start()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self._line()
        if self.scraper is not None:
            self.scraper.stop.set()
            self.scraper.join(10)
        if not line.startswith("{"):
            self._fail()
        result: dict[str, Any] = json.loads(line)
        result["scrapes"] = self.scraper.scrapes if self.scraper is not None else 0
        result["last_scrape"] = self.scraper.last if self.scraper is not None else ""
        self.proc.wait(60)
        if self.proc.returncode != 0:
            self._fail()
        return result

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def _fail(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        self.err.seek(0)
        lines = self.err.read().strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit status {code}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5, help="rounds per side, interleaved (best kept)")
    ap.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--metrics", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        client(args.port, args.count, args.metrics)
        return
    server, port = bench_inbound.start_server(bench_inbound.load_event_frames())
    best: dict[str, dict[str, Any]] = {}
    cpu_best: dict[str, float] = dict.fromkeys(MODES, 0.0)
    try:
        for _ in range(args.repeat):
            for mode in MODES:
                res = Run(port, args.events, mode).finish()
                cpu_best[mode] = max(cpu_best[mode], res["events_per_cpu_s"])
                if mode not in best or res["events_per_s"] > best[mode]["events_per_s"]:
                    best[mode] = res
    finally:
        server.terminate()
    off, cpu_off = best["off"]["events_per_s"], cpu_best["off"]
    for mode in MODES:
        rate, cpu = best[mode]["events_per_s"], cpu_best[mode]
        print(f"exporter {mode:8s} {rate:>10,.0f} events/s ({rate / off:.3f})  {cpu:>10,.0f} events per client "
              f"CPU-second ({cpu / cpu_off:.3f})  {best[mode]['scrapes']} scrapes")


if __name__ == "__main__":
    main()
