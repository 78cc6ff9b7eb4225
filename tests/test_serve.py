"""esl.serve: scenarios started over HTTP against the fake FreeSWITCH, with a real HTTP client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

aiohttp = pytest.importorskip("aiohttp")
httpx = pytest.importorskip("httpx")
httpx_sse = pytest.importorskip("httpx_sse")

import esl
import esl.serve
from esl.testing import FakeFreeSWITCH
from esl.testing.calls import Endpoint

TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_app(fake: FakeFreeSWITCH, **kwargs: Any) -> esl.serve.App:
    """An App with the scenarios the tests use."""
    kwargs.setdefault("variable", None)
    app = esl.serve.App(host=fake.host, port=fake.port, password=fake.password, **kwargs)
    app.seen = []  # type: ignore[attr-defined]

    @app.scenario("callback")
    async def callback(call: esl.Call, data: dict[str, Any], ctx: esl.serve.Context) -> Any:
        app.seen.append((ctx.id, data, call.first.uuid))  # type: ignore[attr-defined]
        ctx.report("greeted", text=data.get("text"))
        esl.serve.report("step", n=2)
        await asyncio.sleep(data.get("hold", 0.01))
        return {"echo": data}

    @app.scenario("wait")
    async def wait(call: esl.Call, data: dict[str, Any]) -> None:
        await asyncio.Event().wait()

    @app.scenario("broken")
    async def broken(call: esl.Call, data: dict[str, Any]) -> None:
        raise RuntimeError("scenario bug")

    @app.scenario("variables")
    async def variables(call: esl.Call, data: dict[str, Any]) -> Any:
        return call.first.variables.get("esl_data")

    return app


@pytest.fixture
async def served(freeswitch: FakeFreeSWITCH) -> AsyncIterator[tuple[esl.serve.Server, str]]:
    app = make_app(freeswitch)
    server = esl.serve.Server(app, "127.0.0.1", 0, token=TOKEN)
    await server.start()
    try:
        yield server, f"http://127.0.0.1:{server.port}"
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[Any]:
    async with aiohttp.ClientSession(headers=AUTH) as session:
        yield session


async def ended(http: Any, base: str, call_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """Poll GET /calls/{id} until the call has ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with http.get(f"{base}/calls/{call_id}") as r:
            assert r.status == 200
            body = await r.json()
        if body["state"] == "ended":
            return body
        assert loop.time() < deadline, body
        await asyncio.sleep(0.02)


async def test_scenario_runs_with_its_data(served: Any, http: Any) -> None:
    server, base = served
    data = {"text": "hello, \"world\" {1}", "n": [1, 2], "hold": 0.01}
    async with http.post(f"{base}/scenarios/callback",
                         json={"destination": "user/1000", "caller_id": "5551234", "data": data}) as r:
        assert r.status == 202
        body = await r.json()
        assert r.headers["Location"] == f"/calls/{body['id']}"
    assert body["state"] == "placing"
    call = await ended(http, base, body["id"])
    assert call["outcome"] == "completed"
    assert call["result"] == {"echo": data}
    assert call["hangup_cause"] == "NORMAL_CLEARING"
    assert call["error"] is None
    assert call["created_at"] <= call["placed_at"] <= call["answered_at"] <= call["ended_at"]
    assert len(call["legs"]) == 1 and call["legs"][0]["answered"] is True
    assert server.app.seen == [(body["id"], data, call["legs"][0]["uuid"])]
    async with http.get(f"{base}/calls") as r:
        listing = await r.json()
    assert listing["live"] == [] and [c["id"] for c in listing["ended"]] == [body["id"]]


