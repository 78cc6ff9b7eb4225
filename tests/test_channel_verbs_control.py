"""The control verbs (esl/channel/control.py, recording.py, playback options): the exact command
FreeSWITCH gets (syntax from mod_commands.c / mod_dptools.c, checked on a real 1.11 switch) and
what the fake does with it; single-channel outbound sockets use the application equivalents."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import esl
from esl.channel.dialstring import sip_dial_string
from esl.exceptions import ChannelError
from esl.testing import Endpoint, FakeFreeSWITCH


def _sent(fake: FakeFreeSWITCH) -> list[str]:
    return [c for conn in fake.connections if not getattr(conn, "outbound", False) for c in conn.commands]


def _apps(fake: FakeFreeSWITCH, uuid: str, leg: Any = None) -> list[tuple[str | None, str | None]]:
    """The applications a fake leg ran (``leg``: the FakeChannel, once it left ``fake.channels``)."""
    fired = (leg if leg is not None else fake.channels[uuid]).events_fired
    return [(e.get("Application"), e.get("Application-Data")) for e in fired if e.name == "CHANNEL_EXECUTE"]


async def _answered(client: esl.Inbound, dest: str = "user/1000") -> esl.Channel:
    ch = await esl.Channel.create(client, dest)
    await ch.wait("CHANNEL_ANSWER", timeout=5)
    return ch


async def test_scheduling_returns_task_ids_and_sched_del_clears_the_channel_group(
        freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await _answered(esl_client)
    u = ch.uuid
    dtmf_id = await ch.sched_dtmf(30, "12#", duration=200)
    assert isinstance(dtmf_id, int) and dtmf_id > 0
    assert await ch.sched_del(dtmf_id) == 1
    assert await ch.sched_del(dtmf_id) == 0  # gone already
    await ch.sched_hangup(60)  # NORMAL_CLEARING by default (switchio)
    assert await ch.broadcast("ivr/ring.wav", delay=30, hangup_cause="USER_BUSY") is not None
    stop_id = await ch.stop_record("/tmp/r.wav", delay=45)
    assert isinstance(stop_id, int) and stop_id > dtmf_id
    assert await ch.sched_del() == 3  # the hangup, the broadcast and the stop: all in the channel's group
    assert freeswitch.scheduler.tasks == {}  # type: ignore[attr-defined]  # nothing left behind
    sent = _sent(freeswitch)
    for expected in (
        f"api sched_api +30 {u} uuid_send_dtmf {u} 12#@200", f"api sched_del {dtmf_id}",
        f"api sched_hangup +60 {u} NORMAL_CLEARING",
        f"api sched_broadcast +30 {u} playback!USER_BUSY::ivr/ring.wav aleg",
        f"api sched_api +45 {u} uuid_record {u} stop /tmp/r.wav", f"api sched_del {u}",
    ):
        assert expected in sent, expected
    with pytest.raises(ValueError):
        await ch.sched_dtmf(-1, "1")
    with pytest.raises(ValueError):
        await ch.send_dtmf("12 3")
    with pytest.raises(ValueError):
        await ch.sched_del(0)
    await ch.hangup()


async def test_scheduled_tasks_run(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await _answered(esl_client)
    await ch.sched_hangup(1, "USER_BUSY")  # 1 s of switch time: 10 ms in the fake
    await ch.wait(esl.ChannelState.HANGUP, timeout=5)
    assert ch.hangup_cause == "USER_BUSY"
    assert freeswitch.scheduler.tasks == {}  # type: ignore[attr-defined]


async def test_broadcast_with_hangup_cause_hangs_up_after(freeswitch: FakeFreeSWITCH,
                                                          esl_client: esl.Inbound) -> None:
    ch = await _answered(esl_client)
    leg = freeswitch.channels[ch.uuid]
    assert (await ch.broadcast("ivr/bye.wav", hangup_cause="CALL_REJECTED")).startswith("+OK")
    await ch.wait(esl.ChannelState.HANGUP, timeout=5)
    assert ch.hangup_cause == "CALL_REJECTED"
    assert _apps(freeswitch, ch.uuid, leg)[-2:] == [("playback", "ivr/bye.wav"), ("hangup", "CALL_REJECTED")]
    assert f"api uuid_broadcast {ch.uuid} playback!CALL_REJECTED::ivr/bye.wav aleg" in _sent(freeswitch)
    ch2 = await _answered(esl_client)
    await ch2.broadcast("speak::flite|kal|bye", "both", hangup_cause="NORMAL_CLEARING")
    assert f"api uuid_broadcast {ch2.uuid} speak!NORMAL_CLEARING::flite|kal|bye both" in _sent(freeswitch)
    with pytest.raises(ValueError):
        await ch2.broadcast("x.wav", "cleg")


async def test_record_options_mask_pause(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await _answered(esl_client)
    u = ch.uuid
    await ch.record("/tmp/a.wav", rx_only=True, stereo=True, sample_rate=16000,
                    variables={"RECORD_TITLE": "it's 100% {x}, y"})
    await ch.record("/tmp/b.wav", 30)
    assert (await ch.mask_record("/tmp/a.wav")).startswith("+OK")
    await ch.unmask_record("/tmp/a.wav")
    await ch.pause_record("/tmp/a.wav")
    await ch.pause_record("/tmp/a.wav", pause=False)
    with pytest.raises(ValueError):
        await ch.mask_record("all")  # FreeSWITCH masks one recording at a time
    await ch.stop_record()
    sent = _sent(freeswitch)
    block = ("{RECORD_READ_ONLY=true,RECORD_STEREO=true,record_sample_rate=16000,"
             "RECORD_TITLE=it%5C%5C%5C%27s%20100%25%20{x}%5C,%20y}")  # %-encoded for the space split
    for expected in (
        f"api uuid_record {u} start /tmp/a.wav 0 {block}", f"api uuid_record {u} start /tmp/b.wav 30",
        f"api uuid_record {u} mask /tmp/a.wav", f"api uuid_record {u} unmask /tmp/a.wav",
        f"api uuid_record {u} pause /tmp/a.wav", f"api uuid_record {u} resume /tmp/a.wav",
        f"api uuid_record {u} stop all",
    ):
        assert expected in sent, (expected, sent)
    with pytest.raises(ValueError):
        await ch.record("/tmp/c.wav", sample_rate=11025)
    await ch.hangup()


async def test_audio_dtmf_hold_transfer_media(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    a = await _answered(esl_client)
    b = await _answered(esl_client, "user/1001")
    await a.bridge(b)
    u = a.uuid
    await a.mute("read", level=3)
    await a.unmute("read")
    await a.set_audio_level("write", -2)
    with pytest.raises(ValueError):
        await a.set_audio_level("write", 9)
    await a.send_dtmf("1w2", duration=250)
    await a.hold("Music")
    await a.unhold()
    assert (await a.bypass_media()).startswith("+OK")
    await a.bypass_media(False)
    assert (await a.deflect("sip:1000@example.com")).startswith("+OK")
    await a.transfer("9999", leg="bleg")
    sent = _sent(freeswitch)
    for expected in (
        f"api uuid_audio {u} start read mute 3", f"api uuid_audio {u} start read mute 0",
        f"api uuid_audio {u} start write level -2", f"api uuid_send_dtmf {u} 1w2@250",
        f"api uuid_hold {u} Music", f"api uuid_hold off {u}", f"api uuid_media off {u}", f"api uuid_media {u}",
        f"api uuid_deflect {u} sip:1000@example.com", f"api uuid_transfer {u} -bleg 9999 XML default",
    ):
        assert expected in sent, expected
    await a.hangup()
    await b.hangup()


async def test_respond_sends_the_status_line(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await _answered(esl_client)
    done = await ch.respond(486, "Busy Here")
    assert done["Application"] == "respond" and done["Application-Data"] == "486 Busy Here"
    with pytest.raises(ValueError):
        await ch.respond(99)
    await ch.hangup()


async def test_playback_options(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await _answered(esl_client)
    await ch.playback(["ivr/a.wav", "ivr/b!c.wav"], variables={"volume": "-2, or so"})
    await ch.playback("ivr/long.wav", start_sample=8000)
    await ch.playback("ivr/menu.wav", terminators="#")
    await ch.playback("ivr/x.wav", loops=2)
    apps = _apps(freeswitch, ch.uuid)
    assert ("playback", "file_string://{volume=-2\\,\\ or\\ so}ivr/a.wav!{volume=-2\\,\\ or\\ so}ivr/b\\!c.wav") \
        in apps or ("playback", "file_string://{volume=-2\\, or so}ivr/a.wav!{volume=-2\\, or so}ivr/b\\!c.wav") \
        in apps, apps
    assert ("playback", "ivr/long.wav@@8000") in apps
    assert ("set", "playback_terminators=#") in apps
    assert apps.count(("playback", "ivr/x.wav")) == 2  # loops: 2
    assert freeswitch.channels[ch.uuid].variables["playback_terminators"] == "#"
    # endless: repeats until broken (sendmsg loops -1, which uuid_break stops)
    freeswitch.timings.media["ivr/hold.wav"] = 0.01
    await ch.playback("ivr/hold.wav", endless=True, block=False)
    await asyncio.sleep(0.1)
    await ch.break_media()
    await asyncio.sleep(0.05)
    played = _apps(freeswitch, ch.uuid).count(("playback", "ivr/hold.wav"))
    assert played >= 2
    await asyncio.sleep(0.05)
    assert _apps(freeswitch, ch.uuid).count(("playback", "ivr/hold.wav")) == played  # stopped
    assert (await ch.playback("ivr/b.wav", leg="both")).startswith("+OK")
    assert f"api uuid_broadcast {ch.uuid} playback::ivr/b.wav both" in _sent(freeswitch)
    with pytest.raises(ValueError):
        await ch.playback("x.wav", endless=True, loops=3)
    with pytest.raises(ValueError):
        await ch.playback("x.wav", terminators="# 1")
    await ch.hangup()


def test_sip_dial_string() -> None:
    assert sip_dial_string("1000@10.0.0.1", profile="internal") == "sofia/internal/1000@10.0.0.1"
    assert sip_dial_string("5551234", gateway="carrier", proxy="10.0.0.9:5060") == \
        "sofia/gateway/carrier/5551234;fs_path=sip:10.0.0.9:5060"
    legvars = sip_dial_string("1000@h", profile="p", params={"sip_h_X-Id": "a,b"})
    assert legvars.startswith("[^^;") and legvars.endswith("]sofia/p/1000@h")
    for bad in ({"profile": "a b"}, {"profile": "x", "gateway": "y"}, {}):
        with pytest.raises(ValueError):
            sip_dial_string("1000@h", **bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sip_dial_string("1000@h,evil", profile="p")


async def test_bridge_builds_a_dial_string(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    freeswitch.endpoints["sofia/internal/*"] = Endpoint(answer_after=0.0)
    ch = await _answered(esl_client)
    freeswitch.channels[ch.uuid].variables["sip_req_uri"] = "2000@10.0.0.2"
    freeswitch.channels[ch.uuid].variables["sofia_profile_name"] = "internal"
    await ch.setvar("x", "1")  # a full event refreshes channel.variables
    await ch.execute("info")
    await ch.bridge(params={"origination_caller_id_name": "Smith, John"}, block=False)
    await ch.wait("CHANNEL_BRIDGE", timeout=5)
    apps = _apps(freeswitch, ch.uuid)
    bridge = [arg for app, arg in apps if app == "bridge"]
    assert bridge and bridge[0].endswith("]sofia/internal/2000@10.0.0.2"), bridge
    b_leg = freeswitch.channels[ch.other_uuid or ""]
    assert b_leg.variables["origination_caller_id_name"] == "Smith, John"
    assert b_leg.name.startswith("sofia/internal/2000@10.0.0.2")
    await ch.hangup()
    ch2 = await _answered(esl_client)
    # (quotes and backslashes: checked on the real switch, test_channel_verbs_realfs.py; the fake
    # does not expand application arguments)
    await ch2.bridge("user/1001", params={"x_note": "odd {x}, [really] | y"}, block=False)
    await ch2.wait("CHANNEL_BRIDGE", timeout=5)
    assert freeswitch.channels[ch2.other_uuid or ""].variables["x_note"] == "odd {x}, [really] | y"
    await ch2.hangup()


async def test_avmd_beep_on_a_machine(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    freeswitch.endpoints["user/machine"] = Endpoint(beep_after=0.05)
    ch = await _answered(esl_client, "user/machine")
    beeps: list[esl.Event] = []
    ch.on("avmd::beep", beeps.append)
    started = await ch.avmd_start(detection_mode=2, inbound_channel=False)
    assert started.get("Event-Subclass") == "avmd::start" and started.get("Start-time")
    beep = await ch.wait("avmd::beep", timeout=5)
    assert beep["Beep-Status"] == "DETECTED" and float(beep["Frequency"]) > 0
    assert beep["Call-command"] == "avmd" and beep["Unique-ID"] == ch.uuid
    assert await ch.getvar("avmd_detect") == "TRUE"
    stop = await ch.avmd_stop()
    assert stop["Beep-Status"] == "DETECTED" and int(stop["Total-time"]) > 0
    await asyncio.sleep(0.05)
    assert len(beeps) == 1  # FreeSWITCH sends each avmd event twice (same Event-Sequence): passed on once
    assert [e.get("Event-Subclass") for e in ch.events if e.name == "CUSTOM"] == \
        ["avmd::start", "avmd::beep", "avmd::stop"]
    sent = _sent(freeswitch)
    assert "event plain CUSTOM avmd::start avmd::beep avmd::stop" in sent
    assert ("avmd_start", "detection_mode=2,inbound_channel=0") in _apps(freeswitch, ch.uuid)
    with pytest.raises(ValueError):
        await ch.avmd_start(no_such_option=1)
    await ch.hangup()


async def test_avmd_human_and_refusals(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await _answered(esl_client)  # no beep_after: a human
    await ch.avmd_start()
    with pytest.raises(esl.exceptions.TimeoutError):
        await ch.wait("avmd::beep", timeout=0.1)
    with pytest.raises(ChannelError, match="avmd_start"):
        await ch.avmd_start()  # already running: mod_avmd logs and fires nothing
    stop = await ch.avmd_stop()
    assert stop["Beep-Status"] == "NOTDETECTED"
    not_running = await ch.avmd_stop()  # nothing fired: the execute's completion
    assert not_running.name == "CHANNEL_EXECUTE_COMPLETE"
    # the api: "started", but mod_avmd starts no detector from it (seen on a real switch)
    reply = await esl_client.api(f"avmd {ch.uuid} start")
    assert reply.startswith("+OK\n [") and "started!" in reply
    await ch.hangup()


async def test_session_without_full_uses_applications(freeswitch: FakeFreeSWITCH) -> None:
    got: dict[str, Any] = {}
    errors: list[BaseException] = []

    async def handler(session: esl.Session) -> None:
        ch = session.channel
        try:
            await ch.answer()
            await ch.hold()
            await ch.unhold()
            await ch.mute("write", level=2)
            await ch.set_audio_level("read", 1)
            got["broadcast"] = await ch.broadcast("ivr/x.wav", "aleg")
            got["sched"] = await ch.sched_dtmf(5, "1")
            got["sched_del"] = await ch.sched_del()
            got["getvar"] = await ch.getvar("last_sched_id")
            await ch.mask_record("/tmp/m.wav")
            with pytest.raises(ChannelError, match="needs `full` control"):
                await ch.bypass_media()
            with pytest.raises(ChannelError, match="needs `full` control"):
                await ch.stop_record("/tmp/m.wav", delay=3)
            await ch.transfer("9999", leg="bleg")  # no B leg: mod_dptools logs and does nothing
            await ch.hangup()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        freeswitch.dialplan["app"] = [("socket", f"127.0.0.1:{app.port} async")]
        call = await freeswitch.call("app")
        await call.wait_hangup(5)
        while app.sessions:
            await asyncio.sleep(0.005)
    assert not errors, errors
    apps = _apps(freeswitch, call.uuid, call)
    for expected in (("hold", "_undef_"), ("unhold", "_undef_"), ("set_mute", "write 2"),
                     ("set_audio_level", "read 1"), ("broadcast", "ivr/x.wav aleg"),
                     ("sched_broadcast", "+5 send_dtmf::1 aleg"), ("sched_cancel", call.uuid),
                     ("record_session_mask", "/tmp/m.wav"), ("transfer", "-bleg 9999 XML default")):
        assert expected in apps, (expected, apps)
    assert isinstance(got["sched"], int) and got["getvar"] == str(got["sched"])
    assert got["sched_del"] is None  # sched_cancel reports no count


async def test_single_channel_bridge_to_another_leg_uses_intercept(freeswitch: FakeFreeSWITCH,
                                                                   esl_client: esl.Inbound) -> None:
    other = await _answered(esl_client, "user/1001")
    bridged: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def handler(session: esl.Session) -> None:
        ch = session.channel
        await ch.answer()
        peer = esl.Channel.attach(session, other.uuid)
        try:
            await ch.bridge(peer, timeout=5)
            bridged.set_result(ch.other_uuid)
        except BaseException as exc:  # noqa: BLE001
            bridged.set_exception(exc)
        await ch.hangup()

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        freeswitch.dialplan["app"] = [("socket", f"127.0.0.1:{app.port} async")]
        call = await freeswitch.call("app")
        assert await asyncio.wait_for(bridged, 5) == other.uuid
        await call.wait_hangup(5)
    assert ("intercept", other.uuid) in _apps(freeswitch, call.uuid, call)
    await other.hangup()


