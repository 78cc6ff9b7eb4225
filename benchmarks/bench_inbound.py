"""End-to-end inbound throughput: events/s from a loopback server to one ``"*"`` handler reading Unique-ID.

The server replays a real plain capture (``shared/captures/events-plain.raw.xz``,
loopback legs, or with ``--capture sip-events`` the SIP legs' ``sip-events-plain.raw.xz``;
the bundled 5,000-event cut in ``esl/data`` when the shared one is absent):
it answers ``auth`` and ``event plain ALL`` exactly as FreeSWITCH does and then
writes the capture's ``text/event-plain`` messages, byte for byte, as fast as
the socket takes them. It runs in its own process (a minimal blocking replay
server, so the client under test has a core to itself); each client runs in a
fresh subprocess:

* ``esl-cython`` / ``esl-python`` — ``esl.Inbound`` with a sync ``"*"`` handler
  reading ``event.uuid`` (the ``Unique-ID`` header), compiled core / pure-Python twin;
* ``esl-cython-3h`` — the same with a realistic handler reading three headers
  (``event.uuid``, ``event["Channel-State"]``, ``event.get("Caller-Caller-ID-Number")``);
* ``genesis`` — ``genesis.Inbound`` with an async ``"*"`` handler reading ``event.get("Unique-ID")``;
* ``greenswitch`` — ``greenswitch.InboundESL`` (gevent) with a ``"*"`` handler.

Wall-clock events/s depend on what else the machine runs; the client's own CPU
time (``time.process_time()`` over the same window) is reported beside it, as
events per client CPU-second, which a busy machine disturbs much less.

Run (with the package installed, e.g. ``pip install ".[bench]"``):
``python benchmarks/bench_inbound.py [--events 200000] [--peer-events 20000]``
(peers are slower, so they get fewer events; rates are per second either way).
``ESL_BENCH_TREE=1`` runs the esl clients from the source tree instead.
The same machinery runs under pytest-benchmark in ``benchmarks/test_inbound.py``:
there the client subprocess connects and authenticates first, says ``READY``,
and only the subscription and the event stream fall in the timed window.
"""

from __future__ import annotations

import argparse
import json
import lzma
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CAPTURE_DIRS = [
    *([Path(os.environ["ESL_CAPTURES"])] if os.environ.get("ESL_CAPTURES") else []),
    ROOT.parent / "shared" / "captures",
    ROOT / "shared" / "captures",
]


