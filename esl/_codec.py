"""Value and body codecs shared by both cores: FreeSWITCH's percent-encoding,
``ARRAY::`` values, and the plain / json / xml event serializations.

These run on the slow paths (full decode of json and xml events, building
events for the fake server and ``sendevent``); the compiled core has its own
plain-format decoder for the hot path and must agree with this one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import unquote_to_bytes

from esl.exceptions import ProtocolError

__all__ = [
    "decode_value",
    "encode_value",
    "frame",
    "join_array",
    "parse_event",
    "parse_header_block",
    "serialize",
    "split_array",
    "to_str",
]

Pairs = list[tuple[str, str]]

ARRAY_PREFIX = "ARRAY::"
ARRAY_SEP = "|:"

# switch_utils.h SWITCH_URL_UNSAFE, plus every byte < 0x20 or > 0x7E.
_UNSAFE = frozenset(b'\r\n #%&+:;<=>?@[\\]^`{|}"')
_ENCODE_TABLE = [
    (f"%{b:02X}" if (b < 0x20 or b > 0x7E or b in _UNSAFE) else chr(b)) for b in range(256)
]
_NEEDS_ENCODING = re.compile(r'[^!$\'()*,\-./0-9A-Z_a-z~]')


def to_str(raw: bytes) -> str:
    """Bytes as text: UTF-8, with undecodable bytes kept as surrogates (lossless)."""
    return raw.decode("utf-8", "surrogateescape")


def to_bytes(text: str) -> bytes:
    """The inverse of :func:`to_str`."""
    return text.encode("utf-8", "surrogateescape")


#: Percent-decoding works through slices of this size, so a huge escaped value
#: costs about its own size again in memory, not the dozens of times that
#: ``unquote_to_bytes`` (one bytes object per ``%``) takes on the whole of it.
_SLICE = 1 << 13


def _unquote_bytes(raw: bytes) -> bytes:
    """``unquote_to_bytes`` in bounded slices: each cut avoids the two bytes after a ``%``."""
    n = len(raw)
    if n <= _SLICE:
        return unquote_to_bytes(raw)
    parts = []
    start = 0
    while start < n:
        end = min(start + _SLICE, n)
        while end < n and (raw[end - 1] == 37 or raw[end - 2] == 37):  # never split "%XX"
            end += 1
        parts.append(unquote_to_bytes(raw[start:end]))
        start = end
    return b"".join(parts)


def decode_value(raw: bytes) -> str:
    """A percent-encoded header value as text; a malformed ``%`` is left as it is, ``+`` stays ``+``."""
    if b"%" not in raw:
        return raw.decode("utf-8", "surrogateescape")
    return _unquote_bytes(bytes(raw)).decode("utf-8", "surrogateescape")


_ASCII_RUN = re.compile("([\x00-\x7f]+)")


def decode_text(value: str) -> str:
    """:func:`decode_value` for a value already held as text (``urllib.parse.unquote``'s meaning:
    the escapes in each ASCII run are decoded as UTF-8 bytes, other text stays as it is)."""
    if "%" not in value:
        return value
    if value.isascii():
        return _unquote_bytes(value.encode("ascii")).decode("utf-8", "surrogateescape")
    parts = _ASCII_RUN.split(value)
    for i in range(1, len(parts), 2):
        if "%" in parts[i]:
            parts[i] = _unquote_bytes(parts[i].encode("ascii")).decode("utf-8", "surrogateescape")
    return "".join(parts)


def encode_value(value: str) -> str:
    """Percent-encode a header value the way FreeSWITCH does (uppercase hex).

    Unlike FreeSWITCH, an existing ``%XX`` is encoded again, so decoding gives
    back exactly ``value``.
    """
    if not _NEEDS_ENCODING.search(value):
        return value
    table = _ENCODE_TABLE
    return "".join([table[b] for b in to_bytes(value)])


def split_array(value: str) -> list[str]:
    """``ARRAY::a|:b`` as ``["a", "b"]``; any other value as ``[value]``."""
    if value.startswith(ARRAY_PREFIX):
        return value[len(ARRAY_PREFIX) :].split(ARRAY_SEP)
    return [value]


def join_array(items: Iterable[str]) -> str:
    """``["a", "b"]`` as ``ARRAY::a|:b``."""
    return ARRAY_PREFIX + ARRAY_SEP.join(items)


def parse_header_block(block: bytes, decode: bool = True, start: int = 0, end: int | None = None) -> Pairs:
    """``Name: value`` lines of ``block[start:end]`` as pairs, values percent-decoded when ``decode``.

    As FreeSWITCH and libesl do: split at the first ``:``, skip the spaces
    after it, ignore lines with no ``:``; a CR ending a line is not part of
    its value (mod_event_socket cuts lines there too).

    Values are percent-decoded as bytes, then read as UTF-8 (``decode_value``),
    so a value means the same here as in the routing keys, also when raw
    non-ASCII bytes sit next to ``%XX`` escapes. Each value is sliced once out
    of the block (no copy of the block, no list of its lines), so a huge
    header costs its own size, not several times it.
    """
    block = bytes(block)
    stop = len(block) if end is None else end
    pairs: Pairs = []
    append = pairs.append
    find = block.find
    pos = start
    while pos < stop:
        eol = find(b"\n", pos, stop)
        if eol < 0:
            eol = stop
        colon = find(b":", pos, eol)
        if colon > pos:
            vs = colon + 1
            while vs < eol and block[vs] == 32:
                vs += 1
            ve = eol - 1 if eol > vs and block[eol - 1] == 13 else eol
            value = block[vs:ve]
            append((block[pos:colon].decode("utf-8", "surrogateescape"),
                    decode_value(value) if decode else value.decode("utf-8", "surrogateescape")))
        pos = eol + 1
    return pairs


def parse_event(payload: bytes, fmt: str, start: int = 0) -> tuple[Pairs, str | None]:
    """The headers and inner body of the event serialized in ``fmt`` at ``payload[start:]``."""
    if fmt == "plain":
        return _parse_plain(payload, start)
    if fmt == "json":
        return _parse_json(payload[start:] if start else payload)
    if fmt == "xml":
        return _parse_xml(payload[start:] if start else payload)
    raise ValueError(f"unknown event format {fmt!r}")


def _parse_plain(payload: bytes, start: int = 0) -> tuple[Pairs, str | None]:
    head_end = payload.find(b"\n\n", start)
    if head_end < 0:
        head_end = len(payload)
    pairs = parse_header_block(payload, True, start, head_end)
    body: str | None = None
    if head_end + 2 < len(payload):
        body = to_str(payload[head_end + 2 :])
        # The Content-Length line just before the blank line frames the body.
        if pairs and pairs[-1][0] == "Content-Length":
            pairs.pop()
    return pairs, body


class _Object(list):  # type: ignore[type-arg]
    """A JSON object's (name, value) pairs in order, duplicates kept (object_pairs_hook)."""


