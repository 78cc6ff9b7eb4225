"""The ``esl`` command line, against the fake FreeSWITCH of esl.testing over loopback.

In-process commands run through click's CliRunner while the fake runs on its own event loop
in a thread; long-running servers (replay, fake, outbound run, consumer run) run as
subprocesses and are stopped with a signal, as a user would.
"""

from __future__ import annotations

import asyncio
import json
import lzma
import os
import signal
import socket
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner

import esl
from esl.cli import capture as captures
from esl.cli import main
from esl.core import Parser
from esl.testing import FakeFreeSWITCH

T = TypeVar("T")


def runner() -> CliRunner:
    """A CliRunner keeping stderr apart from stdout (click 8.1 needs mix_stderr=False)."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


class LoopThread:
    """An event loop in a thread, so servers run while CliRunner blocks the main thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    try:
        yield lt
    finally:
        lt.close()


@pytest.fixture
def fake(loop_thread: LoopThread) -> Iterator[FakeFreeSWITCH]:
    """A FakeFreeSWITCH running in the loop thread."""

    async def start() -> FakeFreeSWITCH:
        return await FakeFreeSWITCH().start()

    server = loop_thread.run(start())
    try:
        yield server
    finally:
        loop_thread.run(server.stop())


def free_port() -> int:
    """A loopback port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_error_line(result: Any) -> str:
    """The single ``esl: error:`` line a failed command prints, checked to be alone and clean."""
    assert result.exit_code != 0
    err = result.stderr.strip()
    assert "Traceback" not in err and "Traceback" not in result.stdout
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("esl: error: ")
    return lines[0]


def small_capture(path: Path, events: int) -> bytes:
    """The bundled capture cut to its reply, ``events`` events and its exit reply + notice."""
    msgs = Parser().feed(captures.read_bytes(captures.bundled_path()))
    data = b"".join(m.raw for m in [msgs[0], *msgs[1 : events + 1], *msgs[-2:]])
    path.write_bytes(data)
    return data


# -- the command itself ---------------------------------------------------------------------------


def test_help_lists_every_subcommand() -> None:
    result = runner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("api", "events", "record", "replay", "bench", "outbound", "consumer", "fake"):
        assert f"  {name} " in result.stdout


def test_password_is_never_shown_in_help() -> None:
    for cmd in (["api", "--help"], ["events", "--help"], ["record", "--help"], ["replay", "--help"]):
        result = runner().invoke(main, cmd)
        assert result.exit_code == 0
        assert "ClueCon" not in result.stdout
        assert "ESL_PASSWORD" in result.stdout


def test_python_dash_m_esl(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "esl", "--version"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 0
    assert esl.__version__ in proc.stdout


# -- esl api ------------------------------------------------------------------------------------


def test_api_prints_the_body(fake: FakeFreeSWITCH) -> None:
    result = runner().invoke(main, ["api", "--port", str(fake.port), "status"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("UP ")
    assert "is ready" in result.stdout


def test_api_err_exits_non_zero(fake: FakeFreeSWITCH) -> None:
    result = runner().invoke(main, ["api", "--port", str(fake.port), "no_such_command", "x"])
    assert result.exit_code == 1
    assert result.stdout.strip() == "-ERR no_such_command Command not found!"


def test_api_env_fallbacks(fake: FakeFreeSWITCH) -> None:
    env = {"ESL_HOST": "127.0.0.1", "ESL_PORT": str(fake.port), "ESL_PASSWORD": fake.password}
    result = runner().invoke(main, ["api", "version"], env=env)
    assert result.exit_code == 0, result.stderr
    assert "FreeSWITCH Version" in result.stdout


def test_wrong_password_is_one_clean_line(fake: FakeFreeSWITCH) -> None:
    result = runner().invoke(main, ["api", "-P", str(fake.port), "-p", "s3cret-wrong", "status"])
    line = one_error_line(result)
    assert "authentication failed" in line
    assert "s3cret-wrong" not in result.stderr + result.stdout


def test_refused_connection_is_one_clean_line() -> None:
    port = free_port()
    for cmd in (["api", "-P", str(port), "status"], ["events", "-P", str(port)]):
        line = one_error_line(runner().invoke(main, cmd))
        assert "connect" in line and str(port) in line


def test_record_refused_and_wrong_password(fake: FakeFreeSWITCH, tmp_path: Path) -> None:
    out = tmp_path / "x.raw"
    line = one_error_line(runner().invoke(main, ["record", str(out), "-P", str(free_port())]))
    assert "connection refused" in line
    line = one_error_line(runner().invoke(main, ["record", str(out), "-P", str(fake.port), "-p", "nope"]))
    assert "authentication failed" in line
    assert not out.exists()


# -- esl events -----------------------------------------------------------------------------------


def _fire_heartbeats(fake: FakeFreeSWITCH, loop_thread: LoopThread) -> asyncio.Future[Any]:
    async def fire() -> None:
        n = 0
        while True:
            n += 1
            await fake.fire(fake.make_event("HEARTBEAT", {"Event-Info": f"beat {n}", "Up-Time": "0 years"}))
            await fake.fire(fake.make_event("CHANNEL_ANSWER", {"Unique-ID": f"00000000-0000-0000-0000-{n:012d}"}))
            await asyncio.sleep(0.02)

    return asyncio.run_coroutine_threadsafe(fire(), loop_thread.loop)  # type: ignore[return-value]


def test_events_with_a_count(fake: FakeFreeSWITCH, loop_thread: LoopThread) -> None:
    firing = _fire_heartbeats(fake, loop_thread)
    try:
        result = runner().invoke(main, ["events", "-P", str(fake.port), "--count", "3", "HEARTBEAT"])
    finally:
        firing.cancel()
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert all(" HEARTBEAT " in line for line in lines)
    assert result.stderr.strip() == "3 events"


def test_events_json_lines_with_filter_and_format(fake: FakeFreeSWITCH, loop_thread: LoopThread) -> None:
    uuid = "00000000-0000-0000-0000-000000000005"
    firing = _fire_heartbeats(fake, loop_thread)
    try:
        result = runner().invoke(
            main,
            ["events", "-P", str(fake.port), "-n", "1", "--json", "--format", "json",
             "--filter", "Unique-ID", uuid, "ALL"],
        )
    finally:
        firing.cancel()
    assert result.exit_code == 0, result.stderr
    objs = [json.loads(line) for line in result.stdout.splitlines()]
    # the server-side filter lets only that channel's event through (HEARTBEATs have no Unique-ID)
    assert len(objs) == 1
    assert objs[0]["Event-Name"] == "CHANNEL_ANSWER"
    assert objs[0]["Unique-ID"] == uuid


def test_events_ctrl_c_exits_cleanly_with_a_count(fake: FakeFreeSWITCH, loop_thread: LoopThread,
                                                  tmp_path: Path) -> None:
    proc = _start(["events", "-P", str(fake.port), "HEARTBEAT"], cwd=tmp_path)
    firing = None
    try:
        deadline = time.monotonic() + 30
        while not any(c.subscriptions.enabled for c in list(fake.connections)) and time.monotonic() < deadline:
            time.sleep(0.02)
        firing = _fire_heartbeats(fake, loop_thread)
        assert " HEARTBEAT " in _wait_line(proc.stdout, "HEARTBEAT")
    finally:
        if firing is not None:
            firing.cancel()
        code, err = _stop(proc, signal.SIGINT)
    assert code == 0, err
    assert err.strip().endswith(" events")
    assert int(err.strip().split()[-2]) >= 1


# -- esl record / esl replay ----------------------------------------------------------------------


def test_record_then_replay_roundtrip_equal_bytes(loop_thread: LoopThread, tmp_path: Path) -> None:
    """Recording a replay of a capture gives the capture back, byte for byte (xz and plain)."""
    from esl.cli.serve import ReplayServer

    source = tmp_path / "small.raw"
    data = small_capture(source, 120)
    cap = captures.load(source)
    assert cap.events == 120

    for out in (tmp_path / "rec.raw.xz", tmp_path / "rec.raw"):
        server = loop_thread.run(ReplayServer(cap, port=0).start())
        try:
            result = runner().invoke(main, ["record", str(out), "-P", str(server.port), "--events", "120"])
        finally:
            loop_thread.run(server.stop())
        assert result.exit_code == 0, result.stderr
        assert "120 events" in result.stderr
        raw = out.read_bytes()
        if out.name.endswith(".xz"):
            assert raw.startswith(captures.XZ_MAGIC)
            raw = lzma.decompress(raw)
        assert raw == data

    # and the recording is a capture the tools accept
    result = runner().invoke(main, ["bench", str(tmp_path / "rec.raw.xz"), "--json", "--no-e2e", "--min-time", "0",
                                    "--compare", "none", "--backend", "python"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["capture"]["events"] == 120


def test_record_duration_and_names(fake: FakeFreeSWITCH, loop_thread: LoopThread, tmp_path: Path) -> None:
    firing = _fire_heartbeats(fake, loop_thread)
    out = tmp_path / "hb.raw"
    try:
        result = runner().invoke(main, ["record", str(out), "HEARTBEAT", "-P", str(fake.port), "--duration", "0.3"])
    finally:
        firing.cancel()
    assert result.exit_code == 0, result.stderr
    msgs = Parser().feed(out.read_bytes())
    assert msgs[0].get("Reply-Text") == "+OK event listener enabled plain"
    events = [m for m in msgs if m.is_event]
    assert events and all(m.name == "HEARTBEAT" for m in events)
    assert msgs[-2].get("Reply-Text") == "+OK bye"
    assert msgs[-1].content_type == "text/disconnect-notice"


def _start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``python -m esl ARGS`` in ``cwd`` (a temporary directory: the esl imported is the installed one)."""
    return subprocess.Popen(
        [sys.executable, "-m", "esl", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        cwd=cwd, env={**os.environ, **(env or {})},
    )


def _wait_line(stream: Any, needle: str, timeout: float = 30.0) -> str:
    """Read lines until one contains ``needle`` (reader thread so a silent child cannot hang us)."""
    found: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in stream:
            if needle in line:
                found.append(line)
                done.set()
                return
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout), f"no line with {needle!r}"
    assert found, f"stream ended without {needle!r}"
    return found[0]


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str]:
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return proc.returncode, err


