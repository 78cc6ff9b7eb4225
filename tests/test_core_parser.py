"""Parser: framing at any split, caps and hostile input (both cores)."""

from __future__ import annotations

import os
import random
import tracemalloc
from typing import Any

import pytest

from esl.exceptions import ProtocolError

_INNER = b"Event-Name: HEARTBEAT\nX: 1\n\n"
EVENT = b"Content-Length: %d\nContent-Type: text/event-plain\n\n" % len(_INNER) + _INNER
REPLY = b"Content-Type: command/reply\nReply-Text: +OK\n\n"
API = b"Content-Type: api/response\nContent-Length: 5\n\nab\ncd"
STREAM = REPLY + EVENT + b"\n" + API + EVENT + REPLY


def test_defaults(core: Any) -> None:
    assert core.DEFAULT_MAX_SIZE == 16 * 1024 * 1024
    parser = core.Parser()
    assert parser.max_size == core.DEFAULT_MAX_SIZE and parser.buffered == 0
    assert parser.feed(b"") == []
    with pytest.raises(ValueError):
        core.Parser(0)


def test_every_split_point(core: Any) -> None:
    whole = [e.raw for e in core.Parser().feed(STREAM)]
    assert whole == [REPLY, EVENT, API, EVENT, REPLY]
    for cut in range(len(STREAM) + 1):
        parser = core.Parser()
        out = parser.feed(STREAM[:cut]) + parser.feed(STREAM[cut:])
        assert [e.raw for e in out] == whole, cut
        assert parser.buffered == 0


def test_every_two_split_points(core: Any) -> None:
    data = REPLY + API
    for a in range(len(data)):
        for b in range(a, len(data)):
            parser = core.Parser()
            out = parser.feed(data[:a]) + parser.feed(data[a:b]) + parser.feed(data[b:])
            assert [e.raw for e in out] == [REPLY, API]


def test_blank_line_straddles_chunks(core: Any) -> None:
    parser = core.Parser()
    assert parser.feed(REPLY[:-1]) == []
    assert parser.buffered == len(REPLY) - 1
    (ev,) = parser.feed(b"\n")
    assert ev["Reply-Text"] == "+OK" and parser.buffered == 0


def test_accepts_bytearray_and_memoryview(core: Any) -> None:
    parser = core.Parser()
    out = parser.feed(bytearray(STREAM[:30])) + parser.feed(memoryview(STREAM)[30:])
    assert [e.raw for e in out] == [REPLY, EVENT, API, EVENT, REPLY]


def test_content_length_counts_bytes(core: Any) -> None:
    body = "ünïcödé ✓\n".encode()
    data = b"Content-Type: api/response\nContent-Length: %d\n\n" % len(body) + body + REPLY
    out = core.Parser().feed(data)
    assert out[0].body == "ünïcödé ✓\n" and out[1].raw == REPLY


def test_buffered_and_waiting(core: Any) -> None:
    parser = core.Parser()
    assert parser.feed(EVENT[:60]) == []
    assert parser.buffered == 60
    assert parser.feed(EVENT[60:-1]) == []
    assert parser.buffered == len(EVENT) - 1
    assert len(parser.feed(EVENT[-1:])) == 1 and parser.buffered == 0


@pytest.mark.parametrize(
    "bad",
    [
        b"Content-Length: -5\n\n",
        b"Content-Length: abc\n\n",
        b"Content-Length: 12abc\n\n",
        b"Content-Length: \n\n",
        b"Content-Length: 1.5\n\n",
        b"Content-Length: 0x10\n\n",
        b"Content-Type: api/response\nContent-Length: +3\n\nabc",
    ],
)
def test_malformed_content_length(core: Any, bad: bytes) -> None:
    parser = core.Parser()
    with pytest.raises(ProtocolError, match="Content-Length"):
        parser.feed(REPLY + bad)
    # poisoned: nothing after the error is framed silently
    with pytest.raises(ProtocolError):
        parser.feed(REPLY)
    assert parser.buffered == 0
    parser.reset()
    assert [e.raw for e in parser.feed(REPLY)] == [REPLY]


