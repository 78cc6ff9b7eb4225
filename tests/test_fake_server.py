"""FakeFreeSWITCH, inbound side: exact bytes of every reply type, auth, subscriptions,
filters, formats, bgapi ordering, logs, exit, stall/drop, capture replay.

Driven with raw asyncio sockets, so these tests depend only on the fake and the core parser.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from esl.core import Parser
from esl.testing import GOODBYE, FakeFreeSWITCH, capture

CAPTURES = Path("/work/shared/captures")
GOODBYE_NOTICE = b"Content-Type: text/disconnect-notice\nContent-Length: 67\n\n" + GOODBYE.encode()


class Client:
    """A raw ESL client: writes bytes, reads whole messages with the core parser."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = Parser()
        self.messages: list = []
        self.raw = bytearray()
        self.stash: list = []

    @classmethod
    async def connect(cls, fake: FakeFreeSWITCH, password: str | None = "ClueCon") -> Client:
        r, w = await asyncio.open_connection(fake.host, fake.port)
        c = cls(r, w)
        hello = await c.next()
        assert hello.raw == b"Content-Type: auth/request\n\n"
        if password is not None:
            assert (
                await c.cmd(f"auth {password}")
            ) == b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
        return c

    def send(self, text: str | bytes) -> None:
        self.writer.write(text.encode() if isinstance(text, str) else text)

    async def next(self, timeout: float = 2.0):
        while not self.messages:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise EOFError("closed")
            self.raw += data
            self.messages.extend(self.parser.feed(data))
        return self.messages.pop(0)

    async def cmd(self, text: str) -> bytes:
        """Send one command and return the raw bytes of its reply (events meanwhile go to ``stash``)."""
        self.send(text + "\n\n")
        while True:
            m = await self.next()
            if not m.is_event:
                return m.raw
            self.stash.append(m)

    async def event(self):
        """The next event (stashed ones first)."""
        if self.stash:
            return self.stash.pop(0)
        m = await self.next()
        assert m.is_event, m
        return m

    async def closed(self) -> bytes:
        """Read until EOF; returns the remaining bytes (messages already parsed are included)."""
        rest = b"".join(m.raw for m in self.messages)
        self.messages.clear()
        while True:
            data = await asyncio.wait_for(self.reader.read(65536), 2.0)
            if not data:
                return rest
            rest += data

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def fake():
    async with FakeFreeSWITCH() as f:
        yield f


def api(body: bytes) -> bytes:
    return b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)


def reply(text: str) -> bytes:
    return b"Content-Type: command/reply\nReply-Text: " + text.encode() + b"\n\n"


async def test_auth_accept_and_commands_recorded(fake):
    c = await Client.connect(fake)
    assert fake.connections[-1].authenticated
    assert fake.connections[-1].commands == ["auth ******"]
    c.close()


async def test_auth_failure_then_disconnect(fake):
    c = await Client.connect(fake, password=None)
    c.send("auth wrong\n\n")
    assert await c.closed() == reply("-ERR invalid") + GOODBYE_NOTICE


async def test_before_auth_only_auth_and_exit(fake):
    c = await Client.connect(fake, password=None)
    assert await c.cmd("api status") == reply("-ERR command not found")
    c.send("\r\n\r\nexit\r\n\r\n")  # stray blank lines and CRLF are fine
    assert await c.closed() == reply("+OK bye") + GOODBYE_NOTICE


async def test_userauth():
    async with FakeFreeSWITCH(
        users={"1000@default": {"password": "pw", "api": "status,bgapi", "events": "all"}}
    ) as f:
        c = await Client.connect(f, password=None)
        got = await c.cmd("userauth 1000@default:pw")
        assert got == (
            b"Content-Type: command/reply\nReply-Text: +OK accepted\nAllowed-Events: all\n"
            b"Allowed-API: status,bgapi\nAllowed-LOG: true\n\n"
        )
        assert f.connections[-1].commands == ["userauth 1000@default:******"]
        assert await c.cmd("api version") == reply("-ERR permission denied")
        assert await c.cmd("bgapi version") == reply("-ERR permission denied")
        assert (await c.cmd("api status")).startswith(b"Content-Type: api/response\nContent-Length: ")
        c2 = await Client.connect(f, password=None)
        c2.send("userauth 1000@default:nope\n\n")
        assert await c2.closed() == reply("-ERR invalid") + GOODBYE_NOTICE


