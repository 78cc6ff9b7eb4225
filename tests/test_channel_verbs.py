"""The remaining call-control verbs, on an inbound connection (uuid_* api / sendmsg <uuid>)
and on an outbound session (sendmsg execute): what goes on the wire and what comes back."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import esl
from esl.testing import FakeFreeSWITCH


def _inbound_commands(fake: FakeFreeSWITCH) -> list[str]:
    return [c for conn in fake.connections if not getattr(conn, "outbound", False) for c in conn.commands]


async def test_inbound_verbs_use_uuid_api(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    freeswitch.dialplan["9999"] = [("park", "")]
    ch = await esl.Channel.create(esl_client, "user/1000")
    await ch.wait("CHANNEL_ANSWER", timeout=5)
    u = ch.uuid
    await ch.ring_ready()
    await ch.pre_answer()
    await ch.record("/tmp/call.wav", time_limit=30)
    await ch.stop_record("/tmp/call.wav")
    assert (await ch.mute()).startswith("+OK")
    assert (await ch.unmute("write")).startswith("+OK")
    await ch.broadcast("ivr/beep.wav", "both")
    await ch.speak("hello there", "flite", "kal")
    info = await ch.execute("info")
    assert info["Application"] == "info"
    await ch.echo()  # runs until broken: not blocking by default
    await ch.break_media(all=True)
    await ch.park()
    await ch.transfer("9999", context="default")
    sent = _inbound_commands(freeswitch)
    for expected in (
        f"api uuid_record {u} start /tmp/call.wav 30", f"api uuid_record {u} stop /tmp/call.wav",
        f"api uuid_broadcast {u} ivr/beep.wav both", f"api uuid_break {u} all", f"api uuid_park {u}",
        f"api uuid_transfer {u} 9999 XML default", f"sendmsg {u}",
        f"api uuid_audio {u} start read mute 1", f"api uuid_audio {u} start write mute 0",
    ):
        assert expected in sent, expected
    await ch.hangup()


async def test_read_digits_inbound(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await esl.Channel.create(esl_client, "user/1000")
    await ch.wait("CHANNEL_ANSWER", timeout=5)
    started = asyncio.ensure_future(ch.wait("CHANNEL_EXECUTE", timeout=5))
    task = asyncio.ensure_future(ch.read_digits(1, 4, "ivr/pin.wav", timeout=3000))
    await started  # the digits are pressed once the app runs
    await freeswitch.channels[ch.uuid].send_dtmf("123#")
    assert await asyncio.wait_for(task, 5) == "123", [e.name for e in ch.events]
    await ch.hangup()


async def test_read_digits_too_few_is_no_answer(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    """switch_ivr_read() (src/switch_ivr_play_say.c) keeps too few digits in var_name
    and sets read_result=failure; read_digits answers "" then."""
    ch = await esl.Channel.create(esl_client, "user/1000")
    await ch.wait("CHANNEL_ANSWER", timeout=5)
    started = asyncio.ensure_future(ch.wait("CHANNEL_EXECUTE", timeout=5))
    task = asyncio.ensure_future(ch.read_digits(4, 4, "ivr/pin.wav", timeout=3000))
    await started
    await freeswitch.channels[ch.uuid].send_dtmf("12#")
    assert await asyncio.wait_for(task, 5) == ""
    assert freeswitch.channels[ch.uuid].variables.get("esl_read") == "12"
    await ch.hangup()


async def test_session_verbs_use_sendmsg(freeswitch: FakeFreeSWITCH) -> None:
    got: dict[str, Any] = {}
    conns: list[Any] = []

    async def handler(session: esl.Session) -> None:
        conns.append(next(c for c in freeswitch.connections if getattr(c, "outbound", False)
                          and c.session.uuid == session.uuid))
        ch = session.channel
        await ch.answer()
        started = asyncio.ensure_future(ch.wait("RECORD_START", timeout=5))
        await asyncio.sleep(0)  # the waits are registered before the commands go out
        got["record"] = await ch.record("/tmp/in.wav", time_limit=600)
        got["started"] = await started
        stopped = asyncio.ensure_future(ch.wait("RECORD_STOP", timeout=5))
        await asyncio.sleep(0)
        await ch.stop_record()
        got["stopped"] = await stopped
        await ch.send_dtmf("12")
        await ch.speak("bye")
        got["say"] = await ch.say("123", kind="NUMBER", method="iterated")
        await ch.sched_hangup(30)
        await ch.transfer("9999", block=False)

    freeswitch.dialplan["9999"] = [("hangup", "")]
    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        freeswitch.dialplan["app"] = [("socket", f"127.0.0.1:{app.port} async full")]
        call = await freeswitch.call("app")
        await call.wait_hangup(5)
        while app.sessions:
            await asyncio.sleep(0.005)
    assert got["record"]["Application"] == "record_session"
    assert got["record"]["Application-Data"] == "/tmp/in.wav +600"
    assert got["started"]["Record-File-Path"] == got["stopped"]["Record-File-Path"] == "/tmp/in.wav"
    assert got["say"]["Application-Data"] == "en NUMBER iterated FEMININE 123"
    sent = conns[0].commands
    assert sum(c == "sendmsg" for c in sent) >= 6  # executes on the session's own socket
    assert f"api sched_hangup +30 {call.uuid} NORMAL_CLEARING" in sent  # switchio's default
