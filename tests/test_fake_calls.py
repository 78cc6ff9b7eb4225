"""FakeFreeSWITCH, call side: originate (api/bgapi, failures), channel event sequences and
headers as in the real captures, sendmsg execution, uuid_* commands, DTMF, bridging,
the outbound socket exchange byte for byte, linger / no linger / exit / resume, static
and single-channel sockets, many concurrent sessions.

Driven with raw asyncio sockets (the inbound client and the Outbound server of the
library are tested elsewhere, against this fake).
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from esl.core import Parser
from esl.testing import GOODBYE, Endpoint, FakeFreeSWITCH, Timings, capture

CAPTURES = Path("/work/shared/captures")

# The order a real FreeSWITCH fires one originated leg's events (`originate {origination_uuid=...}... &park`,
# then uuid_kill), read from events-plain.raw.xz (a SIP leg adds two CODEC events before CHANNEL_ANSWER).
ORIGINATE_PARK_KILL = [
    "CHANNEL_UUID", "CHANNEL_OUTGOING", "CHANNEL_STATE", "CHANNEL_CREATE", "CHANNEL_ORIGINATE",
    "CHANNEL_STATE", "CHANNEL_STATE", "CHANNEL_ANSWER", "CHANNEL_CALLSTATE", "CALL_UPDATE", "CHANNEL_STATE",
    "CHANNEL_EXECUTE", "CHANNEL_PARK", "CHANNEL_HANGUP", "CHANNEL_UNPARK", "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_STATE", "CHANNEL_CALLSTATE", "CHANNEL_STATE", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY",
    "CHANNEL_STATE",
]  # fmt: skip


def reply(text: str) -> bytes:
    return b"Content-Type: command/reply\nReply-Text: " + text.encode() + b"\n\n"


def api(body: str) -> bytes:
    b = body.encode()
    return b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(b), b)


class Conn:
    """A raw ESL peer (inbound client, or the app side of an outbound socket)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = Parser()
        self.queue: list = []
        self.events: list = []
        self.others: list = []  # non-event messages read while waiting for an event

    @classmethod
    async def inbound(cls, fake: FakeFreeSWITCH, subscribe: str | None = "event plain ALL") -> Conn:
        c = cls(*await asyncio.open_connection(fake.host, fake.port))
        await c.next()
        assert await c.cmd("auth ClueCon") == reply("+OK accepted")
        if subscribe:
            assert (await c.cmd(subscribe)).startswith(b"Content-Type: command/reply\nReply-Text: +OK")
        return c

    async def next(self, timeout: float = 3.0):
        while not self.queue:
            data = await asyncio.wait_for(self.reader.read(1 << 16), timeout)
            if not data:
                raise EOFError
            self.queue.extend(self.parser.feed(data))
        return self.queue.pop(0)

    async def reply(self, timeout: float = 3.0):
        """The next message that is not an event (events go to ``self.events``)."""
        if self.others:
            return self.others.pop(0)
        while True:
            m = await self.next(timeout)
            if not m.is_event:
                return m
            self.events.append(m)

    async def cmd(self, text: str) -> bytes:
        self.writer.write(text.encode() + b"\n\n")
        return (await self.reply()).raw

    async def until(self, pred, timeout: float = 3.0):
        """Read events (keeping them) until one satisfies ``pred``; returns it."""
        for e in self.events:
            if pred(e):
                return e
        while True:
            m = await self.next(timeout)
            if not m.is_event:
                self.others.append(m)
            else:
                self.events.append(m)
                if pred(m):
                    return m

    async def rest(self) -> list:
        """Every message until EOF."""
        out = list(self.queue)
        self.queue.clear()
        while True:
            data = await asyncio.wait_for(self.reader.read(1 << 16), 3.0)
            if not data:
                return out
            out.extend(self.parser.feed(data))


