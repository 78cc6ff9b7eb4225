"""JSON logs (fields, redaction) and ``esl serve`` run as a real process against the fake FreeSWITCH."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("prometheus_client")

import esl
import esl.serve
from esl.cli import main
from esl.serve.logs import JSONFormatter, redact, setup_logging
from esl.testing import FakeFreeSWITCH


def record(msg: str, *args: Any, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("esl.test", logging.WARNING, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_formatter_fields() -> None:
    fmt = JSONFormatter()
    line = fmt.format(record("call %s answered", "u-1", uuid="u-1", call_id="c-9", n=3))
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["message"] == "call u-1 answered" and obj["level"] == "warning" and obj["logger"] == "esl.test"
    assert obj["uuid"] == "u-1" and obj["call_id"] == "c-9" and obj["n"] == 3
    assert obj["time"].endswith("Z")
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    obj = json.loads(fmt.format(rec))
    assert "ValueError: boom" in obj["exc"]


@pytest.mark.parametrize(
    "text, secret",
    [
        ("auth ClueCon", "ClueCon"),
        ("sending: userauth 1000@default:s3cr3t-pw", "s3cr3t-pw"),
        ("connect password=hunter22 host=x", "hunter22"),
        ('{"token": "abcdefgh"}', "abcdefgh"),
        ("Authorization: Bearer eyJhbGciOi.xyz", "eyJhbGciOi.xyz"),
        ("header authorization=Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ],
)
def test_redaction_patterns(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out and "***" in out


def test_known_secrets_never_reach_the_output() -> None:
    stream = io.StringIO()
    handler = setup_logging("debug", json=True, secrets=["Sup3rSecret", "tok-123456"], stream=stream)
    try:
        log = logging.getLogger("esl.test.secrets")
        log.info("connected with Sup3rSecret to fs", extra={"detail": "token is tok-123456"})
        log.warning("odd %r", {"pw": "Sup3rSecret"})
    finally:
        logging.getLogger().removeHandler(handler)
    out = stream.getvalue()
    assert out.count("\n") == 2
    assert "Sup3rSecret" not in out and "tok-123456" not in out
    for line in out.splitlines():
        json.loads(line)


async def test_scenario_logs_carry_the_call_ids(freeswitch: FakeFreeSWITCH) -> None:
    stream = io.StringIO()
    handler = setup_logging("info", json=True, stream=stream)
    app = esl.serve.App(host=freeswitch.host, port=freeswitch.port, password=freeswitch.password, variable=None)

    @app.scenario("logs")
    async def logs(call: esl.Call, data: dict[str, Any]) -> None:
        logging.getLogger("myapp").info("in the scenario")

    try:
        await app.start()
        rec = app.start_call("logs", "user/1000")
        await asyncio.wait_for(rec.ended.wait(), 10)
        await app.stop()
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mine = [obj for obj in lines if obj["logger"] == "myapp"]
    assert len(mine) == 1
    assert mine[0]["call_id"] == rec.id and mine[0]["scenario"] == "logs"
    assert mine[0]["uuid"] == rec.legs()[0]["uuid"]
    ended = [obj for obj in lines if obj["logger"] == "esl.serve" and "ended" in obj["message"]]
    assert ended and ended[0]["call_id"] == rec.id and ended[0]["outcome"] == "completed"
    assert "ClueCon" not in stream.getvalue()


def test_serve_command_refuses_bad_setups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESL_SERVE_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "svc_bad.py").write_text(textwrap.dedent("""
        import esl.serve
        app = esl.serve.App()
        empty = esl.serve.App()
        not_app = 42

        @app.scenario("x")
        async def x(call, data):
            pass
    """))
    runner = CliRunner()
    r = runner.invoke(main, ["serve", "svc_bad:app", "--listen", "0.0.0.0:0"])
    assert r.exit_code == 1 and "without a bearer token" in r.output
    r = runner.invoke(main, ["serve", "svc_bad:not_app"])
    assert r.exit_code == 1 and "not an esl.serve.App" in r.output
    r = runner.invoke(main, ["serve", "svc_bad:empty"])
    assert r.exit_code == 1 and "no scenarios" in r.output
    r = runner.invoke(main, ["serve", "svc_bad:app", "--listen", "nowhere"])
    assert r.exit_code == 1 and "HOST:PORT" in r.output
    r = runner.invoke(main, ["serve", "svc_bad:app", "--metrics-port", "x:y"])
    assert r.exit_code == 2 and "PORT or HOST:PORT" in r.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_esl_serve_process_end_to_end(freeswitch: FakeFreeSWITCH, tmp_path: Path) -> None:
    """``esl serve`` as users run it: token file, --metrics-port, --log-json; SIGTERM stops it."""
    (tmp_path / "svc_e2e.py").write_text(textwrap.dedent("""
        import esl, esl.serve
        app = esl.serve.App(variable=None)

        @app.scenario("callback")
        async def callback(call: esl.Call, data: dict) -> dict:
            esl.serve.report("seen", value=data["value"])
            return {"doubled": data["value"] * 2}
    """))
    token = "e2e-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    http_port, metrics_port = free_port(), free_port()
    env = {**os.environ, "ESL_PASSWORD": freeswitch.password, "PYTHONPATH": str(tmp_path)}
    env.pop("ESL_SERVE_TOKEN", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "esl", "serve", "svc_e2e:app", "--listen", f"127.0.0.1:{http_port}",
        "--token-file", str(tmp_path / "token"), "--host", freeswitch.host, "--port", str(freeswitch.port),
        "--metrics-port", str(metrics_port), "--log-json", "--log-level", "debug",
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{http_port}"
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            for _ in range(300):
                try:
                    async with http.get(f"{base}/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                assert proc.returncode is None, await proc.stderr.read()  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
            async with http.post(f"{base}/scenarios/callback",
                                 json={"destination": "user/1000", "data": {"value": 21}}) as r:
                assert r.status == 202, await r.text()
                call_id = (await r.json())["id"]
            async with http.get(f"{base}/calls/{call_id}/events") as r:
                stream = await r.text()
            assert "event: report" in stream and "event: ended" in stream
            async with http.get(f"{base}/calls/{call_id}") as r:
                call = await r.json()
            assert call["outcome"] == "completed" and call["result"] == {"doubled": 42}
            async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                text = await r.text()
            assert 'esl_scenarios_ended_total{app="svc_e2e:app",outcome="completed",scenario="callback"} 1.0' in text
            assert "esl_events_received_total{" in text
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    log_lines = [line for line in err.decode().splitlines() if line.startswith("{")]
    assert log_lines, err.decode()
    records = [json.loads(line) for line in log_lines]
    ended = [r for r in records if r.get("call_id") == call_id and r.get("outcome") == "completed"]
    assert ended
    assert freeswitch.password not in err.decode() and token not in err.decode()


async def test_outbound_run_serves_metrics_and_json_logs(tmp_path: Path) -> None:
    """``esl outbound run --metrics-port --log-json``: the Outbound server's stats() are scraped."""
    (tmp_path / "ob_app.py").write_text(textwrap.dedent("""
        async def handler(session):
            await session.hangup()
    """))
    port, metrics_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "esl", "outbound", "run", "ob_app:handler", "--port", str(port),
        "--metrics-port", f"127.0.0.1:{metrics_port}", "--log-json",
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    text = ""
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                        text = await r.text()
                        break
                except aiohttp.ClientConnectionError:
                    assert proc.returncode is None
                    await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err.decode()
    assert f'esl_outbound_serving{{server="127.0.0.1:{port}"}} 1.0' in text
    assert f'esl_outbound_sessions_accepted_total{{server="127.0.0.1:{port}"}} 0.0' in text
    assert f'esl_events_received_total{{connection="127.0.0.1:{port}",kind="outbound"}} 0.0' in text