async def test_api_response_bytes(fake):
    c = await Client.connect(fake)
    assert (
        await c.cmd("api echo hello world")
        == b"Content-Type: api/response\nContent-Length: 11\n\nhello world"
    )
    assert await c.cmd("api nosuch arg") == api(b"-ERR nosuch Command not found!\n")
    fake.api["empty"] = lambda args, conn: ""
    assert await c.cmd("api empty") == b"Content-Type: api/response\nContent-Length: 14\n\n-ERR no reply\n"

    async def slow(args, conn):
        await asyncio.sleep(0.01)
        return f"+OK {args}\n"

    fake.api["slow"] = slow
    assert await c.cmd("api slow x y") == b"Content-Type: api/response\nContent-Length: 8\n\n+OK x y\n"
    assert len((await c.cmd("api create_uuid")).partition(b"\n\n")[2]) == 36
    assert await c.cmd("api global_setvar foo=bar") == b"Content-Type: api/response\nContent-Length: 3\n\n+OK"
    assert await c.cmd("api global_getvar foo") == b"Content-Type: api/response\nContent-Length: 3\n\nbar"
    assert (
        await c.cmd("api show calls count")
        == b"Content-Type: api/response\nContent-Length: 10\n\n\n0 total.\n"
    )
    assert (
        await c.cmd("api eval ${foo}-$${foo}") == b"Content-Type: api/response\nContent-Length: 7\n\nbar-bar"
    )
    assert await c.cmd("api db insert/realm/k/v 1") == api(b"+OK")
    assert await c.cmd("api db select/realm/k") == api(b"v 1")
    assert await c.cmd("api hash insert/realm/k/v") == api(b"+OK\n")
    assert await c.cmd("api reloadxml") == api(b"+OK [Success]\n")


async def test_unknown_command_and_prefix_matching(fake):
    c = await Client.connect(fake)
    assert await c.cmd("frobnicate") == reply("-ERR command not found")
    # strncasecmp prefix matching: EVENTS works like event
    assert await c.cmd("EVENTS plain HEARTBEAT") == reply("+OK event listener enabled plain")
    assert await c.cmd("event") == reply("-ERR no keywords supplied")
    assert await c.cmd("event plain NOT_AN_EVENT") == reply("-ERR no keywords supplied")
    assert await c.cmd("nixevent") == reply("-ERR no keywords supplied")
    assert await c.cmd("linger 5") == reply("-ERR not controlling a session")
    assert await c.cmd("nolinger") == reply("-ERR not controlling a session")
    assert await c.cmd("divert_events on") == reply("-ERR not controlling a session.")
    assert await c.cmd("myevents") == reply("-ERR command not found")
    assert await c.cmd("myevents 0000 json") == reply("-ERR invalid uuid")
    assert await c.cmd("sendmsg 1234") == reply("-ERR invalid session id [1234]")


async def test_bgapi_reply_then_background_job(fake):
    c = await Client.connect(fake)
    await c.cmd("event plain BACKGROUND_JOB")
    c.send("bgapi echo hi there\nJob-UUID: 11111111-2222-3333-4444-555555555555\n\n")
    first = await c.next()
    assert first.raw == (
        b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: 11111111-2222-3333-4444-555555555555"
        b"\nJob-UUID: 11111111-2222-3333-4444-555555555555\n\n"
    )
    job = await c.next()
    assert job.name == "BACKGROUND_JOB"
    assert job["Job-UUID"] == "11111111-2222-3333-4444-555555555555"
    assert job["Job-Command"] == "echo"
    assert job["Job-Command-Arg"] == "hi there"
    assert "Job-Owner-UUID" not in job
    assert job.body == "hi there"
    raw = job.raw
    head, _, payload = raw.partition(b"\n\n")
    assert head == b"Content-Length: %d\nContent-Type: text/event-plain" % len(payload)
    assert payload.endswith(b"Content-Length: 8\n\nhi there")
    # server-chosen uuid, and unknown commands
    c.send("bgapi nosuch\n\n")
    r = await c.next()
    u = r["Job-UUID"]
    assert r["Reply-Text"] == f"+OK Job-UUID: {u}"
    job = await c.next()
    assert job.job_uuid == u and job.body == "-ERR nosuch Command not found!\n"


