"""Hostile input, seeded from the inputs fuzzing found: every one is a ProtocolError or a
well-defined event, and the compiled core and the twin say exactly the same."""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

import esl.core
from esl import _codec, _pycore
from esl.exceptions import ProtocolError

BACKENDS = sorted(esl.core.backends())


def frame(payload: bytes, fmt: str) -> bytes:
    return _codec.frame(payload, fmt)


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    """("ok", value) or ("error", exception type): what an accessor did."""
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return ("error", type(exc).__name__)
    return ("ok", value)


ACCESSORS: dict[str, Callable[[Any], Any]] = {
    "name": lambda e: e.name,
    "uuid": lambda e: e.uuid,
    "subclass": lambda e: e.subclass,
    "sequence": lambda e: e.sequence,
    "channel_state": lambda e: e.channel_state,
    "channel_state_number": lambda e: e.channel_state_number,
    "hangup_cause": lambda e: e.hangup_cause,
    "get": lambda e: e.get("Caller-Caller-ID-Number"),
    "getitem-ci": lambda e: e.get("event-name"),
    "contains": lambda e: "Unique-ID" in e,
    "len": len,
    "dict": dict,
    "items_all": lambda e: e.items_all(),
    "getall": lambda e: e.getall("Event-Name"),
    "body": lambda e: e.body,
}


def outcomes(core: Any, data: bytes) -> dict[str, tuple[str, Any]]:
    """Each accessor on a fresh event (so none sees another's cached decode)."""
    out = {}
    for key, fn in ACCESSORS.items():
        (event,) = core.Parser().feed(data)
        out[key] = outcome(lambda fn=fn, event=event: fn(event))  # type: ignore[misc]
    return out


def same_in_both(data: bytes) -> dict[str, tuple[str, Any]]:
    results = {name: outcomes(esl.core.load(name), data) for name in BACKENDS}
    first = results[BACKENDS[0]]
    for name in BACKENDS[1:]:
        assert results[name] == first, name
    for key, (kind, value) in first.items():
        assert kind == "ok" or value == "ProtocolError", (key, value)
    return first


# -- json -------------------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000

JSON_CASES = {
    "top-level array of pairs": b'[["Event-Name","HEARTBEAT"],["Unique-ID","u"]]',
    "top-level array": b'["Event-Name","HEARTBEAT"]',
    "top-level string": b'"Event-Name"',
    "nested object": b'{"Event-Name":"HEARTBEAT","X":{"a":"b"}}',
    "array of arrays": b'{"Event-Name":"HEARTBEAT","X":[["a"]]}',
    "body array": b'{"Event-Name":"HEARTBEAT","_body":["a"]}',
    "deep nesting": b'{"Event-Name":"HEARTBEAT","X":' + DEEP + b"}",
    "deep top level": DEEP,
    "huge number": b'{"Event-Name":"HEARTBEAT","X":' + b"9" * 5000 + b"}",
    "truncated": b'{"Event-Name":"HEART',
    "trailing data": b'{"Event-Name":"HEARTBEAT"} {}',
}


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_malformed_json_is_protocol_error(case: str) -> None:
    got = same_in_both(frame(JSON_CASES[case], "json"))
    assert got["dict"] == ("error", "ProtocolError")
    assert got["name"] == ("error", "ProtocolError")


def test_json_lone_surrogate_sequence_is_not_a_number() -> None:
    payload = b'{"Event-Name":"HEARTBEAT","Event-Sequence":"\\ud800","Channel-State-Number":"\\udfff"}'
    got = same_in_both(frame(payload, "json"))
    assert got["sequence"] == ("ok", None)
    assert got["channel_state_number"] == ("ok", None)
    assert got["name"] == ("ok", "HEARTBEAT")


def test_json_scalars_and_duplicates_are_well_defined() -> None:
    payload = (b'{"Event-Name":"A","X":5,"Y":true,"Z":null,"W":[1,"b",false],'
               b'"Unique-ID":"u1","Unique-ID":"u2","Event-Name":"B","Content-Length":"2","_body":"hi"}')
    got = same_in_both(frame(payload, "json"))
    (event,) = esl.core.Parser().feed(frame(payload, "json"))
    assert event.items_all() == [("Event-Name", "A"), ("X", "5"), ("Y", "true"), ("Z", "null"),
                                 ("W", "ARRAY::1|:b|:false"), ("Unique-ID", "u1"), ("Unique-ID", "u2"),
                                 ("Event-Name", "B")]
    assert got["name"] == ("ok", "B") and got["uuid"] == ("ok", "u1") and got["body"] == ("ok", "hi")


