"""esl.Inbound against the fake FreeSWITCH: connect/auth, commands, jobs, subscriptions, handlers, failures."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

import esl
from esl import Inbound
from esl.exceptions import AuthenticationError, CommandError, ConnectionError, TimeoutError
from esl.testing import FakeFreeSWITCH


def last_conn(fake: FakeFreeSWITCH) -> Any:
    return fake.connections[-1]


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


# -- connecting -------------------------------------------------------------------------


async def test_connect_api_close(freeswitch: FakeFreeSWITCH) -> None:
    client = Inbound(freeswitch.host, freeswitch.port, "ClueCon")
    assert not client.connected
    async with client:
        assert client.connected
        assert (await client.api("status")).startswith("UP ")
        reply = await client.send("api version")
        assert reply.content_type == "api/response"
    assert not client.connected and client.closed
    with pytest.raises(ConnectionError):
        await client.api("status")


async def test_connect_close_by_hand(freeswitch: FakeFreeSWITCH) -> None:
    client = await Inbound(freeswitch.host, freeswitch.port).connect()
    assert await client.api("echo hi") == "hi"
    await client.close()
    await eventually(lambda: not freeswitch.connections)


async def test_wrong_password(freeswitch: FakeFreeSWITCH, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    client = Inbound(freeswitch.host, freeswitch.port, "S3cretWrong")
    with pytest.raises(AuthenticationError) as info:
        await client.connect()
    assert "S3cretWrong" not in str(info.value)
    assert "S3cretWrong" not in repr(client)
    assert "S3cretWrong" not in caplog.text
    assert not client.connected


async def test_refused_connection() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with pytest.raises(ConnectionError) as info:
        await Inbound("127.0.0.1", port, timeout=2).connect()
    assert info.value.reason


async def test_connect_times_out_without_auth_request() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never greets
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TimeoutError):
            await Inbound("127.0.0.1", port, timeout=0.1).connect()
        with pytest.raises(asyncio.TimeoutError):  # also an asyncio.TimeoutError
            await Inbound("127.0.0.1", port, timeout=0.1).connect()
    finally:
        server.close()
        await server.wait_closed()


async def test_userauth() -> None:
    async with FakeFreeSWITCH(users={"1000@default": "pw1000"}) as fake:
        async with Inbound(fake.host, fake.port, "pw1000", user="1000@default") as client:
            assert client.auth_reply["Reply-Text"] == "+OK accepted"
            assert await client.api("echo ok") == "ok"
            assert "pw1000" not in repr(client)
            assert last_conn(fake).commands[0].startswith("userauth 1000@default:")
        with pytest.raises(AuthenticationError):
            await Inbound(fake.host, fake.port, "nope", user="1000@default").connect()


async def test_password_not_in_repr_or_logs(freeswitch: FakeFreeSWITCH, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    freeswitch.password = "Pa55word!"
    client = Inbound(freeswitch.host, freeswitch.port, "Pa55word!")
    async with client:
        assert "Pa55word!" not in repr(client) and "Pa55word!" not in repr(client.protocol)
        assert client.password == "******"
    assert "Pa55word!" not in caplog.text


def test_password_with_newline_refused() -> None:
    with pytest.raises(ValueError):
        Inbound("127.0.0.1", 8021, "Clue\n\nCon")


# -- commands -----------------------------------------------------------------------------


async def test_api_check(esl_client: Inbound) -> None:
    with pytest.raises(CommandError) as info:
        await esl_client.api("no_such_command")
    assert "Command not found" in info.value.reply
    text = await esl_client.api("no_such_command", check=False)
    assert text.startswith("-ERR")


async def test_api_usage_error(freeswitch: FakeFreeSWITCH, esl_client: Inbound) -> None:
    freeswitch.api["needs_args"] = lambda args, conn: "-USAGE: needs_args <x>\n"
    with pytest.raises(CommandError):
        await esl_client.api("needs_args")


async def test_pipelined_api(esl_client: Inbound) -> None:
    results = await asyncio.gather(*(esl_client.api(f"echo {i}") for i in range(50)))
    assert results == [f"{i}" for i in range(50)]


async def test_timeouts_per_call_and_default(freeswitch: FakeFreeSWITCH) -> None:
    async with Inbound(freeswitch.host, freeswitch.port, timeout=0.1) as client:
        freeswitch.stall(True)
        with pytest.raises(TimeoutError):
            await client.api("status")  # the connection default
        with pytest.raises(TimeoutError):
            await client.api("status", timeout=0.05)
        with pytest.raises(TimeoutError):
            await client.bgapi("status", timeout=0.05)
        freeswitch.stall(False)
        # the stalled commands' late replies are consumed in order: the next command gets its own
        assert await client.api("echo after", timeout=2) == "after"


async def test_bgapi_job(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    job = await esl_client.bgapi("echo hello")
    assert isinstance(job, esl.Job)
    assert await job.wait(5) == "hello"
    assert job.success and job.event.name == "BACKGROUND_JOB" and job.event.job_uuid == job.uuid
    commands = last_conn(freeswitch).commands
    assert "event plain BACKGROUND_JOB" in commands  # subscribed for the result first
    assert commands.index("event plain BACKGROUND_JOB") < commands.index("bgapi echo hello")


async def test_bgapi_chosen_uuid_and_error(esl_client: Inbound) -> None:
    job = await esl_client.bgapi("no_such_thing", job_uuid="my-job-1")
    assert job.uuid == "my-job-1"
    with pytest.raises(CommandError):
        await job
    assert not job.success and job.result.startswith("-ERR")


async def test_bgapi_many_concurrent(esl_client: Inbound) -> None:
    jobs = await asyncio.gather(*(esl_client.bgapi(f"echo {i}") for i in range(30)))
    assert await asyncio.gather(*(j.wait(5) for j in jobs)) == [f"{i}" for i in range(30)]


async def test_bgapi_delivered_despite_user_filters(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    await esl_client.subscribe("CHANNEL_ANSWER", "BACKGROUND_JOB")
    await esl_client.filter("Unique-ID", "only-this-channel")  # would hide BACKGROUND_JOB
    job = await esl_client.bgapi("echo filtered")
    assert await job.wait(5) == "filtered"
    commands = last_conn(freeswitch).commands
    assert "filter Event-Name BACKGROUND_JOB" in commands
    # added once
    job2 = await esl_client.bgapi("echo again")
    assert await job2.wait(5) == "again"
    assert last_conn(freeswitch).commands.count("filter Event-Name BACKGROUND_JOB") == 1


async def test_job_filter_is_public_and_honoured(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    proto = esl_client
    assert proto.job_filter is False and proto.bgapi_used is False
    await esl_client.filter("Job-Owner-UUID", "some-owner")  # stands in for a filter passing our own jobs
    proto.job_filter = True
    await esl_client.bgapi("echo x")
    assert proto.bgapi_used is True
    assert "filter Event-Name BACKGROUND_JOB" not in last_conn(freeswitch).commands


async def test_filters_subscriptions_format_read_only(esl_client: Inbound) -> None:
    assert esl_client.filters == () and esl_client.subscriptions == frozenset()
    assert esl_client.event_format == "plain"
    await esl_client.subscribe("CHANNEL_ANSWER", format="json")
    await esl_client.filter("Unique-ID", "abc")
    assert esl_client.event_format == "json"
    assert esl_client.subscriptions == frozenset({"CHANNEL_ANSWER"})
    assert esl_client.filters == (("Unique-ID", "abc"),)
    with pytest.raises(AttributeError):
        esl_client.filters = ()  # type: ignore[misc]


async def test_filter_after_bgapi_keeps_jobs(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    assert await (await esl_client.bgapi("echo one")).wait(5) == "one"
    await esl_client.filter("Unique-ID", "abc")
    commands = last_conn(freeswitch).commands
    assert commands.index("filter Event-Name BACKGROUND_JOB") < commands.index("filter Unique-ID abc")
    assert await (await esl_client.bgapi("echo two")).wait(5) == "two"


# -- subscriptions, filters and the other commands ---------------------------------------


async def test_subscribe_formats_and_custom(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    got: list[Any] = []
    esl_client.on("sofia::register", got.append)
    esl_client.on("CHANNEL_ANSWER", got.append)
    text = await esl_client.subscribe("CHANNEL_ANSWER", "CUSTOM sofia::register", format="json")
    assert text.startswith("+OK")
    assert last_conn(freeswitch).commands[-1] == "event json CHANNEL_ANSWER CUSTOM sofia::register"
    await freeswitch.fire(freeswitch.make_event("CUSTOM", {"from-user": "1000"}, subclass="sofia::register"))
    await freeswitch.fire(freeswitch.make_event("CUSTOM", {"from-user": "1001"}, subclass="other::thing"))
    await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "u1"}))
    await freeswitch.fire(freeswitch.make_event("CHANNEL_HANGUP", {"Unique-ID": "u1"}))
    await eventually(lambda: len(got) == 2)
    assert got[0]["from-user"] == "1000" and got[0].format == "json"
    assert got[1].name == "CHANNEL_ANSWER"
    await esl_client.unsubscribe("CHANNEL_ANSWER")
    assert last_conn(freeswitch).commands[-1] == "nixevent CHANNEL_ANSWER"
    assert "CHANNEL_ANSWER" not in esl_client.subscriptions  # type: ignore[union-attr]


async def test_subscribe_all_and_xml(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    await esl_client.subscribe(format="xml")
    assert last_conn(freeswitch).commands[-1] == "event xml ALL"
    async with esl_client.events() as stream:
        await freeswitch.fire(freeswitch.make_event("HEARTBEAT", {"Up-Time": "1 year"}))
        ev = await stream.get(timeout=5)
    assert ev.name == "HEARTBEAT" and ev["Up-Time"] == "1 year" and ev.format == "xml"
    with pytest.raises(ValueError):
        await esl_client.subscribe("HEARTBEAT", format="yaml")


async def test_noevents_and_errors(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    with pytest.raises(CommandError):
        await esl_client.unsubscribe()  # "-ERR not listening for events"
    await esl_client.subscribe("HEARTBEAT")
    assert (await esl_client.unsubscribe()).startswith("+OK")
    assert last_conn(freeswitch).commands[-1] == "noevents"


async def test_filters(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    got: list[Any] = []
    esl_client.on("*", got.append)
    await esl_client.subscribe("CHANNEL_ANSWER")
    assert (await esl_client.filter("Unique-ID", "keep")).startswith("+OK filter added")
    await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "drop"}))
    await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "keep"}))
    await eventually(lambda: len(got) == 1)
    assert got[0].uuid == "keep"
    assert (await esl_client.filter_delete("Unique-ID", "keep")).startswith("+OK filter deleted")
    assert last_conn(freeswitch).filters == []
    await esl_client.filter("Unique-ID", "a")
    await esl_client.filter_delete("all")
    assert esl_client.filters == ()  # type: ignore[union-attr]


async def test_sendevent(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    text = await esl_client.sendevent("CUSTOM", {"Event-Subclass": "esltest::load", "X-N": "1"}, "line1\nline2")
    assert text.startswith("+OK")
    ev = freeswitch.received_events[-1]
    assert ev.subclass == "esltest::load" and ev["X-N"] == "1" and ev.body == "line1\nline2"


async def test_log_and_nolog(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    lines: list[Any] = []
    esl_client.on("log/data", lines.append)
    assert (await esl_client.log("debug")).startswith("+OK log level")
    freeswitch.log("hello from the log", level=7)
    await eventually(lambda: lines)
    assert "hello from the log" in lines[0].body and lines[0]["Log-Level"] == "7"
    assert (await esl_client.nolog()).startswith("+OK")
    with pytest.raises(CommandError):
        await esl_client.nolog()  # "-ERR not loging"


async def test_session_commands_without_session_raise(esl_client: Inbound) -> None:
    with pytest.raises(CommandError):
        await esl_client.myevents("no-such-uuid", "plain")
    with pytest.raises(CommandError):
        await esl_client.divert_events(True)
    with pytest.raises(CommandError):
        await esl_client.linger(5)
    with pytest.raises(CommandError):
        await esl_client.nolinger()
    with pytest.raises(ValueError):
        await esl_client.linger(-1)


async def test_exit(freeswitch: FakeFreeSWITCH) -> None:
    client = await Inbound(freeswitch.host, freeswitch.port).connect()
    assert await client.exit() == "+OK bye"
    await eventually(lambda: not client.connected)
    assert client.closed
    with pytest.raises(ConnectionError):
        await client.api("status")
    await client.close()


# -- handlers and iterators ----------------------------------------------------------------


async def test_handlers_sync_async_decorator_remove_and_raising(
    esl_client: Inbound, freeswitch: FakeFreeSWITCH, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    @esl_client.on("CHANNEL_ANSWER")
    def sync_handler(event: Any) -> None:
        calls.append("sync:" + event.uuid)

    @esl_client.on("CHANNEL_ANSWER")
    async def async_handler(event: Any) -> None:
        await asyncio.sleep(0)
        calls.append("async:" + event.uuid)

    def boom(event: Any) -> None:
        raise RuntimeError("handler bug")

    async def aboom(event: Any) -> None:
        raise RuntimeError("async handler bug")

    esl_client.on("*", boom)
    esl_client.on("*", aboom)
    star: list[str] = []
    esl_client.on("*", lambda e: star.append(e.name))
    await esl_client.subscribe("CHANNEL_ANSWER", "CHANNEL_HANGUP")
    await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "u1"}))
    await freeswitch.fire(freeswitch.make_event("CHANNEL_HANGUP", {"Unique-ID": "u1"}))
    await eventually(lambda: len(calls) == 2 and len(star) == 2)
    assert sorted(calls) == ["async:u1", "sync:u1"]
    assert star == ["CHANNEL_ANSWER", "CHANNEL_HANGUP"]
    await eventually(lambda: esl_client.stats().handler_errors == 4)
    assert "handler bug" in caplog.text
    # the reader survived
    assert await esl_client.api("echo alive") == "alive"
    esl_client.remove("CHANNEL_ANSWER", sync_handler)
    with pytest.raises(ValueError):
        esl_client.remove("CHANNEL_ANSWER", sync_handler)
    await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "u2"}))
    await eventually(lambda: "async:u2" in calls)
    assert "sync:u2" not in calls


async def test_events_iterator(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    await esl_client.subscribe("CHANNEL_ANSWER", "CHANNEL_HANGUP")
    stream = esl_client.events("CHANNEL_HANGUP", maxsize=5)
    for i in range(3):
        await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": f"a{i}"}))
        await freeswitch.fire(freeswitch.make_event("CHANNEL_HANGUP", {"Unique-ID": f"h{i}"}))
    seen = []
    async for ev in stream:
        seen.append(ev.uuid)
        if len(seen) == 3:
            break
    assert seen == ["h0", "h1", "h2"]
    stream.close()
    with pytest.raises(TimeoutError):
        await esl_client.events("CHANNEL_HANGUP").get(timeout=0.05)


async def test_events_iterator_bounded_drop(freeswitch: FakeFreeSWITCH) -> None:
    async with Inbound(freeswitch.host, freeswitch.port, policy="drop") as client:
        await client.subscribe("HEARTBEAT")
        stream = client.events("HEARTBEAT", maxsize=10)
        for _ in range(50):
            await freeswitch.fire(freeswitch.make_event("HEARTBEAT"))
        await eventually(lambda: client.stats().events_received >= 50)
        assert len(stream) == 10 and stream.dropped == 40 and client.stats().events_dropped == 40


async def test_owned_channel_gets_its_events_only(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    channel = esl.Channel.attach(esl_client, "chan-9")
    await channel.ensure_events()
    await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "chan-8"}))
    await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "chan-9"}))
    await eventually(lambda: channel.answered)
    assert channel.events is not None and [e.uuid for e in channel.events] == ["chan-9"]
    assert esl_client.stats().channels == 1


# -- failures and reconnect -----------------------------------------------------------------


async def test_drop_fails_everything_pending(freeswitch: FakeFreeSWITCH) -> None:
    client = await Inbound(freeswitch.host, freeswitch.port, timeout=10).connect()
    closed: list[BaseException] = []
    client.add_close_callback(closed.append)
    await client.subscribe("HEARTBEAT")
    job = await client.bgapi("echo never", job_timeout=None)
    freeswitch.api["hang"] = lambda args, conn: asyncio.sleep(30)
    stream = client.events("HEARTBEAT")
    pending = [asyncio.ensure_future(client.api("hang")) for _ in range(3)]
    await asyncio.sleep(0.05)
    freeswitch.stall(True)
    await freeswitch.drop_all()
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), 5)
    assert all(isinstance(r, ConnectionError) for r in results)
    if not job.done() or job.exception() is not None:
        with pytest.raises(ConnectionError):
            await job.wait(5)
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(stream.get(), 5)
    assert closed and client.close_reason
    await client.close()


async def test_reconnect_resumes_delivery(freeswitch: FakeFreeSWITCH) -> None:
    client = Inbound(freeswitch.host, freeswitch.port, reconnect=True, reconnect_delay=0.01, timeout=5)
    got: list[str] = []
    client.on("CHANNEL_ANSWER", lambda e: got.append(e.uuid))
    reconnected: list[Inbound] = []
    client.add_reconnect_callback(reconnected.append)
    async with client:
        stream = client.events("CHANNEL_ANSWER")
        await client.subscribe("CHANNEL_ANSWER", "CUSTOM my::sub", format="json")
        await client.filter("Unique-ID", "u-keep")
        await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "u-keep"}))
        await eventually(lambda: got == ["u-keep"])

        freeswitch.api["hang"] = lambda args, conn: asyncio.sleep(30)
        in_flight = asyncio.ensure_future(client.api("hang"))
        await asyncio.sleep(0.02)
        await freeswitch.drop_all()
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(in_flight, 5)  # failed, not replayed
        await client.wait_connected(timeout=5)
        assert client.reconnects == 1 and reconnected == [client]
        conn = last_conn(freeswitch)
        await eventually(lambda: conn.authenticated)
        assert "filter Unique-ID u-keep" in conn.commands
        assert "event json CHANNEL_ANSWER CUSTOM my::sub" in conn.commands
        assert "api hang" not in conn.commands
        await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "u-other"}))
        await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "u-keep"}))
        await eventually(lambda: len(got) == 2)
        assert got == ["u-keep", "u-keep"]
        assert [(await stream.get(timeout=5)).uuid for _ in range(2)] == ["u-keep", "u-keep"]
        assert await client.api("echo back") == "back"


async def test_reconnect_gives_up(freeswitch: FakeFreeSWITCH) -> None:
    client = Inbound(
        freeswitch.host, freeswitch.port, reconnect=True, reconnect_delay=0.01, reconnect_attempts=2, timeout=1
    )
    closed: list[BaseException] = []
    client.add_close_callback(closed.append)
    await client.connect()
    await freeswitch.stop()  # nothing listens any more
    await eventually(lambda: closed, timeout=5)
    assert isinstance(closed[0], ConnectionError) and client.closed
    with pytest.raises(ConnectionError):
        await client.wait_connected(0.1)
    await client.close()


async def test_disconnect_notice_from_server(freeswitch: FakeFreeSWITCH) -> None:
    client = await Inbound(freeswitch.host, freeswitch.port).connect()
    await last_conn(freeswitch).close(notice=True)
    await eventually(lambda: not client.connected)
    assert "goodbye" in (client.close_reason or "")
    await client.close()


# -- flow control --------------------------------------------------------------------------


def burst(count: int, name: str = "HEARTBEAT") -> bytes:
    frames = []
    for seq in range(1, count + 1):
        body = f"Event-Name: {name}\nEvent-Sequence: {seq}\nUnique-ID: u{seq % 7}\n\n"
        frames.append(f"Content-Length: {len(body)}\nContent-Type: text/event-plain\n\n{body}")
    return "".join(frames).encode()


async def test_slow_handler_burst_drop_policy(freeswitch: FakeFreeSWITCH) -> None:
    total = 100_000
    max_queue = 1_000
    async with Inbound(freeswitch.host, freeswitch.port, policy="drop", max_queue=max_queue) as client:
        handled = 0
        deepest = 0

        async def slow(event: Any) -> None:
            nonlocal handled, deepest
            deepest = max(deepest, client.stats().queue_depth)
            handled += 1
            await asyncio.sleep(0.001)

        client.on("HEARTBEAT", slow)
        await freeswitch.fire_raw(last_conn(freeswitch), burst(total))
        await eventually(lambda: client.stats().events_received == total, timeout=60)
        stats = client.stats()
        assert stats.events_dropped > 0
        assert stats.queue_depth <= max_queue and deepest <= max_queue
        client.executor.close()  # stop the slow handler; what it handled + dropped + queued = all
        assert handled + stats.events_dropped + stats.queue_depth == total


async def test_slow_handler_burst_pause_policy(freeswitch: FakeFreeSWITCH) -> None:
    total = 100_000
    max_queue = 500
    async with Inbound(freeswitch.host, freeswitch.port, policy="pause", max_queue=max_queue) as client:
        handled = 0
        deepest = 0

        async def slowish(event: Any) -> None:
            nonlocal handled, deepest
            depth = client.executor.depth  # the handler queue; the rest of a read waits in a bounded backlog
            if depth > deepest:
                deepest = depth
            handled += 1
            if handled % 100 == 0:
                await asyncio.sleep(0)

        client.on("HEARTBEAT", slowish)
        await freeswitch.fire_raw(last_conn(freeswitch), burst(total))
        await eventually(lambda: handled == total, timeout=60)
        stats = client.stats()
        assert stats.events_dropped == 0 and stats.events_received == total
        assert stats.pauses > 0  # backpressure was applied
        assert deepest <= 2 * max_queue
        # commands still get through while paused reading is in effect
        assert await client.api("echo ok") == "ok"


async def test_command_from_handler_while_paused_does_not_deadlock(freeswitch: FakeFreeSWITCH) -> None:
    async with Inbound(freeswitch.host, freeswitch.port, policy="pause", max_queue=5) as client:
        answers: list[str] = []

        async def handler(event: Any) -> None:
            answers.append(await client.api(f"echo {event.sequence}", timeout=5))

        client.on("HEARTBEAT", handler)
        await freeswitch.fire_raw(last_conn(freeswitch), burst(200))
        await eventually(lambda: len(answers) == 200, timeout=20)
        assert answers[:3] == ["1", "2", "3"]


async def test_events_lost_counts_holes_not_reordering(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    await esl_client.subscribe()  # ALL, no filters: the only case where Event-Sequence tells losses
    frames = burst(20_000)
    parts = [b"Content-Length: " + p for p in frames.split(b"Content-Length: ")[1:]]
    for i in range(0, 19_990, 10):  # FreeSWITCH's threads fire events slightly out of order
        parts[i], parts[i + 3] = parts[i + 3], parts[i]
    lost = set(range(100, 150))  # a run really missing (a full listener queue) ...
    unfired = {700, 900}  # ... and single numbers FreeSWITCH created but never fired
    kept = b"".join(p for i, p in enumerate(parts) if i not in lost | unfired)
    await freeswitch.fire_raw(last_conn(freeswitch), kept)
    await eventually(lambda: esl_client.stats().events_received == 20_000 - 52, timeout=20)
    assert esl_client.stats().events_lost == 50


async def test_dropped_full_iterator_resumes_reading(freeswitch: FakeFreeSWITCH) -> None:
    async with Inbound(freeswitch.host, freeswitch.port, policy="pause") as client:
        stream = client.events("HEARTBEAT", maxsize=3)
        await freeswitch.fire_raw(last_conn(freeswitch), burst(10))
        await eventually(lambda: client.stats().paused)
        assert len(stream) == 3 and client.stats().queue_depth == 10  # 7 held back, owners saw all 10
        del stream  # the user walks away from a full iterator: reading must not stay paused
        await eventually(lambda: client.stats().events_received == 10)
        assert not client.stats().paused and client.stats().events_dropped == 0


async def test_events_after_close_end_at_once(freeswitch: FakeFreeSWITCH) -> None:
    client = await Inbound(freeswitch.host, freeswitch.port).connect()
    await client.close()
    with pytest.raises(StopAsyncIteration):
        await client.events().get(timeout=1)
    with pytest.raises(ConnectionError):
        await client.wait_connected(0.1)


async def test_wait_connected_and_timeout_setter(freeswitch: FakeFreeSWITCH) -> None:
    client = Inbound(freeswitch.host, freeswitch.port, timeout=5)
    with pytest.raises(ConnectionError):
        await client.wait_connected(0.1)  # never connected, not reconnecting: fails at once
    async with client:
        await client.wait_connected(0.1)
        client.timeout = 0.05
        assert client.timeout == 0.05
        freeswitch.stall(True)
        with pytest.raises(TimeoutError):
            await client.api("status")
        freeswitch.stall(False)


async def test_myevents_and_linger_on_an_inbound_connection(freeswitch: FakeFreeSWITCH) -> None:
    async with Inbound(freeswitch.host, freeswitch.port) as control:
        uuid = (await control.api("originate user/1000 &park")).split()[1]
        watcher = await Inbound(freeswitch.host, freeswitch.port).connect()
        seen: list[str] = []
        watcher.on("*", lambda e: seen.append(e.name))
        watcher.on("text/disconnect-notice", lambda m: seen.append(m.get("Content-Disposition") or "notice"))
        assert (await watcher.myevents(uuid)).startswith("+OK")
        assert (await watcher.linger(1)).startswith("+OK will linger")
        await control.api(f"uuid_kill {uuid}")
        await eventually(lambda: "linger" in seen)
        assert watcher.connected and watcher.protocol.lingering  # type: ignore[union-attr]
        await eventually(lambda: "CHANNEL_HANGUP_COMPLETE" in seen)
        assert seen.index("CHANNEL_HANGUP") < seen.index("linger")
        await eventually(lambda: not watcher.connected, timeout=10)  # then FreeSWITCH closes
        assert watcher.close_reason and "goodbye" in watcher.close_reason
        await watcher.close()


async def test_keepalive_detects_a_frozen_server(freeswitch: FakeFreeSWITCH) -> None:
    async with Inbound(freeswitch.host, freeswitch.port, keepalive=0.1) as client:
        closed: list[BaseException] = []
        client.add_close_callback(closed.append)
        await asyncio.sleep(0.3)  # idle but answering: the probes keep it up
        assert client.connected and "api uptime" in last_conn(freeswitch).commands
        freeswitch.stall(True)
        waiting = asyncio.ensure_future(client.api("status", timeout=None))  # would hang forever
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(waiting, 5)
        assert "keepalive" in (client.close_reason or "")
        assert closed and not client.connected
        freeswitch.stall(False)


async def test_drop_in_the_middle_of_100_pipelined_commands(freeswitch: FakeFreeSWITCH) -> None:
    answered = 0

    async def slow(args: str, conn: Any) -> str:
        nonlocal answered
        await asyncio.sleep(0.002)
        answered += 1
        return args

    freeswitch.api["slow"] = slow
    async with Inbound(freeswitch.host, freeswitch.port, timeout=30) as client:
        tasks = [asyncio.ensure_future(client.api(f"slow {i}")) for i in range(100)]
        await eventually(lambda: answered >= 30)
        await freeswitch.drop_all()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        ok = [r for r in results if isinstance(r, str)]
        failed = [r for r in results if isinstance(r, ConnectionError)]
        assert len(ok) + len(failed) == 100 and len(failed) > 0
        assert ok == [f"{i}" for i in range(len(ok))]  # in order, then every later one failed
        assert all(isinstance(r, ConnectionError) for r in results[len(ok):])


async def test_injection_attempts_write_nothing(esl_client: Inbound, freeswitch: FakeFreeSWITCH) -> None:
    before = list(last_conn(freeswitch).commands)
    attempts = [
        esl_client.api("status\n\nexit"),
        esl_client.bgapi("originate user/1000 &park\n\napi hupall"),
        esl_client.send("api status", headers={"X": "1\n\nexit"}),
        esl_client.sendevent("CUSTOM", {"Event-Subclass": "x::y\r\n\r\napi hupall"}),
        esl_client.sendmsg_raw("uuid\n\nexit", {"call-command": "hangup"}),
        esl_client.filter("Unique-ID\nexit", "x"),
        esl_client.filter_delete("Unique-ID", "x\r\nexit"),
        esl_client.subscribe("HEARTBEAT\n\nexit"),
        esl_client.unsubscribe("HEARTBEAT\rexit"),
        esl_client.log("debug\n\nexit"),
        esl_client.myevents("u\nexit"),
        esl_client.command("noevents\n\nexit"),
    ]
    for attempt in attempts:
        with pytest.raises(ValueError):
            await attempt
    assert await esl_client.api("echo still here") == "still here"
    assert last_conn(freeswitch).commands == [*before, "api echo still here"]


async def test_reconnect_after_freeswitch_restart() -> None:
    first = await FakeFreeSWITCH().start()
    port = first.port
    client = Inbound(first.host, port, reconnect=True, reconnect_delay=0.01, reconnect_max_delay=0.05)
    got: list[str] = []
    client.on("HEARTBEAT", lambda e: got.append(e["Event-Info"]))
    async with client:
        await client.subscribe("HEARTBEAT")
        await first.stop()  # FreeSWITCH goes away: attempts fail with backoff
        await eventually(lambda: not client.connected)
        await asyncio.sleep(0.1)
        assert not client.closed  # still trying
        with pytest.raises(ConnectionError):
            await client.api("status")  # commands fail at once meanwhile
        second = await FakeFreeSWITCH(port=port).start()
        try:
            await client.wait_connected(timeout=5)
            conn = await second.wait_for_connection()
            await eventually(lambda: "event plain HEARTBEAT" in conn.commands)
            await second.fire(second.make_event("HEARTBEAT", {"Event-Info": "after restart"}))
            await eventually(lambda: got == ["after restart"])
        finally:
            await client.close()
            await second.stop()