async def test_events_stream_to_an_sse_client(served: Any) -> None:
    _, base = served
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=10) as client:
        r = await client.post("/scenarios/callback", json={"destination": "user/1000", "data": {"text": "hi",
                                                                                               "hold": 0.2}})
        assert r.status_code == 202
        call_id = r.json()["id"]
        seen: list[tuple[str, dict[str, Any], str]] = []
        async with httpx_sse.aconnect_sse(client, "GET", f"/calls/{call_id}/events") as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            async for sse in source.aiter_sse():
                seen.append((sse.event, sse.json(), sse.id))
        names = [name for name, _, _ in seen]
        assert names == ["placed", "connected", "report", "report", "disconnected", "ended"]
        assert seen[2][1]["name"] == "greeted" and seen[2][1]["data"] == {"text": "hi"}
        assert seen[3][1]["name"] == "step" and seen[3][1]["data"] == {"n": 2}
        assert seen[4][1]["cause"] == "NORMAL_CLEARING"
        assert seen[5][1]["outcome"] == "completed"
        assert all(payload["call_id"] == call_id for _, payload, _ in seen)
        assert [int(i) for _, _, i in seen] == list(range(1, 7))
        # a client that reconnects with Last-Event-ID gets only what it missed
        async with httpx_sse.aconnect_sse(client, "GET", f"/calls/{call_id}/events",
                                          headers={"Last-Event-ID": "4"}) as source:
            rest = [sse.event async for sse in source.aiter_sse()]
        assert rest == ["disconnected", "ended"]


async def test_delete_hangs_up_every_leg(served: Any, http: Any, freeswitch: FakeFreeSWITCH) -> None:
    server, base = served
    async with http.post(f"{base}/scenarios/wait", json={"destination": "user/1000"}) as r:
        call_id = (await r.json())["id"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        async with http.get(f"{base}/calls/{call_id}") as r:
            call = await r.json()
        if call["state"] == "connected":
            break
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    uuid = call["legs"][0]["uuid"]
    assert uuid in freeswitch.channels
    async with http.delete(f"{base}/calls/{call_id}") as r:
        assert r.status == 200
    call = await ended(http, base, call_id)
    assert call["outcome"] == "cancelled"
    assert call["hangup_cause"] == "NORMAL_CLEARING"
    assert call["legs"][0]["state"] in ("HANGUP", "REPORTING", "DESTROY")
    for _ in range(100):
        if uuid not in freeswitch.channels:
            break
        await asyncio.sleep(0.02)
    assert uuid not in freeswitch.channels
    async with http.delete(f"{base}/calls/{call_id}") as r:  # an ended call: nothing left to do
        assert r.status == 200 and (await r.json())["outcome"] == "cancelled"
    async with http.delete(f"{base}/calls/no-such-call") as r:
        assert r.status == 404 and "no such call" in (await r.json())["error"]


async def test_failed_call_reports_its_cause(served: Any, http: Any, freeswitch: FakeFreeSWITCH) -> None:
    server, base = served
    freeswitch.endpoints["user/busy"] = Endpoint(fail="USER_BUSY", answer_after=0.01)
    async with http.post(f"{base}/scenarios/callback", json={"destination": "user/busy"}) as r:
        call_id = (await r.json())["id"]
    call = await ended(http, base, call_id)
    assert call["outcome"] == "failed" and call["hangup_cause"] == "USER_BUSY"
    assert server.app.seen == []  # the scenario never ran
    async with http.get(f"{base}/calls/{call_id}/events") as r:
        text = await r.text()
    assert "event: failed" in text and '"cause": "USER_BUSY"' in text and "event: connected" not in text


async def test_scenario_error_and_timeout(freeswitch: FakeFreeSWITCH, http: Any) -> None:
    app = make_app(freeswitch, max_duration=0.2)
    async with esl.serve.Server(app, "127.0.0.1", 0, token=TOKEN) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with http.post(f"{base}/scenarios/broken", json={"destination": "user/1000"}) as r:
            broken = (await r.json())["id"]
        async with http.post(f"{base}/scenarios/wait", json={"destination": "user/1000"}) as r:
            slow = (await r.json())["id"]
        call = await ended(http, base, broken)
        assert call["outcome"] == "error" and call["error"] == "RuntimeError: scenario bug"
        assert call["legs"][0]["hangup_cause"] == "NORMAL_CLEARING"  # hung up for it
        call = await ended(http, base, slow)
        assert call["outcome"] == "timeout" and "max_duration" in call["error"]


async def test_auth_is_required_and_checked(served: Any) -> None:
    _, base = served
    async with aiohttp.ClientSession() as anon:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"},
                        {"Authorization": "Bearer "}, {"Authorization": f"Bearer {TOKEN}x"}):
            async with anon.post(f"{base}/scenarios/callback", json={"destination": "user/1000"},
                                 headers=headers) as r:
                assert r.status == 401, headers
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
                assert "token" in (await r.json())["error"]
            async with anon.get(f"{base}/calls", headers=headers) as r:
                assert r.status == 401
        async with anon.get(f"{base}/healthz") as r:  # health needs no token
            assert r.status == 200 and (await r.json()) == {"status": "ok"}
        async with anon.get(f"{base}/readyz") as r:
            assert r.status == 200