# -- xml --------------------------------------------------------------------------------


def xml(headers: bytes, tail: bytes = b"") -> bytes:
    return b"<event>\n  <headers>\n" + headers + b"  </headers>\n" + tail + b"</event>\n"


XML_CASES = {
    "reference past U+10FFFF": xml(b"<Event-Name>A</Event-Name>\n<X>a&#x110000;b</X>\n"),
    "decimal reference past U+10FFFF": xml(b"<Event-Name>A</Event-Name>\n<X>&#99999999999999999999;</X>\n"),
    "surrogate reference": xml(b"<Event-Name>A</Event-Name>\n<X>&#xD800;</X>\n"),
    "reference in the body": xml(b"<Event-Name>A</Event-Name>\n",
                                 b"<Content-Length>3</Content-Length>\n<body>&#x110000;</body>\n"),
    "5000-digit Content-Length": xml(b"<Event-Name>A</Event-Name>\n",
                                     b"<Content-Length>" + b"9" * 5000 + b"</Content-Length>\n<body>x</body>\n"),
    "lone surrogate Event-Sequence": xml(b"<Event-Name>A</Event-Name>\n<Event-Sequence>&#xDC80;</Event-Sequence>\n"),
    "deep nesting": xml(b"<Event-Name>A</Event-Name>\n" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"\n"),
    "no headers": b"<event><body>x</body></event>",
    "entity in a routing key": xml(b"<Event-Name>A&amp;B</Event-Name>\n<Unique-ID>%41&lt;</Unique-ID>\n"),
}


@pytest.mark.parametrize("case", sorted(XML_CASES))
def test_hostile_xml_is_well_defined(case: str) -> None:
    got = same_in_both(frame(XML_CASES[case], "xml"))
    if case == "no headers":
        assert got["dict"] == ("error", "ProtocolError")
    else:
        assert got["name"][0] == "ok" and got["dict"][0] == "ok" and got["body"][0] == "ok"


def test_xml_references_to_no_character_stay_as_written() -> None:
    (event,) = esl.core.Parser().feed(frame(XML_CASES["reference past U+10FFFF"], "xml"))
    assert event["X"] == "a&#x110000;b"
    (event,) = esl.core.Parser().feed(frame(XML_CASES["reference in the body"], "xml"))
    assert event.body == "&#x"  # the Content-Length (3) still says where it ends
    (event,) = esl.core.Parser().feed(frame(XML_CASES["5000-digit Content-Length"], "xml"))
    assert event.body == "x"


# -- framing ----------------------------------------------------------------------------


def test_content_length_of_more_than_4300_digits(core: Any) -> None:
    parser = core.Parser()
    with pytest.raises(ProtocolError, match="5000 digits exceeds"):
        parser.feed(b"Content-Type: api/response\nContent-Length: " + b"9" * 5000 + b"\n\n")
    with pytest.raises(ProtocolError):  # stopped, not wedged: refuses until reset
        parser.feed(b"x")
    parser.reset()
    (event,) = parser.feed(b"Content-Type: api/response\nContent-Length: " + b"0" * 5000 + b"3\n\nabc")
    assert event.body == "abc"


def test_protocol_error_keeps_messages_completed_before_it(core: Any) -> None:
    good = b"Content-Type: command/reply\nReply-Text: +OK\n\n"
    event = frame(b"Event-Name: HEARTBEAT\nUnique-ID: u\n\n", "plain")
    bad = b"Content-Type: api/response\nContent-Length: 12x\n\n"
    for cut in range(len(good + event + bad) + 1):
        data = good + event + bad
        parser = core.Parser()
        delivered: list[Any] = []
        with pytest.raises(ProtocolError) as info:
            for piece in (data[:cut], data[cut:]):
                delivered += parser.feed(piece)
        delivered += info.value.messages  # type: ignore[attr-defined]
        assert [m.content_type for m in delivered] == ["command/reply", "text/event-plain"], cut
        assert delivered[1].uuid == "u"
        with pytest.raises(ProtocolError) as again:
            parser.feed(good)
        assert again.value.messages == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("size", [64, 65])
