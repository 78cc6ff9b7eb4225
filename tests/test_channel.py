"""Channel on an inbound connection, driven by events the fake fires on its bus.

These cover event routing, state, waits, DTMF dispatch, lifecycle hooks, UUID
renames, history and input validation without needing the fake's call side;
tests/test_channel_calls.py drives real simulated calls.
"""

from __future__ import annotations

import asyncio
import uuid as uuidlib

import pytest

from esl.channel import Channel
from esl.exceptions import ChannelError, ConnectionError, TimeoutError
from esl.inbound import Inbound
from esl.testing import FakeFreeSWITCH
from esl.types import CallState, ChannelState, HangupCause


async def _attached(client: Inbound, uuid: str | None = None) -> Channel:
    channel = Channel.attach(client, uuid or str(uuidlib.uuid4()))
    await channel.ensure_events()
    return channel


async def _fire(fake: FakeFreeSWITCH, name: str, uuid: str, **headers: str) -> None:
    pairs = [("Unique-ID", uuid)] + [
        (k if k.startswith("variable_") else k.replace("_", "-"), v) for k, v in headers.items()
    ]
    await fake.fire(fake.make_event(name, pairs))


async def _settle(channel: Channel, name: str, timeout: float = 2.0) -> None:
    """Wait until the channel's history holds an event called ``name``."""
    async def seen() -> None:
        while not any(e.name == name for e in (channel.events or ())):
            await asyncio.sleep(0.001)
    await asyncio.wait_for(seen(), timeout)


