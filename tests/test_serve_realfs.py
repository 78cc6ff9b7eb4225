"""esl serve against a real FreeSWITCH (opt-in: ``ESL_FREESWITCH=host:port pytest -m realfs``).

The switch needs extensions 9001 (answer, endless tone) and 9004 (answer, echo) in the default
context, as the project's test FreeSWITCH has; the password is ``ESL_PASSWORD`` or ClueCon.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")

import esl  # noqa: E402
import esl.serve  # noqa: E402

ADDR = os.environ.get("ESL_FREESWITCH", "")

pytestmark = [
    pytest.mark.realfs,
    pytest.mark.skipif(not ADDR, reason="set ESL_FREESWITCH=host:port to run against a real FreeSWITCH"),
]

TOKEN = "realfs-token"
HOSTILE = {"text": "a, b; {c} \"d\" 'e' [f] =g \\n ^^:x |", "nested": {"k": [1, {"x": "}"}]},
           "vars": "${uuid} $${x}", "u": "héllo ☃"}


@pytest.fixture
async def served() -> AsyncIterator[tuple[esl.serve.App, str]]:
    host, _, port = ADDR.rpartition(":")
    app = esl.serve.App(host=host, port=int(port), password=os.environ.get("ESL_PASSWORD", "ClueCon"),
                        max_duration=20)
    app.seen = {}  # type: ignore[attr-defined]

    @app.scenario("check")
    async def check(call: esl.Call, data: dict[str, Any], ctx: esl.serve.Context) -> Any:
        leg = call.first
        got = await leg.getvar("esl_data")  # uuid_getvar: what the switch holds
        app.seen[ctx.id] = (got, leg.variables.get("esl_data"))  # type: ignore[attr-defined]
        ctx.report("read", size=len(got or ""))
        return json.loads(got or "null")

    @app.scenario("hold")
    async def hold(call: esl.Call, data: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    async with esl.serve.Server(app, "127.0.0.1", 0, token=TOKEN) as server:
        yield app, f"http://127.0.0.1:{server.port}"


async def _ended(http: Any, base: str, call_id: str) -> dict[str, Any]:
    for _ in range(400):
        async with http.get(f"{base}/calls/{call_id}") as r:
            call = await r.json()
        if call["state"] == "ended":
            return call
        await asyncio.sleep(0.05)
    raise AssertionError(call)


async def test_real_call_runs_with_its_data(served: Any) -> None:
    app, base = served
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        async with http.post(f"{base}/scenarios/check",
                             json={"destination": "loopback/9004", "caller_id": "5551234", "data": HOSTILE}) as r:
            assert r.status == 202
            call_id = (await r.json())["id"]
        async with http.get(f"{base}/calls/{call_id}/events") as r:
            stream = await r.text()
        call = await _ended(http, base, call_id)
    assert call["outcome"] == "completed", call
    assert call["result"] == HOSTILE
    switch_value, event_value = app.seen[call_id]
    assert json.loads(switch_value) == HOSTILE and event_value == switch_value
    names = [line[7:] for line in stream.splitlines() if line.startswith("event: ")]
    assert names == ["placed", "connected", "report", "disconnected", "ended"]
    assert call["hangup_cause"] == "NORMAL_CLEARING"


async def test_real_delete_and_failure(served: Any) -> None:
    app, base = served
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        async with http.post(f"{base}/scenarios/hold", json={"destination": "loopback/9001"}) as r:
            held = (await r.json())["id"]
        for _ in range(200):
            async with http.get(f"{base}/calls/{held}") as r:
                if (await r.json())["state"] == "connected":
                    break
            await asyncio.sleep(0.05)
        async with http.delete(f"{base}/calls/{held}") as r:
            assert r.status == 200
        call = await _ended(http, base, held)
        assert call["outcome"] == "cancelled"
        uuid = call["legs"][0]["uuid"]
        reply = await app.connection.api(f"uuid_exists {uuid}", check=False)
        assert reply.strip() == "false"

        async with http.post(f"{base}/scenarios/check", json={"destination": "error/user_busy"}) as r:
            busy = (await r.json())["id"]
        call = await _ended(http, base, busy)
        assert call["outcome"] == "failed" and call["hangup_cause"] == "USER_BUSY"


async def test_real_metrics_match_stats(served: Any) -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    from esl.serve.metrics import start_metrics_server

    app, base = served
    registry = CollectorRegistry()
    exporter = await start_metrics_server(0, ("svc", app), registry=registry)
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
            async with http.post(f"{base}/scenarios/check", json={"destination": "loopback/9004",
                                                                  "data": {"n": 1}}) as r:
                call_id = (await r.json())["id"]
            await _ended(http, base, call_id)
            await asyncio.sleep(0.3)  # let the teardown events of both loopback legs arrive
            async with http.get(f"http://127.0.0.1:{exporter.port}/metrics") as r:
                text = await r.text()
        expected = app.connection.stats()
    finally:
        await exporter.stop()
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(text) for s in f.samples}
    conn = (("connection", f"{app.host}:{app.port}"), ("kind", "inbound"))
    assert got[("esl_events_received_total", conn)] == expected.events_received > 0
    for name in ("CHANNEL_ANSWER", "CHANNEL_HANGUP_COMPLETE", "BACKGROUND_JOB"):
        assert got[("esl_events_total", tuple(sorted((*conn, ("event", name)))))] == expected.events_by_name[name]
    bgapi = expected.command_latency["bgapi"]
    assert got[("esl_command_latency_seconds_count", tuple(sorted((*conn, ("command", "bgapi")))))] == bgapi.count
    assert got[("esl_scenarios_ended_total", (("app", "svc"), ("outcome", "completed"), ("scenario", "check")))] >= 1