async def test_pipelined_bgapi_replies_precede_jobs(fake):
    c = await Client.connect(fake)
    await c.cmd("event plain BACKGROUND_JOB")
    c.send("".join(f"bgapi echo {i}\nJob-UUID: job-{i}\n\n" for i in range(20)))
    seen_replies = set()
    jobs = 0
    while jobs < 20:
        m = await c.next()
        if m.content_type == "command/reply":
            seen_replies.add(m["Job-UUID"])
        else:
            assert m.job_uuid in seen_replies  # reply first, always
            assert m.body == m.job_uuid[4:]
            jobs += 1


async def test_formats_json_and_xml(fake):
    c = await Client.connect(fake)
    assert await c.cmd("event json CUSTOM my::sub") == reply("+OK event listener enabled json")
    ev = fake.make_event("CUSTOM", {"X-A": "a b&c"}, body="line1\nline2", subclass="my::sub")
    assert await fake.fire(ev) == 1
    m = await c.next()
    assert m.content_type == "text/event-json"
    payload = m.raw.partition(b"\n\n")[2]
    assert m.raw.startswith(b"Content-Length: %d\nContent-Type: text/event-json\n\n" % len(payload))
    data = json.loads(payload)
    assert data["Event-Name"] == "CUSTOM" and data["Event-Subclass"] == "my::sub"
    assert data["X-A"] == "a b&c" and data["_body"] == "line1\nline2" and data["Content-Length"] == "11"
    assert await c.cmd("event xml ALL") == reply("+OK event listener enabled xml")
    await fake.fire(fake.make_event("HEARTBEAT"))
    m = await c.next()
    assert m.content_type == "text/event-xml" and m.name == "HEARTBEAT"
    assert m.raw.partition(b"\n\n")[2].startswith(b"<event>")


async def test_subscriptions_custom_nixevent_noevents(fake):
    c = await Client.connect(fake)
    await c.cmd("event plain CHANNEL_ANSWER CUSTOM a::b")
    conn = fake.connections[-1]
    assert conn.subscriptions.names == {"CHANNEL_ANSWER", "CUSTOM"} and conn.subscriptions.custom == {"a::b"}
    assert await fake.fire(fake.make_event("CUSTOM", subclass="x::y")) == 0
    assert await fake.fire(fake.make_event("CUSTOM", subclass="a::b")) == 1
    assert await fake.fire(fake.make_event("HEARTBEAT")) == 0
    assert (await c.next()).subclass == "a::b"
    assert await c.cmd("nixevent CHANNEL_ANSWER") == reply("+OK events nixed")
    assert await fake.fire(fake.make_event("CHANNEL_ANSWER", {"Unique-ID": "u"})) == 0
    assert await c.cmd("event plain all") == reply("+OK event listener enabled plain")
    assert await fake.fire(fake.make_event("HEARTBEAT")) == 1
    assert (await c.next()).name == "HEARTBEAT"
    # nixevent of one name while ALL is set keeps every other one
    await c.cmd("nixevent HEARTBEAT")
    assert await fake.fire(fake.make_event("HEARTBEAT")) == 0
    assert await fake.fire(fake.make_event("RE_SCHEDULE")) == 1
    await c.next()
    assert await c.cmd("noevents") == reply("+OK no longer listening for events")
    assert await c.cmd("noevents") == reply("-ERR not listening for events")
    assert await fake.fire(fake.make_event("RE_SCHEDULE")) == 0