async def test_consumer_run_serves_metrics_and_masks_the_password(tmp_path: Path) -> None:
    """``esl consumer run --metrics-port --log-json``: its Inbound's counters are scraped, and the
    password (logged by the app here on purpose) never reaches the JSON log."""
    fake = FakeFreeSWITCH(password="Very-Secret-Pw")
    await fake.start()
    (tmp_path / "cons_app.py").write_text(textwrap.dedent(f"""
        import logging, esl
        app = esl.Consumer("{fake.host}", {fake.port}, "Very-Secret-Pw")

        @app.handle("HEARTBEAT")
        async def beat(event):
            logging.getLogger("cons").warning("beat; connected with password=Very-Secret-Pw")
    """))
    metrics_port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "esl", "consumer", "run", "cons_app:app", "--metrics-port", str(metrics_port),
        "--log-json", cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    text = ""
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if fake.connections and fake.connections[-1].subscriptions.enabled:
                    break
                assert proc.returncode is None
                await asyncio.sleep(0.05)
            for _ in range(3):
                await fake.fire(fake.make_event("HEARTBEAT"))
            for _ in range(300):
                try:
                    async with http.get(f"http://127.0.0.1:{metrics_port}/metrics") as r:
                        text = await r.text()
                    if f'esl_events_received_total{{connection="{fake.host}:{fake.port}",kind="inbound"}} 3.0' in text:
                        break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        await fake.stop()
    assert f'esl_events_received_total{{connection="{fake.host}:{fake.port}",kind="inbound"}} 3.0' in text
    assert f'esl_events_total{{connection="{fake.host}:{fake.port}",event="HEARTBEAT",kind="inbound"}} 3.0' in text
    logs = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(r["logger"] == "cons" for r in logs), err.decode()
    assert "Very-Secret-Pw" not in err.decode()
