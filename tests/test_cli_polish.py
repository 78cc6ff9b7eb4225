"""The ``esl`` command's rough edges, one test each: event columns, filter help, one-line usage
errors, refused connections, binary files, outbound handlers, and the benchmark's report."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from test_cli import (  # the CliRunner helpers and fixtures of the main CLI tests
    LoopThread,
    fake,
    free_port,
    loop_thread,
    one_error_line,
    runner,
    small_capture,
)

import esl
from esl.cli import bench, bench_report, main
from esl.cli import capture as captures
from esl.cli._e2e import describe_failure
from esl.cli.live import event_line
from esl.core import Parser
from esl.testing import FakeFreeSWITCH

__all__ = ["fake", "loop_thread"]  # fixtures imported for their side effect


def plain_event(headers: dict[str, str]) -> Any:
    """One parsed text/event-plain event with ``headers``."""
    from urllib.parse import quote

    body = "".join(f"{k}: {quote(v, safe='')}\n" for k, v in headers.items()) + "\n"
    raw = f"Content-Length: {len(body)}\nContent-Type: text/event-plain\n\n{body}".encode()
    (event,) = Parser().feed(raw)
    return event


CHANNEL = {
    "Unique-ID": "0b1ad7c4-0000-4000-8000-000000000001",
    "Channel-State": "CS_EXECUTE",
    "Channel-Call-State": "ACTIVE",
    "Answer-State": "answered",
    "Channel-Name": "sofia/internal/1000@example.com",
    "Caller-Caller-ID-Number": "1000",
    "Caller-Destination-Number": "9000",
}


# -- esl events: columns by event ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "extra", "shown"),
    [
        ("CHANNEL_HANGUP", {"Hangup-Cause": "USER_BUSY"}, "Hangup-Cause=USER_BUSY"),
        ("CHANNEL_HANGUP_COMPLETE", {"Hangup-Cause": "NORMAL_CLEARING"}, "Hangup-Cause=NORMAL_CLEARING"),
        ("DTMF", {"DTMF-Digit": "5", "DTMF-Duration": "2000"}, "DTMF-Digit=5"),
        ("CHANNEL_EXECUTE", {"Application": "playback", "Application-Data": "ivr/welcome.wav"},
         "Application=playback"),
        ("CHANNEL_EXECUTE_COMPLETE", {"Application": "bridge", "Application-Response": "_none_"},
         "Application=bridge"),
    ],
)
def test_events_line_shows_what_tells_the_event_apart(name: str, extra: dict[str, str], shown: str) -> None:
    """A channel event carries the four old fixed columns; the event's own header still comes first."""
    line = event_line(plain_event({"Event-Name": name, **CHANNEL, **extra}))
    extras = line.split(CHANNEL["Unique-ID"], 1)[1].split()
    assert extras[0] == shown, line
    assert len(extras) <= 4


def test_events_line_for_other_events_keeps_the_general_columns() -> None:
    line = event_line(plain_event({"Event-Name": "CHANNEL_STATE", **CHANNEL}))
    assert "Channel-State=CS_EXECUTE" in line and "Channel-Name=sofia/internal/1000@example.com" in line
    line = event_line(plain_event({"Event-Name": "SOMETHING_NEW", **CHANNEL, "Hangup-Cause": "X"}))
    assert line.split(CHANNEL["Unique-ID"], 1)[1].split()[0] == "Channel-State=CS_EXECUTE"


def test_events_command_shows_the_hangup_cause(fake: FakeFreeSWITCH, loop_thread: LoopThread) -> None:
    async def fire() -> None:
        while True:
            await fake.fire(fake.make_event("CHANNEL_HANGUP", {**CHANNEL, "Hangup-Cause": "CALL_REJECTED"}))
            await asyncio.sleep(0.02)

    firing = asyncio.run_coroutine_threadsafe(fire(), loop_thread.loop)
    try:
        result = runner().invoke(main, ["events", "-P", str(fake.port), "--count", "2", "CHANNEL_HANGUP"])
    finally:
        firing.cancel()
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert all("Hangup-Cause=CALL_REJECTED" in line for line in lines)


# -- esl events --filter: OR, as FreeSWITCH does ----------------------------------------------------