@pytest.mark.parametrize(
    "body, status, message",
    [
        (b"{not json", 400, "not valid JSON"),
        (json.dumps([1, 2]).encode(), 422, "JSON object"),
        (json.dumps({}).encode(), 422, "destination"),
        (json.dumps({"destination": ""}).encode(), 422, "destination"),
        (json.dumps({"destination": "user/1000 &bridge(x)"}).encode(), 422, "spaces"),
        (json.dumps({"destination": "user/1000\r\napi x"}).encode(), 422, "spaces"),
        (json.dumps({"destination": "user/1000", "data": [1]}).encode(), 422, "'data'"),
        (json.dumps({"destination": "user/1000", "app": "&system(rm)"}).encode(), 422, "unknown field"),
        (json.dumps({"destination": "user/1000", "timeout": "soon"}).encode(), 422, "timeout"),
        (json.dumps({"destination": "user/1000", "timeout": True}).encode(), 422, "timeout"),
        (json.dumps({"destination": "user/1000", "caller_id": "x" * 81}).encode(), 422, "caller id"),
        (json.dumps({"destination": "user/1000", "caller_id": {"number": "1", "x": 2}}).encode(), 422,
         "caller_id"),
        (json.dumps({"destination": "user/1000", "data": {"big": "x" * 70_000}}).encode(), 413, "larger"),
        (b'{"destination": "user/1000", "data": {"a": ' + b"[" * 30_000 + b"]" * 30_000 + b"}}", 400, "deeply"),
        ("{\"destination\": \"user/1000\", \"data\": {\"a\": \"\udcff\"}}".encode("utf-8", "surrogatepass"), 400,
         "not valid JSON"),
    ],
)
async def test_bad_bodies_are_refused(served: Any, http: Any, body: bytes, status: int, message: str) -> None:
    server, base = served
    async with http.post(f"{base}/scenarios/callback", data=body,
                         headers={"Content-Type": "application/json"}) as r:
        assert r.status == status
        assert message in (await r.json())["error"]
    assert server.app.calls == {} and not server.app.finished


