"""The cores on the real FreeSWITCH captures: counts, formats, splits, both backends.

The default run checks the differential tests (compiled core against the twin)
on a sample of each stream, a few thousand events in all; ``-m full_captures``
runs them over every event of every capture.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

import esl.core

# From shared/captures/README.md: Event-Name counts, identical in the three streams.
README_COUNTS = {
    "CHANNEL_STATE": 8359, "CHANNEL_CALLSTATE": 3166, "CODEC": 2634, "CHANNEL_EXECUTE": 2548,
    "CHANNEL_EXECUTE_COMPLETE": 2548, "API": 1361, "CHANNEL_CREATE": 1292, "CHANNEL_HANGUP": 1292,
    "CHANNEL_HANGUP_COMPLETE": 1292, "CHANNEL_DESTROY": 1292, "CHANNEL_ANSWER": 1228, "DTMF": 928,
    "BACKGROUND_JOB": 816, "CHANNEL_PARK": 731, "CHANNEL_UNPARK": 731, "CHANNEL_UUID": 646,
    "CHANNEL_OUTGOING": 646, "CHANNEL_ORIGINATE": 646, "CALL_UPDATE": 614, "PLAYBACK_START": 589,
    "PLAYBACK_STOP": 589, "SESSION_HEARTBEAT": 516, "PRIVATE_COMMAND": 213, "CUSTOM": 146,
    "PRESENCE_IN": 63, "RE_SCHEDULE": 10, "HEARTBEAT": 9,
}
README_SUBCLASSES = {"conference::maintenance": 112, "esltest::load": 17, "esltest::nobody": 17}
TOTAL_EVENTS = 34905
FORMATS = ("plain", "json", "xml")
#: Every inbound event stream: the loopback legs and the SIP legs (``sip-*``).
STREAMS = [f"{kind}-{fmt}" for kind in ("events", "sip-events") for fmt in FORMATS]
#: Bytes of each stream the sampled differential tests read (about 500 to 1,300 events).
SAMPLE = 3 << 20
full = pytest.mark.full_captures

_parsed: dict[tuple[str, str], list[Any]] = {}


def parsed(captures: Any, backend: str, fmt: str) -> list[Any]:
    """Every message of stream ``fmt`` read whole by ``backend`` (cached for the session)."""
    key = (backend, fmt)
    if key not in _parsed:
        _parsed[key] = esl.core.load(backend).Parser().feed(captures.events(fmt))
    return _parsed[key]


def signature(ev: Any) -> tuple[Any, ...]:
    """What framing and the routing keys say about a message."""
    return (ev.content_type, ev.raw, ev.name, ev.uuid, ev.job_uuid, ev.application_uuid,
            ev.subclass, ev.sequence)


@pytest.mark.parametrize("backend", ["cython", pytest.param("python", marks=full)])
@pytest.mark.parametrize("fmt", FORMATS)
def test_capture_counts_match_readme(backend: str, captures: Any, fmt: str) -> None:
    if backend not in esl.core.backends():
        pytest.skip("compiled core not built")
    core = esl.core.load(backend)
    data = captures.events(fmt)
    parser = core.Parser()
    messages = parser.feed(data)
    assert parser.buffered == 0
    events = [m for m in messages if m.is_event]
    assert len(events) == TOTAL_EVENTS
    assert all(m.format == fmt for m in events)
    assert Counter(e.name for e in events) == README_COUNTS
    assert Counter(e.subclass for e in events if e.name == "CUSTOM") == README_SUBCLASSES
    # Every event carries a sequence, and the stream ends with the disconnect notice.
    assert all(isinstance(e.sequence, int) for e in events)
    assert messages[-1].content_type == "text/disconnect-notice"
    others = Counter(m.content_type for m in messages if not m.is_event)
    assert others["command/reply"] >= 1 and others["api/response"] == 1


@pytest.mark.parametrize("stream", STREAMS)
def test_frames_tile_the_stream(captures: Any, stream: str) -> None:
    """Frames are contiguous and, with the blank lines between them, are the whole stream."""
    data = captures.read(f"{stream}.raw.xz")
    pos = 0
    for m in esl.core.Parser().feed(data):
        while data[pos] == 10:
            pos += 1
        assert data.startswith(m.raw, pos)
        pos += len(m.raw)
    assert data[pos:].strip(b"\n") == b""


def test_same_event_in_three_formats(captures: Any) -> None:
    backend = esl.core.BACKEND
    streams = {fmt: [m for m in parsed(captures, backend, fmt) if m.is_event] for fmt in FORMATS}
    by_seq = {fmt: {e.sequence: e for e in evs} for fmt, evs in streams.items()}
    assert len(by_seq["plain"]) == TOTAL_EVENTS
    assert by_seq["plain"].keys() == by_seq["json"].keys() == by_seq["xml"].keys()
    header_diffs: Counter[str] = Counter()
    for seq, plain in by_seq["plain"].items():
        for fmt in ("json", "xml"):
            other = by_seq[fmt][seq]
            assert (other.name, other.uuid, other.subclass, other.job_uuid, other.body) == (
                plain.name, plain.uuid, plain.subclass, plain.job_uuid, plain.body), (seq, fmt)
        # Header mappings: plain and xml carry the same percent-encoded values.
        if plain.headers != by_seq["xml"][seq].headers:
            header_diffs["xml"] += 1
        if plain.headers != by_seq["json"][seq].headers:
            header_diffs["json"] += 1
    assert header_diffs["xml"] == 0
    # json differs only where FreeSWITCH itself writes it differently (see test below).
    assert header_diffs["json"] <= TOTAL_EVENTS


def test_json_headers_differ_from_plain_only_in_known_ways(captures: Any) -> None:
    """json carries the true values; plain and xml are percent-encoded by FreeSWITCH, which
    leaves an existing ``%XX`` alone (ESL-PROTOCOL.md 1.4, "lossy case"), so a value that
    literally holds ``%20`` arrives in plain as ``%20`` and decodes to a space."""
    from esl import _codec

    backend = esl.core.BACKEND
    plain = {e.sequence: e for e in parsed(captures, backend, "plain") if e.is_event}
    lossy = 0
    for ev in parsed(captures, backend, "json"):
        if not ev.is_event:
            continue
        a, b = plain[ev.sequence].headers, ev.headers
        assert a.keys() == b.keys(), ev.sequence
        for name, value in b.items():
            if a[name] != value:
                assert "%" in value and _codec.decode_text(value) == a[name], (ev.sequence, name)
                lossy += 1
    assert lossy > 0  # the capture has caller names like "Load%20Test"


def _chunks(data: bytes, rng: random.Random, top: int = 65536) -> list[bytes]:
    """data split at random points; sizes log-uniform in 1..top so small pieces are common."""
    out = []
    pos = 0
    while pos < len(data):
        size = int(2 ** rng.uniform(0, top.bit_length() - 1)) or 1
        out.append(data[pos : pos + size])
        pos += size
    return out


@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_chunks_equal_whole_feed(core: Any, captures: Any, stream: str, seed: int) -> None:
    data = captures.read(f"{stream}.raw.xz")
    if core.__name__ == "esl._pycore":
        data = data[: 4 << 20]  # the twin is slow; 4 MiB is thousands of frames
    elif stream.startswith("sip"):
        data = data[: 24 << 20]
    whole = core.Parser().feed(data)
    parser = core.Parser()
    pieces = []
    for chunk in _chunks(data, random.Random(seed)):
        pieces.extend(parser.feed(chunk))
    # Same frames, byte for byte (keys and headers are a function of the bytes).
    assert [(e.content_type, e.raw) for e in pieces] == [(e.content_type, e.raw) for e in whole]
    assert [signature(e) for e in pieces[::97]] == [signature(e) for e in whole[::97]]
    assert parser.buffered == whole_tail(data, whole)
    assert pieces[:50] == whole[:50]  # decoded headers and bodies too


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_byte_at_a_time(core: Any, captures: Any, fmt: str) -> None:
    data = captures.events(fmt)[:150_000]
    whole = core.Parser().feed(data)
    parser = core.Parser()
    pieces = []
    for i in range(len(data)):
        pieces.extend(parser.feed(data[i : i + 1]))
    assert len(whole) > 20
    assert [signature(e) for e in pieces] == [signature(e) for e in whole]
    assert parser.buffered == whole_tail(data, whole)


def whole_tail(data: bytes, whole: list[Any]) -> int:
    """Bytes after the last complete frame (what a parser still holds)."""
    end = data.rindex(whole[-1].raw) + len(whole[-1].raw)
    return len(data[end:].lstrip(b"\n"))


# -- differential: the compiled core against the twin ------------------------------


needs_both = pytest.mark.skipif(len(esl.core.backends()) < 2, reason="compiled core not built")


#: Headers looked up one at a time, before any full decode, in the differential tests.
LOOKUPS = ("Caller-Caller-ID-Number", "Channel-State", "caller-caller-id-name", "Event-Name", "event-name",
           "variable_sip_call_id", "Content-Length", "Core-UUID", "X-Absent", "Reply-Text", "Event-Date-Local")
FIELDS = ("channel_state", "channel_state_number", "call_state", "answer_state", "hangup_cause", "other_leg_uuid",
          "dtmf_digit", "application", "application_response", "application_data")


def assert_same_messages(cy: list[Any], py: list[Any], step: int = 1) -> None:
    """The compiled core's messages equal the twin's: keys, channel fields, lookups, the whole decode."""
    assert len(cy) == len(py)
    for i, (a, b) in enumerate(zip(cy, py)):
        assert signature(a) == signature(b), i
        assert [getattr(a, f) for f in FIELDS] == [getattr(b, f) for f in FIELDS], i
        assert a.format == b.format and a.is_event == b.is_event
        if i % step == 0 or not a.is_event:
            assert [(a.get(h), h in a) for h in LOOKUPS] == [(b.get(h), h in b) for h in LOOKUPS], i
            assert a.items_all() == b.items_all(), i
            assert a.body == b.body, i
            assert a.headers == b.headers, i
            assert a == b and b == a


@needs_both
@pytest.mark.parametrize("stream", STREAMS)
def test_cython_equals_python_sampled(captures: Any, stream: str) -> None:
    data = captures.read(f"{stream}.raw.xz")[:SAMPLE]
    assert_same_messages(esl.core.load("cython").Parser().feed(data), esl.core.load("python").Parser().feed(data))


@needs_both
@full
@pytest.mark.parametrize("stream", STREAMS)
def test_cython_equals_python_on_captures(captures: Any, stream: str) -> None:
    data = captures.read(f"{stream}.raw.xz")
    assert_same_messages(esl.core.load("cython").Parser().feed(data), esl.core.load("python").Parser().feed(data))


@needs_both
@pytest.mark.parametrize("stream", STREAMS)
@pytest.mark.parametrize("seed", [7, 8])
def test_random_split_points_frame_alike_in_both_cores(captures: Any, stream: str, seed: int) -> None:
    """A window of the stream cut at random points frames to the same bytes in both cores."""
    rng = random.Random(seed)
    data = captures.read(f"{stream}.raw.xz")
    start = rng.randrange(0, len(data) - (1 << 20))
    window = data[start : start + (1 << 20)]
    out = {}
    for backend in ("cython", "python"):
        parser = esl.core.load(backend).Parser()
        framed = []
        for piece in _chunks(window, random.Random(seed * 31 + len(backend))):
            framed.extend(parser.feed(piece))
        out[backend] = ([(e.content_type, e.raw) for e in framed], parser.buffered)
    assert out["cython"] == out["python"]
    assert len(out["cython"][0]) > 50


@needs_both
@pytest.mark.parametrize("name", ["outbound-session.raw", "outbound-session-exit.raw", "sip-outbound-plain.raw.xz",
                                  "sip-outbound-json.raw.xz", "sip-outbound-xml.raw.xz"])
def test_cython_equals_python_on_outbound(captures: Any, name: str) -> None:
    data = captures.read(name)
    assert_same_messages(esl.core.load("cython").Parser().feed(data), esl.core.load("python").Parser().feed(data))


# -- outbound sessions -------------------------------------------------------------


@pytest.mark.parametrize("name", ["outbound-session.raw", "outbound-session-exit.raw"])
def test_outbound_session_frames(core: Any, captures: Any, name: str) -> None:
    data = captures.read(name)
    parser = core.Parser()
    messages = parser.feed(data)
    assert parser.buffered == 0
    connect = messages[0]
    assert connect.content_type == "command/reply"
    assert not connect.is_event
    assert connect["Reply-Text"] == "+OK\n"
    assert connect["Socket-Mode"] in ("async", "static")
    assert connect["Control"] in ("full", "single-channel")
    assert connect.name == "CHANNEL_DATA"
    assert connect.uuid and connect.uuid == connect["Unique-ID"]
    assert connect.body is None
    # Content-Type comes last in the connect reply, after the channel data.
    assert list(connect)[-4:] == ["Content-Type", "Reply-Text", "Socket-Mode", "Control"]
    kinds = Counter(m.content_type for m in messages)
    assert kinds["text/event-plain"] > 5
    notices = [m for m in messages if m.content_type == "text/disconnect-notice"]
    assert notices, "the session ends with a disconnect notice"
    for m in messages:
        if m.is_event:
            assert m.uuid == connect.uuid or m.name not in ("CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE")
    if name == "outbound-session.raw":
        linger = [n for n in notices if n.get("Content-Disposition") == "linger"]
        assert linger and linger[0].body is None
        assert linger[0]["Controlled-Session-UUID"] == connect.uuid
        assert linger[0].raw.endswith(b"Content-Length: 0\n\n")


def test_outbound_one_byte_at_a_time(core: Any, captures: Any) -> None:
    data = captures.read("outbound-session-exit.raw")
    whole = core.Parser().feed(data)
    parser = core.Parser()
    pieces = [e for i in range(len(data)) for e in parser.feed(data[i : i + 1])]
    assert [signature(e) for e in pieces] == [signature(e) for e in whole]
    assert pieces[0]["Reply-Text"] == "+OK\n"


def test_handshake_captures(core: Any, captures: Any) -> None:
    for fmt in FORMATS:
        messages = core.Parser().feed(captures.read(f"events-{fmt}.handshake.raw"))
        assert [m.content_type for m in messages] == ["auth/request", "command/reply"]
        assert messages[1]["Reply-Text"].startswith("+OK")