def test_cap_acceptance_does_not_depend_on_split_points(core: Any, size: int) -> None:
    """A header block of exactly max_size bytes is accepted, one more byte is refused, at any split."""
    cap = 64
    block = b"Content-Type: command/reply\nX: " + b"y" * (size - 31)
    assert len(block) == size
    for sep in (b"\n\n", b"\n\r\n"):
        data = block + sep + b"Content-Type: command/reply\n\n"
        for cut in range(len(data) + 1):
            parser = core.Parser(cap)
            try:
                got = parser.feed(data[:cut]) + parser.feed(data[cut:])
                result = [m.raw for m in got]
            except ProtocolError as exc:
                result = ["error", *[m.raw for m in exc.messages]]  # type: ignore[attr-defined]
            if size <= cap:
                assert result == [block + sep, b"Content-Type: command/reply\n\n"], (sep, cut)
            else:
                assert result == ["error"], (sep, cut)


def test_crlf_framing(core: Any) -> None:
    """``\\n\\r\\n`` ends a header block (as libesl and mod_event_socket read it); lines lose their CR."""
    crlf = b"Content-Type: command/reply\r\nReply-Text: +OK accepted\r\n\r\n"
    api = b"Content-Type: api/response\r\nContent-Length: 3\r\n\r\nabc"
    lf = b"Content-Type: command/reply\nReply-Text: -ERR no\n\n"
    data = crlf + api + lf + crlf
    expected = [crlf, api, lf, crlf]
    for cut in range(len(data) + 1):
        parser = core.Parser()
        got = parser.feed(data[:cut]) + parser.feed(data[cut:])
        assert [m.raw for m in got] == expected, cut
    first, second, third, _ = core.Parser().feed(data)
    assert first["Reply-Text"] == "+OK accepted" and first.content_type == "command/reply"
    assert second.body == "abc" and second["Content-Length"] == "3"
    assert third["Reply-Text"] == "-ERR no"
    inner = b"Event-Name: CUSTOM\r\nUnique-ID: u\r\nChannel-State: CS_EXECUTE\r\n\n"
    (event,) = core.Parser().feed(frame(inner, "plain"))
    assert (event.name, event.uuid, event.channel_state, event["Channel-State"]) == (
        "CUSTOM", "u", "CS_EXECUTE", "CS_EXECUTE")


def test_twin_memory_for_escaped_values_within_3x() -> None:
    """The twin's percent-decoding of a huge escaped header stays within 3x the value's size."""
    value = b"%41%20" * (4 << 20 >> 3) + b"%E2%82%AC" * 1000  # ~4 MiB, all escapes
    data = frame(b"Event-Name: CUSTOM\nX: " + value + b"\n\n", "plain")
    (event,) = _pycore.Parser().feed(data)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        decoded = event["X"]
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert decoded.startswith("A A A") and decoded.endswith("€")
    assert peak <= 3 * len(value), peak / len(value)


def test_event_constructor_accepts_crlf_separator(core: Any) -> None:
    raw = b"Content-Type: api/response\r\nContent-Length: 2\r\n\r\nok"
    outer = b"Content-Type: api/response\r\nContent-Length: 2\r"
    event = core.Event(raw, "api/response", outer, b"ok")
    assert event.body == "ok" and event["Content-Length"] == "2"
    with pytest.raises(ValueError):
        core.Event(raw, "api/response", outer + b"x", b"ok")


def test_json_payload_decoded_in_c_matches_json_module() -> None:
    """Escapes of every kind through the compiled json decode, against the json module."""
    headers = [("Event-Name", "CUSTOM"), ("A", 'q"\\/\b\f\n\r\t\u00e9\u2603\U0001F600'), ("B", "\ud800x"),
               ("C", ["x", "y\u0001", ""]), ("D", "100%25"), ("Event-Name", "LAST")]
    payload = "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in headers) + "}"
    data = frame(payload.encode("utf-8", "surrogatepass"), "json")
    got = [esl.core.load(name).Parser().feed(data)[0].items_all() for name in BACKENDS]
    assert all(g == got[0] for g in got)
    assert got[0][1] == ("A", headers[1][1]) and got[0][2] == ("B", "\ud800x")
    assert got[0][3] == ("C", "ARRAY::x|:y\u0001|:")
