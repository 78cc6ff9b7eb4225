"""The control verbs against a real FreeSWITCH (opt-in: ``ESL_FREESWITCH=host:port pytest -m realfs``).

Needs the test dialplan of ../shared/freeswitch (9001 endless 440 Hz tone, 9003 park,
9004 echo); the avmd tests need mod_avmd loaded (skipped otherwise). A 440 Hz tone is what
mod_avmd takes for a voicemail beep; the echo of silence is a "human".
"""

from __future__ import annotations

import asyncio
import os
import wave
from collections.abc import AsyncIterator

import pytest

import esl
from esl.exceptions import ChannelError

ADDR = os.environ.get("ESL_FREESWITCH", "")

pytestmark = [
    pytest.mark.realfs,
    pytest.mark.skipif(not ADDR, reason="set ESL_FREESWITCH=host:port to run against a real FreeSWITCH"),
]


@pytest.fixture
async def client() -> AsyncIterator[esl.Inbound]:
    host, _, port = ADDR.partition(":")
    async with esl.Inbound(host, int(port or 8021), os.environ.get("ESL_PASSWORD", "ClueCon")) as c:
        yield c


async def _answered(client: esl.Inbound, dest: str, **variables: str) -> esl.Channel:
    ch = await esl.Channel.create(client, dest, variables or None)
    await ch.wait("CHANNEL_ANSWER", timeout=10)
    return ch


async def _need_avmd(client: esl.Inbound) -> None:
    if (await client.api("module_exists mod_avmd")).strip() != "true":
        pytest.skip("mod_avmd is not loaded on this switch")


async def test_avmd_beep_and_human(client: esl.Inbound) -> None:
    await _need_avmd(client)
    machine = await _answered(client, "loopback/9001")
    beeps: list[esl.Event] = []
    machine.on("avmd::beep", beeps.append)
    started = await machine.avmd_start()
    assert started["Event-Subclass"] == "avmd::start"
    beep = await machine.wait("avmd::beep", timeout=5)
    assert beep["Beep-Status"] == "DETECTED" and 400 < float(beep["Frequency"]) < 480
    stop = await machine.avmd_stop()
    assert stop["Beep-Status"] == "DETECTED"
    await asyncio.sleep(0.2)
    assert len(beeps) == 1  # the session-queued second copy is dropped
    await machine.hangup()

    human = await _answered(client, "loopback/9004")
    await human.avmd_start()
    with pytest.raises(esl.exceptions.TimeoutError):
        await human.wait("avmd::beep", timeout=1.5)
    assert (await human.avmd_stop())["Beep-Status"] == "NOTDETECTED"
    await human.hangup()


async def test_avmd_refuses_an_inbound_leg_unless_told(client: esl.Inbound) -> None:
    await _need_avmd(client)
    a = await _answered(client, "loopback/9004")
    b_uuid = await a.getvar("other_loopback_leg_uuid")
    assert b_uuid
    b = esl.Channel.attach(client, b_uuid)
    await b.ensure_events()
    with pytest.raises(ChannelError, match="inbound_channel"):
        await b.avmd_start()
    assert (await b.avmd_start(inbound_channel=True))["Event-Subclass"] == "avmd::start"
    await b.avmd_stop()
    await a.hangup()


async def test_scheduling_ids_and_groups(client: esl.Inbound) -> None:
    ch = await _answered(client, "loopback/9004")
    task = await ch.sched_dtmf(30, "123", duration=200)
    assert isinstance(task, int) and await ch.sched_del(task) == 1
    await ch.sched_hangup(60)
    await ch.broadcast("tone_stream://%(100,0,500)", delay=30, hangup_cause="USER_BUSY")
    assert isinstance(await ch.stop_record("/tmp/esl_verbs.wav", delay=30), int)
    assert await ch.sched_del() == 3
    await ch.hangup()


async def test_record_options_reach_the_file(client: esl.Inbound) -> None:
    ch = await _answered(client, "loopback/9001")
    path = f"/tmp/esl_verbs_{ch.uuid}.wav"
    await ch.record(path, rx_only=True, sample_rate=16000, variables={"RECORD_TITLE": "it's 100% {x}, y"})
    assert (await ch.mask_record(path)).startswith("+OK")
    assert (await ch.unmask_record(path)).startswith("+OK")
    with pytest.raises(ChannelError, match="Cannot mask"):
        await ch.mask_record("/tmp/not-recording.wav")
    await asyncio.sleep(1)
    await ch.stop_record()
    await asyncio.sleep(0.3)
    await ch.hangup()
    if os.path.exists(path):  # the switch shares this machine's /tmp
        with wave.open(path) as wf:
            assert (wf.getframerate(), wf.getnchannels()) == (16000, 1)
        os.unlink(path)


