"""``esl bench``: how fast this library reads FreeSWITCH events, next to the other Python clients.

One run measures, on one capture (the bundled one by default):

* ``parse``: framing plus the routing keys (Event-Name, Unique-ID) of every event;
* ``decode``: framing plus a full decode of every event's headers and body;
* ``route``: framing plus the UUID filter (``Router`` with 10,000 routes, 1% of events matching),
  the rest routed away without being decoded;
* ``e2e``: events per second over loopback, from a replay server into a client with one
  catch-all handler reading the Unique-ID, each client in its own process.

In-process figures feed the events in 64 KiB pieces, as socket reads would, and keep the
best of several repeats. Peers (genesis, greenswitch) decode every header whatever the
caller reads, so their one parser figure is what ``parse``, ``decode`` and ``route`` are
compared with.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import json
import os
import sys
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import click

from esl.cli import capture as captures
from esl.cli._common import CLIError, clean_errors, quiet_logging, run

__all__ = [
    "MEASURES", "PEERS", "PEER_FORMATS", "SHORT", "Result", "bench_cmd", "measure", "measured_events",
    "peer_available", "route_keys",
]

PIECE = 64 * 1024
PEERS = ("genesis", "greenswitch")
#: Short labels for the table; MEASURES says what each one is.
SHORT = {"parse": "parse + keys", "decode": "full decode", "route": "routed away", "e2e": "end to end",
         "e2e3": "end to end, 3 headers"}
MEASURES = {
    "parse": "framing + routing keys",
    "decode": "framing + full decode",
    "route": "routed away (10,000 routes, 1% match)",
    "e2e": "end to end over loopback (Inbound, '*' handler)",
    "e2e3": "end to end, a realistic handler reading 3 headers (Unique-ID, Channel-State, Caller-Caller-ID-Number)",
}
#: The headers the realistic handler reads (``e2e3``): what users compare.
REALISTIC_HEADERS = ("Unique-ID", "Channel-State", "Caller-Caller-ID-Number")


@dataclass
class Result:
    """One measured figure."""

    measure: str
    subject: str
    events: int
    seconds: float
    bytes: int

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["events_per_s"] = round(self.rate, 1)
        d["mb_per_s"] = round(self.bytes / self.seconds / 1e6, 2) if self.seconds > 0 else 0.0
        return d


# -- in-process measurements ---------------------------------------------------------------


def _pieces(data: bytes) -> list[bytes]:
    return [data[i : i + PIECE] for i in range(0, len(data), PIECE)]


def _best(fn: Callable[[], int], min_time: float, min_repeat: int = 3, max_repeat: int = 50) -> tuple[float, int]:
    """Best wall time of ``fn`` over repeats (at least ``min_repeat``, until ``min_time`` spent)."""
    best = float("inf")
    count = 0
    spent = 0.0
    n = 0
    while n < min_repeat or (spent < min_time and n < max_repeat):
        t0 = time.perf_counter()
        count = fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
        n += 1
    return best, count


def _parse_fn(mod: Any, pieces: list[bytes]) -> Callable[[], int]:
    def go() -> int:
        parser = mod.Parser()
        n = 0
        for piece in pieces:
            for ev in parser.feed(piece):
                ev.name
                ev.uuid
                n += 1
        return n

    return go


def _decode_fn(mod: Any, pieces: list[bytes]) -> Callable[[], int]:
    def go() -> int:
        parser = mod.Parser()
        n = 0
        for piece in pieces:
            for ev in parser.feed(piece):
                len(ev)  # every header decoded into the mapping
                ev.body
                n += 1
        return n

    return go


def route_keys(data: bytes, routes: int = 10_000, share: float = 0.01) -> list[str]:
    """``routes`` UUIDs to register: capture UUIDs owning about ``share`` of the events, then random ones."""
    from esl.core import Parser

    counts: dict[str, int] = {}
    total = 0
    for ev in Parser().feed(data):
        key = ev.job_uuid if ev.name == "BACKGROUND_JOB" else ev.uuid
        total += 1
        if key:
            counts[key] = counts.get(key, 0) + 1
    chosen: list[str] = []
    matched = 0
    for key, n in sorted(counts.items(), key=lambda kv: (kv[1], kv[0])):
        if matched + n > share * total:
            continue
        chosen.append(key)
        matched += n
        if matched >= share * total * 0.95 or len(chosen) >= routes:
            break
    rng = uuidlib.UUID(int=0x5EED).int
    while len(chosen) < routes:
        rng = (rng * 6364136223846793005 + 1442695040888963407) % (1 << 128)
        chosen.append(str(uuidlib.UUID(int=rng)))
    return chosen


def _route_fn(mod: Any, pieces: list[bytes], keys: list[str]) -> Callable[[], int]:
    got: list[Any] = []
    router = mod.Router(None)
    for key in keys:
        router.add(key, got.append)

    def go() -> int:
        got.clear()
        parser = mod.Parser()
        n = 0
        for piece in pieces:
            evs = parser.feed(piece)
            router.dispatch(evs)
            n += len(evs)
        return n

    return go


def _genesis_fn(pieces: list[bytes]) -> Callable[[], int]:
    from genesis.protocol.reader_fsm import ESLReaderFSM

    def go() -> int:
        with quiet_logging():
            return parse()

    def parse() -> int:
        fsm = ESLReaderFSM()
        buf = b""
        need = 0
        n = 0
        for piece in pieces:
            buf += piece
            while True:
                if need:
                    if len(buf) < need:
                        break
                    n += len(fsm.process_body(buf[:need]))
                    buf = buf[need:]
                    need = 0
                end = buf.find(b"\n\n")
                if end < 0:
                    break
                evs, need = fsm.process_headers(buf[: end + 2].decode("utf-8"))
                n += len(evs)
                buf = buf[end + 2 :]
        return n

    return go


def _greenswitch_fn(data: bytes) -> Callable[[], int]:
    from greenswitch.esl import ESLProtocol

    def go() -> int:
        with quiet_logging():
            return parse()

    def parse() -> int:
        proto = ESLProtocol()
        proto.sock_file = io.BytesIO(data)
        proto.sock = io.BytesIO()
        proto.connected = True
        proto.receive_events()  # greenswitch's own reader loop, over an in-memory "socket"
        return int(proto._esl_event_queue.qsize())

    return go


def peer_available(name: str) -> bool:
    """True when the peer library can be imported here."""
    import importlib.util

    mod = {"genesis": "genesis", "greenswitch": "greenswitch"}[name]
    return importlib.util.find_spec(mod) is not None


# -- end to end ----------------------------------------------------------------------------------


async def _run_client(client: str, host: str, port: int, password: str, events: int, max_seconds: float,
                      env_extra: dict[str, str], fmt: str = "plain") -> dict[str, Any]:
    import esl

    env = dict(os.environ, ESL_PASSWORD=password, **env_extra)
    # run from beside the esl package this process uses, so ``-m`` imports that same esl
    # (not a source checkout that happens to be the current directory)
    home = os.path.dirname(os.path.dirname(os.path.abspath(esl.__file__)))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "esl.cli._e2e", client, host, str(port), str(events), str(max_seconds), fmt,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=home,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), max_seconds + 60)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        return {"client": client, "error": "client did not finish in time"}
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    if not lines:
        tail = err.decode(errors="replace").strip().splitlines()
        return {"client": client, "error": tail[-1] if tail else f"exit status {proc.returncode}"}
    return dict(json.loads(lines[-1]))


async def _e2e(cap: captures.Capture, label: str, client: str, env: dict[str, str], events: int,
               max_seconds: float, repeat: int, avg_size: float, warn: Callable[[str], None],
               measure: str = "e2e") -> Result | None:
    """The best of ``repeat`` end-to-end runs of one client, each with a fresh server and process."""
    from esl.cli.serve import ReplayServer

    best: Result | None = None
    password = "ClueCon"
    loops = max(1, -(-events // cap.events))
    for _ in range(repeat):
        async with ReplayServer(cap, port=0, password=password, loops=loops) as server:
            got = await _run_client(client, server.host, server.port, password, loops * cap.events,
                                    max_seconds, env, cap.format)
        if "error" in got:
            warn(f"end-to-end {label} failed: {got['error']}")
            return best
        if "backend" in got and label != f"esl-{got['backend']}":
            warn(f"end-to-end {label} ran on the {got['backend']} core instead; left out")
            return None
        if not got.get("events"):
            warn(f"end-to-end {label} handled no events in {max_seconds:g} s; left out")
            return best
        result = Result(measure, label, int(got["events"]), float(got["seconds"]), int(got["events"] * avg_size))
        if best is None or result.rate > best.rate:
            best = result
    return best


# -- the command ---------------------------------------------------------------------------------


def measured_events(cap: captures.Capture, events: int | None) -> bytes:
    """The event bytes a run measures: every event of the capture, or its first ``events``."""
    from esl.core import Parser

    data = cap.event_bytes()
    if events is not None and events < cap.events:
        data = b"".join(ev.raw for ev in Parser().feed(data)[:events])
    return data


#: Event formats each peer decodes (genesis and greenswitch read text/event-plain only).
PEER_FORMATS = {"genesis": ("plain",), "greenswitch": ("plain",)}


def measure(
    cap: captures.Capture,
    backends: list[str],
    peers: list[str],
    *,
    events: int | None,
    e2e: bool,
    e2e_events: int,
    e2e_seconds: float,
    e2e_repeat: int = 3,
    min_time: float,
    progress: Callable[[str], None],
    warn: Callable[[str], None],
) -> list[Result]:
    """Run every measurement; ``progress`` is told what runs next."""
    from esl.core import load

    data = measured_events(cap, events)
    pieces = _pieces(data)
    nbytes = len(data)
    keys = route_keys(data)
    results: list[Result] = []
    for name in backends:
        mod = load(name)
        label = f"esl-{name}"
        for measure_name, fn in (
            ("parse", _parse_fn(mod, pieces)),
            ("decode", _decode_fn(mod, pieces)),
            ("route", _route_fn(mod, pieces, keys)),
        ):
            progress(f"{label}: {MEASURES[measure_name]}")
            secs, n = _best(fn, min_time)
            results.append(Result(measure_name, label, n, secs, nbytes))
    for peer in peers:
        progress(f"{peer}: parser")
        fn = _genesis_fn(pieces) if peer == "genesis" else _greenswitch_fn(data)
        try:
            secs, n = _best(fn, min_time, min_repeat=2, max_repeat=5)
        except Exception as exc:  # a peer that cannot read this capture is reported, not fatal
            warn(f"{peer}'s parser failed on this capture ({type(exc).__name__}: {exc}); left out")
            continue
        results.append(Result("decode", peer, n, secs, nbytes))
    if e2e:
        subjects = [(f"esl-{b}", "esl", {"ESL_NO_EXTENSIONS": "1" if b == "python" else "0"}, "e2e")
                    for b in backends]
        # the realistic handler, the row users compare (the compiled core: what they run)
        subjects += [(f"esl-{b}", "esl-3h", {"ESL_NO_EXTENSIONS": "0"}, "e2e3") for b in backends if b == "cython"]
        subjects += [(p, p, {}, "e2e") for p in peers]
        sub_cap = cap if events is None or events >= cap.events else captures.check(data, cap.path)
        for label, client, env, what in subjects:
            progress(f"{label}: {MEASURES[what]}")
            # peers are ~100x slower: fewer events and more time, so each still finishes its stream
            is_peer = not label.startswith("esl")
            n_events = max(1, e2e_events // 20) if is_peer else e2e_events
            max_seconds = e2e_seconds * 4 if is_peer else e2e_seconds
            avg_size = nbytes / sub_cap.events
            best = run(_e2e(sub_cap, label, client, env, n_events, max_seconds, e2e_repeat, avg_size, warn, what))
            if best is not None:
                results.append(best)
    return results


@click.command("bench")
@click.argument("capture", type=click.Path(dir_okay=False), required=False)
@click.option("--backend", type=click.Choice(["cython", "python", "both"]), default="both", show_default=True,
              help="Which core(s) to measure ('both' where the compiled one is built).")
@click.option("--compare", default=None, metavar="PEERS",
              help="Comma-separated peers to measure too: genesis,greenswitch (default: every installed one; "
              "'none' for none).")
@click.option("--events", "events", type=click.IntRange(1), default=None,
              help="Use only the first N events of the capture (quick runs).")
@click.option("--e2e-events", type=click.IntRange(1), default=200_000, show_default=True,
              help="Events each esl client handles end to end (peers: a twentieth), rounded up to whole loops "
              "of the capture.")
@click.option("--e2e-seconds", type=click.FloatRange(min=0.1), default=3.0, show_default=True,
              help="Longest time an esl client is measured end to end (peers: four times as long).")
@click.option("--e2e-repeat", type=click.IntRange(1), default=3, show_default=True,
              help="End-to-end runs per client (fresh server and process each); the best counts.")
@click.option("--no-e2e", is_flag=True, help="Skip the end-to-end measurement.")
@click.option("--min-time", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="Seconds each in-process figure is repeated for (the best repeat counts).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of a table.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), default=None, metavar="FILE.png",
              help="Also draw the results as a bar chart (needs matplotlib).")
@clean_errors
def bench_cmd(capture: str | None, backend: str, compare: str | None, events: int | None, e2e_events: int,
              e2e_seconds: float, e2e_repeat: int, no_e2e: bool, min_time: float, as_json: bool,
              plot_path: str | None) -> None:
    """Measure parse, routing and end-to-end throughput on CAPTURE (default: the bundled one).

    Prints a table with each figure's ratio to the other core and to every peer measured in
    the same run (genesis, greenswitch), or JSON with --json.
    """
    from esl.cli.bench_report import load_average, machine, plot, report, table
    from esl.core import BACKEND
    from esl.core import backends as available

    have = available()
    chosen: list[str]
    if backend == "both":
        chosen = [b for b in ("cython", "python") if b in have]
    elif backend not in have:
        raise CLIError(f"the {backend} core is not available here (the compiled core is not built)")
    else:
        chosen = [backend]
    if plot_path is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CLIError("--plot needs matplotlib: pip install matplotlib (or pip install 'esl[bench]')") from None
    if compare is None:
        peers = [p for p in PEERS if peer_available(p)]
    elif compare.strip().lower() in ("", "none"):
        peers = []
    else:
        peers = []
        for name in (p.strip().lower() for p in compare.split(",") if p.strip()):
            if name not in PEERS:
                raise CLIError(f"unknown peer {name!r} (known: {', '.join(PEERS)})")
            if not peer_available(name):
                click.echo(f"esl: warning: {name} is not installed (pip install 'esl[bench]'); skipped", err=True)
                continue
            if name not in peers:
                peers.append(name)

    cap = captures.load(capture)
    for name in list(peers):
        if cap.format not in PEER_FORMATS[name]:
            peers.remove(name)
            if compare is not None:  # asked for by name: say why it is not there
                click.echo(f"esl: warning: {name} does not decode {cap.format} events; left out "
                           f"(its figures would not be comparable)", err=True)
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    err = Console(stderr=True, highlight=False)
    warnings: list[str] = []
    load_before = load_average()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=err,
                  transient=True, disable=as_json or not err.is_terminal) as prog:
        task = prog.add_task("starting", total=None)
        results = measure(
            cap, chosen, peers, events=events, e2e=not no_e2e, e2e_events=e2e_events, e2e_seconds=e2e_seconds,
            e2e_repeat=e2e_repeat, min_time=min_time, progress=lambda text: prog.update(task, description=text),
            warn=warnings.append,
        )
    for w in warnings:
        click.echo(f"esl: warning: {w}", err=True)
    total = (cap.events, len(cap.event_bytes()))
    measured_bytes = len(measured_events(cap, events))
    if events is not None and events < cap.events:
        cap = captures.Capture(cap.path, cap.data, cap.format, events, cap.messages, cap.names)
    mach = machine()
    date = datetime.datetime.now(datetime.timezone.utc)
    if as_json:
        click.echo(json.dumps(report(cap, results, BACKEND, measured_bytes=measured_bytes, total=total,
                                     load_before=load_before), indent=2))
    else:
        out = Console(highlight=False)
        if not out.is_terminal:
            out = Console(highlight=False, width=120)
        out.print(table(cap, results, mach))
    if plot_path is not None:
        plot(results, plot_path, f"esl bench: {cap.path} ({cap.events:,} {cap.format} events)", mach,
             date.strftime("%Y-%m-%d %H:%M UTC"))
        if not as_json:
            click.echo(f"chart written to {plot_path}", err=True)