class App:
    """A raw Outbound app: accepts the fake's socket connections and hands them to ``handler``."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.server: asyncio.AbstractServer | None = None
        self.done: list[asyncio.Future] = []

    async def __aenter__(self) -> App:
        async def on_conn(r, w):
            fut = asyncio.get_running_loop().create_future()
            self.done.append(fut)
            try:
                fut.set_result(await self.handler(Conn(r, w)))
            except Exception as exc:  # surfaced by the test through self.done
                fut.set_exception(exc)
            finally:
                w.close()

        self.server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()

    async def results(self, n: int = 1, timeout: float = 5.0) -> list:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.done) < n:
            assert loop.time() < deadline, "app not called"
            await asyncio.sleep(0.005)
        return [await asyncio.wait_for(f, timeout) for f in self.done[:n]]


@pytest.fixture
async def fake():
    async with FakeFreeSWITCH() as f:
        yield f
        assert f.errors == []


def names_for(events, uuid):
    return [e.name for e in events if e.get("Unique-ID") == uuid]


async def test_originate_park_kill_sequence_and_headers(fake):
    c = await Conn.inbound(fake)
    u = "0278b02c-3e4c-43f3-b409-30028ccc5859"
    r = await c.cmd(
        f"api originate {{origination_uuid={u},origination_caller_id_number=10003,"
        f"origination_caller_id_name='Load Test',esl_load_seq=3}}user/1000 &park"
    )
    assert r == api(f"+OK {u}\n")
    ch = fake.channels[u]
    assert ch.state == "CS_EXECUTE" and ch.call_state == "ACTIVE" and ch.answered
    assert await c.cmd(f"api uuid_kill {u}") == api("+OK\n")
    await c.until(lambda e: e.name == "CHANNEL_STATE" and e["Channel-State"] == "CS_DESTROY")
    evs = [e for e in c.events if e.get("Unique-ID") == u]
    # a SIP leg: read then write CODEC as its media comes up, right before CHANNEL_ANSWER (sip capture)
    codecs = [i for i, e in enumerate(evs) if e.name == "CODEC"]
    assert codecs == [7, 8] and evs[9].name == "CHANNEL_ANSWER"
    assert evs[7]["channel-read-codec-name"] == "PCMU" and evs[8]["Channel-Write-codec-bit-rate"] == "64000"
    evs = [e for e in evs if e.name != "CODEC"]
    assert [e.name for e in evs] == ORIGINATE_PARK_KILL
    update = next(e for e in evs if e.name == "CALL_UPDATE")
    assert update["Direction"] == "RECV" and update["Caller-Callee-ID-Number"] == "10003"
    states = [e["Channel-State"] for e in evs if e.name == "CHANNEL_STATE"]
    assert states == [
        "CS_INIT",
        "CS_ROUTING",
        "CS_CONSUME_MEDIA",
        "CS_EXECUTE",
        "CS_HANGUP",
        "CS_REPORTING",
        "CS_DESTROY",
    ]
    by = {}
    for e in evs:
        by.setdefault(e.name, e)
    assert by["CHANNEL_UUID"]["Channel-State"] == "CS_NONE" and "Old-Unique-ID" in by["CHANNEL_UUID"]
    create, answer = by["CHANNEL_CREATE"], by["CHANNEL_ANSWER"]
    assert create["Channel-Name"] == "sofia/internal/1000@127.0.0.1"
    assert create["Caller-Caller-ID-Name"] == "Load Test" and create["Caller-Caller-ID-Number"] == "10003"
    assert create["Channel-Call-UUID"] == u and create["Call-Direction"] == "outbound"
    assert create["variable_esl_load_seq"] == "3" and create["variable_origination_uuid"] == u
    assert answer["Answer-State"] == "answered" and answer["Channel-Call-State"] == "DOWN"
    hit = [e["Channel-HIT-Dialplan"] for e in evs]
    assert hit == ["false"] * 9 + ["true"] * (len(evs) - 9)  # as in the capture: true from CS_EXECUTE on
    callstate = by["CHANNEL_CALLSTATE"]
    assert (callstate["Original-Channel-Call-State"], callstate["Channel-Call-State"]) == ("DOWN", "ACTIVE")
    assert not any(k.startswith("variable_") for k in by["CHANNEL_STATE"])  # basic data only
    assert not any(k.startswith("variable_") for k in callstate)
    complete = by["CHANNEL_EXECUTE_COMPLETE"]
    assert (complete["Application"], complete["Application-Response"]) == ("park", "_none_")
    hc = by["CHANNEL_HANGUP_COMPLETE"]
    assert hc["Hangup-Cause"] == "NORMAL_CLEARING" and hc["variable_hangup_cause_q850"] == "16"
    keys = [k for k, _ in by["CHANNEL_HANGUP"].items_all()]
    assert keys.index("Hangup-Cause") == keys.index("Answer-State") + 1
    assert [k for k, _ in hc.items_all()][13] == "Hangup-Cause"  # right after the standard headers
    seqs = [int(e["Event-Sequence"]) for e in evs]
    assert seqs == sorted(seqs)
    assert u not in fake.channels and ch.destroyed.done()


async def test_originate_failures(fake):
    fake.endpoints["user/busy"] = Endpoint(fail="USER_BUSY")
    fake.endpoints["user/nobody"] = Endpoint(answer_after=None)
    c = await Conn.inbound(fake)
    assert await c.cmd("api originate user/busy &park") == api("-ERR USER_BUSY\n")
    assert await c.cmd("api originate {originate_timeout=2}user/nobody &park") == api("-ERR NO_ANSWER\n")
    before = fake.fired_events
    assert await c.cmd("api originate error/user_busy &park") == api("-ERR USER_BUSY\n")
    assert await c.cmd("api originate") == api(
        "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] [<cid_name>] "
        "[<cid_num>] [<timeout_sec>]\n"
    )
    assert fake.fired_events - before == 2  # only the two API events: error/ creates no channel
    busy = await c.until(lambda e: e.name == "CHANNEL_HANGUP" and e["Hangup-Cause"] == "USER_BUSY")
    assert busy["Answer-State"] == "hangup"
    await c.until(lambda e: e.name == "CHANNEL_HANGUP" and e["Hangup-Cause"] == "NO_ANSWER")


async def test_bgapi_originate_background_job(fake):
    c = await Conn.inbound(fake, "event plain BACKGROUND_JOB CHANNEL_ANSWER")
    c.writer.write(b"bgapi originate {origination_uuid=abc-1}user/1000 &park\nJob-UUID: job-1\n\n")
    first = await c.next()
    assert first.raw == b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: job-1\nJob-UUID: job-1\n\n"
    answer = await c.next()
    assert answer.name == "CHANNEL_ANSWER" and answer.uuid == "abc-1"
    job = await c.next()
    assert job.name == "BACKGROUND_JOB" and job.body == "+OK abc-1\n"
    assert (
        job["Job-Command"] == "originate"
        and job["Job-Command-Arg"] == "{origination_uuid=abc-1}user/1000 &park"
    )
    fake.endpoints["user/2000"] = Endpoint(fail="CALL_REJECTED")
    c.writer.write(b"bgapi originate user/2000 &park\nJob-UUID: job-2\n\n")
    await c.next()
    job = await c.next()
    assert job.job_uuid == "job-2" and job.body == "-ERR CALL_REJECTED\n"


async def test_sendmsg_execute_playback_and_hangup(fake):
    fake.timings.media["long.wav"] = 0.05
    c = await Conn.inbound(fake)
    assert await c.cmd("api originate {origination_uuid=u1}user/1000 &park") == api("+OK u1\n")
    c.writer.write(
        b"sendmsg u1\ncall-command: execute\nexecute-app-name: playback\nexecute-app-arg: long.wav\n"
        b"event-lock: true\nEvent-UUID: play-1\n\n"
    )
    assert (await c.reply()).raw == reply("+OK")
    done = await c.until(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE" and e.application_uuid == "play-1")
    assert (done["Application"], done["Application-Data"], done["Application-Response"]) == (
        "playback",
        "long.wav",
        "FILE PLAYED",
    )
    assert done["variable_current_application_response"] == "FILE PLAYED"
    await c.until(lambda e: e.name == "PRIVATE_COMMAND")
    tail = names_for(c.events, "u1")
    i = tail.index("CHANNEL_PARK")
    # PRIVATE_COMMAND fires once the message has run (switch_ivr_parse_next_event; as captured)
    assert tail[i + 1 : i + 6] == [
        "CHANNEL_EXECUTE",
        "PLAYBACK_START",
        "PLAYBACK_STOP",
        "CHANNEL_EXECUTE_COMPLETE",
        "PRIVATE_COMMAND",
    ]
    private = next(e for e in c.events if e.name == "PRIVATE_COMMAND")
    assert [k for k, _ in private.items_all()][:3] == ["Command", "call-command", "execute-app-name"]
    assert private["Command"].startswith("sendmsg u1\ncall-command: execute\n")
    assert private["Event-UUID"] == "play-1"
    start = next(e for e in c.events if e.name == "PLAYBACK_START")
    assert start["Playback-File-Path"] == "long.wav" and start["variable_current_application"] == "playback"
    # a body as the argument (content-type text/plain), then a hangup message with a cause
    c.writer.write(
        b"sendmsg u1\ncall-command: execute\nexecute-app-name: set\ncontent-type: text/plain\n"
        b"content-length: 9\n\nfoo=b a r"
    )
    assert (await c.reply()).raw == reply("+OK")
    await c.until(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE" and e["Application"] == "set")
    assert await c.cmd("api uuid_getvar u1 foo") == api("b a r")
    assert await c.cmd("sendmsg u1\ncall-command: hangup\nhangup-cause: USER_BUSY") == reply("+OK")
    hc = await c.until(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE")
    assert hc["Hangup-Cause"] == "USER_BUSY"
    assert await c.cmd("sendmsg u1\ncall-command: hangup") == reply("-ERR invalid session id [u1]")


async def test_uuid_commands(fake):
    c = await Conn.inbound(fake, None)
    assert await c.cmd("api originate {origination_uuid=v1,foo=bar}user/1000 &park") == api("+OK v1\n")
    assert await c.cmd("api uuid_getvar v1 foo") == api("bar")
    assert await c.cmd("api uuid_getvar v1 nope") == api("_undef_")
    assert await c.cmd("api uuid_setvar v1 x hello world") == api("+OK\n")
    assert await c.cmd("api uuid_getvar v1 x") == api("hello world")
    assert await c.cmd("api uuid_setvar_multi v1 a=1;b=2") == api("+OK\n")
    assert fake.channels["v1"].variables["b"] == "2"
    assert await c.cmd("api uuid_exists v1") == api("true")
    assert await c.cmd("api uuid_exists nope") == api("false")
    for cmd in ("uuid_getvar nope x", "uuid_setvar nope x 1", "uuid_kill nope", "uuid_break nope"):
        assert await c.cmd(f"api {cmd}") == api("-ERR No such channel!\n")
    assert await c.cmd("api uuid_send_dtmf nope 1") == api("-ERR Cannot locate session!\n")
    assert await c.cmd("api uuid_bridge v1 nope") == api("-ERR Invalid uuid\n")
    assert await c.cmd("api uuid_hold v1") == api("+OK Success\n")
    assert fake.channels["v1"].call_state == "HELD"
    assert await c.cmd("api uuid_hold off v1") == api("+OK Success\n")
    assert fake.channels["v1"].call_state == "ACTIVE"
    assert (await c.cmd("api uuid_dump v1")).count(b"\nUnique-ID: v1\n") == 1
    assert await c.cmd("api show channels count") == api("\n1 total.\n")
    assert await c.cmd("api sched_hangup +1 v1 ALLOTTED_TIMEOUT") == api("+OK\n")
    ch = fake.channels["v1"]
    await ch.wait_hangup()
    assert ch.hangup_cause == "ALLOTTED_TIMEOUT"
    assert await c.cmd("api hupall") == api("+OK hangup all channels with cause MANAGER_REQUEST\n")


async def test_uuid_audio_replies(fake):
    c = await Conn.inbound(fake, None)
    assert await c.cmd("api originate {origination_uuid=w1}user/1000 &park") == api("+OK w1\n")
    usage = api("-USAGE: <uuid> [start [read|write] [mute|level <level>]|stop]\n")
    assert await c.cmd("api uuid_audio w1 start read mute 1") == api("+OK\n")
    assert await c.cmd("api uuid_audio w1 start write level 4") == api("+OK\n")
    assert await c.cmd("api uuid_audio w1 stop") == api("+OK\n")
    assert await c.cmd("api uuid_audio w1 start both mute 1") == usage
    assert await c.cmd("api uuid_audio w1 start read") == usage
    assert await c.cmd("api uuid_audio w1") == usage
    assert await c.cmd("api uuid_audio nope start read mute 1") == api("-ERR No such channel!\n")


async def test_record_session_apps(fake):
    c = await Conn.inbound(fake)
    assert await c.cmd("api originate {origination_uuid=r1}user/1000 &park") == api("+OK r1\n")
    for app, arg in (("record_session", "/tmp/a.wav"), ("record_session", "/tmp/b.wav +1"),
                     ("stop_record_session", "/tmp/a.wav")):
        msg = f"sendmsg r1\ncall-command: execute\nexecute-app-name: {app}\nexecute-app-arg: {arg}"
        assert await c.cmd(msg) == reply("+OK")
        done = await c.until(lambda e, app=app: e.name == "CHANNEL_EXECUTE_COMPLETE" and e["Application"] == app)
        assert done["Application-Response"] == "_none_"
    # b.wav stops by itself after its +1 second limit (scaled)
    await c.until(lambda e: e.name == "RECORD_STOP" and e["Record-File-Path"] == "/tmp/b.wav")
    records = [(e.name, e["Record-File-Path"]) for e in c.events if e.name.startswith("RECORD_")]
    assert records == [("RECORD_START", "/tmp/a.wav"), ("RECORD_START", "/tmp/b.wav"),
                       ("RECORD_STOP", "/tmp/a.wav"), ("RECORD_STOP", "/tmp/b.wav")]
    assert fake.channels["r1"].recordings == set()


async def test_incoming_call_dialplan_and_dtmf_digits(fake):
    fake.dialplan["9000"] = [
        ("answer", ""),
        ("play_and_get_digits", "1 4 2 3000 # ivr.wav bad.wav choice \\d+"),
        ("playback", "bye.wav"),
    ]
    c = await Conn.inbound(fake)
    ch = await fake.call("9000", caller_id_number="1000")
    await ch.wait_event("PLAYBACK_START")
    await ch.send_dtmf("42#")
    await ch.wait_hangup()
    assert ch.variables["choice"] == "42" and ch.hangup_cause == "NORMAL_CLEARING"
    await c.until(lambda e: e.name == "CHANNEL_STATE" and e["Channel-State"] == "CS_DESTROY")
    names = names_for(c.events, ch.uuid)
    assert names[:9] == [
        "CHANNEL_STATE",
        "CHANNEL_CREATE",
        "CHANNEL_CALLSTATE",
        "CHANNEL_STATE",
        "CHANNEL_STATE",
        "CHANNEL_EXECUTE",
        "CODEC",  # the SIP leg's media comes up as the answer app runs (sip capture)
        "CODEC",
        "CHANNEL_ANSWER",
    ]
    assert names.count("DTMF") == 3
    pagd = next(
        e
        for e in c.events
        if e.name == "CHANNEL_EXECUTE_COMPLETE" and e["Application"] == "play_and_get_digits"
    )
    assert pagd["Application-Response"] == "42" and pagd["variable_choice"] == "42"
    dtmf = next(e for e in c.events if e.name == "DTMF")
    assert (dtmf["DTMF-Digit"], dtmf["DTMF-Duration"], dtmf["DTMF-Source"]) == ("4", "800", "RTP")
    assert not any(k.startswith("variable_") for k in dtmf)
    nowhere = await fake.call("nowhere")
    await nowhere.wait_hangup()
    assert nowhere.hangup_cause == "NO_ROUTE_DESTINATION"


async def test_loopback_dtmf_and_bridge(fake):
    fake.dialplan["9001"] = [("answer", ""), ("park", "")]
    c = await Conn.inbound(fake)
    assert await c.cmd("api originate {origination_uuid=la}loopback/9001 &park") == api("+OK la\n")
    a = fake.channels["la"]
    b = a.partner
    assert b.name == "loopback/9001-b" and b.variables["other_loopback_leg_uuid"] == "la"
    assert await c.cmd("api uuid_send_dtmf la 12") == api("+OK la sent DTMF 12.\n")
    d = await c.until(lambda e: e.name == "DTMF")
    assert d.uuid == b.uuid  # DTMF shows up on the far leg
    # bridge two originated legs
    assert await c.cmd("api originate {origination_uuid=x1}user/1 &park") == api("+OK x1\n")
    assert await c.cmd("api originate {origination_uuid=x2}user/2 &park") == api("+OK x2\n")
    assert await c.cmd("api uuid_bridge x1 x2") == api("+OK x2\n")
    br = await c.until(lambda e: e.name == "CHANNEL_BRIDGE")
    assert br.uuid == "x1" and br["Other-Leg-Unique-ID"] == "x2" and br["Bridge-B-Unique-ID"] == "x2"
    await fake.channels["x2"].hangup("NORMAL_CLEARING")
    un = await c.until(lambda e: e.name == "CHANNEL_UNBRIDGE")
    assert un.uuid == "x1"
    await c.until(lambda e: e.name == "CHANNEL_HANGUP" and e.uuid == "x1")
    await a.hangup("NORMAL_CLEARING")
    assert b.down


async def test_bridge_app_with_other_leg(fake):
    fake.dialplan["100"] = [("bridge", "{origination_uuid=bleg}user/2000"), ("playback", "never.wav")]
    fake.endpoints["user/2000"] = Endpoint(answer_after=0.01, hangup_after=0.02)
    c = await Conn.inbound(fake)
    ch = await fake.call("100")
    await ch.wait_hangup()
    br = await c.until(lambda e: e.name == "CHANNEL_BRIDGE")
    assert br.uuid == ch.uuid and br["Other-Leg-Unique-ID"] == "bleg" and br["Other-Type"] == "originator"
    assert not any(e.name == "PLAYBACK_START" for e in ch.events_fired)  # hangup_after_bridge
    assert ch.variables["bridge_hangup_cause"] == "NORMAL_CLEARING"


# -- outbound sockets --------------------------------------------------------------------------


async def _outbound_session(conn: Conn, *, linger: bool = True, finish: str = "hangup"):
    conn.writer.write(b"connect\n\n")
    data = await conn.reply()
    uuid = data["Unique-ID"]
    out = {"connect": data, "replies": []}
    cmds = ["myevents", "event plain PLAYBACK_START PLAYBACK_STOP CHANNEL_CALLSTATE"]
    if linger:
        cmds.append("linger 2")
    for cmd in cmds:
        out["replies"].append(await conn.cmd(cmd))
    out["replies"].append(
        await conn.cmd(
            "sendmsg\ncall-command: execute\nexecute-app-name: playback\n"
            "execute-app-arg: tone_stream://%(200,100,440,480);loops=2\n"
            "event-lock: true\nEvent-UUID: p1"
        )
    )
    await conn.until(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE" and e.application_uuid == "p1")
    out["replies"].append(
        await conn.cmd(
            "sendmsg\ncall-command: execute\nexecute-app-name: send_dtmf\n"
            "execute-app-arg: 4567\nevent-lock: true\nEvent-UUID: d1"
        )
    )
    await conn.until(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE" and e.application_uuid == "d1")
    out["replies"].append(await conn.cmd(f"api uuid_getvar {uuid} socket_host"))
    if finish == "hangup":
        out["replies"].append(await conn.cmd("sendmsg\ncall-command: hangup\nhangup-cause: NORMAL_CLEARING"))
    else:
        conn.writer.write(b"exit\n\n")
    out["tail"] = await conn.rest()
    out["events"] = conn.events + [m for m in out["tail"] if m.is_event]
    return out


@pytest.mark.skipif(not (CAPTURES / "outbound-session.raw").exists(), reason="captures not available")
async def test_outbound_session_matches_capture(fake):
    async with App(_outbound_session) as app:
        fake.dialplan["9000"] = [("answer", ""), ("socket", f"127.0.0.1:{app.port} async full")]
        ch = await fake.call("9000", caller_id_number="10002")
        [out] = await app.results()
        await ch.wait_hangup()
    real = capture.frames(CAPTURES / "outbound-session.raw")
    head = out["connect"].raw
    assert head.endswith(
        b"Content-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\nControl: full\n\n"
    )
    assert head.startswith(b"Event-Name: CHANNEL_DATA\n") and b"Content-Length" not in head
    assert real[0].raw.endswith(
        b"Content-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\nControl: full\n\n"
    )
    assert set(k for k in real[0] if not k.startswith("variable_")) <= set(out["connect"])
    assert out["connect"]["Unique-ID"] == ch.uuid and out["connect"]["variable_socket_host"] == "127.0.0.1"
    assert out["replies"][:5] == [m.raw for m in real[1:6]]  # myevents, event, linger, 2 sendmsg: same bytes
    assert out["replies"][5] == api("127.0.0.1")
    real_names = [m.name for m in real if m.is_event and m.name not in ("DTMF",)]
    ours = [e.name for e in out["events"]]
    assert ours == real_names
    u = ch.uuid.encode()
    notices = [m.raw for m in out["tail"] if m.content_type == "text/disconnect-notice"]
    assert notices == [
        b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: "
        + u
        + b"\nContent-Disposition: linger\n"
        b"Channel-Name: " + ch.name.encode() + b"\nLinger-Time: 2\nContent-Length: 0\n\n",
        b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: "
        + u
        + b"\nContent-Disposition: disconnect\n"
        b"Content-Length: 67\n\n" + GOODBYE.encode(),
    ]
    assert [e.name for e in ch.events_fired][-2:] == ["CHANNEL_DESTROY", "CHANNEL_STATE"]


async def test_outbound_exit_without_linger(fake):
    async with App(lambda conn: _outbound_session(conn, linger=False, finish="exit")) as app:
        fake.dialplan["9000"] = [("answer", ""), ("socket", f"127.0.0.1:{app.port} async full")]
        ch = await fake.call("9000")
        [out] = await app.results()
        await ch.wait_hangup()
    assert [m.raw for m in out["tail"]] == [
        reply("+OK bye"),
        b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: "
        + ch.uuid.encode()
        + b"\nContent-Disposition: disconnect\nContent-Length: 67\n\n"
        + GOODBYE.encode(),
    ]
    assert ch.hangup_cause == "NORMAL_CLEARING"  # the socket closed without resume: the call ends


async def test_outbound_hangup_without_linger_loses_the_rest(fake):
    async def handler(conn: Conn):
        conn.writer.write(b"connect\n\n")
        await conn.reply()
        await conn.cmd("myevents")
        await conn.cmd("sendmsg\ncall-command: hangup\nhangup-cause: CALL_REJECTED")
        return conn.events + await conn.rest()

    async with App(handler) as app:
        fake.dialplan["1"] = [("socket", f"127.0.0.1:{app.port} async full")]
        ch = await fake.call("1")
        [tail] = await app.results()
        await ch.wait_hangup()
    # no linger: the listener sees the channel go down and closes; HANGUP_COMPLETE never arrives
    assert [m.name or m.content_type for m in tail] == [
        "CHANNEL_PARK",
        "CHANNEL_HANGUP",
        "text/disconnect-notice",
    ]
    assert ch.hangup_cause == "CALL_REJECTED"


async def test_outbound_first_command_reply_is_dropped_and_resume(fake):
    async def handler(conn: Conn):
        conn.writer.write(b"myevents\n\n")  # runs, but FreeSWITCH never writes its reply
        r = await conn.cmd("connect")
        assert r.startswith(b"Event-Name: CHANNEL_DATA\n")
        assert await conn.cmd("myevents") == reply("-ERR aready enabled.")
        assert await conn.cmd("resume") == reply("+OK")
        assert await conn.cmd("getvar socket_resume") == reply("true")
        assert await conn.cmd("getvar no_such_var") == reply("-ERR command not found")
        assert await conn.cmd("divert_events on") == reply("+OK events diverted")
        assert await conn.cmd("divert_events") == reply("-ERR missing value.")
        assert await conn.cmd("nolinger") == reply("+OK will not linger")
        assert await conn.cmd("linger") == reply("+OK will linger")
        return await conn.cmd("exit")

    async with App(handler) as app:
        fake.dialplan["2"] = [("socket", f"127.0.0.1:{app.port} async full"), ("playback", "after.wav")]
        ch = await fake.call("2")
        assert await app.results() == [reply("+OK bye")]
        await ch.wait_hangup()
    # resume: the dialplan went on after the socket closed
    assert any(e.name == "PLAYBACK_START" for e in ch.events_fired)


async def test_outbound_static_single_channel(fake):
    async def handler(conn: Conn):
        conn.writer.write(b"connect\n\n")
        data = await conn.reply()
        assert data.raw.endswith(b"Socket-Mode: static\nControl: single-channel\n\n")
        results = [
            await conn.cmd(c)
            for c in ("api status", "linger 5", "event plain ALL", "bgapi status", "log", "sendevent CUSTOM")
        ]
        assert results == [reply("-ERR command not found")] * 6
        assert await conn.cmd("filter Unique-ID " + data["Unique-ID"]) == reply(
            "+OK filter added. [Unique-ID]=[" + data["Unique-ID"] + "]"
        )
        assert await conn.cmd("myevents") == reply("+OK Events Enabled")
        # static: the application runs before the reply is written; its events follow the reply
        r = await conn.cmd(
            "sendmsg\ncall-command: execute\nexecute-app-name: playback\nexecute-app-arg: x.wav"
        )
        assert r == reply("+OK") and conn.events == []
        await conn.until(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE")
        assert [e.name for e in conn.events] == ["CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE"]
        return await conn.cmd("exit")

    async with App(handler) as app:
        fake.dialplan["3"] = [("answer", ""), ("socket", f"127.0.0.1:{app.port}")]
        ch = await fake.call("3")
        assert await app.results() == [reply("+OK bye")]
        await ch.wait_hangup()


async def test_outbound_connect_failure_continues_dialplan(fake):
    fake.dialplan["4"] = [("socket", "127.0.0.1:1 async full"), ("hangup", "USER_BUSY")]
    c = await Conn.inbound(fake, "log 3")
    ch = await fake.call("4")
    await ch.wait_hangup()
    assert ch.hangup_cause == "USER_BUSY"
    log = await c.next()
    assert log.content_type == "log/data" and b"Socket Error!" in log.raw


async def test_outbound_connect_timeout_setting(fake):
    """An app whose accept queue is full: the socket app gives up after Timings.connect_timeout."""
    assert Timings().connect_timeout > 1 + 2 + 4 + 8  # outlasts the SYN retransmits of a full accept queue
    fake.timings.connect_timeout = 0.3
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # never accepted: one connection fills the queue, later SYNs are dropped
    filler = socket.create_connection(listener.getsockname())
    try:
        host, port = listener.getsockname()
        fake.dialplan["5"] = [("socket", f"{host}:{port} async full"), ("hangup", "USER_BUSY")]
        c = await Conn.inbound(fake, "log 3")
        ch = await fake.call("5")
        await asyncio.wait_for(ch.wait_hangup(), 10)
        assert ch.hangup_cause == "USER_BUSY"
        log = await c.next()
        assert log.content_type == "log/data" and b"Socket Error!" in log.raw
    finally:
        filler.close()
        listener.close()


async def test_inbound_myevents_uuid_session(fake):
    assert await fake.originate("{origination_uuid=m1}user/1 &park") == "+OK m1\n"
    c = await Conn.inbound(fake, None)
    assert await c.cmd("myevents m1") == reply("+OK Events Enabled")
    other = await Conn.inbound(fake, None)
    assert await other.cmd("api originate {origination_uuid=m2}user/2 &park") == api("+OK m2\n")
    await fake.channels["m1"].hangup("NORMAL_CLEARING")
    tail = await c.rest()
    assert [m.name or m.content_type for m in c.events + tail] == ["CHANNEL_HANGUP", "text/disconnect-notice"]
    assert tail[-1]["Controlled-Session-UUID"] == "m1"


async def test_many_concurrent_outbound_sessions():
    async def handler(conn: Conn):
        conn.writer.write(b"connect\n\n")
        data = await conn.reply()
        u = data["Unique-ID"]
        await conn.cmd(f"filter Unique-ID {u}")
        await conn.cmd("event plain ALL")
        await conn.cmd("linger 1")
        await conn.cmd(
            "sendmsg\ncall-command: execute\nexecute-app-name: answer\nevent-lock: true\nEvent-UUID: a"
        )
        await conn.until(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE")
        await conn.cmd("sendmsg\ncall-command: hangup")
        events = conn.events + [m for m in await conn.rest() if m.is_event]
        assert {e.uuid for e in events} == {u}  # the filter kept every other call's events away
        assert events[-1].name == "CHANNEL_HANGUP_COMPLETE"
        return len(events)

    async with FakeFreeSWITCH(timings=Timings(playback=0.001)) as fake, App(handler) as app:
        fake.dialplan["x"] = [("socket", f"127.0.0.1:{app.port} async full")]
        chans = await asyncio.gather(*[fake.call("x") for _ in range(100)])
        counts = await app.results(100, timeout=30)
        await asyncio.gather(*[c.wait_hangup(30) for c in chans])
        assert all(n == counts[0] for n in counts) and counts[0] >= 10
        assert not fake.channels and fake.errors == []


async def test_originate_to_socket_app_and_sendevent_command(fake):
    async def handler(conn: Conn):
        conn.writer.write(b"connect\n\n")
        data = await conn.reply()
        await conn.cmd("myevents")
        await conn.cmd("event plain BACKGROUND_JOB")  # myevents alone does not subscribe to it
        # a sendevent carrying a call-command and this session's Unique-ID runs like a sendmsg
        r = await conn.cmd(
            f"sendevent COMMAND\nUnique-ID: {data['Unique-ID']}\ncall-command: execute\n"
            "execute-app-name: set\nexecute-app-arg: via=sendevent"
        )
        assert r.startswith(b"Content-Type: command/reply\nReply-Text: +OK ")
        await conn.until(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE" and e["Application"] == "set")
        job = await conn.cmd("bgapi uuid_getvar " + data["Unique-ID"] + " via")
        assert job.startswith(b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: ")
        bg = await conn.until(lambda e: e.name == "BACKGROUND_JOB")  # Job-Owner-UUID lets it through myevents
        assert bg["Job-Owner-UUID"] == data["Unique-ID"] and bg.body == "sendevent"
        return await conn.cmd("exit")

    async with App(handler) as app:
        c = await Conn.inbound(fake, None)
        r = await c.cmd(
            f"api originate {{origination_uuid=s1}}user/1000 '&socket(127.0.0.1:{app.port} async full)'"
        )
        assert r == api("+OK s1\n")
        assert await app.results() == [reply("+OK bye")]
        ch = fake.channels.get("s1")
        if ch is not None:
            await ch.wait_hangup()


async def test_break_transfer_unknown_app_and_log(fake):
    fake.timings.media["long.wav"] = 5.0
    fake.dialplan["after"] = [("playback", "short.wav")]
    c = await Conn.inbound(fake)
    await c.cmd("log 4")
    assert await c.cmd("api originate {origination_uuid=t1}user/1000 &playback(long.wav)") == api("+OK t1\n")
    await c.until(lambda e: e.name == "PLAYBACK_START")
    assert await c.cmd("api uuid_break t1") == api("+OK\n")
    stop = await c.until(lambda e: e.name == "PLAYBACK_STOP")
    assert stop["Playback-Status"] == "break"
    # the originate's application ended: the leg hangs up
    await c.until(lambda e: e.name == "CHANNEL_HANGUP" and e.uuid == "t1")
    assert await c.cmd("api originate {origination_uuid=t2}user/1000 &park") == api("+OK t2\n")
    assert await c.cmd(
        "sendmsg t2\ncall-command: execute\nexecute-app-name: frobnicate\nexecute-app-arg: x"
    ) == reply("+OK")
    done = await c.until(lambda e: e.name == "CHANNEL_EXECUTE_COMPLETE" and e["Application"] == "frobnicate")
    assert done["Application-Response"] == "_none_"
    log = await c.reply()
    assert log.content_type == "log/data" and "Invalid Application frobnicate" in log.body
    assert log["User-Data"] == "t2" and log["Log-Level"] == "4"
    assert await c.cmd("api uuid_transfer t2 after") == api("+OK\n")
    await c.until(lambda e: e.name == "PLAYBACK_STOP" and e.uuid == "t2")
    await c.until(lambda e: e.name == "CHANNEL_HANGUP_COMPLETE" and e.uuid == "t2")


async def test_plugin_fixture(freeswitch):
    """The pytest plugin's ``freeswitch`` fixture is a started fake."""
    assert isinstance(freeswitch, FakeFreeSWITCH) and freeswitch.port > 0
    c = await Conn.inbound(freeswitch, None)
    assert await c.cmd("api echo ok") == api("ok")


