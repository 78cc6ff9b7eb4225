"""Channel on an inbound connection against the fake's simulated calls: originate, waits,
failures, call-control verbs (uuid_* api and sendmsg <uuid>), bridging two created legs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import esl
from esl.exceptions import ChannelError, OriginateError, TimeoutError
from esl.testing import Endpoint, FakeFreeSWITCH


def _commands(fake: FakeFreeSWITCH) -> list[str]:
    return [c for conn in fake.connections if not getattr(conn, "outbound", False) for c in conn.commands]


async def test_create_returns_at_once_and_routes_before_originate(freeswitch: FakeFreeSWITCH,
                                                                   esl_client: esl.Inbound) -> None:
    freeswitch.endpoints["user/1000"] = Endpoint(answer_after=0.05)
    ch = await esl.Channel.create(esl_client, "user/1000", {"origination_uuid": "mine", "foo": "a b,c"},
                                  caller_id_number="555", timeout=20)
    assert not ch.answered  # returned before the answer
    originate = next(c for c in _commands(freeswitch) if c.startswith("bgapi originate"))
    assert f"origination_uuid={ch.uuid}" in originate and "origination_uuid=mine" not in originate
    assert "origination_caller_id_number=555" in originate and "originate_timeout=20" in originate
    assert originate.endswith("user/1000 &park()")
    event = await ch.wait("CHANNEL_ANSWER", timeout=5)
    assert event.uuid == ch.uuid and ch.answered
    assert ch.variables.get("foo") == "a b,c"
    await ch.wait(esl.ChannelState.EXECUTE, timeout=5)
    assert ch.uuid in freeswitch.channels
    await ch.hangup("NORMAL_CLEARING")
    assert ch.state >= esl.ChannelState.HANGUP
    assert f"api uuid_kill {ch.uuid} NORMAL_CLEARING" in _commands(freeswitch)


async def test_originate_failure_is_raised_by_waits(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    failed: list[Any] = []
    ch = await esl.Channel.create(esl_client, "error/USER_BUSY")
    ch.on("failed", lambda channel, cause: failed.append(cause))
    with pytest.raises(OriginateError) as info:
        await ch.wait("CHANNEL_ANSWER", timeout=5)
    assert info.value.cause == "USER_BUSY"
    assert ch.failure is not None and ch.hangup_cause == esl.HangupCause.USER_BUSY
    with pytest.raises(OriginateError):
        await ch.wait(esl.ChannelState.EXECUTE)
    with pytest.raises(OriginateError):
        await ch.playback("x.wav")
    assert failed == [esl.HangupCause.USER_BUSY]


async def test_no_answer_is_a_failure(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    freeswitch.endpoints["user/1002"] = Endpoint(answer_after=None, ring_timeout=0.1)
    ch = await esl.Channel.create(esl_client, "user/1002", timeout=1)
    with pytest.raises(OriginateError) as info:
        await ch.wait(esl.ChannelState.EXECUTE, timeout=5)
    assert info.value.cause in ("NO_ANSWER", "NO_USER_RESPONSE", "ORIGINATOR_CANCEL", "ALLOTTED_TIMEOUT")


async def test_verbs_over_inbound(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await esl.Channel.create(esl_client, "user/1000")
    await ch.wait("CHANNEL_ANSWER", timeout=5)
    done = await ch.playback("ivr/hello.wav")
    assert done.name == "CHANNEL_EXECUTE_COMPLETE" and done["Application"] == "playback"
    assert done.uuid == ch.uuid
    queued = await ch.playback("ivr/hello.wav", block=False)
    assert queued["Reply-Text"].startswith("+OK")
    await ch.setvar("colour", "blue")
    assert await ch.getvar("colour") == "blue"
    await ch.setvars({"x": "1", "y": "2"})
    assert await ch.getvar("y") == "2"
    await ch.unsetvar("x")
    assert await ch.getvar("x") is None
    await ch.say("42")
    await ch.send_dtmf("12")
    await ch.hold()
    await ch.unhold()
    await ch.break_media()
    await ch.sched_hangup(60, "ALLOTTED_TIMEOUT")
    with pytest.raises(ValueError):
        await ch.sched_hangup(1, "NOPE")
    await ch.hangup("USER_BUSY")
    assert ch.hangup_cause == esl.HangupCause.USER_BUSY
    assert await ch.hangup() is None  # already gone: no-op
    with pytest.raises(ChannelError):
        await ch.answer()


async def test_play_and_get_digits_returns_digits(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await esl.Channel.create(esl_client, "user/1000")
    await ch.wait("CHANNEL_ANSWER", timeout=5)
    fake_ch = freeswitch.channels[ch.uuid]
    started = asyncio.ensure_future(ch.wait("CHANNEL_EXECUTE", timeout=5))
    task = asyncio.ensure_future(ch.play_and_get_digits(1, 3000, "#", "ivr/enter.wav", 1, 4))
    await started  # the digits are pressed once the app runs
    await fake_ch.send_dtmf("42#")
    assert await asyncio.wait_for(task, 5) == "42"


async def test_play_and_get_digits_too_few_digits_is_no_answer(freeswitch: FakeFreeSWITCH,
                                                                esl_client: esl.Inbound) -> None:
    """Real FreeSWITCH leaves too few digits in var_name after the last try.

    switch_ivr_read() (src/switch_ivr_play_say.c) stores whatever was typed and
    sets read_result=failure; switch_play_and_get_digits() then fails without
    clearing the variable, so the client must look at read_result.
    """
    ch = await esl.Channel.create(esl_client, "user/1000")
    await ch.wait("CHANNEL_ANSWER", timeout=5)
    fake_ch = freeswitch.channels[ch.uuid]
    started = asyncio.ensure_future(ch.wait("CHANNEL_EXECUTE", timeout=5))
    task = asyncio.ensure_future(ch.play_and_get_digits(1, 3000, "#", "ivr/enter.wav", 3, 4))
    await started
    await fake_ch.send_dtmf("42#")
    assert await asyncio.wait_for(task, 5) == ""
    assert fake_ch.variables.get("esl_digits") == "42"  # as FreeSWITCH leaves it
    assert fake_ch.variables.get("read_result") == "failure"


async def test_click_to_call_bridge(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    a = await esl.Channel.create(esl_client, "user/1000")
    b = await esl.Channel.create(esl_client, "user/2000")
    await asyncio.gather(a.wait("CHANNEL_ANSWER", timeout=5), b.wait("CHANNEL_ANSWER", timeout=5))
    await a.bridge(b)
    assert a.other_uuid == b.uuid and a.call is b.call and a.call.get_peer(a) is b
    hung: list[Any] = []
    a.on("hangup", lambda ch, cause: hung.append(cause))
    await freeswitch.channels[b.uuid].hangup("NORMAL_CLEARING")
    await b.wait(esl.ChannelState.HANGUP, timeout=5)
    await a.hangup()
    assert hung


async def test_timeout_on_unanswered_wait(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    freeswitch.endpoints["user/3000"] = Endpoint(answer_after=None, ring_timeout=30)
    ch = await esl.Channel.create(esl_client, "user/3000")
    with pytest.raises(TimeoutError):
        await ch.wait("CHANNEL_ANSWER", timeout=0.1)
    await ch.hangup("ORIGINATOR_CANCEL")
    assert ch.gone


async def test_variables_follow_set_and_unset_at_once(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await esl.Channel.create(esl_client, "user/1000")
    await ch.wait("CHANNEL_ANSWER", timeout=5)
    await ch.setvar("colour", "blue")
    assert ch.variables["colour"] == "blue"  # no channel event needed
    await ch.setvars({"x": "1", "y": "2=3"})
    assert ch.variables["x"] == "1" and ch.variables["y"] == "2=3"
    await ch.unsetvar("x")
    assert "x" not in ch.variables and ch.variables["colour"] == "blue"
    await ch.hangup()


async def test_variables_follow_set_on_a_session_without_api(freeswitch: FakeFreeSWITCH) -> None:
    seen: dict[str, Any] = {}

    async def handler(session: esl.Session) -> None:
        ch = session.channel
        assert not session.full_control  # set/multiset/unset run as applications
        await ch.setvar("colour", "red")
        seen["set"] = ch.variables.get("colour")
        await ch.setvars({"a": "1", "b": "2"})
        seen["multi"] = (ch.variables.get("a"), ch.variables.get("b"))
        await ch.unsetvar("a")
        seen["unset"] = "a" in ch.variables
        await ch.hangup()

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        freeswitch.dialplan["app"] = [("socket", f"127.0.0.1:{app.port} async")]
        call = await freeswitch.call("app")
        await call.wait_hangup(5)
        while app.sessions:
            await asyncio.sleep(0.005)
    assert seen == {"set": "red", "multi": ("1", "2"), "unset": False}
