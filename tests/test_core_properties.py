"""Property tests: generated events survive serialize -> split -> parse, in both cores alike."""

from __future__ import annotations

from typing import Any

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