async def test_filters_freeswitch_semantics(fake):
    c = await Client.connect(fake)
    await c.cmd("event plain ALL")
    assert await c.cmd("filter Unique-ID abc") == reply("+OK filter added. [Unique-ID]=[abc]")
    assert await c.cmd("filter add Event-Name BACKGROUND_JOB") == reply(
        "+OK filter added. [Event-Name]=[BACKGROUND_JOB]"
    )
    assert await c.cmd("filter") == reply("-ERR command not found")
    assert await c.cmd("filter Unique-ID") == reply("-ERR invalid syntax")

    def fire(name, **h):
        return fake.fire_nowait(fake.make_event(name, {k.replace("_", "-"): v for k, v in h.items()}))

    assert fire("CHANNEL_ANSWER", Unique_ID="ABC") == 1  # case-insensitive compare
    assert fire("CHANNEL_ANSWER", Unique_ID="other") == 0
    assert fire("HEARTBEAT") == 0  # missing header never matches
    assert fire("BACKGROUND_JOB", Job_UUID="x") == 1
    assert await c.cmd("filter Unique-ID -abc") == reply("+OK filter added. [Unique-ID]=[-abc]")
    assert fire("CHANNEL_ANSWER", Unique_ID="abc") == 0  # a negative match wins
    assert await c.cmd("filter delete Unique-ID -abc") == reply("+OK filter deleted. [Unique-ID][-abc]")
    assert fire("CHANNEL_ANSWER", Unique_ID="abc") == 1
    assert await c.cmd("filter delete all") == reply("+OK filter deleted. [all][]")
    assert fire("HEARTBEAT") == 1
    assert await c.cmd("filter Caller-Caller-ID-Number /^10[0-9]+$/") == reply(
        "+OK filter added. [Caller-Caller-ID-Number]=[/^10[0-9]+$/]"
    )
    assert fire("CHANNEL_ANSWER", Caller_Caller_ID_Number="1003") == 1
    assert fire("CHANNEL_ANSWER", Caller_Caller_ID_Number="2003") == 0
    await c.cmd("filter delete Caller-Caller-ID-Number")
    assert fake.connections[-1].filters == []
    await c.cmd("filter Event-Name HEARTBEAT")
    await c.cmd("filter Event-Name -/HEART.*/")  # negative regex is compared literally, as in FreeSWITCH
    assert fire("HEARTBEAT") == 1
    names = []
    for _ in range(6):
        names.append((await c.event()).name)
    assert names == [
        "CHANNEL_ANSWER",
        "BACKGROUND_JOB",
        "CHANNEL_ANSWER",
        "HEARTBEAT",
        "CHANNEL_ANSWER",
        "HEARTBEAT",
    ]
    await asyncio.sleep(0.01)
    assert c.messages == [] and c.stash == []


async def test_sendevent(fake):
    a = await Client.connect(fake)
    b = await Client.connect(fake)
    await b.cmd("event plain CUSTOM my::thing")
    a.send("sendevent CUSTOM\nEvent-Subclass: my::thing\nX-Key: caf\u00e9\nContent-Length: 9\n\nbody\nmore")
    r = await a.next()
    u = r["Reply-Text"].split()[1]
    assert r.raw == reply(f"+OK {u}")
    ev = await b.next()
    assert ev.name == "CUSTOM" and ev.subclass == "my::thing" and ev["X-Key"] == "caf\u00e9"
    assert ev["Event-UUID"] == u and ev.body == "body\nmore"
    keys = [k for k, _ in ev.items_all()]
    assert keys[:4] == ["Event-Subclass", "Command", "X-Key", "Content-Length"]
    assert keys[4:6] == ["Event-UUID", "Event-Name"]
    assert fake.received_events[-1]["Event-UUID"] == u


async def test_log_and_nolog(fake):
    c = await Client.connect(fake)
    assert await c.cmd("log") == reply("+OK log level  [7]")
    assert await c.cmd("log warning") == reply("+OK log level warning [4]")
    assert await c.cmd("log bogus") == reply("-ERR invalid log level")
    assert fake.log("too chatty", level=7) == 0
    assert fake.log("disk almost full", level=4, file="mod_x.c", func="f", line=42) == 1
    m = await c.next()
    body = m.raw.partition(b"\n\n")[2]
    assert m.raw.startswith(
        b"Content-Type: log/data\nContent-Length: %d\nLog-Level: 4\nText-Channel: 0\n"
        b"Log-File: mod_x.c\nLog-Func: f\nLog-Line: 42\nUser-Data: \n\n" % len(body)
    )
    assert body.endswith(b"[WARNING] mod_x.c:42 disk almost full\n")
    assert await c.cmd("nolog") == reply("+OK no longer logging")
    assert await c.cmd("nolog") == reply("-ERR not loging")


async def test_exit_with_disconnect_notice(fake):
    c = await Client.connect(fake)
    c.send("exit\n\n")
    assert await c.closed() == reply("+OK bye") + GOODBYE_NOTICE
    await asyncio.sleep(0.01)
    assert fake.connections == []