def test_oversized_content_length(core: Any) -> None:
    parser = core.Parser()
    with pytest.raises(ProtocolError, match="exceeds"):
        parser.feed(b"Content-Type: api/response\nContent-Length: %d\n\n" % (100 << 20))
    small = core.Parser(max_size=10)
    with pytest.raises(ProtocolError):
        small.feed(b"Content-Length: 11\n\n")
    assert len(core.Parser(max_size=20).feed(b"Content-Length: 3\n\nabc")) == 1
    huge = core.Parser()
    with pytest.raises(ProtocolError):
        huge.feed(b"Content-Length: 99999999999999999999999999999\n\n")


def test_header_block_without_end(core: Any) -> None:
    parser = core.Parser(max_size=1000)
    line = b"X-Header: " + b"a" * 50 + b"\n"
    with pytest.raises(ProtocolError, match="header block"):
        for _ in range(100):
            parser.feed(line)
    assert parser.buffered == 0
    with pytest.raises(ProtocolError, match="header block"):
        core.Parser(max_size=1000).feed(line * 40)
    # a complete block over the cap in one feed
    with pytest.raises(ProtocolError):
        core.Parser(max_size=100).feed(line * 3 + b"\n")


def test_truncated_frames_wait(core: Any) -> None:
    for cut in range(1, len(STREAM)):
        parser = core.Parser()
        out = parser.feed(STREAM[:cut])
        assert sum(len(e.raw) for e in out) + parser.buffered <= cut
        assert parser.buffered < len(STREAM)


def test_binary_garbage(core: Any) -> None:
    rng = random.Random(7)
    for _ in range(200):
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 3000)))
        parser = core.Parser(max_size=4096)
        try:
            for i in range(0, len(blob), 97):
                out = parser.feed(blob[i : i + 97])
                for ev in out:
                    ev.items_all(), ev.body, ev.name, ev.uuid, ev.sequence
        except ProtocolError:
            continue
        assert parser.buffered <= len(blob)


def test_garbage_with_newlines_frames_or_errors(core: Any) -> None:
    data = os.urandom(20000).replace(b"\r", b"\n")
    parser = core.Parser()
    try:
        out = parser.feed(data)
    except ProtocolError:
        return
    assert sum(len(e.raw) for e in out) + parser.buffered <= len(data)
    for ev in out:
        assert isinstance(ev.items_all(), list)


def test_memory_stays_bounded_under_a_flood(core: Any) -> None:
    parser = core.Parser(max_size=1 << 20)
    chunk = b"A" * 65536
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError):
            for _ in range(64):
                parser.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_stray_newlines_between_messages(core: Any) -> None:
    out = core.Parser().feed(b"\n\n\n" + REPLY + b"\n\n" + REPLY)
    assert [e.raw for e in out] == [REPLY, REPLY]


def test_content_length_zero_and_header_order(core: Any) -> None:
    data = b"Content-Length: 0\nContent-Type: text/disconnect-notice\n\n" + b"Content-Type: api/response\nContent-Length: 2\n\nok"
    out = core.Parser().feed(data)
    assert [e.content_type for e in out] == ["text/disconnect-notice", "api/response"]
    assert out[0].body is None and out[1].body == "ok"


def test_content_type_case_and_spaces(core: Any) -> None:
    out = core.Parser().feed(b"content-type:   api/response  \r\ncontent-length: 2 \n\nok")
    assert out[0].content_type == "api/response" and out[0].body == "ok"


def test_kept_events_do_not_pin_the_chunk(core: Any) -> None:
    """An event kept past the next feed holds its own frame, never the whole read it came in."""
    import sys

    chunk = bytes(REPLY + EVENT * 50 + API)
    base = sys.getrefcount(chunk)
    parser = core.Parser()
    events = parser.feed(chunk)
    kept = events[7]
    del events
    parser.feed(b"")  # the next read settles the events framed in place
    assert sys.getrefcount(chunk) == base
    assert kept.raw == EVENT and kept.name == "HEARTBEAT" and kept["X"] == "1"
    again = core.Parser()
    dropped = again.feed(chunk)
    del dropped
    again.reset()  # reset settles too
    assert sys.getrefcount(chunk) == base