async def test_playback_forms_and_broadcast_cause(client: esl.Inbound) -> None:
    ch = await _answered(client, "loopback/9004")
    done = await ch.playback(["tone_stream://%(100,0,440)", "silence_stream://100"], variables={"volume": 1},
                             timeout=5)
    assert done["Application-Response"] == "FILE PLAYED"
    done = await ch.playback("tone_stream://%(300,0,440)", start_sample=800, timeout=5)
    assert done["Application-Data"].endswith("@@800") and done["Application-Response"] == "FILE PLAYED"
    await ch.playback("tone_stream://%(2000,0,440)", endless=True, block=False)
    await asyncio.sleep(0.3)
    await ch.break_media()
    assert (await ch.wait("CHANNEL_EXECUTE_COMPLETE", timeout=5))["Application"] == "playback"
    await ch.broadcast("tone_stream://%(100,0,440)", hangup_cause="USER_BUSY")
    await ch.wait(esl.ChannelState.HANGUP, timeout=5)
    assert ch.hangup_cause == "USER_BUSY"


async def test_transfer_the_bridged_leg(client: esl.Inbound) -> None:
    a = await _answered(client, "loopback/9004", loopback_bowout="false")
    b = await _answered(client, "loopback/9004", loopback_bowout="false")
    await a.bridge(b)
    await a.transfer("9003", leg="bleg", block=False)
    await asyncio.sleep(0.5)
    assert await b.getvar("destination_number") == "9003"
    await a.call.hangup()
    assert a.gone and b.gone


SIP_ECHO = "sofia/internal/9004@127.0.0.1:5060"  # a SIP call the switch places to itself (echo)


async def test_hold_on_a_sip_leg(client: esl.Inbound) -> None:
    ch = await _answered(client, SIP_ECHO)
    held = asyncio.ensure_future(ch.wait("CHANNEL_HOLD", timeout=5))
    await asyncio.sleep(0)
    assert (await ch.hold()).startswith("+OK")
    assert (await held)["Channel-Call-State"] == "HELD"
    await asyncio.sleep(0.3)
    assert (await ch.unhold()).startswith("+OK")
    done = await ch.playback("tone_stream://%(100,0,440)", timeout=5)
    assert done["Application-Response"] == "FILE PLAYED"
    await ch.hangup()


async def test_single_channel_socket_uses_applications(client: esl.Inbound) -> None:
    """An outbound socket without `full`: hold, mute, broadcast, sched_* and bridging to another
    leg go through hold/unhold, set_mute, broadcast, sched_broadcast/sched_cancel and intercept."""
    other = await _answered(client, "loopback/9004", loopback_bowout="false")
    got: dict[str, object] = {}
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler(session: esl.Session) -> None:
        ch = session.channel
        try:
            got["hold"] = (await ch.hold())["Reply-Text"]
            await asyncio.sleep(0.3)
            got["unhold"] = (await ch.unhold())["Reply-Text"]
            got["mute"] = (await ch.mute("read", level=2))["Reply-Text"]
            got["broadcast"] = (await ch.broadcast("tone_stream://%(100,0,440)", "aleg"))["Application-Response"]
            got["task"] = await ch.sched_dtmf(30, "1")
            got["last_sched_id"] = await ch.getvar("last_sched_id")
            await ch.sched_del()
            with pytest.raises(ChannelError, match="needs `full` control"):
                await ch.bypass_media()
            await ch.bridge(esl.Channel.attach(session, other.uuid), timeout=5)
            got["bridged"] = ch.other_uuid
            await ch.hangup()
        except BaseException as exc:  # noqa: BLE001 - reported below
            got["error"] = exc
        finally:
            finished.set_result(None)

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        await esl.Channel.create(client, SIP_ECHO, app=f"&socket(127.0.0.1:{app.port} async)")
        await asyncio.wait_for(finished, 20)
    assert "error" not in got, got
    assert got["hold"] == got["unhold"] == got["mute"] == "+OK"
    assert got["broadcast"] == "BROADCAST_SENT"
    assert isinstance(got["task"], int) and got["last_sched_id"] == str(got["task"])
    assert got["bridged"] == other.uuid
    await other.hangup()


@pytest.mark.parametrize("value", ["it's {odd}, [really]", "a\\b", "$y \\'q", "x|y;z ", " lead"])
async def test_bridge_leg_variables_arrive_exactly(client: esl.Inbound, value: str) -> None:
    a = await _answered(client, "loopback/9004", loopback_bowout="false")
    await a.bridge("loopback/9004", params={"x_note": value, "loopback_bowout": "false"}, block=False)
    await a.wait("CHANNEL_BRIDGE", timeout=10)
    assert a.other_uuid
    assert (await client.api(f"uuid_getvar {a.other_uuid} x_note")).rstrip("\n") == value
    await a.call.hangup()
    await client.api(f"uuid_kill {a.other_uuid}", check=False)
