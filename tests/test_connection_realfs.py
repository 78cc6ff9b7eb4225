"""The connection layer against a real FreeSWITCH (opt-in: ``ESL_FREESWITCH=host:port pytest -m realfs``).

Needs the test extensions of ``shared/freeswitch/conf/test-extensions.xml``: 9000 (answer, then
``socket 127.0.0.1:5000 async full``), 9001 (answer, endless tone) in the default context.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

import esl
from esl import Channel, ChannelState, Inbound
from esl.exceptions import TimeoutError

ADDR = os.environ.get("ESL_FREESWITCH", "")
PASSWORD = os.environ.get("ESL_FREESWITCH_PASSWORD", "ClueCon")
ENDLESS = "tone_stream://%(1000,0,440);loops=-1"

pytestmark = [
    pytest.mark.realfs,
    pytest.mark.skipif(not ADDR, reason="set ESL_FREESWITCH=host:port to run against a real FreeSWITCH"),
]


def _where() -> tuple[str, int]:
    host, _, port = ADDR.rpartition(":")
    return host or "127.0.0.1", int(port)


async def eventually(predicate: Any, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_hangup_is_not_stuck_behind_an_endless_playback() -> None:
    host, port = _where()
    async with Inbound(host, port, PASSWORD) as client:
        channel = await Channel.create(client, "loopback/9001/default")
        await channel.wait("CHANNEL_ANSWER", timeout=10)
        await channel.playback(ENDLESS, block=False)
        await channel.wait("PLAYBACK_START", timeout=5)
        await asyncio.wait_for(channel.hangup("NORMAL_CLEARING"), 3)
        event = await channel.wait(ChannelState.DESTROY, timeout=10)
        assert event is not None and channel.destroyed and channel.hangup_cause == "NORMAL_CLEARING"
        await eventually(lambda: client.stats().owners == 0)


async def test_reply_fifo_realigns_after_a_timeout() -> None:
    host, port = _where()
    async with Inbound(host, port, PASSWORD) as client:
        with pytest.raises(TimeoutError):
            await client.api("msleep 300", timeout=0.05)
        assert await client.api("echo after the timeout") == "after the timeout"
        assert client.protocol is not None and client.protocol.lost_replies == 0


async def test_channels_ended_during_an_outage_end_after_reconnect() -> None:
    host, port = _where()
    async with Inbound(host, port, PASSWORD, reconnect=True, reconnect_delay=0.05) as client, \
            Inbound(host, port, PASSWORD) as other:
        calls = [await Channel.create(client, "loopback/9001/default") for _ in range(3)]
        for ch in calls:
            await ch.wait("CHANNEL_ANSWER", timeout=10)
        assert client.protocol is not None
        client.protocol.abort("test outage", by_client=False)
        await other.api(f"uuid_kill {calls[0].uuid} NORMAL_CLEARING")
        await eventually(lambda: client.reconnects == 1 and client.connected)
        await eventually(lambda: calls[0].gone)
        assert not calls[1].gone and not calls[2].gone
        for ch in calls[1:]:
            await ch.hangup()
            await ch.wait(ChannelState.DESTROY, timeout=10)
        await eventually(lambda: client.stats().owners == 0)


async def test_outbound_session_on_a_real_switch() -> None:
    host, port = _where()
    done: list[str] = []

    async def app(session: esl.Session) -> None:
        channel = session.channel
        await channel.playback(ENDLESS, block=False)  # not locked: the hangup below is not held
        await asyncio.sleep(0.3)
        await asyncio.wait_for(channel.hangup(), 3)
        done.append(str(channel.hangup_cause))

    async with esl.Outbound(app, "127.0.0.1", 5000) as server, Inbound(host, port, PASSWORD) as client:
        leg = await Channel.create(client, "loopback/9000/default")
        await leg.wait(ChannelState.DESTROY, timeout=15)
        await eventually(lambda: not server.sessions)
        stats = server.stats()
    assert done == ["NORMAL_CLEARING"]
    assert stats.sessions_total == 1 and stats.connections.channels == 0


@pytest.mark.parametrize("fmt", ["plain", "json", "xml"])
async def test_header_lookups_agree_with_the_full_decode_in_every_format(fmt: str) -> None:
    """Events of a real call in each format: every header read alone (found on the bytes, only its
    value decoded) equals the one the full decode gives, names in any casing, and absent ones absent."""
    host, port = _where()
    seen: list[tuple[str, Any]] = []
    async with Inbound(host, port, PASSWORD) as client:

        def keep(event: esl.Event) -> None:
            names = ["Caller-Caller-ID-Number", "channel-state", "Event-Name", "Core-UUID", "variable_absent",
                     "Answer-State", "Event-Date-Local", "Unique-ID"]
            seen.append((fmt, [(n, event.get(n), n in event) for n in names]))
            seen.append((fmt, event))

        client.on("*", keep)
        await client.subscribe("CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE",
                               "BACKGROUND_JOB", format=fmt)
        channel = await Channel.create(client, "loopback/9001/default")
        await channel.wait("CHANNEL_ANSWER", timeout=10)
        await channel.hangup("NORMAL_CLEARING")
        await channel.wait(ChannelState.DESTROY, timeout=10)
    assert len(seen) > 10
    for i in range(0, len(seen), 2):
        looked_up, event = seen[i][1], seen[i + 1][1]
        full = {k.lower(): v for k, v in reversed(list(event.items()))}
        for name, value, present in looked_up:
            assert value == full.get(name.lower()) and present == (name.lower() in full), (fmt, name)
        assert event.format == fmt