def test_filter_help_says_or_and_the_fake_agrees(fake: FakeFreeSWITCH, loop_thread: LoopThread) -> None:
    help_text = " ".join(runner().invoke(main, ["events", "--help"]).stdout.split())
    assert "ANY of them (OR, not AND)" in help_text

    async def fire() -> None:
        n = 0
        while True:
            n += 1
            await fake.fire(fake.make_event("HEARTBEAT", {"Event-Info": f"beat {n}"}))
            await fake.fire(fake.make_event("CHANNEL_ANSWER", dict(CHANNEL)))
            await fake.fire(fake.make_event("RE_SCHEDULE", {"Task-Desc": "x"}))
            await asyncio.sleep(0.02)

    firing = asyncio.run_coroutine_threadsafe(fire(), loop_thread.loop)
    try:
        result = runner().invoke(main, ["events", "-P", str(fake.port), "--count", "6", "--json",
                                        "--filter", "Event-Name", "HEARTBEAT",
                                        "--filter", "Event-Name", "CHANNEL_ANSWER"])
    finally:
        firing.cancel()
    assert result.exit_code == 0, result.stderr
    names = {json.loads(line)["Event-Name"] for line in result.stdout.splitlines()}
    assert names == {"HEARTBEAT", "CHANNEL_ANSWER"}  # either filter lets an event through


# -- usage errors, refused connections, files -----------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["api"], "Missing argument 'COMMAND...'"),
        (["events", "--bogus"], "No such option '--bogus'"),
        (["bench", "--backend", "rust"], "Invalid value for '--backend'"),
        (["nosuchcommand"], "No such command 'nosuchcommand'"),
        (["outbound", "run"], "Missing argument 'APP'"),
        (["record"], "Missing argument 'OUT'"),
    ],
)
def test_usage_errors_are_one_line(args: list[str], words: str) -> None:
    result = runner().invoke(main, args)
    assert result.exit_code == 2
    line = one_error_line(result)
    assert words in line and "--help" in line


def test_usage_errors_are_one_line_from_the_real_command() -> None:
    # outside the checkout: from its root `python -m esl` would import the sources there, not the install
    proc = subprocess.run([sys.executable, "-m", "esl", "api"], capture_output=True, text=True, timeout=60,
                          check=False, cwd=tempfile.gettempdir())
    assert proc.returncode == 2
    assert proc.stderr.strip() == "esl: error: Missing argument 'COMMAND...' (see 'esl api --help')"


def test_a_group_without_a_subcommand_still_shows_its_help() -> None:
    result = runner().invoke(main, ["outbound"])
    assert "Usage:" in result.stdout + result.stderr and "run" in result.stdout + result.stderr


def test_refused_connection_says_so(tmp_path: Path) -> None:
    port = free_port()
    for cmd in (["api", "-P", str(port), "status"], ["events", "-P", str(port)],
                ["record", str(tmp_path / "x.raw"), "-P", str(port)]):
        line = one_error_line(runner().invoke(main, cmd))
        assert f"connection refused by 127.0.0.1:{port}" in line, line
        assert "Connect call failed" not in line


def test_binary_and_text_files_are_not_called_truncated(tmp_path: Path) -> None:
    binary = tmp_path / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a capture\nat all\n")
    empty = tmp_path / "empty.raw"
    empty.write_bytes(b"")
    for cmd in ("bench", "replay"):
        line = one_error_line(runner().invoke(main, [cmd, str(binary)]))
        assert "not an ESL capture" in line and "binary" in line and "truncated" not in line
        line = one_error_line(runner().invoke(main, [cmd, str(text)]))
        assert "not an ESL capture" in line and "truncated" not in line
        assert "is empty" in one_error_line(runner().invoke(main, [cmd, str(empty)]))
    cut = tmp_path / "cut.raw"
    data = small_capture(tmp_path / "whole.raw", 5)
    cut.write_bytes(data[:-7])  # a real capture cut short is still "truncated"
    assert "truncated" in one_error_line(runner().invoke(main, ["bench", str(cut)]))


# -- esl outbound run -----------------------------------------------------------------------------------


