"""Property tests: generated events survive serialize -> split -> parse, in both cores alike."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import esl.core
from esl import _codec

CORES = esl.core.backends()

# Header names: anything FreeSWITCH could carry in a name (no ':', newline, NUL; not empty;
# not "Content-Length", which frames the body in the plain format).
names = st.text(
    st.characters(blacklist_characters=":\n\r\x00", blacklist_categories=("Cs",)), min_size=1, max_size=20
).filter(lambda n: n.strip() == n and n.lower() != "content-length")
plain_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
values = st.one_of(
    plain_values,
    st.sampled_from(["%", "%20", "%zz", "100%", "a+b", "ARRAY::", "_undef_", "x\ny", "ü", "日本"]),
    st.lists(plain_values.filter(lambda v: "|:" not in v), min_size=1, max_size=4).map(
        lambda items: "ARRAY::" + "|:".join(items)
    ),
).filter(lambda v: v != "")
headers = st.lists(st.tuples(names, values), min_size=1, max_size=12)
bodies = st.one_of(st.none(), st.text(max_size=60).filter(lambda b: b != ""), st.just("line\n"), st.just("a: b\n\nc"))


def parse_split(core: Any, data: bytes, cuts: list[int]) -> list[Any]:
    parser = core.Parser()
    out: list[Any] = []
    prev = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        out.extend(parser.feed(data[prev:cut]))
        prev = cut
    assert parser.buffered == 0
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=headers, body=bodies, cuts=st.lists(st.integers(min_value=0), max_size=6))
def test_plain_roundtrip_both_cores(pairs: list[tuple[str, str]], body: str | None, cuts: list[int]) -> None:
    results = {}
    for name, core in CORES.items():
        built = core.Event.build(pairs, body)
        data = built.frame() * 2
        (a, b) = parse_split(core, data, cuts)
        assert a.items_all() == pairs and b.items_all() == pairs
        assert a.body == body and a == built
        for key, value in pairs:
            assert key in a
            assert set(_codec.split_array(value)) <= set(a.getall(key))
        results[name] = (a.items_all(), a.body, a.name, a.uuid, a.sequence, a.subclass, a.headers, a.raw)
    assert len(set(map(repr, results.values()))) == 1


xml_names = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,15}\Z")


def distinct_neighbours(pairs: list[tuple[str, str]]) -> bool:
    return all(a[0] != b[0] for a, b in zip(pairs, pairs[1:]))


@settings(max_examples=60, deadline=None)
@given(pairs=headers, body=bodies, cuts=st.lists(st.integers(0), max_size=4))
def test_json_roundtrip_both_cores(pairs: list[tuple[str, str]], body: str | None, cuts: list[int]) -> None:
    # "_body" is where FreeSWITCH's JSON serializer puts the body: no header can carry that name
    pairs = [(k, v) for k, v in pairs if k != "_body"]
    outs = []
    for core in CORES.values():
        built = core.Event.build(pairs, body, fmt="json")
        (a,) = parse_split(core, built.frame("json"), cuts)
        assert a.format == "json" and a.body == body and a.items_all() == pairs
        outs.append((a.items_all(), a.body, a.name, a.uuid, a.sequence))
    assert all(o == outs[0] for o in outs)


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(xml_names, values), min_size=1, max_size=10).filter(distinct_neighbours),
    body=bodies,
    cuts=st.lists(st.integers(0), max_size=4),
)
def test_xml_roundtrip_both_cores(pairs: list[tuple[str, str]], body: str | None, cuts: list[int]) -> None:
    """XML holds element-safe names only, and an array as one element per item (FreeSWITCH's format):
    a one-item array comes back as its item."""
    expect = [(k, v[7:] if v.startswith("ARRAY::") and "|:" not in v else v) for k, v in pairs]
    outs = []
    for core in CORES.values():
        built = core.Event.build(pairs, body, fmt="xml")
        (a,) = parse_split(core, built.frame("xml"), cuts)
        assert a.format == "xml" and a.body == body and a.items_all() == expect
        outs.append((a.items_all(), a.body, a.name, a.uuid, a.sequence))
    assert all(o == outs[0] for o in outs)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=300), cuts=st.lists(st.integers(0), max_size=5))
def test_raw_values_decode_alike(raw: bytes, cuts: list[int]) -> None:
    """Arbitrary bytes in a plain value (percent signs, invalid UTF-8) decode the same in both cores."""
    value = raw.replace(b"\n", b"").replace(b"\r", b"")
    inner = b"Event-Name: X\nUnique-ID: " + value + b"\nV: " + value + b"\n\n"
    data = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(inner) + inner
    seen = []
    for core in CORES.values():
        (ev,) = parse_split(core, data, cuts)
        assert ev.uuid == ev.get("Unique-ID")
        assert ev["V"].encode("utf-8", "surrogateescape") == __import__("urllib.parse").parse.unquote_to_bytes(
            value.lstrip(b" ")
        )
        seen.append((ev.items_all(), ev.uuid))
    assert all(s == seen[0] for s in seen)


# -- routing keys of json and xml events: the compiled core's byte scan against the twin's full decode --

def frame(payload: bytes, fmt: str) -> bytes:
    return b"Content-Length: %d\nContent-Type: text/event-%s\n\n" % (len(payload), fmt.encode()) + payload


ROUTING = ("name", "uuid", "job_uuid", "application_uuid", "subclass", "sequence")


def routing_keys(core: Any, data: bytes) -> list[list[str]]:
    """Each routing key (or the exception it raises) and the Router's answer, per event."""
    out = []
    for ev in core.Parser().feed(data):
        row = []
        for attr in ROUTING:
            try:
                row.append(repr(getattr(ev, attr)))
            except Exception as exc:  # a malformed payload: both cores must fail alike
                row.append(type(exc).__name__)
        try:
            row.append(repr(core.Router(None).lookup(ev)))
        except Exception as exc:
            row.append(type(exc).__name__)
        out.append(row)
    return out


def xml_event(*elements: bytes, tail: bytes = b"</event>\n") -> bytes:
    return b"<event>\n  <headers>\n" + b"".join(b"    %s\n" % e for e in elements) + b"  </headers>\n" + tail


KEY_CASES = {
    "json": [
        b'{"Event-Name":"A","Unique-ID":"u1","Event-Name":"B","Unique-ID":"u2","Event-Sequence":"7"}',
        b'{"x":"\\"Unique-ID\\":\\"fake","Unique-ID":"real"}',
        b'{"Event-Name":"A\\u0042","Unique-ID":"u\\"1","Event-Name":"C\\n"}',
        b'{"Unique\\u002dID":"escaped-key","Event-Name":"X"}',
        b'{"unique-id":"lower","Event-Name":"X"}',
        b'{"unique-id":"lower","Unique-ID":"exact"}',
        b'{"Unique-ID":["a","b"],"Event-Sequence":"12","Event-Name":["A"],"Event-Name":"B"}',
        b'{"Event-Name":"B","Event-Name":["A"]}',
        b'{"Unique-ID":[],"Event-Sequence":" 12"}',
        b' {"Unique-ID" : "spaced" , "Event-Name":\t"X"}\n',
        b'{"Unique-ID":"a%20b","Event-Sequence":"1%32","Event-Name":"BACKGROUND_JOB","Job-UUID":"j%41"}',
        b'{"Unique-ID":"\xc3\xa9\xff","Event-Name":"CHANNEL_UUID","Application-UUID":"a\x00b\nc"}',
        b'{"Event-Name":"CUSTOM","Event-Subclass":"x::y","_body":"hi\\n","Content-Length":"3"}',
        b"{}",
        b"{}}",
        b"[]",
        b'["a"]',
        b"",
        b'{"Unique-ID":"a",}',
        b'{"Unique-ID":"a"} x',
        b'{"Unique-ID":"a","n":1}',
        b'{"a":{"Unique-ID":"nested"}}',
        b'{"Unique-ID":"a\\q"}',
        b'{"Unique-ID":"a\\u12"}',
        b'{"Unique-ID":"a"',
        b'\xef\xbb\xbf{"Unique-ID":"bom"}',
        b'{"Event-Sequence":"99999999999999999999999"}',
    ],
    "xml": [
        xml_event(b"<Event-Name>A</Event-Name>", b"<Unique-ID>u</Unique-ID>", b"<Event-Name>B</Event-Name>"),
        xml_event(b"<Unique-ID>a</Unique-ID>", b"<Unique-ID>b</Unique-ID>"),
        xml_event(b"<Unique-ID>a</Unique-ID>", b"<X>1</X>", b"<Unique-ID>b</Unique-ID>", b"<Unique-ID>c</Unique-ID>"),
        xml_event(b"<Event-Name>A</Event-Name>", b"<Event-Name>B</Event-Name>"),
        xml_event(b"<Event-Name>A</Event-Name>", b"<Event-Name>B</Event-Name>", b"<X>1</X>",
                  b"<Event-Name>C</Event-Name>"),
        xml_event(b"<Unique-ID>a&amp;b%20c</Unique-ID>", b"<Event-Name>&lt;</Event-Name>"),
        xml_event(b"<Unique-ID>a%20b</Unique-ID>", b"<Event-Sequence>1%32</Event-Sequence>",
                  b"<Job-UUID>%zz</Job-UUID>"),
        xml_event(b"<Unique-ID>\xc3%A9</Unique-ID>", b"<Event-Name>\xc3\xa9\xff</Event-Name>"),
        xml_event(b"<unique-id>lower</unique-id>"),
        xml_event(b"<Unique-ID >spaced</Unique-ID>"),
        xml_event(b"<Unique-ID/>", b"<Event-Name></Event-Name>"),
        xml_event(b"<Unique-ID>x</Unique-IDx>"),
        xml_event(b"junk <Unique-ID>x</Unique-ID>"),
        xml_event(tail=b"  <Unique-ID>after</Unique-ID>\n</event>\n"),
        xml_event(b"<Event-Name>BACKGROUND_JOB</Event-Name>", b"<Job-UUID>j</Job-UUID>",
                  tail=b"  <Content-Length>3</Content-Length>\n  <body>abc</body>\n</event>\n"),
        xml_event(b"<Event-Name>CHANNEL_UUID</Event-Name>", b"<Unique-ID>new</Unique-ID>"),
        b"<event>\n  <headers>\n    <Unique-ID>x</Unique-ID>\n",
        b"<headers><Unique-ID>no-event</Unique-ID></headers>",
        b"",
    ],
}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_json_xml_routing_keys_agree(fmt: str) -> None:
    """Duplicates, escapes, entities, case variants, arrays and malformed payloads: the same keys in both cores."""
    data = b"".join(frame(p, fmt) for p in KEY_CASES[fmt])
    results = [routing_keys(core, data) for core in CORES.values()]
    assert all(r == results[0] for r in results)
    first = results[0][0]
    assert first[0] == "'B'" and first[1] == ("'u1'" if fmt == "json" else "'u'")


TOKENS = {
    "json": [b'"', b"\\", b",", b":", b"{", b"}", b"[", b"]", b" ", b"\\u0041", b'"Unique-ID":"', b'"Event-Name":"',
             b'"unique-id":"', b'"Job-UUID":"', b'"Event-Sequence":"', b"%", b"\xff"],
    "xml": [b"<", b">", b"/", b"&", b"&amp;", b"%", b"%41", b"\xff", b" ", b"\n", b"<Unique-ID>", b"</Unique-ID>",
            b"<Event-Name>", b"</Event-Name>", b"<unique-id>", b"</headers>"],
}
KEY_HEADERS = [("Event-Name", "BACKGROUND_JOB"), ("Unique-ID", "u-1"), ("Job-UUID", "j-1"),
               ("Event-Sequence", "42"), ("Event-Name", "CHANNEL_UUID"), ("Application-UUID", "a-1"),
               ("Event-Subclass", "s::t"), ("X", "y")]


@settings(max_examples=300, deadline=None)
@given(
    fmt=st.sampled_from(["json", "xml"]),
    pairs=st.lists(st.sampled_from(KEY_HEADERS), min_size=1, max_size=6),
    edits=st.lists(st.tuples(st.integers(0), st.integers(0, 16), st.integers(0, 3)), max_size=3),
)
def test_mangled_json_xml_routing_keys_agree(
    fmt: str, pairs: list[tuple[str, str]], edits: list[tuple[int, int, int]]
) -> None:
    """FreeSWITCH-shaped events with tokens put in or bytes cut: the same keys (or errors) in both cores."""
    data = mangled(fmt, pairs, None, edits)
    results = [routing_keys(core, data) for core in CORES.values()]
    assert all(r == results[0] for r in results)


def mangled(fmt: str, pairs: list[tuple[str, str]], body: str | None, edits: list[tuple[int, int, int]]) -> bytes:
    """The frame of an event serialized as FreeSWITCH does, with TOKENS put in and bytes cut at ``edits``."""
    payload = bytearray(_codec.serialize(pairs, body, fmt))
    for pos, token, cut in edits:
        pos %= len(payload) + 1
        payload[pos : pos + cut] = TOKENS[fmt][token % len(TOKENS[fmt])]
    return frame(bytes(payload), fmt)


# -- per-header lookups of json and xml events: the compiled core's pair index against the twin's decode --

LOOKUP_NAMES = ("Event-Name", "event-name", "EVENT-NAME", "Unique-ID", "unique-id", "X", "x", "Y", "Z", "Content-Length",
                "content-length", "_body", "_BODY", "Caller-Caller-ID-Number", "caller-caller-id-number", "kelvin",
                "Kelvin", "Absent", "", "a:b", "é", "Channel-State", "Event-Sequence")

LOOKUP_CASES = {
    "json": [
        b'{"Event-Name":"A","X":"1","x":"2","Event-Name":"B","Y":["a","b"],"X":"3"}',
        b'{"x":"lower","EVENT-NAME":"upper","Y":[],"event-name":"l"}',
        b'{"Event-Name":"CUSTOM","_body":"hi","Content-Length":"2","X":"a\\"b\\u00e9"}',
        b'{"Content-Length":"9","content-length":"8","_body":"","Event-Name":"E"}',
        b'{"_BODY":"not the body","Content-Length":"1"}',
        b'{"\xe2\x84\xaaelvin":"kelvin sign","X":"%41"}',
        b'{"kelvin":"ascii","\xe2\x84\xaaelvin":"sign"}',
        b'{"\xc3\xa9":"e-acute","X":"\xff\xfe"}',
        b'{"Caller-Caller-ID-Number":"1001","caller-caller-id-number":"1002","Channel-State":"CS_\\u0041"}',
        b'{"Event-Name":["A","B"],"Event-Name":"C","Event-Name":["D"]}',
        b'{"Event-Sequence":"7","X":["\\n","|:"]}',
        b'{"X":"1","X":"2"}',
        # escapes resolved on the bytes: pairs, lone surrogates, NUL, raw invalid UTF-8 beside escapes
        b'{"X":"\\ud83d\\ude00 \\u00e9\\u20ac\\/\\b\\f\\n\\r\\t\\"\\\\ \\u0000end","Y":"\\ud800","x":"\\udc80z","Z":"\\udc80\\udc81","z":"\\ud800\\ud800"}',
        b'{"X":"\xc3\\u00a9 \xe2\x82\\u0041 \\ud83d\\u0041 \\ud83d","Y":"%41\\u0025\xff\\n"}',
        b'{"X":"' + b"\\u00e9" * 300 + b'\xc3","Y":"' + b"a\\\"" * 200 + b'"}',
        b"{}",
    ],
    "xml": [
        xml_event(b"<Event-Name>A</Event-Name>", b"<X>1</X>", b"<x>2</x>", b"<Event-Name>B</Event-Name>",
                  b"<Y>a</Y>", b"<Y>b</Y>", b"<X>3</X>"),
        xml_event(b"<Event-Name>A</Event-Name>", b"<Event-Name>B</Event-Name>", b"<X>1</X>",
                  b"<Event-Name>C</Event-Name>", b"<Event-Name>D</Event-Name>"),
        xml_event(b"<EVENT-NAME>U</EVENT-NAME>", b"<event-name>l</event-name>", b"<Event-Name>E</Event-Name>"),
        xml_event(b"<X>a&amp;b&lt;%20</X>", b"<Y>\xc3%A9</Y>", b"<Y>&#x41;</Y>", b"<Content-Length>3</Content-Length>"),
        xml_event(b"<Caller-Caller-ID-Number>1001</Caller-Caller-ID-Number>", b"<Channel-State>%43S</Channel-State>",
                  tail=b"  <Content-Length>3</Content-Length>\n  <body>abc</body>\n</event>\n"),
        xml_event(b"<X></X>", b"<X></X>", b"<Kelvin>k</Kelvin>"),
        xml_event(),
    ],
}


def lookups(core: Any, data: bytes) -> list[list[str]]:
    """``get`` and ``in`` of every LOOKUP_NAMES entry, in turn, on each event before any full decode."""
    out = []
    for ev in core.Parser().feed(data):
        row = []
        for name in LOOKUP_NAMES:
            try:
                row.append(repr((ev.get(name), name in ev)))
            except Exception as exc:  # a malformed payload: both cores must fail alike
                row.append(type(exc).__name__)
        try:
            row.append(repr(ev.items_all()))
        except Exception as exc:
            row.append(type(exc).__name__)
        out.append(row)
    return out


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_json_xml_lookups_agree(fmt: str) -> None:
    """Duplicates, arrays, case variants, _body, Content-Length, non-ASCII names: the same answers in both cores."""
    data = b"".join(frame(p, fmt) for p in LOOKUP_CASES[fmt] + KEY_CASES[fmt])
    results = [lookups(core, data) for core in CORES.values()]
    assert all(r == results[0] for r in results)
    first = results[0][0]
    assert first[0] == repr(("B", True)) and first[5] == repr(("1", True))
    assert first[7] == repr(("ARRAY::a|:b", True))


@settings(max_examples=200, deadline=None)
@given(
    fmt=st.sampled_from(["json", "xml"]),
    pairs=st.lists(st.sampled_from(KEY_HEADERS + [("x", "1"), ("Y", "ARRAY::a|:b"), ("event-name", "e"),
                                                   ("Content-Length", "4")]), min_size=1, max_size=7),
    body=st.sampled_from([None, "body"]),
    edits=st.lists(st.tuples(st.integers(0), st.integers(0, 16), st.integers(0, 3)), max_size=3),
)
def test_mangled_json_xml_lookups_agree(
    fmt: str, pairs: list[tuple[str, str]], body: str | None, edits: list[tuple[int, int, int]]
) -> None:
    """FreeSWITCH-shaped events with tokens put in or bytes cut: the same lookups (or errors) in both cores."""
    data = mangled(fmt, pairs, body, edits)
    results = [lookups(core, data) for core in CORES.values()]
    assert all(r == results[0] for r in results)
