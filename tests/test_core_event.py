"""Event: the mapping, the routing keys, decoding, serialization (both cores)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest


def frame(payload: bytes, fmt: str = "plain") -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-%s\n\n" % (len(payload), fmt.encode()) + payload


def one(core: Any, data: bytes) -> Any:
    (ev,) = core.Parser().feed(data)
    return ev


PLAIN = (
    b"Event-Name: COMMAND\n"
    b"Core-UUID: c0\n"
    b"Event-Sequence: 41\n"
    b"Unique-ID: u-1\n"
    b"Caller-Caller-ID-Name: J%C3%BCrgen%20M%2B\n"
    b"Bad-Percent: 100%25%zz%4\n"
    b"Latin1: Ren%E9\n"
    b"variable_DP_MATCH: ARRAY%3A%3Aa%7C%3Ab%7C%3Ac\n"
    b"Empty: _undef_\n"
    b"Channel-Read-Codec-Bit-Rate: 64000\n"
    b"channel-read-codec-bit-rate: 8000\n"
    b"Event-Name: PRIVATE_COMMAND\n"
    b"event-lock: true\n"
    b"Content-Length: 11\n\n"
    b"hello\nworld"
)


def test_mapping_and_keys(core: Any) -> None:
    ev = one(core, frame(PLAIN))
    assert isinstance(ev, Mapping)
    assert ev.content_type == "text/event-plain" and ev.format == "plain" and ev.is_event
    assert ev.name == "PRIVATE_COMMAND" == ev["Event-Name"]  # last Event-Name wins
    assert ev.getall("Event-Name") == ["COMMAND", "PRIVATE_COMMAND"]
    assert ev.uuid == "u-1" and ev.sequence == 41 and ev.job_uuid is None
    assert ev.application_uuid is None and ev.subclass is None
    assert ev["Caller-Caller-ID-Name"] == "Jürgen M+"
    assert ev["Bad-Percent"] == "100%%zz%4"  # malformed % left as it is
    assert ev["Latin1"] == "Ren\udce9"  # not UTF-8: kept losslessly as a surrogate
    assert ev["Latin1"].encode("utf-8", "surrogateescape") == b"Ren\xe9"
    assert ev.getall("variable_DP_MATCH") == ["a", "b", "c"]
    assert ev["variable_DP_MATCH"] == "ARRAY::a|:b|:c"
    assert ev["Empty"] == "_undef_"
    # exact first, then case-insensitive
    assert ev["Channel-Read-Codec-Bit-Rate"] == "64000"
    assert ev["channel-read-codec-bit-rate"] == "8000"
    assert ev["CHANNEL-READ-CODEC-BIT-RATE"] == "64000"
    assert ev.getall("channel-read-codec-bit-rate") == ["64000", "8000"]
    assert ev["unique-id"] == "u-1" and "UNIQUE-ID" in ev and "nope" not in ev and 3 not in ev
    assert ev.get("nope") is None and ev.get("nope", 7) == 7
    with pytest.raises(KeyError):
        ev["nope"]
    # the Content-Length that frames the body is not a header
    assert "Content-Length" not in ev
    assert ev.body == "hello\nworld"
    assert len(ev) == len(list(ev)) == 12
    assert list(ev)[:3] == ["Event-Name", "Core-UUID", "Event-Sequence"]
    assert ev.headers == dict(ev.items()) and isinstance(ev.headers, dict)
    assert ev.items_all()[-1] == ("event-lock", "true")
    assert len(ev.items_all()) == 13
    assert ev.raw == frame(PLAIN)


def test_hash_eq_repr(core: Any) -> None:
    a = one(core, frame(PLAIN))
    b = one(core, frame(PLAIN))
    c = one(core, frame(PLAIN.replace(b"u-1", b"u-2")))
    assert a == b and not (a != b) and a != c
    assert a != {"Event-Name": "PRIVATE_COMMAND"}  # a plain dict has no items_all
    with pytest.raises(TypeError):
        hash(a)
    assert "PRIVATE_COMMAND" in repr(a) and "u-1" in repr(a)


def test_routing_keys_follow_get(core: Any) -> None:
    # FreeSWITCH sends some headers lower-cased (PRESENCE_IN carries "unique-id").
    payload = b"event-name: PRESENCE_IN\nunique-id: esltest\nEvent-Sequence:7\nJob-UUID:   j\n\n"
    ev = one(core, frame(payload))
    assert ev.name == ev.get("Event-Name") == "PRESENCE_IN"
    assert ev.uuid == ev.get("Unique-ID") == "esltest"
    assert ev.sequence == 7 and ev.job_uuid == "j"
    # exact casing wins over an earlier other casing
    ev = one(core, frame(b"unique-id: low\nUnique-ID: exact\n\n"))
    assert ev.uuid == "exact" == ev["Unique-ID"]
    # a percent-encoded sequence is decoded first
    assert one(core, frame(b"Event-Sequence: 1%32\n\n")).sequence == 12
    assert one(core, frame(b"Event-Sequence: x\n\n")).sequence is None


def test_custom_event_subclass_first(core: Any) -> None:
    ev = one(core, frame(b"Event-Subclass: esltest%3A%3Aload\nEvent-Name: CUSTOM\n\n"))
    assert (ev.name, ev.subclass) == ("CUSTOM", "esltest::load")


def test_body_framing_and_nesting(core: Any) -> None:
    # body lines that look like headers are body; no trailing newline
    payload = b"Event-Name: BACKGROUND_JOB\nJob-UUID: j1\nContent-Length: 14\n\n+OK a: b\nc: d"
    ev = one(core, frame(payload))
    assert ev.body == "+OK a: b\nc: d" and "a" not in ev and "c" not in ev
    assert ev.job_uuid == "j1" and ev.uuid is None
    # no body
    ev = one(core, frame(b"Event-Name: HEARTBEAT\n\n"))
    assert ev.body is None and ev.name == "HEARTBEAT"
    # a text/event-plain with Content-Length 0 has no event inside
    ev = one(core, b"Content-Type: text/event-plain\nContent-Length: 0\n\n")
    assert ev.is_event and ev.name is None and len(ev) == 0 and ev.body is None


def test_replies_and_notices(core: Any) -> None:
    data = (
        b"Content-Type: auth/request\n\n"
        b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: j9\nJob-UUID: j9\n\n"
        b"Content-Type: api/response\nContent-Length: 24\n\n-ERR foo Command not found!\n"[:-4] + b"!\n"
    )
    msgs = core.Parser().feed(data + b"\n")
    assert [m.content_type for m in msgs][:2] == ["auth/request", "command/reply"]
    assert not msgs[0].is_event and msgs[0].format is None and msgs[0].name is None
    assert msgs[1].job_uuid == "j9" and msgs[1]["Reply-Text"] == "+OK Job-UUID: j9"
    api = core.Parser().feed(b"Content-Type: api/response\nContent-Length: 6\n\n+OK x\n")[0]
    assert api.body == "+OK x\n" and api["Content-Length"] == "6"
    linger = core.Parser().feed(
        b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: s\n"
        b"Content-Disposition: linger\nChannel-Name: sofia/x\nLinger-Time: -1\nContent-Length: 0\n\n"
    )[0]
    assert linger.body is None and linger["Content-Disposition"] == "linger"
    assert linger["Linger-Time"] == "-1"
    rude = core.Parser().feed(b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n")
    assert rude[0].body == "Access Denied, go away.\n"
    unknown = core.Parser().feed(b"Content-Type: x/new\nContent-Length: 2\n\nhi")
    assert unknown[0].content_type == "x/new" and unknown[0].body == "hi" and not unknown[0].is_event
    log = core.Parser().feed(b"Content-Type: log/data\nContent-Length: 3\nLog-Level: 7\n\nabc")[0]
    assert log.body == "abc" and log["Log-Level"] == "7"


def test_connect_reply(core: Any) -> None:
    data = (
        b"Event-Name: CHANNEL_DATA\nUnique-ID: c1\nCaller-Caller-ID-Name: A%20B\n"
        b"Content-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\nControl: full\n\n"
    )
    ev = one(core, data)
    assert ev.content_type == "command/reply" and not ev.is_event
    assert ev["Reply-Text"] == "+OK\n" and ev.name == "CHANNEL_DATA" and ev.uuid == "c1"
    assert ev["Socket-Mode"] == "async" and ev["Control"] == "full" and ev.body is None


@pytest.mark.parametrize("fmt", ["plain", "json", "xml"])
def test_build_serialize_roundtrip(core: Any, fmt: str) -> None:
    headers = [
        ("Event-Name", "CUSTOM"),
        ("Event-Subclass", "my::sub"),
        ("Unique-ID", "u 1"),
        ("Job-UUID", "j"),
        ("Event-Sequence", "5"),
        ("Weird", "a%20b + ü %zz"),
        ("Multi", "ARRAY::x|:y"),
    ]
    ev = core.Event.build(headers, "body\nline", fmt=fmt)
    assert ev.format == fmt and ev.items_all() == headers and ev.body == "body\nline"
    assert (ev.name, ev.subclass, ev.uuid, ev.job_uuid, ev.sequence) == ("CUSTOM", "my::sub", "u 1", "j", 5)
    assert ev.getall("Multi") == ["x", "y"]
    for out in ("plain", "json", "xml"):
        again = one(core, ev.frame(out))
        assert again == ev and again.format == out
        assert ev.serialize(out) == again.serialize(out)
    plain = ev.serialize("plain")
    assert b"Weird: a%2520b%20%2B%20%C3%BC%20%25zz\n" in plain
    assert plain.endswith(b"Content-Length: 9\n\nbody\nline")
    assert core.Event.build({"A": ""}).serialize() == b"A: _undef_\n\n"


def test_event_constructor(core: Any) -> None:
    outer = b"Content-Length: 17\nContent-Type: text/event-plain"
    inner = b"Event-Name: X\n\n"[:17].ljust(17, b"\n")
    ev = core.Event(outer + b"\n\n" + inner, "text/event-plain", outer, inner)
    assert ev.name == "X" and ev.raw == outer + b"\n\n" + inner


def test_events_keep_working_after_parser_moves_on(core: Any) -> None:
    parser = core.Parser()
    chunk = frame(PLAIN) * 3
    first = parser.feed(chunk[:-5])
    second = parser.feed(chunk[-5:])
    parser.reset()
    assert len(first) == 2 and len(second) == 1
    assert [e.uuid for e in first + second] == ["u-1"] * 3
    assert all(e.raw == frame(PLAIN) for e in first + second)


def test_maps_of_same_shaped_events(core: Any) -> None:
    """Events with the same header sequence but other values (the compiled core reuses maps by shape)."""
    def block(a1: str, a2: str, n1: str, n2: str, body: bytes = b"") -> bytes:
        inner = f"Event-Name: {n1}\nA: {a1}\nB: x\nA: {a2}\nEvent-Name: {n2}\n".encode()
        inner += b"Content-Length: %d\n\n" % len(body) + body if body else b"\n"
        return frame(inner)

    parser = core.Parser()
    evs = parser.feed(block("1", "2", "E1", "E2") + block("3", "4", "P", "Q") + block("3", "9", "P", "R")
                      + block("5", "6", "S", "T", b"hi") + block("7", "8", "U", "V", b"yo"))
    assert [(e["A"], e["Event-Name"], e.getall("A"), e.body) for e in evs] == [
        ("1", "E2", ["1", "2"], None),
        ("3", "Q", ["3", "4"], None),
        ("3", "R", ["3", "9"], None),
        ("5", "T", ["5", "6"], "hi"),
        ("7", "V", ["7", "8"], "yo"),
    ]
    assert all(list(e) == ["Event-Name", "A", "B"] for e in evs)
    assert all("Content-Length" not in e for e in evs)
    # a Content-Length that does not frame a body stays a header, also for a known shape
    for _ in range(2):
        (e,) = core.Parser().feed(frame(b"Event-Name: X\nContent-Length: 5\n\n"))
        assert e["Content-Length"] == "5" and e.body is None


def test_event_constructor_checks_its_parts() -> None:
    import esl.core

    if "cython" not in esl.core.backends():
        return
    Event = esl.core.load("cython").Event
    with pytest.raises(ValueError):
        Event(b"abc", "text/event-plain", b"abcdefgh", b"xy")
    ev = Event(b"A: 1\n\n", "command/reply", b"A: 1", None)
    assert ev["A"] == "1" and ev.body is None


def test_many_and_long_headers(core: Any) -> None:
    lines = [f"H{i}: v{i}" for i in range(300)] + ["H7: dup", "Long: " + "x%20" * 100, "Event-Name: BIG"]
    for _ in range(2):  # the second time through the compiled core's caches
        ev = one(core, frame(("\n".join(lines) + "\n\n").encode()))
        assert len(ev) == 302 and ev["H7"] == "v7" and ev.getall("H7") == ["v7", "dup"]
        assert ev["Long"] == "x " * 100 and ev.name == "BIG" and ev["h299"] == "v299"


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_json_xml_lookups_in_any_order_and_after_the_frame_moves(core: Any, fmt: str) -> None:
    """Keys read from one event, then another, then headers of the first (the compiled core keeps the
    pairs its last key scan found and must not hand them to another event), also after the parser
    gave a kept event its own copy of the frame."""
    from esl import _codec

    def event(i: int) -> bytes:
        pairs = [("Event-Name", "CHANNEL_STATE"), ("Unique-ID", f"u-{i}"), ("X", f"x-{i}" * (i + 1)),
                 ("Y", "ARRAY::a|:b"), ("Caller-Caller-ID-Number", f"{1000 + i}")]
        return frame(_codec.serialize(pairs, None, fmt), fmt)

    data = b"".join(event(i) for i in range(4))
    parser = core.Parser()
    first = parser.feed(data[: len(event(0)) + len(event(1)) + 7])
    a, b = first
    assert b.uuid == "u-1" and a.uuid == "u-0"
    assert b["X"] == "x-1x-1" and a["X"] == "x-0" and a.get("y") == "ARRAY::a|:b"
    rest = parser.feed(data[len(event(0)) + len(event(1)) + 7 :])  # a and b now own their frames
    c, d = rest
    assert d.uuid == "u-3" and c.uuid == "u-2"
    assert b["Caller-Caller-ID-Number"] == "1001" and c["Caller-Caller-ID-Number"] == "1002"
    assert d["X"] == "x-3" * 4 and len(d) == 5 and d.getall("Y") == ["a", "b"]
    for i, ev in enumerate((a, b, c, d)):
        assert ev.headers == dict(ev) and ev["Unique-ID"] == f"u-{i}"
    del a, first  # a gone: a new event cannot take what the scan recorded for it
    e = core.Parser().feed(event(0))[0]
    assert e["X"] == "x-0" and e.name == "CHANNEL_STATE"