def test_app_type_errors_use_the_right_article(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notapp.py").write_text("x = 42\ny = 'text'\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    line = one_error_line(runner().invoke(main, ["outbound", "run", "notapp:x"]))
    assert "'notapp:x' is an int, not an esl.Outbound" in line
    line = one_error_line(runner().invoke(main, ["consumer", "run", "notapp:y"]))
    assert "'notapp:y' is a str, not an esl.Consumer" in line


PLAIN_APP = """
import esl

def handler(session):
    pass

class Handler:
    async def __call__(self, session):
        pass

app = esl.Outbound(handler, "127.0.0.1", 9000)
good = esl.Outbound(Handler(), "127.0.0.1", 9000)
"""


def test_outbound_run_refuses_a_plain_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plain_handler.py").write_text(PLAIN_APP)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    line = one_error_line(runner().invoke(main, ["outbound", "run", "plain_handler:handler"]))
    assert "is a plain function, not a coroutine function" in line
    assert "async def handler(session)" in line
    line = one_error_line(runner().invoke(main, ["outbound", "run", "plain_handler:app"]))
    assert "the handler of 'plain_handler:app' is a plain function" in line
    import plain_handler  # type: ignore[import-not-found]

    from esl.cli.apps import is_async_handler

    assert is_async_handler(plain_handler.Handler())
    assert not is_async_handler(plain_handler.handler)


# -- esl bench -----------------------------------------------------------------------------------


@pytest.fixture
def json_capture(fake: FakeFreeSWITCH, loop_thread: LoopThread, tmp_path: Path) -> Path:
    """A small capture recorded in json from the fake (channel events and heartbeats)."""
    async def fire() -> None:
        n = 0
        while True:
            n += 1
            await fake.fire(fake.make_event("CHANNEL_ANSWER", {**CHANNEL, "Unique-ID": f"{n:08d}-0000-4000-8000-"
                                                               "000000000001"}))
            await fake.fire(fake.make_event("HEARTBEAT", {"Event-Info": f"beat {n}"}))
            await asyncio.sleep(0.005)

    out = tmp_path / "mine-json.raw"
    firing = asyncio.run_coroutine_threadsafe(fire(), loop_thread.loop)
    try:
        result = runner().invoke(main, ["record", str(out), "-P", str(fake.port), "--format", "json",
                                        "--events", "60"])
    finally:
        firing.cancel()
    assert result.exit_code == 0, result.stderr
    assert captures.load(out).format == "json"
    return out


def test_bench_on_json_leaves_out_peers_that_cannot_decode_json(json_capture: Path) -> None:
    pytest.importorskip("genesis")
    result = runner().invoke(main, ["bench", str(json_capture), "--json", "--min-time", "0", "--e2e-events", "120",
                                    "--e2e-repeat", "1", "--compare", "genesis"])
    assert result.exit_code == 0, result.stderr
    assert "genesis does not decode json events" in result.stderr
    assert "failed" not in result.stderr
    report = json.loads(result.stdout)
    assert {r["subject"] for r in report["results"]} <= {"esl-cython", "esl-python"}
    assert all("genesis" not in r["vs"] for r in report["results"])
    table = runner().invoke(main, ["bench", str(json_capture), "--no-e2e", "--min-time", "0"])
    assert table.exit_code == 0, table.stderr
    assert "genesis" not in table.stdout and "greenswitch" not in table.stdout


def test_e2e_failures_always_say_something() -> None:
    assert describe_failure(asyncio.TimeoutError(), 3.0) == "timed out: the stream was not handled within 23 s"
    assert describe_failure(TimeoutError(), 1.0).startswith("timed out")
    assert describe_failure(ValueError("bad"), 1.0) == "ValueError: bad"
    assert not describe_failure(RuntimeError(), 1.0).endswith(": ")


def test_bench_caption_without_peers_speaks_of_none() -> None:
    result = runner().invoke(main, ["bench", "--events", "20", "--no-e2e", "--min-time", "0", "--compare", "none"])
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "peer" not in text and "genesis" not in text and "greenswitch" not in text
    if len(esl.core.backends()) == 2:
        assert "over the other core's on the same job" in text
    results = [bench.Result("parse", "esl-python", 10, 1.0, 100)]
    assert "Ratio" not in bench_report.caption(results, bench_report.machine())  # one subject: nothing to compare


def test_bench_json_bytes_and_load_average_are_what_was_measured() -> None:
    result = runner().invoke(main, ["bench", "--events", "25", "--no-e2e", "--min-time", "0", "--compare", "none",
                                    "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    cap = captures.load(None)
    first = Parser().feed(cap.event_bytes())[:25]
    expected = sum(len(ev.raw) for ev in first)
    assert report["capture"]["events"] == 25
    assert report["capture"]["bytes"] == expected
    assert report["capture"]["total_events"] == cap.events
    assert report["capture"]["total_bytes"] == len(cap.event_bytes())
    assert all(r["bytes"] == expected for r in report["results"])
    for key in ("load_average", "load_average_before"):
        load = report["machine"][key]
        assert isinstance(load, list) and len(load) == 3 and all(x >= 0 for x in load)


def test_bench_table_keeps_names_whole_at_80_columns() -> None:
    cap = captures.load(None)
    results = [
        bench.Result("parse", "esl-cython", 2_496_910, 1.0, 5_276_300_000),
        bench.Result("parse", "esl-python", 26_511, 1.0, 56_000_000),
        bench.Result("decode", "esl-cython", 692_070, 1.0, 1_462_400_000),
        bench.Result("decode", "genesis", 5_500, 1.0, 11_600_000),
        bench.Result("decode", "greenswitch", 19_050, 1.0, 40_300_000),
        bench.Result("route", "esl-cython", 2_273_502, 1.0, 4_804_200_000),
        bench.Result("e2e", "esl-cython", 164_003, 1.0, 346_600_000),
        bench.Result("e2e", "greenswitch", 5_453, 1.0, 11_500_000),
        bench.Result("e2e3", "esl-cython", 100_003, 1.0, 211_000_000),
    ]
    console = Console(width=80, record=True, highlight=False)
    console.print(bench_report.table(cap, results, bench_report.machine()))
    text = console.export_text()
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    for name in ("esl-cython", "esl-python", "genesis", "greenswitch", "parse + keys", "2,496,910", "454.0x",
                 "100,003", "0.61x"):
        assert name in text, name


def test_bench_chart_baseline_footnotes_and_machine() -> None:
    pytest.importorskip("matplotlib")
    results = [
        bench.Result("parse", "esl-cython", 1_000_000, 1.0, 1),
        bench.Result("decode", "esl-cython", 300_000, 1.0, 1),
        bench.Result("decode", "genesis", 5_000, 1.0, 1),
        bench.Result("route", "esl-cython", 900_000, 1.0, 1),
    ]
    mach = bench_report.machine()
    fig = bench_report.chart(results, "t", mach, "2026-11-30 05:00 UTC")
    try:
        (ax,) = fig.axes
        assert ax.get_ylim()[0] == 1  # bars start at 1 event/s, not at a figure picked from the data
        assert "bars from 1" in ax.get_ylabel()
        notes = "\n".join(t.get_text() for t in fig.texts)
        assert "genesis decode every header" in notes and "no parse + keys or routed away figure" in notes
        assert mach["cpu"] in notes and "2026-11-30 05:00 UTC" in notes and mach["python"] in notes
        # the parse group has one bar, centred on its tick: no blank slot kept for absent subjects
        bars = [p for p in ax.patches if abs(p.get_x() + p.get_width() / 2) < 0.5]
        assert len(bars) == 1 and abs(bars[0].get_x() + bars[0].get_width() / 2) < 1e-9
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


# -- esl record on every Python ----------------------------------------------------------------------------


def test_record_stops_cleanly_while_a_read_is_waiting(fake: FakeFreeSWITCH, tmp_path: Path) -> None:
    """Stopping with no data in flight cancels a pending read; exit's reply must still be read (3.12+)."""
    for i in range(5):
        out = tmp_path / f"quiet{i}.raw"
        result = runner().invoke(main, ["record", str(out), "-P", str(fake.port), "--duration", "0.05",
                                        "HEARTBEAT"])
        assert result.exit_code == 0, result.stderr
        assert "RuntimeError" not in result.stderr
        data = out.read_bytes()
        assert data.startswith(b"Content-Type: command/reply\nReply-Text: +OK")
        assert b"+OK bye" in data  # the exit reply was read after the stop
