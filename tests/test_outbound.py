"""Outbound server + Session against the fake FreeSWITCH's call side.

FreeSWITCH (the fake) runs a dialplan whose ``socket`` application connects to
the app's Outbound server; these tests check the handshake on the wire, the
handler lifecycle, failures (handler raising, hangup during a blocking
playback, the socket closing during a wait, timeouts) and 1,000 concurrent
sessions on one loop.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

import pytest

import esl
from esl.exceptions import ChannelError, ConnectionError, TimeoutError
from esl.testing import FakeFreeSWITCH

Handler = Callable[[esl.Session], Awaitable[Any]]


def _socket_app(fake: FakeFreeSWITCH, app: esl.Outbound, ext: str = "app", mode: str = "async full") -> str:
    fake.dialplan[ext] = [("socket", f"127.0.0.1:{app.port} {mode}".strip())]
    return ext


def _outbound_conn(fake: FakeFreeSWITCH, uuid: str) -> Any:
    return next(c for c in fake.connections if getattr(c, "outbound", False) and c.session.uuid == uuid)


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.002)
    await asyncio.wait_for(poll(), timeout)


async def test_handshake_subscription_linger_exit(freeswitch: FakeFreeSWITCH) -> None:
    seen: dict[str, Any] = {}

    async def handler(session: esl.Session) -> None:
        seen["uuid"] = session.uuid
        seen["caller"] = session.context["Caller-Caller-ID-Number"]
        seen["channel"] = session.channel
        seen["state"] = session.channel.state
        conn = _outbound_conn(freeswitch, session.uuid)
        seen["conn"] = conn
        seen["commands"] = list(conn.commands)
        await session.channel.answer()

    async with esl.Outbound(handler, "127.0.0.1", 0, linger=3) as app:
        call = await freeswitch.call(_socket_app(freeswitch, app), caller_id_number="1234")
        await call.wait_hangup(5)
        await _until(lambda: not app.sessions)
    uuid = seen["uuid"]
    assert uuid == call.uuid and seen["caller"] == "1234"
    assert seen["channel"].uuid == uuid and seen["state"] >= esl.ChannelState.EXECUTE
    assert seen["commands"] == [
        "connect", f"filter Unique-ID {uuid}", f"filter Job-Owner-UUID {uuid}", "event plain ALL", "linger 3",
    ]
    conn = seen["conn"]
    assert conn.commands[-1] == "exit"
    assert not any(c == "linger" for c in conn.commands)
    assert app.handled == 1 and app.errors == 0


async def test_port_settable_only_before_start(freeswitch: FakeFreeSWITCH) -> None:
    async def handler(session: esl.Session) -> None:
        await session.hangup()

    app = esl.Outbound(handler, "127.0.0.1", 9000)
    app.port = 0
    with pytest.raises(ValueError):
        app.port = 70000
    await app.start(block=False)
    try:
        assert app.port != 0  # the real port picked for port=0
        with pytest.raises(RuntimeError):
            app.port = 9001
    finally:
        await app.stop()


async def test_handler_that_raises_is_logged_and_call_hung_up(freeswitch: FakeFreeSWITCH,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    async def handler(session: esl.Session) -> None:
        await session.channel.answer()
        raise RuntimeError("bug in the IVR")

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        with caplog.at_level(logging.ERROR, logger="esl.outbound"):
            call = await freeswitch.call(_socket_app(freeswitch, app))
            await call.wait_hangup(5)
            await _until(lambda: not app.sessions)
    assert call.hangup_cause == "NORMAL_TEMPORARY_FAILURE"
    assert app.errors == 1
    assert any(call.uuid in r.getMessage() and r.exc_info for r in caplog.records)


async def test_hangup_during_blocking_playback_raises_channel_error(freeswitch: FakeFreeSWITCH) -> None:
    result: list[BaseException] = []
    started = asyncio.Event()

    async def handler(session: esl.Session) -> None:
        await session.channel.answer()
        session.channel.on("PLAYBACK_START", lambda e: started.set())
        try:
            await session.channel.playback("ivr/very-long-prompt.wav", timeout=30)
        except ChannelError as exc:
            result.append(exc)
            raise

    freeswitch.timings.media["ivr/very-long-prompt.wav"] = 30.0
    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        call = await freeswitch.call(_socket_app(freeswitch, app))
        await asyncio.wait_for(started.wait(), 5)
        await call.hangup("NORMAL_CLEARING")
        await _until(lambda: bool(result) and not app.sessions)
    assert isinstance(result[0], ChannelError) and result[0].cause == "NORMAL_CLEARING"
    assert app.errors == 0  # a caller hanging up is not a handler bug


async def test_socket_closing_during_wait_raises_connection_error(freeswitch: FakeFreeSWITCH) -> None:
    result: list[BaseException] = []
    waiting = asyncio.Event()

    async def handler(session: esl.Session) -> None:
        await session.channel.answer()
        waiter = asyncio.ensure_future(session.channel.wait("DTMF", timeout=30))
        await asyncio.sleep(0)
        waiting.set()
        try:
            await waiter
        except ConnectionError as exc:
            result.append(exc)

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        call = await freeswitch.call(_socket_app(freeswitch, app))
        await asyncio.wait_for(waiting.wait(), 5)
        _outbound_conn(freeswitch, call.uuid).abort()
        await _until(lambda: bool(result) and not app.sessions)
    assert isinstance(result[0], ConnectionError)


async def test_wait_timeout_and_dtmf(freeswitch: FakeFreeSWITCH) -> None:
    outcome: list[Any] = []

    async def handler(session: esl.Session) -> None:
        ch = session.channel
        await ch.answer()
        try:
            await ch.wait("DTMF", timeout=0.05)
        except TimeoutError:
            outcome.append("timeout")
        event = await ch.wait("DTMF", timeout=5)
        outcome.append(event["DTMF-Digit"])

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        call = await freeswitch.call(_socket_app(freeswitch, app))
        await _until(lambda: outcome == ["timeout"])
        await call.send_dtmf("7")
        await _until(lambda: len(outcome) == 2 and not app.sessions)
    assert outcome == ["timeout", "7"]


async def test_single_channel_static_socket_warns(freeswitch: FakeFreeSWITCH, caplog: pytest.LogCaptureFixture) -> None:
    done = asyncio.Event()

    seen_conn: list[Any] = []

    async def handler(session: esl.Session) -> None:
        assert session.control == "single-channel" and session.socket_mode == "static"
        seen_conn.append(_outbound_conn(freeswitch, session.uuid))
        done.set()

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        with caplog.at_level(logging.WARNING, logger="esl.session"):
            await freeswitch.call(_socket_app(freeswitch, app, mode=""))
            await asyncio.wait_for(done.wait(), 5)
            await _until(lambda: not app.sessions)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "single-channel" in text and "static" in text
    conn = seen_conn[0]
    assert "linger 10" not in conn.commands and "event plain ALL" not in conn.commands


async def test_linger_notice_means_channel_gone_socket_open(freeswitch: FakeFreeSWITCH) -> None:
    states: list[Any] = []

    async def handler(session: esl.Session) -> None:
        await session.channel.answer()
        await session.channel.wait(esl.ChannelState.HANGUP, timeout=5)
        states.append(session.connected)
        event = await session.channel.wait("CHANNEL_HANGUP_COMPLETE", timeout=5) if not any(
            e.name == "CHANNEL_HANGUP_COMPLETE" for e in session.channel.events) else None
        states.append(session.channel.hangup_cause)
        states.append(event is None or event.name == "CHANNEL_HANGUP_COMPLETE")
        await _until(lambda: session.lingering)  # the linger notice came; the socket is still open
        states.append(session.connected)

    async with esl.Outbound(handler, "127.0.0.1", 0, linger=5) as app:
        call = await freeswitch.call(_socket_app(freeswitch, app))
        await _until(lambda: call.answered)
        await call.hangup("USER_BUSY")
        await _until(lambda: len(states) == 4 and not app.sessions)
    assert states == [True, esl.HangupCause.USER_BUSY, True, True]


async def test_stop_cancels_running_handlers(freeswitch: FakeFreeSWITCH) -> None:
    cancelled = asyncio.Event()
    running = asyncio.Event()

    async def handler(session: esl.Session) -> None:
        running.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    app = esl.Outbound(handler, "127.0.0.1", 0)
    await app.start(block=False)
    call = await freeswitch.call(_socket_app(freeswitch, app))
    await asyncio.wait_for(running.wait(), 5)
    await app.stop()
    assert cancelled.is_set() and not app.serving
    await call.wait_hangup(5)  # exit was sent: FreeSWITCH hangs the call up


async def test_start_block_serves_until_cancelled(freeswitch: FakeFreeSWITCH) -> None:
    handled = asyncio.Event()

    async def handler(session: esl.Session) -> None:
        handled.set()

    app = esl.Outbound(handler, "127.0.0.1", 0)
    server = asyncio.ensure_future(app.start())
    await _until(lambda: app.serving)
    await freeswitch.call(_socket_app(freeswitch, app))
    await asyncio.wait_for(handled.wait(), 5)
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server
    assert not app.serving


async def test_thousand_concurrent_sessions_on_one_loop(freeswitch: FakeFreeSWITCH) -> None:
    n = 1000
    finished: list[str] = []

    async def handler(session: esl.Session) -> None:
        ch = session.channel
        await ch.answer()
        await ch.hangup()
        finished.append(session.uuid)

    # 1,000 sockets at once overflow the accept queue: the default Timings.connect_timeout outlasts
    # the SYN retransmits that follow
    assert freeswitch.timings.connect_timeout >= 15
    async with esl.Outbound(handler, "127.0.0.1", 0, linger=False) as app:
        ext = _socket_app(freeswitch, app)
        calls = await asyncio.gather(*(freeswitch.call(ext) for _ in range(n)))
        await asyncio.gather(*(c.wait_hangup(60) for c in calls))
        await _until(lambda: not app.sessions, 60)
    assert len(set(finished)) == n, (app.handled, app.errors, app.setup_failures, {c.hangup_cause for c in calls})
    assert app.handled == n and app.errors == 0 and app.setup_failures == 0


async def test_events_list_and_no_linger(freeswitch: FakeFreeSWITCH) -> None:
    seen: dict[str, Any] = {}

    async def handler(session: esl.Session) -> None:
        seen["conn"] = _outbound_conn(freeswitch, session.uuid)
        seen["same"] = esl.Channel.from_session(session) is session.channel
        await session.channel.answer()
        seen["answer"] = await session.channel.wait("CHANNEL_ANSWER", timeout=5)

    async with esl.Outbound(handler, "127.0.0.1", 0, events=["CHANNEL_ANSWER", "DTMF"], linger=False) as app:
        call = await freeswitch.call(_socket_app(freeswitch, app))
        await call.wait_hangup(5)
        await _until(lambda: not app.sessions)
    uuid = call.uuid
    assert seen["conn"].commands[:4] == [
        "connect", f"filter Unique-ID {uuid}", f"filter Job-Owner-UUID {uuid}",
        "event plain CHANNEL_ANSWER DTMF CHANNEL_EXECUTE_COMPLETE CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_HANGUP"
        " CHANNEL_HANGUP_COMPLETE CHANNEL_DESTROY BACKGROUND_JOB",
    ]
    assert not any(c.startswith("linger") for c in seen["conn"].commands)
    assert seen["same"] and seen["answer"].name == "CHANNEL_ANSWER"


def test_outbound_arguments_validated() -> None:
    async def handler(session: esl.Session) -> None:
        return None

    with pytest.raises(ValueError):
        esl.Outbound(handler, linger=-1)
    with pytest.raises(ValueError):
        esl.Outbound(handler, error_cause="NOT_A_CAUSE")
    with pytest.raises(TypeError):
        esl.Outbound("not callable")  # type: ignore[arg-type]
    assert esl.Outbound(handler, linger=True).linger == 10
    assert esl.Outbound(handler, linger=False).linger is None


async def test_break_all_without_full_control_flushes(freeswitch: FakeFreeSWITCH) -> None:
    """mod_dptools.c break_function flushes queued messages only for an argument
    that is present and not "all"; break_media(all=True) must not send "break all"."""
    seen: dict[str, Any] = {}

    async def handler(session: esl.Session) -> None:
        assert not session.full_control
        done = asyncio.ensure_future(session.channel.wait("CHANNEL_EXECUTE_COMPLETE", timeout=5))
        await session.channel.break_media(all=True)
        seen["event"] = await done

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        call = await freeswitch.call(_socket_app(freeswitch, app, mode="async"))
        await _until(lambda: "event" in seen)
        flushed = call.variables.get("esl_fake_break_flushed")
        await _until(lambda: not app.sessions)
    assert seen["event"]["Application"] == "break"
    assert seen["event"]["Application-Data"] != "all"
    assert flushed == "true"