def load_event_frames(capture: str = "events") -> list[bytes]:
    """The capture's ``text/event-plain`` messages, each as its exact wire bytes.

    ``capture``: ``"events"`` (loopback legs) or ``"sip-events"`` (SIP legs); only
    the loopback one falls back to the bundled cut.
    """
    path = next((d / f"{capture}-plain.raw.xz" for d in CAPTURE_DIRS if (d / f"{capture}-plain.raw.xz").exists()),
                None)
    if path is None and capture != "events":
        raise SystemExit(f"no {capture}-plain capture found")
    if path is not None:
        data = lzma.open(path, "rb").read()
    else:
        data_dir = ROOT / "esl" / "data"
        found = sorted(data_dir.glob("*plain*.raw*"))
        if not found:
            raise SystemExit("no plain capture found")
        data = lzma.open(found[0], "rb").read() if found[0].suffix == ".xz" else found[0].read_bytes()
    frames: list[bytes] = []
    pos = 0
    n = len(data)
    while pos < n:
        while pos < n and data[pos] == 10:
            pos += 1
        end = data.find(b"\n\n", pos)
        if end < 0:
            break
        head = data[pos:end]
        length = 0
        ctype = b""
        for line in head.split(b"\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
            elif line.lower().startswith(b"content-type:"):
                ctype = line.split(b":", 1)[1].strip()
        stop = end + 2 + length
        if ctype == b"text/event-plain":
            frames.append(data[pos:stop])
        pos = stop
    return frames


# -- the replay server (own process) ---------------------------------------------


def _read_command(conn: socket.socket, buf: bytearray) -> str | None:
    while b"\n\n" not in buf:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        buf += chunk
    end = buf.index(b"\n\n")
    line = bytes(buf[:end]).split(b"\n", 1)[0].decode()
    del buf[: end + 2]
    return line


def _reply(conn: socket.socket, text: str) -> None:
    conn.sendall(f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode())


def serve(port_queue: multiprocessing.Queue, frames: list[bytes]) -> None:  # type: ignore[type-arg]
    """Accept clients one after another; send each ``bench N`` events after ``event ...``."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port_queue.put(srv.getsockname()[1])
    # the capture once, as one buffer, and where each event ends in it: a run of N events is
    # written as whole copies of the buffer plus a prefix, with no per-run building in the timed window
    blob = memoryview(b"".join(frames))
    ends = []
    total = 0
    for frame in frames:
        total += len(frame)
        ends.append(total)
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        count = len(frames)
        try:
            conn.sendall(b"Content-Type: auth/request\n\n")
            while True:
                line = _read_command(conn, buf)
                if line is None:
                    break
                low = line.lower()
                if low.startswith("auth "):
                    _reply(conn, "+OK accepted")
                elif low.startswith("bench "):
                    count = int(line.split()[1])
                    _reply(conn, "+OK")
                elif low.startswith("event"):
                    fmt = line.split()[1] if len(line.split()) > 1 else "plain"
                    _reply(conn, f"+OK event listener enabled {fmt}")
                    reps, rest = divmod(count, len(frames))
                    for _ in range(reps):
                        conn.sendall(blob)
                    if rest:
                        conn.sendall(blob[: ends[rest - 1]])
                elif low.startswith("exit"):
                    _reply(conn, "+OK bye")
                    break
                else:
                    _reply(conn, "+OK")
        except OSError:
            pass
        finally:
            conn.close()


# -- clients (each in its own subprocess) -------------------------------------------


class Window:
    """The timed window of one client run: ``start()`` before subscribing, ``stop()`` at the last event.

    With ``handshake`` the client prints ``READY`` and waits for a line on stdin
    before the window opens (so the parent times only the event stream); the
    result is printed as one JSON line the moment the window closes, before the
    client tears its connection down.
    """

    def __init__(self, name: str, count: int, handshake: bool) -> None:
        self.name, self.count, self.handshake = name, count, handshake
        self.t0 = self.cpu0 = 0.0

    def start(self) -> None:
        if self.handshake:
            print("READY", flush=True)
            sys.stdin.readline()
        self.t0, self.cpu0 = time.perf_counter(), time.process_time()

    def stop(self) -> None:
        elapsed, cpu = time.perf_counter() - self.t0, time.process_time() - self.cpu0
        print(json.dumps({"client": self.name, "events": self.count, "seconds": elapsed, "cpu_seconds": cpu,
                          "events_per_s": self.count / elapsed, "events_per_cpu_s": self.count / max(cpu, 1e-9)}),
              flush=True)


def client_esl(port: int, count: int, window: Window, three: bool = False) -> None:
    import asyncio

    import esl

    async def run() -> None:
        done = asyncio.get_running_loop().create_future()
        seen = 0
        uuids = 0

        def handler(event: object) -> None:
            nonlocal seen, uuids
            if event.uuid is not None:  # type: ignore[attr-defined]
                uuids += 1
            seen += 1
            if seen == count:
                done.set_result(None)

        def handler3(event: Any) -> None:  # a realistic handler: three headers
            nonlocal seen, uuids
            if event.uuid is not None:
                uuids += 1
            event.get("Channel-State")
            event.get("Caller-Caller-ID-Number")
            seen += 1
            if seen == count:
                done.set_result(None)

        async with esl.Inbound("127.0.0.1", port, "ClueCon", timeout=60) as client:
            client.on("*", handler3 if three else handler)
            await client.send(f"bench {count}")
            window.start()
            await client.send("event plain ALL")
            await asyncio.wait_for(done, 600)
            window.stop()
            client.protocol.close()  # type: ignore[union-attr]
        assert uuids > 0

    asyncio.run(run())


def client_genesis(port: int, count: int, window: Window) -> None:
    import asyncio
    import logging

    import genesis

    logging.disable(logging.CRITICAL)

    async def run() -> None:
        done = asyncio.get_running_loop().create_future()
        seen = 0

        async def handler(event: dict) -> None:  # type: ignore[type-arg]
            nonlocal seen
            event.get("Unique-ID")
            seen += 1
            if seen == count and not done.done():
                done.set_result(None)

        client = genesis.Inbound("127.0.0.1", port, "ClueCon", timeout=60)
        async with client:
            client.on("*", handler)
            await client.send(f"bench {count}")
            window.start()
            await client.send("event plain ALL")
            await asyncio.wait_for(done, 900)
            window.stop()

    asyncio.run(run())


def client_greenswitch(port: int, count: int, window: Window) -> None:
    import gevent.monkey

    gevent.monkey.patch_all()
    import logging

    import gevent
    import greenswitch

    logging.disable(logging.CRITICAL)
    done = gevent.event.Event()
    seen = 0

    def handler(event: object) -> None:
        nonlocal seen
        event.headers.get("Unique-ID")  # type: ignore[attr-defined]
        seen += 1
        if seen == count:
            done.set()

    client = greenswitch.InboundESL("127.0.0.1", port, "ClueCon", timeout=60)
    client.connect()
    client.register_handle("*", handler)
    client.send(f"bench {count}")
    window.start()
    client.send("event plain ALL")
    if not done.wait(900):
        raise SystemExit("greenswitch: timed out")
    window.stop()
    client.stop()


def client_esl_three(port: int, count: int, window: Window) -> None:
    client_esl(port, count, window, three=True)


CLIENTS = {
    "esl-cython": client_esl,
    "esl-cython-3h": client_esl_three,
    "esl-python": client_esl,
    "genesis": client_genesis,
    "greenswitch": client_greenswitch,
}


class Client:
    """One client subprocess, connected, authenticated and ``READY`` (see ``Window``).

    ``Client(name, port, count)`` starts it (RuntimeError, with the client's last
    stderr line, if it dies first); ``finish()`` runs the timed window and
    returns the client's own figures; ``reap()`` waits for it to exit.
    """

    def __init__(self, name: str, port: int, count: int) -> None:
        env = dict(os.environ)
        if os.environ.get("ESL_BENCH_TREE"):  # measure the source tree instead of the installed package
            env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        if name == "esl-python":
            env["ESL_NO_EXTENSIONS"] = "1"
        else:
            env.pop("ESL_NO_EXTENSIONS", None)
        cmd = [sys.executable, __file__, "--client", name, "--port", str(port), "--count", str(count), "--handshake"]
        self.name = name
        self.err = tempfile.TemporaryFile("w+")  # a file, not a pipe: a chatty client can never block on it
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err,
                                     text=True)
        if self._line().strip() != "READY":
            self._fail()

    def finish(self) -> dict[str, Any]:
        """The timed window: tell the client to subscribe; its result once the last event is in."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        line = self._line()
        if not line.startswith("{"):
            self._fail()
        return json.loads(line)

    def reap(self) -> None:
        """Wait for the client to exit; RuntimeError if it failed (e.g. its check on Unique-ID). Idempotent."""
        if self.err.closed:
            return
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.returncode != 0:
            self._fail()
        self.err.close()

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline()

    def _fail(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        self.err.seek(0)
        lines = self.err.read().strip().splitlines()
        self.err.close()
        raise RuntimeError(f"{self.name}: {lines[-1] if lines else f'exit status {code}'}")


def run_client(name: str, port: int, count: int) -> dict[str, object]:
    """One client run, start to end; ``{"client": name, "error": [...]}`` if it failed."""
    try:
        client = Client(name, port, count)
        res = client.finish()
        client.reap()
    except RuntimeError as exc:
        return {"client": name, "error": [str(exc)]}
    return res


def start_server(frames: list[bytes]) -> tuple[Any, int]:
    """The replay server in a forked process: (process, port). ``process.terminate()`` when done."""
    ctx = multiprocessing.get_context("fork")
    ports: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    server = ctx.Process(target=serve, args=(ports, frames), daemon=True)
    server.start()
    return server, ports.get(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000, help="events per esl run")
    ap.add_argument("--peer-events", type=int, default=20_000, help="events per genesis/greenswitch run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per client (best is kept)")
    ap.add_argument("--clients", default=",".join(CLIENTS))
    ap.add_argument("--capture", default="events", choices=["events", "sip-events"],
                    help="the plain capture replayed: loopback legs or SIP legs")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--handshake", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.client:  # subprocess mode
        if args.client.startswith("esl-cython"):
            import esl.core

            if esl.core.BACKEND != "cython":
                raise SystemExit("the compiled core is not built")
        CLIENTS[args.client](args.port, args.count, Window(args.client, args.count, args.handshake))
        return

    frames = load_event_frames(args.capture)
    size = sum(map(len, frames))
    print(f"capture: {len(frames)} plain events, {size / len(frames):.0f} bytes/event average", flush=True)
    server, port = start_server(frames)
    results: dict[str, dict[str, object]] = {}
    names = args.clients.split(",")
    try:
        # round-robin, so that every client sees the same machine load on average; best run kept
        for _ in range(args.repeat):
            for name in names:
                if "error" in results.get(name, {}):
                    continue
                count = args.events if name.startswith("esl") else args.peer_events
                res = run_client(name, port, count)
                best = results.get(name)
                if "error" in res or best is None or float(res["events_per_s"]) > float(best["events_per_s"]):  # type: ignore[arg-type]
                    results[name] = res
        for name in names:
            best = results[name]
            rate = best.get("events_per_s")
            print(f"{name:12s} " + (f"{rate:>12,.0f} events/s" if rate else f"error: {best['error']}"), flush=True)
    finally:
        server.terminate()
    print(f"load average after the runs: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    base = results.get("genesis", {}).get("events_per_s")
    base_cpu = results.get("genesis", {}).get("events_per_cpu_s")
    print()
    print("| client | events | events/s (wall) | × genesis | events per client CPU-second | × genesis |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, res in results.items():
        rate = res.get("events_per_s")
        if not rate:
            print(f"| {name} | – | error | – | – | – |")
            continue
        cpu_rate = float(res["events_per_cpu_s"])  # type: ignore[arg-type]
        ratio = f"{float(rate) / float(base):.1f}×" if base else "–"  # type: ignore[arg-type]
        cpu_ratio = f"{cpu_rate / float(base_cpu):.1f}×" if base_cpu else "–"  # type: ignore[arg-type]
        print(f"| {name} | {res['events']:,} | {float(rate):,.0f} | {ratio} | {cpu_rate:,.0f} | {cpu_ratio} |")  # type: ignore[arg-type]
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
