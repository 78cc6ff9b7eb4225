"""The connection layer on a long-lived, busy connection: one test per finding of issue 8.

Each test goes through the public API against the fake FreeSWITCH (or a raw
socket where the fake would never misbehave that way).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from typing import Any

import pytest

import esl
from esl import Channel, ChannelState, Inbound
from esl.core import Event
from esl.exceptions import ChannelError, ConnectionError, TimeoutError
from esl.testing import Endpoint, FakeFreeSWITCH


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def frame(name: str, **headers: str) -> bytes:
    pairs = [("Event-Name", name)] + [(k.replace("_", "-"), v) for k, v in headers.items()]
    return Event.build(pairs).frame("plain")


def heartbeats(count: int) -> bytes:
    return b"".join(frame("HEARTBEAT", Unique_ID=f"noise-{i % 7}") for i in range(count))


def life(uuid: str) -> bytes:
    """The events that take a channel from answer to destroy."""
    return b"".join([
        frame("CHANNEL_ANSWER", Unique_ID=uuid, Channel_State="CS_EXECUTE", Answer_State="answered"),
        frame("CHANNEL_HANGUP", Unique_ID=uuid, Channel_State="CS_HANGUP", Hangup_Cause="NORMAL_CLEARING"),
        frame("CHANNEL_DESTROY", Unique_ID=uuid, Channel_State="CS_DESTROY", Hangup_Cause="NORMAL_CLEARING"),
    ])


def client_conn(fake: FakeFreeSWITCH) -> Any:
    return [c for c in fake.connections if not getattr(c, "outbound", False)][-1]


# -- 1. owners before flow control ------------------------------------------------------------


@pytest.mark.parametrize("policy", ["pause", "drop"])
async def test_owned_events_survive_flow_control(freeswitch: FakeFreeSWITCH, policy: str) -> None:
    async with Inbound(freeswitch.host, freeswitch.port, policy=policy, max_queue=10) as client:
        channel = Channel.attach(client, "owned-1")
        await channel.ensure_events()

        async def slow(event: Event) -> None:
            await asyncio.sleep(0.001)

        client.on("*", slow)
        pending = asyncio.ensure_future(client.api("echo still here"))  # reading resumes for its reply
        await freeswitch.fire_raw(client_conn(freeswitch), heartbeats(3000) + life("owned-1"))
        assert await pending == "still here"
        await eventually(lambda: channel.destroyed, timeout=20)
        assert channel.state is ChannelState.DESTROY and channel.hangup_cause == "NORMAL_CLEARING"
        stats = client.stats()
        assert stats.channels == 0 and stats.owners == 0
        if policy == "drop":
            assert stats.events_dropped > 0  # user deliveries were dropped, and counted


async def test_blocking_execute_completes_under_drop_policy(freeswitch: FakeFreeSWITCH) -> None:
    async with Inbound(freeswitch.host, freeswitch.port, policy="drop", max_queue=5) as client:
        channel = await Channel.create(client, "user/1000")
        await channel.wait("CHANNEL_ANSWER", timeout=5)

        async def slow(event: Event) -> None:
            await asyncio.sleep(0.002)

        client.on("*", slow)
        await freeswitch.fire_raw(client_conn(freeswitch), heartbeats(2000))
        done = await asyncio.wait_for(channel.playback("ivr/hello.wav", timeout=None), 10)
        assert done.name == "CHANNEL_EXECUTE_COMPLETE"
        assert client.stats().events_dropped > 0
        await channel.hangup()


# -- 2. close, then connect again ----------------------------------------------------------


async def test_close_then_connect_works_like_a_fresh_client(freeswitch: FakeFreeSWITCH) -> None:
    client = Inbound(freeswitch.host, freeswitch.port)
    await client.connect()
    first = await Channel.create(client, "user/1000")
    await first.wait("CHANNEL_ANSWER", timeout=5)
    await client.close()
    assert first.gone and client.stats().channels == 0
    await client.connect()
    assert client.subscriptions == frozenset() and client.filters == ()
    second = await Channel.create(client, "user/1000")
    await second.wait("CHANNEL_ANSWER", timeout=5)  # the new connection subscribed again
    waiting = asyncio.ensure_future(second.wait("CHANNEL_DESTROY", timeout=None))
    await asyncio.sleep(0.01)
    await freeswitch.drop_all()  # a second drop: pending waits fail, nothing hangs
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(waiting, 5)
    assert second.gone and client.stats().owners == 0
    await client.close()


# -- 3. tables that grow --------------------------------------------------------------------------


async def test_jobs_without_result_expire_and_leave(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    async def never(arg: str, conn: Any) -> str:
        await asyncio.Event().wait()
        return ""

    freeswitch.api["never"] = never
    cancelled = [await esl_client.bgapi("never") for _ in range(500)]
    expiring = [await esl_client.bgapi("never", job_timeout=0.3) for _ in range(500)]
    assert 500 < esl_client.stats().jobs <= 1000
    for job in cancelled:
        job.cancel()
    await eventually(lambda: esl_client.stats().jobs == 0)
    assert esl_client.stats().owners == 0
    with pytest.raises(TimeoutError):
        await expiring[0]


async def test_renamed_channels_leave_no_owner(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    channels = [Channel.attach(esl_client, f"old-{i}") for i in range(100)]
    await channels[0].ensure_events()
    data = b"".join(frame("CHANNEL_UUID", Unique_ID=f"new-{i}", Old_Unique_ID=f"old-{i}") + life(f"new-{i}")
                    for i in range(100))
    await freeswitch.fire_raw(client_conn(freeswitch), data)
    await eventually(lambda: all(ch.destroyed for ch in channels))
    assert [ch.uuid for ch in channels[:2]] == ["new-0", "new-1"]
    assert esl_client.stats().owners == 0 and esl_client.owners.renames == 100


async def test_channels_that_end_while_disconnected_are_ended_after_reconnect(freeswitch: FakeFreeSWITCH) -> None:
    freeswitch.endpoints["user/1000"] = Endpoint(answer_after=0.0)
    async with Inbound(freeswitch.host, freeswitch.port, reconnect=True, reconnect_delay=0.05) as client:
        calls = [await Channel.create(client, "user/1000") for _ in range(20)]
        for ch in calls:
            await ch.wait("CHANNEL_ANSWER", timeout=5)
        hung: list[Any] = []
        for ch in calls[:15]:
            ch.on("hangup", lambda c, cause: hung.append(c.uuid))
        await freeswitch.drop_all()
        for ch in calls[:15]:  # these end during the outage
            freeswitch.channels[ch.uuid].hangup("NORMAL_CLEARING")
        await client.wait_connected(5)
        await eventually(lambda: client.stats().channels == 5)
        assert all(ch.gone and ch.destroyed for ch in calls[:15])
        assert not any(ch.gone for ch in calls[15:])
        await eventually(lambda: len(hung) == 15)
        for ch in calls[15:]:  # the survivors are still controlled
            await ch.hangup()
        await eventually(lambda: client.stats().owners == 0)


# -- 4. one table, separate namespaces ---------------------------------------------------------


async def test_job_uuid_cannot_steal_a_channel(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    channel = await Channel.create(esl_client, "user/1000")
    await channel.wait("CHANNEL_ANSWER", timeout=5)
    job = await esl_client.bgapi("echo hi", job_uuid=channel.uuid)
    assert await job.wait(5) == "hi"
    await channel.hangup()  # the channel still gets its own events
    assert channel.state >= ChannelState.HANGUP and esl_client.stats().jobs == 0


# -- 5. one-shot set-up -----------------------------------------------------------------------------


async def test_concurrent_first_bgapi_subscribes_and_filters_once(freeswitch: FakeFreeSWITCH,
                                                                   esl_client: Inbound) -> None:
    await esl_client.filter("Event-Name", "HEARTBEAT")
    jobs = await asyncio.gather(*(esl_client.bgapi(f"echo {i}") for i in range(50)))
    assert [await j.wait(5) for j in jobs] == [str(i) for i in range(50)]
    commands = client_conn(freeswitch).commands
    assert sum(c.startswith("event ") for c in commands) == 1
    assert commands.count("filter Event-Name BACKGROUND_JOB") == 1


async def test_concurrent_creates_subscribe_once(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    calls = await asyncio.gather(*(Channel.create(esl_client, "user/1000") for _ in range(50)))
    commands = client_conn(freeswitch).commands
    assert sum(c.startswith("event ") for c in commands) == 1
    for ch in calls:
        await ch.wait("CHANNEL_ANSWER", timeout=5)
        await ch.hangup()


# -- 7. a malformed event costs that event only -----------------------------------------------------


async def test_malformed_json_event_does_not_kill_the_connection(freeswitch: FakeFreeSWITCH,
                                                                   esl_client: Inbound) -> None:
    seen: list[str] = []
    esl_client.on("*", lambda e: seen.append(e.name or ""))
    bad = [b'[["Event-Name", "HEARTBEAT"]]', b'{"Event-Name": "X", "Event-Sequence": "\\ud800"}',
           b'{"Event-Name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
           b'{"Event-Name": "HEARTBEAT", "Unique-ID": {"a": 1}}']
    data = b"".join(b"Content-Type: text/event-json\nContent-Length: %d\n\n" % len(b) + b for b in bad)
    await freeswitch.fire_raw(client_conn(freeswitch), data + frame("HEARTBEAT", Unique_ID="fine"))
    assert await esl_client.api("echo alive") == "alive"
    await eventually(lambda: "HEARTBEAT" in seen)
    stats = esl_client.stats()
    assert esl_client.connected and stats.events_malformed >= 1
    assert stats.events_received == len(bad) + 1


# -- 8. values never change the command ---------------------------------------------------------------


async def test_spoken_text_cannot_run_api_commands(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    channel = await Channel.create(esl_client, "user/1000")
    await channel.wait("CHANNEL_ANSWER", timeout=5)
    data: list[str] = []
    channel.on("CHANNEL_EXECUTE",
               lambda e: data.append(e.get("Application-Data") or "") if e.get("Application") != "park" else None)
    await channel.speak("total ${system(touch /tmp/pwned)} euros", block=False)
    await channel.say("${expr(6*7)}", kind="ITEMS", method="iterated", block=False)
    await eventually(lambda: len(data) == 2)
    # FreeSWITCH turns "\$" back into "$" when it expands the argument: the text is said, nothing runs
    assert "\\${system(touch /tmp/pwned)}" in data[0] and "\\${expr(6*7)}" in data[1]
    with pytest.raises(ValueError):
        await Channel.create(esl_client, "user/1000'x")
    with pytest.raises(ValueError):
        await Channel.create(esl_client, "user/1000", app="&playback(a)b)")
    await channel.hangup()


# -- 9. call lifecycle ---------------------------------------------------------------------------------


async def test_wait_for_destroy_after_hangup(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    channel = await Channel.create(esl_client, "user/1000")
    await channel.wait("CHANNEL_ANSWER", timeout=5)
    destroy = asyncio.ensure_future(channel.wait("CHANNEL_DESTROY", timeout=5))
    await channel.hangup()
    assert (await destroy).name == "CHANNEL_DESTROY"
    second = await Channel.create(esl_client, "user/1000")
    await second.wait("CHANNEL_ANSWER", timeout=5)
    await second.hangup()
    event = await second.wait(ChannelState.DESTROY, timeout=5)  # after hangup(): waits, does not raise
    assert second.state is ChannelState.DESTROY and event is not None


async def test_dtmf_handler_finishes_after_the_session_handler_returns(freeswitch: FakeFreeSWITCH) -> None:
    finished: list[str] = []

    async def app(session: esl.Session) -> None:
        channel = session.channel

        @channel.onDTMF("1")
        async def option(digit: str) -> None:
            await channel.playback("ivr/sales.wav")
            finished.append("played")
            await channel.hangup()

        await channel.answer()
        await channel.wait("DTMF", timeout=5)  # returns while the handler still runs

    async with esl.Outbound(app, "127.0.0.1", 0) as server:
        freeswitch.dialplan["ivr"] = [("socket", f"127.0.0.1:{server.port} async full")]
        call = await freeswitch.call("ivr")
        while not call.answered:
            await asyncio.sleep(0.005)
        await call.send_dtmf("1")
        await call.wait_hangup(10)
        await eventually(lambda: not server.sessions)
    assert finished == ["played"]


async def test_events_false_makes_blocking_verbs_refuse(freeswitch: FakeFreeSWITCH) -> None:
    outcome: list[str] = []

    async def app(session: esl.Session) -> None:
        try:
            await asyncio.wait_for(session.channel.answer(), 2)
        except ChannelError:
            outcome.append("refused")
        await session.channel.answer(block=False)
        outcome.append("answered without waiting")

    async with esl.Outbound(app, "127.0.0.1", 0, events=False) as server:
        freeswitch.dialplan["x"] = [("socket", f"127.0.0.1:{server.port} async full")]
        call = await freeswitch.call("x")
        await call.wait_hangup(10)
        await eventually(lambda: not server.sessions)
    assert outcome == ["refused", "answered without waiting"]


async def test_channel_handler_errors_are_logged(freeswitch: FakeFreeSWITCH, esl_client: Inbound,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    freeswitch.endpoints["user/1000"] = Endpoint(answer_after=0.1)
    channel = await Channel.create(esl_client, "user/1000")

    @channel.on("answered")
    async def fails(ch: Channel, event: Event) -> None:
        raise ChannelError("this handler failed", ch.uuid)

    with caplog.at_level(logging.ERROR, logger="esl.executor"):
        await channel.wait("CHANNEL_ANSWER", timeout=5)
        await esl_client.drain(5)
    assert any("raised" in r.getMessage() and "this handler failed" in str(r.exc_info[1])
               for r in caplog.records if r.exc_info)
    assert esl_client.stats().handler_errors == 1
    await channel.hangup()


async def test_close_leaves_no_task_running(freeswitch: FakeFreeSWITCH) -> None:
    before = asyncio.all_tasks()
    client = Inbound(freeswitch.host, freeswitch.port, keepalive=0.2, reconnect=True)
    await client.connect()
    release = asyncio.Event()

    async def stuck(event: Event) -> None:
        await release.wait()

    client.on("HEARTBEAT", stuck)
    channel = await Channel.create(client, "user/1000")
    channel.on("answered", lambda ch, ev: asyncio.sleep(10))
    await channel.wait("CHANNEL_ANSWER", timeout=5)
    await freeswitch.fire_raw(client_conn(freeswitch), frame("HEARTBEAT"))
    await eventually(lambda: client.executor.busy)
    await client.close()
    await asyncio.sleep(0)
    left = [t for t in asyncio.all_tasks() - before if not t.done() and "esl" in repr(t.get_coro())]
    assert left == []


async def test_two_readers_of_one_stream_are_both_served(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    stream = esl_client.events("HEARTBEAT")
    first = asyncio.ensure_future(stream.get(timeout=5))
    second = asyncio.ensure_future(stream.get(timeout=5))
    await asyncio.sleep(0.01)
    await freeswitch.fire_raw(client_conn(freeswitch), frame("HEARTBEAT") + frame("HEARTBEAT"))
    got = await asyncio.gather(first, second)
    assert [e.name for e in got] == ["HEARTBEAT", "HEARTBEAT"]


async def test_exit_timing_out_does_not_turn_a_later_drop_into_a_close(freeswitch: FakeFreeSWITCH) -> None:
    async with Inbound(freeswitch.host, freeswitch.port, reconnect=True, reconnect_delay=0.05) as client:
        freeswitch.stall(True)
        with pytest.raises(TimeoutError):
            await client.exit(timeout=0.05)
        freeswitch.stall(False)
        await freeswitch.drop_all()
        await eventually(lambda: client.reconnects == 1)  # a failure: the client reconnected


async def test_cancelled_create_hangs_up_the_call_it_placed(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    freeswitch.endpoints["user/1000"] = Endpoint(answer_after=0.05)
    await esl_client.ensure_subscribed(esl.connection.CHANNEL_EVENTS)
    task = asyncio.ensure_future(Channel.create(esl_client, "user/1000"))
    while esl_client.pending_commands == 0:  # the originate is written; its reply not read yet
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: any(c.startswith("api uuid_kill") and "ORIGINATOR_CANCEL" in c
                                 for c in client_conn(freeswitch).commands), 10)
    await eventually(lambda: esl_client.stats().owners == 0, 10)
    await eventually(lambda: not freeswitch.channels, 10)  # the call it placed is gone


# -- 10. nothing left for the cycle collector ------------------------------------------------------------


async def test_outbound_calls_leave_nothing_for_the_cycle_collector(freeswitch: FakeFreeSWITCH) -> None:
    sessions: weakref.WeakSet[Any] = weakref.WeakSet()
    channels: weakref.WeakSet[Any] = weakref.WeakSet()

    async def app(session: esl.Session) -> None:
        sessions.add(session)
        channel = session.channel
        channels.add(channel)
        pressed: list[str] = []

        @channel.onDTMF()
        def any_key(digit: str) -> None:
            pressed.append(digit)

        await channel.answer()
        await channel.playback("tone_stream://%(100,0,440)")
        await channel.hangup()

    async with esl.Outbound(app, "127.0.0.1", 0) as server:
        freeswitch.dialplan["gc"] = [("socket", f"127.0.0.1:{server.port} async full")]
        warm = await freeswitch.call("gc")
        await warm.wait_hangup(10)
        await eventually(lambda: not server.sessions)
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                call = await freeswitch.call("gc")
                await call.wait_hangup(10)
            await eventually(lambda: not server.sessions)
            await asyncio.sleep(0.05)
            alive_sessions, alive_channels = len(sessions), len(channels)
        finally:
            gc.enable()
    assert (alive_sessions, alive_channels) == (0, 0)


# -- 12. an honest loss estimate -----------------------------------------------------------------------------


async def test_no_loss_reported_on_a_real_capture_replayed(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    import lzma
    from importlib.resources import files

    data = lzma.decompress(files("esl").joinpath("data/events-plain.raw.xz").read_bytes())
    await esl_client.subscribe()  # ALL, no filter
    await freeswitch.fire_raw(client_conn(freeswitch), data)
    count = data.count(b"Content-Type: text/event-plain")
    await eventually(lambda: esl_client.stats().events_received >= count, 20)
    assert esl_client.stats().events_lost == 0