async def test_session_listener_killing_its_own_channel_gets_the_reply_first(fake):
    assert await fake.originate("{origination_uuid=k1}user/1 &park") == "+OK k1\n"
    c = await Conn.inbound(fake, None)
    assert await c.cmd("myevents k1 plain") == reply("+OK Events Enabled")
    c.writer.write(b"api uuid_kill k1 USER_BUSY\n\n")
    tail = await c.rest()
    assert tail[0].raw == api("+OK\n")
    assert [m.name or m.content_type for m in tail[1:]] == ["CHANNEL_HANGUP", "text/disconnect-notice"]
    assert tail[1]["Hangup-Cause"] == "USER_BUSY"


async def test_divert_events_and_far_end_endpoint(fake):
    fake.endpoints["user/presser"] = Endpoint(answer_after=0.01, dtmf="7", early_media=True)
    watcher = await Conn.inbound(fake, "event plain DTMF CHANNEL_PROGRESS_MEDIA")

    async def handler(conn: Conn):
        conn.writer.write(b"connect\n\n")
        await conn.reply()
        assert await conn.cmd("divert_events on") == reply("+OK events diverted")
        await conn.cmd("myevents")
        dtmf = await conn.until(lambda e: e.name == "DTMF")
        return dtmf["DTMF-Digit"]

    async with App(handler) as app:
        fake.dialplan["d"] = [("answer", ""), ("socket", f"127.0.0.1:{app.port} async full")]
        ch = await fake.call("d")
        while not any(c.divert and c.myevents for c in fake.connections):  # the app has subscribed
            await asyncio.sleep(0.002)
        await ch.send_dtmf("5")
        assert await app.results() == ["5"]
        await ch.wait_hangup()
    # diverted: the global listener did not see the session's DTMF
    assert await fake.originate("{origination_uuid=p1}user/presser &park") == "+OK p1\n"
    early = await watcher.until(lambda e: e.name == "CHANNEL_PROGRESS_MEDIA")
    assert early.uuid == "p1" and early["Answer-State"] == "early"
    pressed = await watcher.until(lambda e: e.name == "DTMF")
    assert pressed.uuid == "p1" and pressed["DTMF-Digit"] == "7"
    assert [e.uuid for e in watcher.events if e.name == "DTMF"] == ["p1"]