async def test_server_close_abort_stall(fake):
    c = await Client.connect(fake)
    conn = fake.connections[-1]
    await conn.close()
    assert await c.closed() == GOODBYE_NOTICE
    c2 = await Client.connect(fake)
    await fake.drop_all()
    assert await c2.closed() == b""
    c3 = await Client.connect(fake)
    fake.stall(True)
    c3.send("api echo stalled\n\n")
    with pytest.raises(asyncio.TimeoutError):
        await c3.next(timeout=0.05)
    fake.stall(False)
    assert (await c3.next()).body == "stalled"


async def test_events_held_while_command_runs(fake):
    """An event fired during a (blocking) api command reaches the client after the api/response."""
    c = await Client.connect(fake)
    await c.cmd("event plain HEARTBEAT")

    async def blocking(args, conn):
        await fake.fire(fake.make_event("HEARTBEAT"))
        await asyncio.sleep(0.01)
        return "+OK done\n"

    fake.api["blocking"] = blocking
    c.send("api blocking\n\n")
    assert (await c.next()).content_type == "api/response"
    assert (await c.next()).name == "HEARTBEAT"


async def test_fire_raw_and_bad_content_length(fake):
    c = await Client.connect(fake)
    await fake.fire_raw(
        None, b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"
    )
    assert (await c.next()).content_type == "text/rude-rejection"
    c.send("api echo\nContent-Length: 99999999999\n\n")
    assert await c.closed() == b""


@pytest.mark.skipif(not (CAPTURES / "outbound-session.raw").exists(), reason="captures not available")
async def test_replay_capture_excerpt(fake):
    data = capture.load(CAPTURES / "outbound-session.raw")
    evs = capture.events(data)
    assert [e.name for e in evs][:3] == ["CHANNEL_PARK", "CHANNEL_EXECUTE", "PLAYBACK_START"]
    c = await Client.connect(fake)
    j = await Client.connect(fake)
    await c.cmd("event plain ALL")
    await j.cmd("event json DTMF")
    sent = await fake.replay(data)
    assert sent == len(evs)
    got = [await c.next() for _ in evs]
    assert [m.raw for m in got] == [e.raw for e in evs]  # byte-identical in the capture's own format
    dtmf = [await j.next() for _ in range(4)]
    assert [m["DTMF-Digit"] for m in dtmf] == ["1", "2", "3", "#"]
    assert all(m.content_type == "text/event-json" for m in dtmf)


@pytest.mark.skipif(not (CAPTURES / "events-plain.sent").exists(), reason="captures not available")
def test_capture_helpers():
    cmds = capture.sent_commands(CAPTURES / "outbound-session.sent")
    assert cmds[0][0] == "connect"
    assert cmds[4] == (
        "sendmsg",
        [
            ("call-command", "execute"),
            ("execute-app-name", "playback"),
            ("execute-app-arg", "tone_stream://%(200,100,440,480);loops=2"),
            ("event-lock", "true"),
        ],
        None,
    )
    hs = capture.frames(CAPTURES / "events-plain.handshake.raw")
    assert [m.content_type for m in hs] == ["auth/request", "command/reply"]


@pytest.mark.skipif(not (CAPTURES / "outbound-session.raw").exists(), reason="captures not available")
async def test_replay_parsed_events_loops_and_filters(fake):
    evs = capture.events(CAPTURES / "outbound-session.raw")
    c = await Client.connect(fake)
    await c.cmd("event xml DTMF CHANNEL_EXECUTE_COMPLETE")
    await c.cmd("filter Application playback")
    await c.cmd("filter DTMF-Digit 3")
    assert await fake.replay(evs, loops=2) == 2 * len(evs)
    got = [await c.event() for _ in range(4)]
    assert [(m.name, m.get("Application") or m.get("DTMF-Digit")) for m in got] == [
        ("DTMF", "3"),
        ("CHANNEL_EXECUTE_COMPLETE", "playback"),
    ] * 2
    assert all(m.content_type == "text/event-xml" for m in got)
    assert got[1]["Application-Response"] == "FILE PLAYED"
    await asyncio.sleep(0.01)
    assert c.messages == [] and c.stash == []