async def test_state_follows_own_events_only(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    a = await _attached(esl_client)
    b = await _attached(esl_client)
    assert "CHANNEL_STATE" in esl_client.subscriptions  # subscribed additively, no filter added
    assert esl_client.filters == ()
    await _fire(freeswitch, "CHANNEL_STATE", b.uuid, Channel_State="CS_HANGUP", Channel_State_Number="10")
    await _fire(freeswitch, "CHANNEL_ANSWER", a.uuid, Channel_State="CS_EXECUTE", Channel_State_Number="4",
                Channel_Call_State="ACTIVE", Answer_State="answered", variable_foo="bar")
    await _settle(a, "CHANNEL_ANSWER")
    assert a.state is ChannelState.EXECUTE
    assert a.answered and a.call_state is CallState.ACTIVE
    assert a.variables["foo"] == "bar"
    assert b.state is ChannelState.HANGUP and not b.answered


async def test_wait_for_state_and_event(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    ch = await _attached(esl_client)
    waiter = asyncio.ensure_future(ch.wait(ChannelState.EXECUTE, timeout=5))
    dtmf = asyncio.ensure_future(ch.wait("DTMF", timeout=5))
    await asyncio.sleep(0.01)
    await _fire(freeswitch, "CHANNEL_STATE", ch.uuid, Channel_State="CS_ROUTING", Channel_State_Number="2")
    await _fire(freeswitch, "CHANNEL_STATE", ch.uuid, Channel_State="CS_EXECUTE", Channel_State_Number="4")
    event = await waiter
    assert event is not None and event["Channel-State"] == "CS_EXECUTE"
    assert not dtmf.done()
    await _fire(freeswitch, "DTMF", ch.uuid, DTMF_Digit="5")
    assert (await dtmf)["DTMF-Digit"] == "5"
    # reached or passed: returns at once
    assert await ch.wait(ChannelState.ROUTING, timeout=0.5) is not None


async def test_wait_timeout_raises_typed_error(esl_client: Inbound) -> None:
    ch = await _attached(esl_client)
    with pytest.raises(TimeoutError):
        await ch.wait("DTMF", timeout=0.05)
    with pytest.raises(TimeoutError):
        await ch.wait(ChannelState.EXECUTE, timeout=0.05)


async def test_hangup_fails_waits_fast(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    ch = await _attached(esl_client)
    causes: list[object] = []
    ch.on("hangup", lambda channel, cause: causes.append(cause))
    dtmf = asyncio.ensure_future(ch.wait("DTMF", timeout=5))
    complete = asyncio.ensure_future(ch.wait("CHANNEL_HANGUP_COMPLETE", timeout=5))
    await asyncio.sleep(0.01)
    await _fire(freeswitch, "CHANNEL_HANGUP", ch.uuid, Hangup_Cause="USER_BUSY", Channel_State="CS_EXECUTE",
                Channel_State_Number="10")
    with pytest.raises(ChannelError) as info:
        await dtmf
    assert info.value.cause == "USER_BUSY"
    assert ch.hangup_cause is HangupCause.USER_BUSY and ch.state is ChannelState.HANGUP
    assert causes == [HangupCause.USER_BUSY]
    await _fire(freeswitch, "CHANNEL_HANGUP_COMPLETE", ch.uuid, Hangup_Cause="USER_BUSY")
    assert (await complete).name == "CHANNEL_HANGUP_COMPLETE"
    with pytest.raises(ChannelError):  # gone: fails at once, no 30 s wait
        await ch.wait("DTMF")
    with pytest.raises(ChannelError):
        await ch.playback("/tmp/x.wav")


async def test_dtmf_specific_handler_takes_precedence(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    a = await _attached(esl_client)
    b = await _attached(esl_client)
    got: list[tuple[str, str]] = []

    @a.onDTMF("1")
    async def one(digit: str) -> None:
        got.append(("one", digit))

    @a.onDTMF()
    def anything(digit: str) -> None:
        got.append(("any", digit))

    @b.on_dtmf()
    def other(digit: str) -> None:
        got.append(("b", digit))

    for digit in ("1", "2", "#"):
        await _fire(freeswitch, "DTMF", a.uuid, DTMF_Digit=digit)
    await _fire(freeswitch, "DTMF", b.uuid, DTMF_Digit="9")
    await _settle(b, "DTMF")
    await asyncio.sleep(0.01)
    assert sorted(got) == sorted([("one", "1"), ("any", "2"), ("any", "#"), ("b", "9")])


async def test_event_handlers_and_star(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    ch = await _attached(esl_client)
    seen: list[str] = []
    ch.on("PLAYBACK_START", lambda e: seen.append("start:" + e.name))
    ch.on("*")(lambda e: seen.append(e.name))
    await esl_client.subscribe("PLAYBACK_START")
    await _fire(freeswitch, "PLAYBACK_START", ch.uuid)
    await _settle(ch, "PLAYBACK_START")
    assert seen == ["start:PLAYBACK_START", "PLAYBACK_START"]


async def test_uuid_rename_keeps_events(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    ch = await _attached(esl_client)
    old, new = ch.uuid, str(uuidlib.uuid4())
    await esl_client.subscribe("CHANNEL_UUID")
    await freeswitch.fire(freeswitch.make_event("CHANNEL_UUID", [("Unique-ID", new), ("Old-Unique-ID", old)]))
    await _settle(ch, "CHANNEL_UUID")
    assert ch.uuid == new
    await _fire(freeswitch, "DTMF", new, DTMF_Digit="7")
    await _settle(ch, "DTMF")
    assert Channel.attach(esl_client, new) is ch


async def test_history_is_bounded(freeswitch: FakeFreeSWITCH, esl_client: Inbound, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Channel, "history", 3)
    ch = await _attached(esl_client)
    for digit in "12345":
        await _fire(freeswitch, "DTMF", ch.uuid, DTMF_Digit=digit)
    async def five() -> None:
        while not ch.events or ch.events[-1].get("DTMF-Digit") != "5":
            await asyncio.sleep(0.001)
    await asyncio.wait_for(five(), 2)
    assert [e["DTMF-Digit"] for e in ch.events] == ["3", "4", "5"]


async def test_filter_added_only_when_connection_filters(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    await esl_client.filter("Event-Name", "HEARTBEAT")
    ch = await _attached(esl_client)
    assert ("Unique-ID", ch.uuid) in esl_client.filters
    await _fire(freeswitch, "DTMF", ch.uuid, DTMF_Digit="3")
    await _settle(ch, "DTMF")


async def test_connection_close_fails_waits(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    ch = await _attached(esl_client)
    waiter = asyncio.ensure_future(ch.wait("DTMF", timeout=5))
    await asyncio.sleep(0.01)
    await freeswitch.drop_all()
    with pytest.raises(ConnectionError):
        await waiter


@pytest.mark.parametrize("call", [
    lambda ch: ch.setvar("x", "a\nb"),
    lambda ch: ch.setvar("x\r", "a"),
    lambda ch: ch.hangup("NORMAL_CLEARING\nexit"),
    lambda ch: ch.hangup("NOT_A_CAUSE"),
    lambda ch: ch.send_dtmf("1\n\napi status"),
    lambda ch: ch.transfer("100\n"),
    lambda ch: ch.execute("play\nback", "x"),
    lambda ch: ch.getvar("a b"),
    lambda ch: ch.wait("DTMF\n"),
    lambda ch: ch.playback("a.wav\n\napi status"),
    lambda ch: ch.say("1\n2"),
    lambda ch: ch.record("/tmp/a\n.wav"),
    lambda ch: ch.play_and_get_digits(1, 1000, "#", "x.wav\nexit"),
    lambda ch: ch.bridge("user/1000\n"),
])
async def test_bad_arguments_refused_before_writing(esl_client: Inbound, call: object) -> None:
    ch = await _attached(esl_client)
    before = esl_client.pending_commands
    with pytest.raises(ValueError):
        await call(ch)  # type: ignore[operator]
    assert esl_client.pending_commands == before


async def test_create_refuses_bad_dial_path(esl_client: Inbound) -> None:
    with pytest.raises(ValueError):
        await Channel.create(esl_client, "user/1000\n\napi status")
    with pytest.raises(ValueError):
        await Channel.create(esl_client, "user/1000", {"a": "b\nc"})


async def test_a_sync_dtmf_handler_has_run_when_the_app_sees_the_digit(
    freeswitch: FakeFreeSWITCH, esl_client: Inbound
) -> None:
    """The README's IVR checks a flag its onDTMF handler sets, then waits for the next digit: a sync
    handler must have run before the app's coroutine resumes on anything read after the DTMF, even
    while the executor is busy with other channels' work (it was queued behind it, and the IVR
    waited 10 s for a digit already pressed)."""
    ch = await _attached(esl_client)
    choice: list[str] = []

    @ch.onDTMF("1")
    def sales(digit: str) -> None:
        choice.append("sales")

    release = asyncio.Event()

    async def busy_elsewhere() -> None:
        await release.wait()

    esl_client.executor.submit("another-channel", busy_elsewhere)
    got = asyncio.ensure_future(ch.wait("DTMF", timeout=5))
    await asyncio.sleep(0)
    await _fire(freeswitch, "DTMF", ch.uuid, DTMF_Digit="1")
    event = await got
    assert event is not None and choice == ["sales"]  # no sleep: it ran as the event was read
    release.set()

    # behind a job of its own channel, it keeps its order instead
    order: list[str] = []
    gate = asyncio.Event()

    @ch.onDTMF("2")
    async def first(digit: str) -> None:
        await gate.wait()
        order.append("async " + digit)

    @ch.onDTMF("3")
    def second(digit: str) -> None:
        order.append("sync " + digit)

    third = asyncio.ensure_future(ch.wait("DTMF", timeout=5))
    await asyncio.sleep(0)
    await _fire(freeswitch, "DTMF", ch.uuid, DTMF_Digit="2")
    await third
    third = asyncio.ensure_future(ch.wait("DTMF", timeout=5))
    await asyncio.sleep(0)
    await _fire(freeswitch, "DTMF", ch.uuid, DTMF_Digit="3")
    await third
    assert order == []  # "3" waits behind "2", whose handler waits for the gate
    gate.set()
    await esl_client.executor.drain(timeout=2)
    assert order == ["async 2", "sync 3"]
    assert not esl_client.executor.pending(ch.uuid) and not esl_client.executor.pending("another-channel")

    # an error in a sync handler run at once is logged and counted, as on the executor
    errors = esl_client.executor.errors
    ch.onDTMF("4")(lambda digit: 1 / 0)
    fourth = asyncio.ensure_future(ch.wait("DTMF", timeout=5))
    await asyncio.sleep(0)
    await _fire(freeswitch, "DTMF", ch.uuid, DTMF_Digit="4")
    await fourth
    assert esl_client.executor.errors == errors + 1
