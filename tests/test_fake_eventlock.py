"""The fake's session queue behaves like FreeSWITCH's private event queue
(switch_core_session_queue_private_event / dequeue_private_event, switch_ivr_parse_event):

- a sendmsg with ``event-lock: true`` holds every later queued message (a
  ``call-command: hangup`` included) until its application ends (CF_EVENT_LOCK);
- without it, later messages run nested inside the running media application;
- ``uuid_kill`` and ``uuid_break`` (api) go around the queue; ``uuid_break all`` drops it;
- endless media (``loops=-1`` tone streams, ``local_stream://``, a ``loops: -1`` message)
  never ends by itself.

Checked on a real FreeSWITCH 1.11 (see tests/test_realfs.py::test_event_lock_holds_hangup).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from typing import Any

import pytest

import esl
from esl.testing import FakeFreeSWITCH
from esl.testing.apps import media_length
from fake_raw import Raw, until

ENDLESS = "tone_stream://%(1000,0,440);loops=-1"


def names(ch: Any) -> list[str]:
    return [e.name for e in ch.events_fired]


@pytest.fixture
async def parked(freeswitch: FakeFreeSWITCH) -> AsyncIterator[tuple[FakeFreeSWITCH, Raw, Any]]:
    client = await Raw.connect(freeswitch)
    assert await client.cmd("api originate {origination_uuid=el1}user/1000 &park") == "+OK el1\n"
    ch = freeswitch.channels["el1"]
    await until(lambda: "CHANNEL_PARK" in names(ch))
    yield freeswitch, client, ch
    client.close()


async def start_endless(client: Raw, ch: Any, **extra: str) -> None:
    assert await client.sendmsg(
        ch.uuid, call_command="execute", execute_app_name="playback", execute_app_arg=ENDLESS, **extra
    ) == "+OK"
    await until(lambda: "PLAYBACK_START" in names(ch))


def test_endless_media_lengths(freeswitch: FakeFreeSWITCH) -> None:
    ch = type("Ch", (), {"timings": freeswitch.timings})()
    assert media_length(ch, ENDLESS) == math.inf  # type: ignore[arg-type]
    assert media_length(ch, "local_stream://moh") == math.inf  # type: ignore[arg-type]
    assert media_length(ch, "silence_stream://-1") == math.inf  # type: ignore[arg-type]
    assert media_length(ch, "tone_stream://%(100,0,440);loops=2") == freeswitch.timings.playback  # type: ignore[arg-type]
    assert media_length(ch, "/tmp/a.wav") == freeswitch.timings.playback  # type: ignore[arg-type]


async def test_event_locked_playback_holds_a_queued_hangup(parked: Any) -> None:
    fake, client, ch = parked
    await start_endless(client, ch, event_lock="true")
    assert await client.sendmsg(ch.uuid, call_command="hangup", hangup_cause="USER_BUSY") == "+OK"
    await asyncio.sleep(0.1)
    # held behind the lock, as FreeSWITCH does: the call keeps playing
    assert not ch.down and ch.event_locked and ch.queued_messages == 1
    # uuid_kill is an api command: it goes around the queue
    assert await client.cmd("api uuid_kill el1 NORMAL_CLEARING") == "+OK\n"
    await ch.wait_hangup()
    assert ch.hangup_cause == "NORMAL_CLEARING"
    stop = next(e for e in ch.events_fired if e.name == "PLAYBACK_STOP")
    assert stop["Playback-Status"] == "done"  # as the real switch reports a playback cut by hangup
    assert ch.queued_messages == 0


async def test_unlocked_playback_runs_a_queued_hangup_nested(parked: Any) -> None:
    fake, client, ch = parked
    await start_endless(client, ch)
    assert await client.sendmsg(ch.uuid, call_command="hangup", hangup_cause="USER_BUSY") == "+OK"
    await ch.wait_hangup()
    assert ch.hangup_cause == "USER_BUSY"
    n = names(ch)
    # the hangup ran inside the playback's loop: CHANNEL_HANGUP before PLAYBACK_STOP
    assert n.index("CHANNEL_HANGUP") < n.index("PLAYBACK_STOP") < n.index("CHANNEL_EXECUTE_COMPLETE")


async def test_uuid_break_ends_the_locked_app_then_the_queue_runs(parked: Any) -> None:
    fake, client, ch = parked
    await start_endless(client, ch, event_lock="true")
    assert await client.sendmsg(ch.uuid, call_command="hangup", hangup_cause="USER_BUSY") == "+OK"
    await asyncio.sleep(0.05)
    assert not ch.down
    assert await client.cmd("api uuid_break el1") == "+OK\n"
    await ch.wait_hangup()
    assert ch.hangup_cause == "USER_BUSY"
    n = names(ch)
    assert n.index("PLAYBACK_STOP") < n.index("CHANNEL_HANGUP")


async def test_uuid_break_all_drops_the_queue(parked: Any) -> None:
    fake, client, ch = parked
    await start_endless(client, ch, event_lock="true")
    assert await client.sendmsg(ch.uuid, call_command="hangup") == "+OK"
    assert await client.cmd("api uuid_break el1 all") == "+OK\n"
    await until(lambda: "PLAYBACK_STOP" in names(ch))
    await asyncio.sleep(0.05)
    assert not ch.down and ch.queued_messages == 0 and not ch.event_locked  # back in park
    await ch.hangup()


async def test_uuid_break_stops_every_loop_of_a_message(parked: Any) -> None:
    fake, client, ch = parked
    fake.timings.media["beep.wav"] = 0.01
    assert await client.sendmsg(
        "el1", call_command="execute", execute_app_name="playback", execute_app_arg="beep.wav", loops="-1"
    ) == "+OK"
    await until(lambda: names(ch).count("PLAYBACK_STOP") >= 3)
    assert await client.cmd("api uuid_break el1") == "+OK\n"
    await until(lambda: names(ch)[-1] == "PRIVATE_COMMAND")
    count = names(ch).count("PLAYBACK_START")
    await asyncio.sleep(0.05)
    assert names(ch).count("PLAYBACK_START") == count and not ch.down


async def test_unlocked_messages_nest_inside_the_running_playback(parked: Any) -> None:
    fake, client, ch = parked
    fake.timings.media["second.wav"] = 0.01
    await start_endless(client, ch)
    assert await client.sendmsg(
        "el1", call_command="execute", execute_app_name="playback", execute_app_arg="second.wav"
    ) == "+OK"
    await until(lambda: names(ch).count("PLAYBACK_STOP") == 1)
    stops = [e for e in ch.events_fired if e.name == "PLAYBACK_STOP"]
    assert stops[0]["Playback-File-Path"] == "second.wav"  # ran and ended inside the endless one
    assert not ch.down and "PLAYBACK_STOP" in names(ch)
    await ch.hangup()
    await ch.wait_hangup()


async def test_event_lock_pri_does_not_hold_the_normal_queue(parked: Any) -> None:
    fake, client, ch = parked
    await start_endless(client, ch, event_lock_pri="true")
    assert await client.sendmsg("el1", call_command="hangup") == "+OK"
    await ch.wait_hangup()  # CF_EVENT_LOCK_PRI only gates the priority queue


async def test_break_app_sent_by_sendmsg_breaks_the_outer_playback(parked: Any) -> None:
    fake, client, ch = parked
    await start_endless(client, ch)
    assert await client.sendmsg("el1", call_command="execute", execute_app_name="break") == "+OK"
    await until(lambda: "PLAYBACK_STOP" in names(ch))
    assert not ch.down


async def test_locked_park_holds_everything_until_uuid_kill(parked: Any) -> None:
    fake, client, ch = parked
    # a nested, event-locked park (FreeSWITCH can not dequeue while in it either)
    assert await client.sendmsg("el1", call_command="execute", execute_app_name="park", event_lock="true") == "+OK"
    await until(lambda: names(ch).count("CHANNEL_PARK") == 2)
    assert await client.sendmsg("el1", call_command="hangup") == "+OK"
    await asyncio.sleep(0.05)
    assert not ch.down and ch.queued_messages == 1
    assert await client.cmd("api uuid_kill el1") == "+OK\n"
    await ch.wait_hangup()


async def test_inbound_channel_hangup_goes_around_a_locked_playback(freeswitch: FakeFreeSWITCH) -> None:
    """Channel.hangup() from an inbound connection uses uuid_kill: never held."""
    async with esl.Inbound(freeswitch.host, freeswitch.port, freeswitch.password) as client:
        channel = await esl.Channel.create(client, "user/1000")
        await channel.wait("CHANNEL_PARK", timeout=5)
        await channel.playback(ENDLESS, block=False)
        fake_ch = freeswitch.channels[channel.uuid]
        await until(lambda: "PLAYBACK_START" in names(fake_ch))
        await asyncio.wait_for(channel.hangup(), 2)
        assert fake_ch.down


async def test_outbound_playback_nonblocking_then_hangup(freeswitch: FakeFreeSWITCH) -> None:
    result: dict[str, Any] = {}

    async def handler(session: esl.Session) -> None:
        await session.channel.answer()
        await session.channel.playback(ENDLESS, block=False)
        try:
            await asyncio.wait_for(session.channel.hangup("NORMAL_CLEARING"), 1.0)
            result["hung_up"] = True
        except asyncio.TimeoutError:
            result["hung_up"] = False

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        freeswitch.dialplan["ivr"] = [("socket", f"127.0.0.1:{app.port} async full")]
        ch = await freeswitch.call("ivr")
        await until(lambda: "hung_up" in result, timeout=5)
        assert result["hung_up"] and ch.down
        if not ch.down:
            await ch.hangup()


@pytest.mark.parametrize("ending", ["returns", "raises"])
async def test_session_ending_behind_a_locked_playback_is_not_left_playing(freeswitch: FakeFreeSWITCH,
                                                                          ending: str) -> None:
    async def handler(session: esl.Session) -> None:
        await session.channel.answer()
        await session.channel.playback(ENDLESS, block=False, lock=True)  # holds every later sendmsg
        if ending == "raises":
            raise RuntimeError("the app failed")

    async with esl.Outbound(handler, "127.0.0.1", 0) as app:
        freeswitch.dialplan["ivr"] = [("socket", f"127.0.0.1:{app.port} async full")]
        ch = await freeswitch.call("ivr")
        await until(lambda: not app.sessions and "PLAYBACK_STOP" in names(ch), timeout=5)
        if ending == "raises":
            await until(lambda: ch.down, timeout=5)
        if not ch.down:
            await ch.hangup()
