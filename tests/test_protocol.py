"""The wire and the command layer against a scripted raw server: reply FIFO, pipelining, owners, failures.

These tests drive the wire byte by byte (orders FreeSWITCH itself never produces
included, such as a BACKGROUND_JOB before its bgapi reply), so they use a
minimal loopback server whose every write is explicit.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from esl.connection import Connection
from esl.core import Event
from esl.exceptions import CommandError, ConnectionError, ProtocolError, TimeoutError
from esl.protocol import ESLProtocol


def reply(text: str) -> bytes:
    return f"Content-Type: command/reply\nReply-Text: {text}\n\n".encode()


def api_response(body: str) -> bytes:
    data = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n" % len(data) + data


def event(name: str, body: str | None = None, **headers: str) -> bytes:
    pairs = [("Event-Name", name)] + [(k.replace("_", "-"), v) for k, v in headers.items()]
    return Event.build(pairs, body=body).frame("plain")


class RawServer:
    """A loopback server that records what it reads and writes only what the test says."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.got_data = asyncio.Event()

    async def __aenter__(self) -> RawServer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connected.set()
        while True:
            data = await reader.read(65536)
            if not data:
                return
            self.received += data
            self.got_data.set()

    async def commands(self, count: int, timeout: float = 5.0) -> list[str]:
        """Wait until ``count`` commands were read; their first lines."""

        async def enough() -> None:
            while self.received.count(b"\n\n") < count:
                self.got_data.clear()
                await self.got_data.wait()

        await asyncio.wait_for(enough(), timeout)
        return [block.split(b"\n", 1)[0].decode() for block in bytes(self.received).split(b"\n\n") if block]

    def write(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    def abort(self) -> None:
        assert self.writer is not None
        self.writer.transport.abort()


class Conn(Connection):
    """A Connection over a raw socket with no authentication, ended for good when the socket ends."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lost: list[ConnectionError] = []
        self.lingered: list[Event] = []

    def _socket_lost(self, protocol: ESLProtocol, exc: ConnectionError) -> None:
        self.lost.append(exc)
        self.owners.close(exc)
        self.dispatcher.close(None if protocol.by_client else exc)

    def _wire_linger(self, notice: Event) -> None:
        self.lingered.append(notice)

    def close(self) -> None:
        assert self.protocol is not None
        self.protocol.close()

    @property
    def close_reason(self) -> str | None:
        return None if self.protocol is None else self.protocol.close_reason


class Owner:
    """A minimal channel owner for the owners table."""

    def __init__(self, uuid: str, seen: list[str]) -> None:
        self.uuid = uuid
        self.seen = seen

    def _on_event(self, event: Event) -> None:
        self.seen.append("owner:" + (event.name or ""))

    def _renamed(self, old: str, new: str) -> None:
        self.uuid = new

    def _connection_lost(self, exc: ConnectionError) -> None:
        pass

    def _connection_closed(self, exc: ConnectionError) -> None:
        pass

    def _ended_while_away(self, reason: str) -> None:
        pass


async def connect(server: RawServer, **kwargs: Any) -> Conn:
    loop = asyncio.get_running_loop()
    conn = Conn(**kwargs)
    _, conn.protocol = await loop.create_connection(conn._new_protocol, "127.0.0.1", server.port)
    await asyncio.wait_for(server.connected.wait(), 5)
    return conn


async def test_replies_resolve_in_fifo_order_between_events() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        seen: list[str] = []
        proto.on("*", lambda e: seen.append(e.name))
        tasks = [asyncio.ensure_future(proto.send(f"api echo {i}")) for i in range(3)]
        await srv.commands(3)
        srv.write(event("HEARTBEAT") + api_response("0") + event("CHANNEL_CREATE") + api_response("1"))
        srv.write(event("CHANNEL_ANSWER") + api_response("2"))
        replies = await asyncio.gather(*tasks)
        assert [r.body for r in replies] == ["0", "1", "2"]
        assert seen == ["HEARTBEAT", "CHANNEL_CREATE", "CHANNEL_ANSWER"]
        proto.close()


async def test_byte_by_byte_stream() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        seen: list[Event] = []
        proto.on("CUSTOM", seen.append)
        task = asyncio.ensure_future(proto.api("status"))
        await srv.commands(1)
        data = event("CUSTOM", body="a: b\nbody", Event_Subclass="t::x", Unique_ID="u1") + api_response("UP\n")
        for i in range(len(data)):
            srv.write(data[i : i + 1])
            if i % 97 == 0:
                await asyncio.sleep(0)
        assert await asyncio.wait_for(task, 5) == "UP\n"
        assert len(seen) == 1 and seen[0].body == "a: b\nbody" and seen[0].subclass == "t::x"
        proto.close()


async def test_disconnect_in_the_middle_of_100_pipelined_commands() -> None:
    async with RawServer() as srv:
        proto = await connect(srv, timeout=30)
        closed = proto.lost
        tasks = [asyncio.ensure_future(proto.api(f"echo {i}")) for i in range(100)]
        await srv.commands(100)
        srv.write(b"".join(api_response(f"{i}") for i in range(40)))
        await asyncio.sleep(0.05)
        srv.abort()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        assert results[:40] == [f"{i}" for i in range(40)]
        assert all(isinstance(r, ConnectionError) for r in results[40:])
        assert len(closed) == 1 and isinstance(closed[0], ConnectionError)
        assert proto.closed and not proto.connected
        assert proto.close_reason
        with pytest.raises(ConnectionError):
            await proto.api("status")  # fails at once, nothing pending


async def test_disconnect_notice_fails_pending_with_its_text() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        notices: list[Event] = []
        proto.on("text/disconnect-notice", notices.append)
        stream = proto.events()
        task = asyncio.ensure_future(proto.api("status"))
        await srv.commands(1)
        body = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
        srv.write(b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(body) + body)
        with pytest.raises(ConnectionError) as info:
            await asyncio.wait_for(task, 5)
        assert "goodbye" in (info.value.reason or "")
        assert "goodbye" in (proto.close_reason or "")
        assert len(notices) == 1
        with pytest.raises(ConnectionError):  # an iterator of a lost connection raises, never hangs
            await asyncio.wait_for(stream.get(), 5)


async def test_linger_notice_keeps_connection_open() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        srv.write(
            b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: u1\nContent-Disposition: linger\n"
            b"Channel-Name: sofia/x\nLinger-Time: 5\nContent-Length: 0\n\n"
        )
        task = asyncio.ensure_future(proto.api("status"))
        await srv.commands(1)
        srv.write(api_response("UP"))
        assert await asyncio.wait_for(task, 5) == "UP"
        assert proto.protocol is not None and proto.protocol.lingering and proto.connected
        assert proto.lingered[0]["Controlled-Session-UUID"] == "u1"
        proto.close()


async def test_owner_before_handlers_and_job_resolved_before_reply() -> None:
    # The BACKGROUND_JOB arriving before the bgapi reply (the race libraries lose) is still caught,
    # because the job is registered before the command is written.
    async with RawServer() as srv:
        proto = await connect(srv)
        order: list[str] = []
        proto.owners.add_channel(Owner("chan-1", order))
        proto.on("*", lambda e: order.append("handler:" + e.name))
        proto._subs.add("ALL")  # pretend subscribed, so bgapi sends no `event` first
        task = asyncio.ensure_future(proto.bgapi("status", job_uuid="job-1"))
        await srv.commands(1)
        srv.write(event("CHANNEL_ANSWER", Unique_ID="chan-1"))
        srv.write(event("BACKGROUND_JOB", body="+OK early\n", Job_UUID="job-1"))
        srv.write(reply("+OK Job-UUID: job-1"))
        job = await asyncio.wait_for(task, 5)
        assert job.done() and await job == "+OK early\n"
        assert order == ["owner:CHANNEL_ANSWER", "handler:CHANNEL_ANSWER", "handler:BACKGROUND_JOB"]
        assert proto.jobs == {}
        assert srv.received.endswith(b"bgapi status\nJob-UUID: job-1\n\n")
        proto.close()


async def test_job_result_after_reply_and_other_jobs_ignored() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        proto._subs.add("BACKGROUND_JOB")
        task = asyncio.ensure_future(proto.bgapi("echo hi"))
        await srv.commands(1)
        job_uuid = srv.received.split(b"Job-UUID: ")[1].split(b"\n")[0].decode()
        srv.write(reply(f"+OK Job-UUID: {job_uuid}"))
        job = await asyncio.wait_for(task, 5)
        assert not job.done()
        srv.write(event("BACKGROUND_JOB", body="+OK someone else\n", Job_UUID="not-mine"))
        srv.write(event("BACKGROUND_JOB", body="hi\n", Job_UUID=job_uuid))
        assert await job.wait(5) == "hi\n"
        proto.close()


async def test_bgapi_refused_raises_and_unregisters() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        proto._subs.add("ALL")
        task = asyncio.ensure_future(proto.bgapi("status", job_uuid="j9"))
        await srv.commands(1)
        srv.write(reply("-ERR permission denied"))
        with pytest.raises(CommandError):
            await asyncio.wait_for(task, 5)
        assert proto.jobs == {} and proto.owners.active == 0
        proto.close()


async def test_pending_job_fails_on_drop() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        proto._subs.add("ALL")
        task = asyncio.ensure_future(proto.bgapi("status"))
        await srv.commands(1)
        job_uuid = srv.received.split(b"Job-UUID: ")[1].split(b"\n")[0].decode()
        srv.write(reply(f"+OK Job-UUID: {job_uuid}"))
        job = await asyncio.wait_for(task, 5)
        srv.abort()
        with pytest.raises(ConnectionError):
            await job.wait(5)


def _probe_nonce(srv: RawServer) -> str:
    return bytes(srv.received).split(b"api echo ")[1].split(b"\n")[0].decode()


async def test_timeout_keeps_fifo_aligned() -> None:
    # A late reply still lands in the timed-out command's slot; the probe sent after the
    # timeout is answered in turn and the next command gets its own reply.
    async with RawServer() as srv:
        proto = await connect(srv)
        with pytest.raises(TimeoutError):
            await proto.api("slow", timeout=0.05)
        task = asyncio.ensure_future(proto.api("fast"))
        cmds = await srv.commands(3)
        assert cmds[1].startswith("api echo esl-probe-")
        srv.write(api_response("late answer to slow") + api_response(_probe_nonce(srv)) + api_response("answer to fast"))
        assert await asyncio.wait_for(task, 5) == "answer to fast"
        proto.close()


async def test_lost_reply_is_skipped_after_the_probe() -> None:
    # The reply to "lost" never comes (merged into another frame on the way): without the probe,
    # every later reply would resolve the command before it, for ever.
    async with RawServer() as srv:
        proto = await connect(srv)
        with pytest.raises(TimeoutError):
            await proto.api("lost", timeout=0.05)
        task = asyncio.ensure_future(proto.api("next"))
        await srv.commands(3)
        srv.write(api_response(_probe_nonce(srv)) + api_response("answer to next"))
        assert await asyncio.wait_for(task, 5) == "answer to next"
        assert proto.protocol is not None and proto.protocol.lost_replies == 1 and proto.connected
        proto.close()


async def test_reply_of_the_wrong_kind_closes_the_connection() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        task = asyncio.ensure_future(proto.command("filter Unique-ID x"))
        await srv.commands(1)
        srv.write(api_response("an api response where a command reply is due"))
        with pytest.raises(ConnectionError) as info:
            await asyncio.wait_for(task, 5)
        assert "out of step" in str(info.value) and proto.closed


async def test_bgapi_reply_for_another_job_closes_the_connection() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        proto._subs.add("ALL")
        task = asyncio.ensure_future(proto.bgapi("status", job_uuid="mine"))
        await srv.commands(1)
        srv.write(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: theirs\nJob-UUID: theirs\n\n")
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(task, 5)
        assert proto.jobs == {}


async def test_malformed_event_costs_that_event_only() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        seen: list[str] = []
        proto.on("*", lambda e: seen.append(e.name or ""))
        bad = b'{"Event-Name": "HEARTBEAT", "Event-Sequence": {"deep": [1, 2]}, "Unique-ID": ["x"]}'
        srv.write(b"Content-Type: text/event-json\nContent-Length: %d\n\n" % len(bad) + bad)
        srv.write(event("HEARTBEAT", Event_Sequence="7"))
        task = asyncio.ensure_future(proto.api("status"))
        await srv.commands(1)
        srv.write(api_response("UP"))
        assert await asyncio.wait_for(task, 5) == "UP"
        stats = proto.stats()
        assert proto.connected and seen[-1] == "HEARTBEAT"
        assert stats.events_received == 2 and stats.events_malformed + len(seen) == 2
        proto.close()


async def test_protocol_error_closes_with_connection_error() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        task = asyncio.ensure_future(proto.api("status"))
        await srv.commands(1)
        srv.write(b"Content-Type: api/response\nContent-Length: banana\n\n")
        with pytest.raises(ConnectionError) as info:
            await asyncio.wait_for(task, 5)
        assert "protocol error" in str(info.value)


async def test_unknown_content_type_and_log_data_go_to_their_handlers() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        got: list[str] = []
        proto.on("log/data", lambda m: got.append(m.body))
        proto.on("text/rude-rejection", lambda m: got.append("rude"))
        proto.on("x/new-thing", lambda m: got.append(m.content_type))
        task = asyncio.ensure_future(proto.api("status"))
        await srv.commands(1)
        srv.write(b"Content-Type: log/data\nContent-Length: 5\nLog-Level: 7\n\nhello")
        srv.write(b"Content-Type: x/new-thing\n\n")
        srv.write(api_response("ok"))
        assert await asyncio.wait_for(task, 5) == "ok"
        assert got == ["hello", "x/new-thing"]
        proto.close()


async def test_injection_refused_before_write() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        for call in (
            proto.api("status\n\nexit"),
            proto.send("api status\r\n\r\nexit"),
            proto.bgapi("status\nJob-UUID: x"),
            proto.sendevent("CUSTOM", {"Event-Subclass": "a\n\nexit"}),
            proto.filter("Unique-ID", "x\nexit"),
            proto.subscribe("CHANNEL_ANSWER\n\nexit"),
            proto.sendmsg_raw("u1", {"execute-app-arg": "x\n\nexit"}),
            proto.myevents("u1\nexit"),
        ):
            with pytest.raises(ValueError):
                await call
        await asyncio.sleep(0.05)
        assert bytes(srv.received) == b""
        proto.close()


async def test_close_fails_pending_and_ends_streams_quietly() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        stream = proto.events("CHANNEL_ANSWER")
        task = asyncio.ensure_future(proto.api("status"))
        await srv.commands(1)
        proto.close()
        with pytest.raises(ConnectionError):
            await task
        with pytest.raises(StopAsyncIteration):
            await stream.get()
        assert proto.protocol is not None
        await proto.protocol.wait_closed(1)


async def test_rude_rejection_ends_the_connection() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        task = asyncio.ensure_future(proto.api("status"))
        await srv.commands(1)
        srv.write(b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n")
        with pytest.raises(ConnectionError) as info:
            await asyncio.wait_for(task, 5)
        assert "Access Denied" in (info.value.reason or "")
        assert proto.closed


async def test_async_handlers_run_in_order_one_at_a_time() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        order: list[tuple[str, int]] = []

        async def handler(event: Event) -> None:
            order.append(("start", event.sequence or 0))
            await asyncio.sleep(0.001)
            order.append(("end", event.sequence or 0))

        proto.on("HEARTBEAT", handler)
        srv.write(b"".join(event("HEARTBEAT", Event_Sequence=str(i)) for i in range(1, 6)))
        await asyncio.wait_for(_until(lambda: len(order) == 10), 5)
        assert order == [(step, i) for i in range(1, 6) for step in ("start", "end")]
        proto.close()


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.002)


async def test_sync_handler_returning_a_coroutine_is_awaited() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        done: list[str] = []

        async def record(event: Event) -> None:
            await asyncio.sleep(0)
            done.append(event.name or "")

        proto.on("HEARTBEAT", lambda e: record(e))  # a plain function that returns a coroutine
        srv.write(event("HEARTBEAT"))
        await asyncio.wait_for(_until(lambda: done == ["HEARTBEAT"]), 5)
        proto.close()


async def test_handler_concurrency() -> None:
    async with RawServer() as srv:
        proto = await connect(srv, handler_concurrency=3)
        running = 0
        peak = 0
        release = asyncio.Event()

        async def handler(event: Event) -> None:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await release.wait()
            running -= 1

        proto.on("HEARTBEAT", handler)
        srv.write(b"".join(event("HEARTBEAT") for _ in range(5)))
        await asyncio.wait_for(_until(lambda: peak == 3), 5)
        assert proto.stats().queue_depth == 2  # the other two wait their turn
        release.set()
        await proto.drain(5)
        assert running == 0
        proto.close()


async def test_messages_before_a_bad_frame_are_delivered() -> None:
    async with RawServer() as srv:
        proto = await connect(srv)
        seen: list[str] = []
        proto.on("*", lambda e: seen.append(e.name or ""))
        task = asyncio.ensure_future(proto.api("status"))
        await srv.commands(1)
        # one write: an event and the reply, then a frame whose Content-Length is garbage
        srv.write(event("HEARTBEAT") + api_response("UP") + b"Content-Type: api/response\nContent-Length: x\n\n")
        assert await asyncio.wait_for(task, 5) == "UP"
        assert seen == ["HEARTBEAT"]
        await _until(lambda: proto.closed)
        assert "protocol error" in (proto.close_reason or "")
