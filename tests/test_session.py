"""Session: sendmsg (blocking and not), bodies for long arguments, api/bgapi on the socket,
placing further calls from a session (forwarding)."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest

import esl
from esl.testing import Endpoint, FakeFreeSWITCH


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.002)
    await asyncio.wait_for(poll(), timeout)


async def _run(fake: FakeFreeSWITCH, handler: Callable[[esl.Session], Any], **kw: Any) -> Any:
    async with esl.Outbound(handler, "127.0.0.1", 0, **kw) as app:
        fake.dialplan["app"] = [("socket", f"127.0.0.1:{app.port} async full")]
        call = await fake.call("app", caller_id_number="1000")
        await call.wait_hangup(10)
        await _until(lambda: not app.sessions)
    return call


def _conn(fake: FakeFreeSWITCH, uuid: str) -> Any:
    return next(c for c in fake.connections if getattr(c, "outbound", False) and c.session.uuid == uuid)


async def test_sendmsg_blocking_waits_for_matching_completion(freeswitch: FakeFreeSWITCH) -> None:
    got: dict[str, Any] = {}

    async def handler(session: esl.Session) -> None:
        await session.sendmsg("execute", "answer", block=True)
        got["answered"] = session.channel.answered
        done = await session.sendmsg("execute", "playback", "ivr/hello.wav", block=True, lock=True)
        got["complete"] = done
        got["queued"] = await session.sendmsg("execute", "set", "foo=bar")
        await session.sendmsg("hangup", data="USER_BUSY", block=True)

    call = await _run(freeswitch, handler)
    assert got["answered"] is True
    complete = got["complete"]
    assert complete.name == "CHANNEL_EXECUTE_COMPLETE" and complete["Application"] == "playback"
    assert complete.application_uuid
    assert got["queued"]["Reply-Text"].startswith("+OK")
    assert call.hangup_cause == "USER_BUSY"


async def test_long_and_multiline_arguments_go_in_the_body(freeswitch: FakeFreeSWITCH) -> None:
    got: dict[str, Any] = {}
    long_text = "x" * 3000

    async def handler(session: esl.Session) -> None:
        await session.channel.answer()
        got["long"] = await session.channel.execute("log", "INFO " + long_text)
        got["multi"] = await session.channel.execute("log", "INFO line one\nline two")

    await _run(freeswitch, handler)
    assert got["long"]["Application-Data"] == "INFO " + long_text
    assert got["multi"]["Application-Data"] == "INFO line one\nline two"


async def test_sendmsg_validation(freeswitch: FakeFreeSWITCH) -> None:
    errors: list[type] = []

    async def handler(session: esl.Session) -> None:
        for bad in (
            lambda: session.sendmsg("execute\nexit", "answer"),
            lambda: session.sendmsg("hangup", data="BOGUS_CAUSE"),
            lambda: session.sendmsg("execute", None),
            lambda: session.sendmsg("execute", "playback", headers={"x": "a\nb"}),
        ):
            try:
                await bad()
            except ValueError as exc:
                errors.append(type(exc))

    await _run(freeswitch, handler)
    assert errors == [ValueError] * 4


async def test_api_and_getvar_on_the_session(freeswitch: FakeFreeSWITCH) -> None:
    got: dict[str, Any] = {}

    async def handler(session: esl.Session) -> None:
        ch = session.channel
        got["status"] = await session.api("status")
        await ch.setvar("esl_test", "hello world")
        got["var"] = await ch.getvar("esl_test")
        await ch.setvars({"a": "1", "b": "2"})
        got["b"] = await ch.getvar("b")
        await ch.unsetvar("a")
        got["a"] = await ch.getvar("a")

    await _run(freeswitch, handler)
    assert got["status"]
    assert got["var"] == "hello world" and got["b"] == "2" and got["a"] is None


async def test_create_from_session_and_bridge(freeswitch: FakeFreeSWITCH) -> None:
    got: dict[str, Any] = {}
    freeswitch.endpoints["user/1001"] = Endpoint(answer_after=0.02)

    async def handler(session: esl.Session) -> None:
        await session.channel.answer()
        other = await esl.Channel.create(session, "user/1001", {"origination_uuid": "not-this"})
        got["uuid"] = other.uuid
        await other.wait("CHANNEL_ANSWER", timeout=5)
        await session.channel.bridge(other)
        got["peer"] = session.channel.call.get_peer(session.channel) is other
        got["other_uuid"] = session.channel.other_uuid
        await other.hangup()
        await session.channel.hangup()

    await _run(freeswitch, handler)
    assert got["uuid"] != "not-this"
    assert got["peer"] is True and got["other_uuid"] == got["uuid"]


async def test_failed_originate_from_session(freeswitch: FakeFreeSWITCH) -> None:
    got: dict[str, Any] = {}

    async def handler(session: esl.Session) -> None:
        other = await esl.Channel.create(session, "error/USER_BUSY")
        try:
            await other.wait("CHANNEL_ANSWER", timeout=5)
        except esl.exceptions.OriginateError as exc:
            got["cause"] = exc.cause

    await _run(freeswitch, handler)
    assert got["cause"] == "USER_BUSY"