def test_replay_subprocess_serves_an_inbound_client(tmp_path: Path) -> None:
    source = tmp_path / "small.raw.xz"
    with lzma.open(source, "wb") as f:
        f.write(small_capture(tmp_path / "small.raw", 50))
    proc = _start(["replay", str(source), "--port", "0", "--loops", "2"], cwd=tmp_path)
    try:
        line = _wait_line(proc.stdout, "listening on")
        host, port = line.split()[-1].rsplit(":", 1)

        async def client() -> list[Any]:
            got: list[Any] = []
            done = asyncio.Event()

            async with esl.Inbound(host, int(port), "ClueCon", timeout=5) as c:
                def on(ev: Any) -> None:
                    got.append(ev)
                    if len(got) == 100:
                        done.set()

                c.on("*", on)
                await c.subscribe("ALL")
                await asyncio.wait_for(done.wait(), 10)
            return got

        got = asyncio.run(client())
        assert len(got) == 100
        assert [e.sequence for e in got[:50]] == [e.sequence for e in got[50:]]
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert "Traceback" not in err
    assert "100 events sent" in err


# -- bad captures -----------------------------------------------------------------------------------


def test_bad_captures_are_one_clean_line(tmp_path: Path) -> None:
    data = small_capture(tmp_path / "ok.raw", 20)
    truncated = tmp_path / "truncated.raw"
    truncated.write_bytes(data[: len(data) // 2])
    broken_xz = tmp_path / "broken.raw.xz"
    broken_xz.write_bytes(lzma.compress(data)[:200])
    garbage = tmp_path / "garbage.raw"
    garbage.write_bytes(b"Content-Length: abc\n\nxyz")
    no_events = tmp_path / "empty.raw"
    no_events.write_bytes(b"Content-Type: command/reply\nReply-Text: +OK bye\n\n")
    cases = {
        truncated: "truncated",
        broken_xz: "xz",
        garbage: "not an ESL stream",
        no_events: "no events",
        tmp_path / "missing.raw": "no such file",
        tmp_path: "",  # a directory
    }
    for path, words in cases.items():
        for cmd in (["bench", str(path), "--no-e2e"], ["replay", str(path), "--port", "0"]):
            result = runner().invoke(main, cmd)
            if result.exit_code == 2:  # click itself refused the path (a directory): still one clean line
                assert "Traceback" not in result.stderr
                continue
            line = one_error_line(result)
            assert words in line, (path, line)


# -- esl bench ------------------------------------------------------------------------------------------


def test_bench_json_on_the_bundled_capture() -> None:
    """Every measure, for every core built here, on a few bundled events (quick)."""
    result = runner().invoke(
        main,
        ["bench", "--json", "--events", "40", "--e2e-events", "200", "--e2e-repeat", "1", "--min-time", "0",
         "--compare", "none"],
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["capture"]["path"] == "bundled capture"
    assert report["capture"]["events"] == 40
    assert report["capture"]["format"] == "plain"
    cores = sorted(esl.core.backends())
    got = {(r["measure"], r["subject"]) for r in report["results"]}
    for core in cores:
        for measure in ("parse", "decode", "route", "e2e"):
            assert (measure, f"esl-{core}") in got
    if "cython" in cores:  # the realistic handler's row (three headers), against the keys-only one
        row = next(r for r in report["results"] if r["measure"] == "e2e3")
        assert row["subject"] == "esl-cython" and "keys-only" in row["vs"]
    for r in report["results"]:
        assert r["events"] > 0 and r["events_per_s"] > 0
        if not r["measure"].startswith("e2e"):
            assert r["events"] == 40
    if len(cores) == 2:
        row = next(r for r in report["results"] if r["subject"] == "esl-cython" and r["measure"] == "parse")
        assert "esl-python" in row["vs"]


def test_bench_table_and_peer_handling() -> None:
    result = runner().invoke(main, ["bench", "--events", "20", "--no-e2e", "--min-time", "0", "--compare",
                                    "nosuchpeer"])
    assert "unknown peer" in one_error_line(result)
    result = runner().invoke(main, ["bench", "--events", "20", "--no-e2e", "--min-time", "0", "--backend",
                                    "python", "--compare", "none"])
    assert result.exit_code == 0, result.stderr
    assert "parse + keys" in result.stdout and "esl-python" in result.stdout


def test_bench_compares_genesis_when_installed() -> None:
    pytest.importorskip("genesis")
    result = runner().invoke(main, ["bench", "--events", "20", "--no-e2e", "--min-time", "0", "--compare",
                                    "genesis", "--json"])
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["results"]
    assert any(r["subject"] == "genesis" for r in rows)
    assert all("genesis" in r["vs"] for r in rows if r["subject"].startswith("esl-"))


def test_bench_with_peers_leaves_logging_enabled() -> None:
    """The peer runs silence logging only while they are timed, never for the rest of the process."""
    pytest.importorskip("genesis")
    pytest.importorskip("greenswitch")
    import logging

    before = logging.root.manager.disable
    assert before == logging.NOTSET
    result = runner().invoke(main, ["bench", "--events", "20", "--no-e2e", "--min-time", "0", "--compare",
                                    "genesis,greenswitch", "--json"])
    assert result.exit_code == 0, result.stderr
    assert {r["subject"] for r in json.loads(result.stdout)["results"]} >= {"genesis", "greenswitch"}
    assert logging.root.manager.disable == before
    assert logging.getLogger("esl").isEnabledFor(logging.WARNING)


def test_bench_plot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["bench", "--events", "20", "--no-e2e", "--min-time", "0", "--compare", "none", "--backend", "python"]
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
        line = one_error_line(runner().invoke(main, [*args, "--plot", str(tmp_path / "x.png")]))
        assert "matplotlib" in line
    pytest.importorskip("matplotlib")
    out = tmp_path / "bench.png"
    result = runner().invoke(main, [*args, "--plot", str(out)])
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes().startswith(b"\x89PNG")


# -- esl outbound run / consumer run / fake ---------------------------------------------------------------


def test_bad_module_app_is_one_clean_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('boom at import')\n")
    (tmp_path / "plain_app.py").write_text("app = 42\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    cases = [
        ("nocolon", "expected MODULE:APP"),
        ("no_such_module_xyz:app", "no module named"),
        ("broken_app:app", "boom at import"),
        ("plain_app:missing", "has no attribute"),
        ("plain_app:app", "not an esl"),
    ]
    for group in ("outbound", "consumer"):
        for spec, words in cases:
            line = one_error_line(runner().invoke(main, [group, "run", spec]))
            assert words in line, (group, spec, line)


OUTBOUND_APP = """
import pathlib
import esl

async def handler(session):
    await session.channel.answer()
    pathlib.Path("handled.txt").write_text(session.uuid)
    await session.channel.hangup()

app = esl.Outbound(handler, "127.0.0.1", 1)  # --port moves it
"""


@pytest.mark.parametrize("spec", ["ivr_app:handler", "ivr_app:app"])
def test_outbound_run_handles_a_call_and_stops_on_sigterm(spec: str, tmp_path: Path, loop_thread: LoopThread) -> None:
    (tmp_path / "ivr_app.py").write_text(OUTBOUND_APP)
    port = free_port()
    proc = _start(["outbound", "run", spec, "--port", str(port)], cwd=tmp_path)
    try:
        _wait_line(proc.stderr, "listening on")

        async def call() -> str:
            async with FakeFreeSWITCH() as fs:
                fs.dialplan["9000"] = [("socket", f"127.0.0.1:{port} async full")]
                ch = await fs.call("9000")
                await ch.wait_hangup(30)
                return str(ch.uuid)

        uuid = loop_thread.run(call(), timeout=40)
        deadline = time.monotonic() + 15
        while not (tmp_path / "handled.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        code, err = _stop(proc, signal.SIGTERM)
    assert (tmp_path / "handled.txt").exists(), err
    assert (tmp_path / "handled.txt").read_text() == uuid
    assert code == 0, err
    assert "Traceback" not in err
    assert f"call {uuid} started" in err  # each call logged as it arrives and as it ends
    assert f"call {uuid} ended after" in err


CONSUMER_APP = """
import os, pathlib
import esl

app = esl.Consumer("127.0.0.1", int(os.environ["FAKE_PORT"]), "ClueCon")

@app.handle("HEARTBEAT")
def beat(event):
    pathlib.Path("beats.txt").open("a").write(event["Event-Info"] + "\\n")
"""


def test_consumer_run_handles_events_and_stops_on_sigint(tmp_path: Path, fake: FakeFreeSWITCH,
                                                          loop_thread: LoopThread) -> None:
    (tmp_path / "beat_app.py").write_text(CONSUMER_APP)
    proc = _start(["consumer", "run", "beat_app:app"], cwd=tmp_path, env={"FAKE_PORT": str(fake.port)})
    firing = None
    try:
        _wait_line(proc.stderr, "running")
        deadline = time.monotonic() + 30
        while not any(c.subscriptions.enabled for c in list(fake.connections)) and time.monotonic() < deadline:
            time.sleep(0.02)
        firing = _fire_heartbeats(fake, loop_thread)
        while not (tmp_path / "beats.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (tmp_path / "beats.txt").read_text().startswith("beat ")
        subscribed = [c for conn in list(fake.connections) for c in conn.commands if c.startswith("event")]
        assert subscribed == ["event plain HEARTBEAT"]
    finally:
        if firing is not None:
            firing.cancel()
        code, err = _stop(proc)
    assert code == 0, err
    assert "Traceback" not in err


def test_fake_subprocess_answers_api_and_stops_on_sigint(tmp_path: Path) -> None:
    proc = _start(["fake", "--port", "0"], cwd=tmp_path)
    try:
        line = _wait_line(proc.stderr, "listening on")
        host, port = line.split()[-1].rsplit(":", 1)

        async def status() -> str:
            async with esl.Inbound(host, int(port), "ClueCon", timeout=5) as c:
                return str(await c.api("status"))

        assert asyncio.run(status()).startswith("UP ")
    finally:
        code, err = _stop(proc)
    assert code == 0, err
    assert "Traceback" not in err


def test_fake_hands_calls_to_an_outbound_app(tmp_path: Path, loop_thread: LoopThread) -> None:
    handled: list[str] = []

    async def handler(session: Any) -> None:
        await session.channel.answer()
        handled.append(session.uuid)
        await session.channel.hangup()

    app = esl.Outbound(handler, "127.0.0.1", 0)
    loop_thread.run(app.start(block=False))
    proc = _start(["fake", "--port", "0", "--outbound", f"127.0.0.1:{app.port}", "--calls", "2",
                   "--interval", "0.05"], cwd=tmp_path)
    try:
        _wait_line(proc.stderr, "call 2/2")
        deadline = time.monotonic() + 15
        while len(handled) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        code, err = _stop(proc)
        loop_thread.run(app.stop())
    assert len(handled) == 2 and handled[0] != handled[1]
    assert code == 0, err


# -- the README's main job, in a fresh virtual environment ---------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ESL_SLOW_TESTS") != "1", reason="builds a venv and compiles: ESL_SLOW_TESTS=1")
def test_readme_main_job_in_a_fresh_venv(tmp_path: Path) -> None:
    """The README's main-job line, run as it stands in a fresh copy of the checkout."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    command = 'python3 -m venv .venv && .venv/bin/pip install ".[bench]" && .venv/bin/esl bench'
    assert command in readme
    checkout = tmp_path / "checkout"
    shutil.copytree(root, checkout, ignore=shutil.ignore_patterns(".venv", "build", ".git", "__pycache__", "*.so"))
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("ESL_NO_EXTENSIONS", None)
    proc = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "esl bench: bundled capture" in out
    for label in ("parse + keys", "full decode", "routed away", "end to end", "esl-cython", "genesis"):
        assert label in out, out