async def test_hangup_message_interrupts_an_unlocked_app_but_waits_for_a_locked_one(fake):
    fake.timings.media["long.wav"] = 5.0
    c = await Conn.inbound(fake, None)
    for uuid, lock in (("h1", ""), ("h2", "event-lock: true\n")):
        assert await c.cmd(f"api originate {{origination_uuid={uuid}}}user/1 &park") == api(f"+OK {uuid}\n")
        ch = fake.channels[uuid]
        c.writer.write(
            f"sendmsg {uuid}\ncall-command: execute\nexecute-app-name: playback\n"
            f"execute-app-arg: long.wav\n{lock}\n".encode()
        )
        assert (await c.reply()).raw == reply("+OK")
        while not any(e.name == "PLAYBACK_START" for e in ch.events_fired):
            await asyncio.sleep(0.002)
        assert await c.cmd(f"sendmsg {uuid}\ncall-command: hangup") == reply("+OK")
        if lock:
            # event-lock: the hangup waits behind the playback
            await asyncio.sleep(0.05)
            assert not ch.down
            assert await c.cmd(f"api uuid_break {uuid}") == api("+OK\n")
        await ch.wait_hangup()
        names = [e.name for e in ch.events_fired]
        assert names.index("CHANNEL_HANGUP") < names.index("PLAYBACK_STOP") or lock
