"""Call: grouping legs from bridge / Other-Leg-Unique-ID / Channel-Call-UUID events, get_peer."""

from __future__ import annotations

import asyncio
import uuid as uuidlib

from esl.call import Call
from esl.channel import Channel
from esl.inbound import Inbound
from esl.testing import FakeFreeSWITCH


async def _legs(client: Inbound, n: int) -> list[Channel]:
    legs = []
    for _ in range(n):
        ch = Channel.attach(client, str(uuidlib.uuid4()))
        await ch.ensure_events()
        legs.append(ch)
    return legs


async def _seen(ch: Channel, name: str) -> None:
    async def poll() -> None:
        while not any(e.name == name for e in ch.events or ()):
            await asyncio.sleep(0.001)
    await asyncio.wait_for(poll(), 2)


async def test_bridge_event_groups_legs(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    a, b = await _legs(esl_client, 2)
    assert a.call is not b.call and len(a.call) == 1
    bridged: list[str] = []
    b.on("bridged", lambda ch, other: bridged.append(other))
    await freeswitch.fire(freeswitch.make_event("CHANNEL_BRIDGE", [
        ("Unique-ID", b.uuid), ("Other-Leg-Unique-ID", a.uuid), ("Channel-Call-UUID", a.uuid)]))
    await _seen(b, "CHANNEL_BRIDGE")
    assert a.call is b.call
    call = a.call
    assert call.first is a and call.last is b and call.uuid == a.uuid
    assert call.get_peer(a) is b and call.get_peer(b) is a
    assert bridged == [a.uuid] and b.other_uuid == a.uuid
    assert list(call) == [a, b] and a in call


async def test_channel_call_uuid_joins_a_third_leg(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    a, b, c = await _legs(esl_client, 3)
    a.call.add(b)
    await freeswitch.fire(freeswitch.make_event("CHANNEL_CREATE", [
        ("Unique-ID", c.uuid), ("Channel-Call-UUID", a.uuid)]))
    await _seen(c, "CHANNEL_CREATE")
    assert c.call is a.call and len(a.call) == 3 and a.call.last is c


async def test_merging_calls_and_peer_rules(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    a, b, c, d = await _legs(esl_client, 4)
    first = Call(a).add(b)
    second = Call(c).add(d)
    first.add(c)  # brings d along
    assert c.call is first and d.call is first and len(second) == 0
    assert [leg.uuid for leg in first.legs] == [a.uuid, b.uuid, c.uuid, d.uuid]
    c.other_uuid = a.uuid
    assert first.get_peer(c) is a
    assert first.get_peer(b) is None  # several live candidates: no guess
    assert not first.answered and not first.done


async def test_call_hangup_ends_every_leg(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    """Voximplant's terminate: one call ends every leg, each with the cause given."""
    a = await Channel.create(esl_client, "user/1000")
    b = await Channel.create(esl_client, "user/1001")
    await a.wait("CHANNEL_ANSWER", timeout=5)
    await b.wait("CHANNEL_ANSWER", timeout=5)
    await a.bridge(b)
    call = a.call
    assert call is b.call and call.sessions == call.legs == [a, b]
    assert call.first is a and call.last is b and call.get_peer(a) is b
    call.vars["campaign"] = "spring"
    await call.hangup("USER_BUSY")
    assert a.gone and b.gone and call.done
    assert freeswitch.channels.get(a.uuid) is None or freeswitch.channels[a.uuid].hangup_cause == "USER_BUSY"
    kills = [c for conn in freeswitch.connections for c in conn.commands if c.startswith("api uuid_kill")]
    assert sorted(kills) == sorted([f"api uuid_kill {a.uuid} USER_BUSY", f"api uuid_kill {b.uuid} USER_BUSY"])
    await call.hangup()  # every leg already gone: nothing to do
    assert call.vars == {"campaign": "spring"}


async def test_call_hangup_skips_gone_legs_and_keeps_vars_on_merge(freeswitch: FakeFreeSWITCH,
                                                                   esl_client: Inbound) -> None:
    a = await Channel.create(esl_client, "user/1000")
    b = await Channel.create(esl_client, "user/1001")
    await a.wait("CHANNEL_ANSWER", timeout=5)
    await b.wait("CHANNEL_ANSWER", timeout=5)
    b.call.vars["agent"] = "007"
    a.call.add(b)
    assert a.call.vars == {"agent": "007"}  # the merged call keeps what the app stored
    await b.hangup()
    await a.call.hangup()
    kills = [c for conn in freeswitch.connections for c in conn.commands if c.startswith("api uuid_kill")]
    assert kills == [f"api uuid_kill {b.uuid} NORMAL_CLEARING", f"api uuid_kill {a.uuid} NORMAL_CLEARING"]