async def test_wrong_route_type_or_method(served: Any, http: Any) -> None:
    _, base = served
    async with http.post(f"{base}/scenarios/nope", json={"destination": "user/1000"}) as r:
        assert r.status == 404 and "no scenario named 'nope'" in (await r.json())["error"]
    async with http.post(f"{base}/scenarios/callback", data="destination=user/1000",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as r:
        assert r.status == 415
    async with http.put(f"{base}/calls/x") as r:
        assert r.status == 405 and "error" in await r.json()
    async with http.get(f"{base}/calls/unknown/events") as r:
        assert r.status == 404


def test_no_token_refuses_a_public_address() -> None:
    app = esl.serve.App()
    with pytest.raises(ValueError, match="without a bearer token"):
        esl.serve.Server(app, "0.0.0.0", 0)
    with pytest.raises(ValueError, match="without a bearer token"):
        esl.serve.Server(app, "192.0.2.10", 0)
    for host in ("127.0.0.1", "::1", "localhost", "127.1.2.3"):
        esl.serve.Server(app, host, 0)
    esl.serve.Server(app, "0.0.0.0", 0, token="x" * 32)
    with pytest.raises(ValueError):
        esl.serve.Server(app, "0.0.0.0", 0, token="")


def test_load_token(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESL_SERVE_TOKEN", raising=False)
    assert esl.serve.load_token() is None
    monkeypatch.setenv("ESL_SERVE_TOKEN", " abc ")
    assert esl.serve.load_token() == "abc"
    path = tmp_path / "token"
    path.write_text("from-file\nsecond line\n")
    assert esl.serve.load_token(str(path)) == "from-file"
    path.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        esl.serve.load_token(str(path))
    monkeypatch.setenv("ESL_SERVE_TOKEN", "  ")
    with pytest.raises(ValueError, match="empty"):
        esl.serve.load_token()


async def test_not_connected_is_503_and_not_ready(freeswitch: FakeFreeSWITCH, http: Any) -> None:
    app = make_app(freeswitch)
    async with esl.serve.Server(app, "127.0.0.1", 0, token=TOKEN) as server:
        base = f"http://127.0.0.1:{server.port}"
        await freeswitch.stop()
        for _ in range(100):
            if not app.ready:
                break
            await asyncio.sleep(0.02)
        async with http.get(f"{base}/readyz") as r:
            assert r.status == 503
        async with http.get(f"{base}/healthz") as r:
            assert r.status == 200
        async with http.post(f"{base}/scenarios/callback", json={"destination": "user/1000"}) as r:
            assert r.status == 503 and "not connected" in (await r.json())["error"]
        assert app.stats().refused == {"not_ready": 1}


async def test_500_scenarios_at_once_are_all_accounted_for(freeswitch: FakeFreeSWITCH, http: Any) -> None:
    freeswitch.endpoints["user/busy"] = Endpoint(fail="USER_BUSY", answer_after=0.01)
    app = make_app(freeswitch, max_concurrent=300, max_finished=1000)
    async with esl.serve.Server(app, "127.0.0.1", 0, token=TOKEN) as server:
        base = f"http://127.0.0.1:{server.port}"
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(headers=AUTH, connector=conn) as many:

            async def start(i: int) -> tuple[int, dict[str, Any]]:
                dest = "user/busy" if i % 5 == 0 else "user/1000"
                async with many.post(f"{base}/scenarios/callback",
                                     json={"destination": dest, "data": {"i": i, "hold": 0.3}}) as r:
                    return r.status, await r.json()

            replies = await asyncio.gather(*(start(i) for i in range(500)))
        statuses = [s for s, _ in replies]
        assert set(statuses) <= {202, 429}
        accepted = [body["id"] for s, body in replies if s == 202]
        refused = statuses.count(429)
        assert len(accepted) + refused == 500
        assert 0 < refused and len(accepted) <= 300
        outcomes: dict[str, int] = {}
        causes: set[str | None] = set()
        for call_id in accepted:
            call = await ended(http, base, call_id, timeout=30)
            outcomes[call["outcome"]] = outcomes.get(call["outcome"], 0) + 1
            if call["outcome"] == "failed":
                causes.add(call["hangup_cause"])
        assert set(outcomes) <= {"completed", "failed"}, outcomes
        assert sum(outcomes.values()) == len(accepted)
        assert causes <= {"USER_BUSY"}
        stats = app.stats()
        assert stats.live == 0 and stats.refused == {"limit": refused}
        assert sum(stats.outcomes.values()) == len(accepted) == stats.started["callback"]
        assert len(app.seen) == outcomes.get("completed", 0)  # type: ignore[attr-defined]
    assert not freeswitch.channels or all(ch.down for ch in freeswitch.channels.values())


async def test_finished_calls_are_bounded_and_expire(freeswitch: FakeFreeSWITCH, http: Any) -> None:
    app = make_app(freeswitch, max_finished=3, finished_ttl=0.5)
    async with esl.serve.Server(app, "127.0.0.1", 0, token=TOKEN) as server:
        base = f"http://127.0.0.1:{server.port}"
        ids = []
        for i in range(6):
            async with http.post(f"{base}/scenarios/callback", json={"destination": "user/1000"}) as r:
                ids.append((await r.json())["id"])
            await ended(http, base, ids[-1])
        async with http.get(f"{base}/calls") as r:
            listing = await r.json()
        assert [c["id"] for c in listing["ended"]] == ids[:2:-1]  # newest first, 3 kept
        assert listing["ended_kept"] == 3
        async with http.get(f"{base}/calls?limit=1") as r:
            assert [c["id"] for c in (await r.json())["ended"]] == [ids[-1]]
        async with http.get(f"{base}/calls?limit=-1") as r:
            assert r.status == 422
        async with http.get(f"{base}/calls/{ids[0]}") as r:
            assert r.status == 404
        await asyncio.sleep(0.6)
        async with http.get(f"{base}/calls") as r:
            assert (await r.json())["ended"] == []
        assert len(app.finished) == 0 and app.stats().finished_kept == 0
        # the scenario's record drops its Channel (and its event history) once ended
        assert all(rec.channel is None for rec in app.finished.values())


ORDINARY = {"customer": "Ann Lee", "amount": 12.5, "items": [1, {"sku": "a,b"}], "note": "it's", "u": "é ☎"}
HOSTILE = {"text": "a, b; {c} \"d\" 'e' [f] =g \\n ^^:x", "nested": {"k": [1, 2, {"x": "}"}]},
           "vars": "${uuid} $${x} $"}


@pytest.mark.parametrize("data", [
    pytest.param(ORDINARY, id="ordinary"),
    pytest.param(HOSTILE, id="hostile"),  # commas, quotes, braces, backslashes: escaped by Channel.create
])
async def test_custom_data_reaches_the_channel_variables(freeswitch: FakeFreeSWITCH, http: Any,
                                                         data: dict[str, Any]) -> None:
    app = make_app(freeswitch, variable="esl_data")
    async with esl.serve.Server(app, "127.0.0.1", 0, token=TOKEN) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with http.post(f"{base}/scenarios/variables", json={"destination": "user/1000", "data": data}) as r:
            call_id = (await r.json())["id"]
        call = await ended(http, base, call_id, timeout=3)
        assert call["outcome"] == "completed", call
        # what FreeSWITCH holds as the channel variable (the fake parses originate as FreeSWITCH does)
        assert json.loads(call["result"]) == data


async def test_delete_while_ringing_and_stop_with_live_calls(freeswitch: FakeFreeSWITCH, http: Any) -> None:
    freeswitch.endpoints["user/slow"] = Endpoint(answer_after=None, ring_timeout=30)
    app = make_app(freeswitch)
    server = await esl.serve.Server(app, "127.0.0.1", 0, token=TOKEN).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        async with http.post(f"{base}/scenarios/callback", json={"destination": "user/slow"}) as r:
            ringing = (await r.json())["id"]
        async with http.post(f"{base}/scenarios/wait", json={"destination": "user/1000"}) as r:
            running = (await r.json())["id"]
        for _ in range(250):
            states = {app.calls[i].state for i in (ringing, running) if i in app.calls}
            if states == {"ringing", "connected"}:
                break
            await asyncio.sleep(0.02)
        assert app.calls[ringing].state == "ringing" and app.calls[running].state == "connected"
        async with http.delete(f"{base}/calls/{ringing}") as r:
            assert r.status == 200
        call = await ended(http, base, ringing)
        assert call["outcome"] == "cancelled" and call["answered_at"] is None
        assert app.seen == []  # type: ignore[attr-defined]
        live = app.calls[running]
        uuid = live.legs()[0]["uuid"]
    finally:
        await server.stop()  # shutdown: the running scenario is cancelled and its call hung up
    assert live.outcome == "cancelled" and live.hangup_cause == "NORMAL_CLEARING"
    assert uuid not in freeswitch.channels or freeswitch.channels[uuid].down
    assert app.calls == {}


async def test_event_log_per_call_is_bounded(freeswitch: FakeFreeSWITCH) -> None:
    app = esl.serve.App(host=freeswitch.host, port=freeswitch.port, password=freeswitch.password,
                        variable=None, max_events=10)

    @app.scenario("chatty")
    async def chatty(call: esl.Call, data: dict[str, Any], ctx: esl.serve.Context) -> None:
        for i in range(1000):
            ctx.report("tick", i=i)
        with pytest.raises(ValueError):
            ctx.report("bad\nname")

    await app.start()
    try:
        rec = app.start_call("chatty", "user/1000")
        await asyncio.wait_for(rec.ended.wait(), 10)
    finally:
        await app.stop()
    entries = rec.events_after(0)
    assert len(entries) == 10 and entries[-1][1] == "ended"
    assert [e[0] for e in entries] == list(range(entries[0][0], entries[0][0] + 10))  # newest kept, in order
    with pytest.raises(LookupError):
        esl.serve.report("outside a scenario")


async def test_example_callback_service() -> None:
    """examples/callback_service.py: customer answers, presses 1, the agent is bridged; ending the
    scenario hangs up both legs of the call."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "callback_service.py"
    spec = importlib.util.spec_from_file_location("esl_example_callback_service", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names, call = await asyncio.wait_for(module.demo(), 20)
    assert names == ["placed", "connected", "report", "report", "report", "report", "disconnected", "ended"]
    assert call["outcome"] == "completed" and call["result"]["connected"] is True
    assert len(call["legs"]) == 2 and call["legs"][1]["uuid"] == call["result"]["agent"]
    assert all(leg["state"] in ("HANGUP", "REPORTING", "DESTROY") for leg in call["legs"])


async def test_destination_policy_stream_limit_and_heartbeat(freeswitch: FakeFreeSWITCH, http: Any) -> None:
    app = make_app(freeswitch)
    server = esl.serve.Server(app, "127.0.0.1", 0, token=TOKEN, destinations=r"user/\d+", max_streams=1,
                              heartbeat=0.05)
    async with server:
        base = f"http://127.0.0.1:{server.port}"
        async with http.post(f"{base}/scenarios/wait", json={"destination": "sofia/gateway/x/1"}) as r:
            assert r.status == 422 and "not allowed" in (await r.json())["error"]
        async with http.post(f"{base}/scenarios/wait", json={"destination": "user/1000"}) as r:
            call_id = (await r.json())["id"]
        async with http.get(f"{base}/calls/{call_id}/events") as stream:
            seen = b""
            while b": keep-alive" not in seen:  # an idle stream gets comments, so proxies keep it open
                seen += await asyncio.wait_for(stream.content.readany(), 5)
            async with http.get(f"{base}/calls/{call_id}/events") as second:
                assert second.status == 429  # max_streams=1
            async with http.delete(f"{base}/calls/{call_id}") as r:
                assert r.status == 200
            rest = await asyncio.wait_for(stream.read(), 5)  # the stream ends with the call
        assert b"event: ended" in rest and b'"outcome": "cancelled"' in rest
        async with http.get(f"{base}/calls/{call_id}/events") as again:  # a finished call: backlog, then EOF
            assert again.status == 200 and b"event: ended" in await again.read()