def _scalar(value: object) -> str:
    """A JSON string as itself, a number, true, false or null as its JSON text."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        raise ProtocolError("malformed json event: a header value nests an object or an array")
    try:
        return json.dumps(value)
    except ValueError as exc:  # an int past the int/str conversion limit
        raise ProtocolError(f"malformed json event: {exc}") from None


def _parse_json(payload: bytes) -> tuple[Pairs, str | None]:
    """A cJSON event: one object of names to strings or arrays of strings (``_body``: the body).

    Numbers, true, false and null are taken as their JSON text; anything
    else (a top-level array, nested objects, arrays in arrays) is not an
    event FreeSWITCH writes and raises ProtocolError.
    """
    try:
        items = json.loads(to_str(payload), object_pairs_hook=_Object, strict=False)
    except ValueError as exc:
        raise ProtocolError(f"malformed json event: {exc}") from None
    except RecursionError:
        raise ProtocolError("malformed json event: nested too deeply") from None
    if type(items) is not _Object:
        raise ProtocolError("malformed json event: not an object")
    pairs: Pairs = []
    body: str | None = None
    for name, value in items:
        if type(value) is _Object:
            raise ProtocolError(f"malformed json event: header {name!r} holds an object")
        if name == "_body":
            if isinstance(value, list):
                raise ProtocolError("malformed json event: _body holds an array")
            body = _scalar(value)
            continue
        if isinstance(value, list):
            value = join_array(_scalar(v) for v in value)
        else:
            value = _scalar(value)
        pairs.append((name, value))
    if body is not None:
        for i in range(len(pairs) - 1, -1, -1):
            if pairs[i][0] == "Content-Length":
                del pairs[i]
                break
        # FreeSWITCH writes "_body":"" with Content-Length 0 (e.g. an empty
        # BACKGROUND_JOB result); plain and xml carry no body then: None.
        body = body or None
    return pairs, body


_XML_ELEMENT = re.compile(r"<([^\s<>/!?]+)\s*(?:/>|>([^<]*)</\1\s*>)")
_XML_ENTITY = re.compile(r"&(#x[0-9A-Fa-f]+|#[0-9]+|amp|lt|gt|quot|apos);")
_XML_NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _xml_unescape(text: str) -> str:
    if "&" not in text:
        return text
    if "&#" not in text:  # named entities only: replaced in C, &amp; last (as one pass would)
        return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
                .replace("&apos;", "'").replace("&amp;", "&"))

    def sub(m: re.Match[str]) -> str:
        ref = m.group(1)
        if ref[0] == "#":
            digits = ref[2:] if ref[1] in "xX" else ref[1:]
            code = int(digits, 16 if ref[1] in "xX" else 10) if len(digits.lstrip("0")) <= 8 else -1
            # a reference to no character (a surrogate, past U+10FFFF) stays as written
            return chr(code) if 0 <= code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF else m.group(0)
        return _XML_NAMED[ref]

    return _XML_ENTITY.sub(sub, text)


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _parse_xml(payload: bytes) -> tuple[Pairs, str | None]:
    text = to_str(payload)
    start = text.find("<headers>")
    end = text.find("</headers>", start)
    if start < 0 or end < 0:
        raise ProtocolError("xml event has no <headers> element")
    pairs: Pairs = []
    run: list[str] = []  # items of an array header: FreeSWITCH writes one element per item
    for m in _XML_ELEMENT.finditer(text, start + len("<headers>"), end):
        name, value = m.group(1), xml_value(m.group(2) or "")
        if pairs and pairs[-1][0] == name:
            run.append(value)
            pairs[-1] = (name, join_array(run))
        else:
            run = [value]
            pairs.append((name, value))
    return pairs, xml_body(text[end:])


def xml_value(raw: str) -> str:
    """One header value of an xml event: entities, then percent-escapes, decoded."""
    return decode_text(_xml_unescape(raw))


def xml_body(tail: str) -> str | None:
    """The body of an xml event from the text after its ``</headers>``; None when it has none."""
    b_start = tail.find("<body>")
    if b_start < 0:
        return None
    b_end = tail.rfind("</body>")
    raw_body = _xml_unescape(tail[b_start + len("<body>") : b_end if b_end >= 0 else len(tail)])
    length = re.search(r"<Content-Length>([0-9]{1,18})</Content-Length>", tail)
    if length is not None:
        # FreeSWITCH pretty-prints the closing tag; the length says where the body ends.
        raw_bytes = to_bytes(raw_body)[: int(length.group(1))]
        raw_body = to_str(raw_bytes)
    return raw_body


def serialize(pairs: Iterable[tuple[str, str]], body: str | bytes | None, fmt: str) -> bytes:
    """The serialized event FreeSWITCH would write in ``fmt`` for these headers and body."""
    if isinstance(body, bytes):
        body = to_str(body)
    if body == "":
        body = None
    if fmt == "plain":
        lines = [f"{name}: {encode_value(value) or '_undef_'}\n" for name, value in pairs]
        if body is not None:
            lines.append(f"Content-Length: {len(to_bytes(body))}\n\n{body}")
        else:
            lines.append("\n")
        return to_bytes("".join(lines))
    if fmt == "json":
        dumps = json.dumps
        parts = []
        for name, value in pairs:
            item = split_array(value) if value.startswith(ARRAY_PREFIX) else value
            parts.append(f"{dumps(name, ensure_ascii=False)}:{dumps(item, ensure_ascii=False)}")
        if body is not None:
            parts.append(f'"Content-Length":"{len(to_bytes(body))}"')
            parts.append(f'"_body":{dumps(body, ensure_ascii=False)}')
        return to_bytes("{" + ",".join(parts) + "}")
    if fmt == "xml":
        out = ["<event>\n  <headers>\n"]
        for name, value in pairs:
            for item in split_array(value):
                out.append(f"    <{name}>{_xml_escape(encode_value(item))}</{name}>\n")
        out.append("  </headers>\n")
        if body is not None:
            out.append(f"  <Content-Length>{len(to_bytes(body))}</Content-Length>\n")
            out.append(f"  <body>{_xml_escape(body)}</body>\n")
        out.append("</event>\n")
        return to_bytes("".join(out))
    raise ValueError(f"unknown event format {fmt!r}")


def frame(payload: bytes, fmt: str) -> bytes:
    """Wrap a serialized event in the outer ``text/event-*`` message FreeSWITCH writes."""
    return b"Content-Length: %d\nContent-Type: text/event-%s\n\n" % (len(payload), fmt.encode()) + payload
