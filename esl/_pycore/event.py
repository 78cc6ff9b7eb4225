"""The twin's ``Event`` (one message: routing keys and channel fields, headers on demand) and ``Tally``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import TypedDict

from esl import _codec

__all__ = ["Event", "Tally"]

_EVENT_PREFIX = "text/event-"
_FORMATS = {"text/event-plain": "plain", "text/event-json": "json", "text/event-xml": "xml"}

# Routing keys and channel fields of a plain event, found by a byte search without
# decoding the rest. A key is the value of the first line named exactly so (the last
# for Event-Name), else of the first line whose name matches case-insensitively:
# what ``get`` gives.
_EXACT = {
    b"Event-Name": "name",
    b"Unique-ID": "uuid",
    b"Job-UUID": "job_uuid",
    b"Application-UUID": "application_uuid",
    b"Event-Subclass": "subclass",
    b"Event-Sequence": "sequence",
    b"Channel-State": "channel_state",
    b"Channel-State-Number": "channel_state_number",
    b"Channel-Call-State": "call_state",
    b"Answer-State": "answer_state",
    b"Hangup-Cause": "hangup_cause",
    b"Other-Leg-Unique-ID": "other_leg_uuid",
    b"DTMF-Digit": "dtmf_digit",
    b"Application": "application",
    b"Application-Response": "application_response",
    b"Application-Data": "application_data",
}
_NAMES = {v: k.decode() for k, v in _EXACT.items()}
_LOWER = {k.lower(): v for k, v in _EXACT.items()}
_KEY_LINE = re.compile(
    rb"^(" + b"|".join(re.escape(k) for k in sorted(_EXACT, key=len, reverse=True)) + rb"):[ ]*([^\n]*)",
    re.IGNORECASE | re.MULTILINE,
)


class _Keys(TypedDict):
    """An event's routing keys and channel fields (the Event properties of the same names)."""

    name: str | None
    uuid: str | None
    job_uuid: str | None
    application_uuid: str | None
    subclass: str | None
    sequence: int | None
    channel_state: str | None
    channel_state_number: int | None
    call_state: str | None
    answer_state: str | None
    hangup_cause: str | None
    other_leg_uuid: str | None
    dtmf_digit: str | None
    application: str | None
    application_response: str | None
    application_data: str | None


def _plain_keys(raw: bytes, start: int, end: int) -> dict[str, bytes | None]:
    """The raw values of the routing keys in the plain header block raw[start:end] (start follows a newline)."""
    exact: dict[str, bytes] = {}
    loose: dict[str, bytes] = {}
    for m in _KEY_LINE.finditer(raw, start, end):
        name = m.group(1)
        key = _EXACT.get(name)
        value = m.group(2)
        if value[-1:] == b"\r":  # a CRLF line: the CR is not part of the value
            value = value[:-1]
        if key is not None:
            if key == "name" or key not in exact:
                exact[key] = value
        else:
            loose.setdefault(_LOWER[name.lower()], value)
    return {k: exact.get(k, loose.get(k)) for k in _EXACT.values()}


class Event(Mapping[str, str]):
    """One message read from FreeSWITCH: an event, a command reply, an api response...

    ``content_type`` tells which. For ``text/event-plain|json|xml`` messages the
    mapping holds the headers of the event inside and ``body`` its inner body;
    for every other message it holds the message's own headers and ``body`` is
    the message body. Lookups are exact first, then case-insensitive; ``getall``
    returns every occurrence with ``ARRAY::`` values split. Values are ``str``,
    percent-decoded for plain and xml, and bytes that are not UTF-8 are kept
    losslessly as surrogates (``surrogateescape``).
    """

    __slots__ = (
        "_body",
        "_bs",
        "_first",
        "_fmt",
        "_hend",
        "_keys",
        "_lower",
        "_pairs",
        "content_type",
        "raw",
    )

    content_type: str
    raw: bytes

    def __init__(self, raw: bytes, content_type: str, outer: bytes, inner: bytes | None) -> None:
        # raw is outer + b"\n\n" (or b"\n\r\n") + (inner or b"")
        sep = raw[len(outer) : len(raw) - (len(inner) if inner is not None else 0)]
        if sep not in (b"\n\n", b"\n\r\n") or not raw.startswith(outer):
            raise ValueError("raw must be outer + b'\\n\\n' + inner")
        self.raw = raw
        self.content_type = content_type
        self._fmt = _FORMATS.get(content_type)
        # only raw is kept (an event holds its frame once): the outer block ends at
        # _hend, the inner payload starts at _bs (None: no inner payload)
        self._hend = len(outer)
        self._bs = len(raw) - len(inner) if inner is not None else None
        self._pairs: list[tuple[str, str]] | None = None
        self._first: dict[str, str] | None = None
        self._lower: dict[str, str] | None = None
        self._body: str | None = None
        self._keys: _Keys | None = None

    # -- construction -----------------------------------------------------

    @classmethod
    def build(
        cls,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: str | bytes | None = None,
        fmt: str = "plain",
    ) -> Event:
        """An event with these headers (in order) and body, as if read in format ``fmt``."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        payload = _codec.serialize(pairs, body, fmt)
        from esl._pycore.parser import Parser  # the parser builds Events: imported here, not at the top

        return Parser().feed(_codec.frame(payload, fmt))[0]

    # -- format -----------------------------------------------------------

    @property
    def format(self) -> str | None:
        """``"plain"``, ``"json"`` or ``"xml"`` for events; ``None`` for other messages."""
        return self._fmt

    @property
    def is_event(self) -> bool:
        """True for ``text/event-*`` messages."""
        return self._fmt is not None

    # -- routing keys -----------------------------------------------------

    def _routing(self) -> _Keys:
        keys = self._keys
        if keys is None:
            keys = self._keys = self._scan_keys()
        return keys

    def _scan_keys(self) -> _Keys:
        bs = self._bs
        text: dict[str, str | None]
        if self._fmt == "plain" and bs is not None:
            head_end = self.raw.find(b"\n\n", bs)
            raw = _plain_keys(self.raw, bs, head_end if head_end >= 0 else len(self.raw))
            text = {k: _opt(v) for k, v in raw.items()}
        else:
            text = {k: self.get(name) for k, name in _NAMES.items()}
        return _Keys(
            name=text["name"],
            uuid=text["uuid"],
            job_uuid=text["job_uuid"],
            application_uuid=text["application_uuid"],
            subclass=text["subclass"],
            sequence=_int_text(text["sequence"]),
            channel_state=text["channel_state"],
            channel_state_number=_int_text(text["channel_state_number"]),
            call_state=text["call_state"],
            answer_state=text["answer_state"],
            hangup_cause=text["hangup_cause"],
            other_leg_uuid=text["other_leg_uuid"],
            dtmf_digit=text["dtmf_digit"],
            application=text["application"],
            application_response=text["application_response"],
            application_data=text["application_data"],
        )

    @property
    def name(self) -> str | None:
        """``Event-Name`` (the last one, as libesl does); ``None`` for non-events."""
        return self._routing()["name"]

    @property
    def subclass(self) -> str | None:
        """``Event-Subclass`` of a CUSTOM event."""
        return self._routing()["subclass"]

    @property
    def uuid(self) -> str | None:
        """``Unique-ID``: the channel the event belongs to."""
        return self._routing()["uuid"]

    @property
    def job_uuid(self) -> str | None:
        """``Job-UUID`` of a BACKGROUND_JOB event or a bgapi reply."""
        return self._routing()["job_uuid"]

    @property
    def application_uuid(self) -> str | None:
        """``Application-UUID`` of CHANNEL_EXECUTE(_COMPLETE): the sendmsg ``Event-UUID``."""
        return self._routing()["application_uuid"]

    @property
    def sequence(self) -> int | None:
        """``Event-Sequence`` as an int."""
        return self._routing()["sequence"]

    # -- channel fields (located with the routing keys) -------------------

    @property
    def channel_state(self) -> str | None:
        """``Channel-State`` (``CS_EXECUTE``...)."""
        return self._routing()["channel_state"]

    @property
    def channel_state_number(self) -> int | None:
        """``Channel-State-Number`` as an int; ``None`` when absent or not a number."""
        return self._routing()["channel_state_number"]

    @property
    def call_state(self) -> str | None:
        """``Channel-Call-State`` (``ACTIVE``, ``HELD``...)."""
        return self._routing()["call_state"]

    @property
    def answer_state(self) -> str | None:
        """``Answer-State`` (``ringing``, ``early``, ``answered``, ``hangup``)."""
        return self._routing()["answer_state"]

    @property
    def hangup_cause(self) -> str | None:
        """``Hangup-Cause`` (``NORMAL_CLEARING``...)."""
        return self._routing()["hangup_cause"]

    @property
    def other_leg_uuid(self) -> str | None:
        """``Other-Leg-Unique-ID``: the bridged peer."""
        return self._routing()["other_leg_uuid"]

    @property
    def dtmf_digit(self) -> str | None:
        """``DTMF-Digit`` of a DTMF event."""
        return self._routing()["dtmf_digit"]

    @property
    def application(self) -> str | None:
        """``Application`` of CHANNEL_EXECUTE(_COMPLETE)."""
        return self._routing()["application"]

    @property
    def application_response(self) -> str | None:
        """``Application-Response`` of CHANNEL_EXECUTE_COMPLETE."""
        return self._routing()["application_response"]

    @property
    def application_data(self) -> str | None:
        """``Application-Data`` of CHANNEL_EXECUTE(_COMPLETE)."""
        return self._routing()["application_data"]

    # -- headers ----------------------------------------------------------

    def _inner(self) -> bytes | None:
        """The bytes after the outer header block (the serialized event, the body), or None."""
        return None if self._bs is None else self.raw[self._bs :]

    def _decode(self) -> list[tuple[str, str]]:
        pairs = self._pairs
        if pairs is None:
            if self._fmt is None:
                pairs = _codec.parse_header_block(self.raw, True, 0, self._hend)
                body = self._inner()
                self._body = _codec.to_str(body) if body else None
            else:
                pairs, self._body = _codec.parse_event(self.raw, self._fmt, len(self.raw) if self._bs is None else self._bs)
            self._pairs = pairs
        return pairs

    def _first_map(self) -> dict[str, str]:
        first = self._first
        if first is None:
            first = {}
            for k, v in self._decode():
                if k not in first:
                    first[k] = v
            for k, v in self._pairs or ():
                if k == "Event-Name":
                    first[k] = v  # last wins, as libesl
            self._first = first
        return first

    def __getitem__(self, name: str) -> str:
        first = self._first_map()
        try:
            return first[name]
        except KeyError:
            pass
        lower = self._lower
        if lower is None:
            lower = {}
            for k, v in first.items():
                lower.setdefault(k.lower(), v)
            self._lower = lower
        return lower[name.lower()]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._first_map())

    def __len__(self) -> int:
        return len(self._first_map())

    def getall(self, name: str) -> list[str]:
        """Every value of header ``name`` (any casing), repeated lines and ``ARRAY::`` items flattened."""
        lname = name.lower()
        out: list[str] = []
        for k, v in self._decode():
            if k == name or k.lower() == lname:
                out.extend(_codec.split_array(v))
        return out

    def items_all(self) -> list[tuple[str, str]]:
        """Every header line in wire order, duplicates included."""
        return list(self._decode())

    @property
    def headers(self) -> dict[str, str]:
        """A plain ``dict`` copy of the headers (first occurrence, Event-Name last)."""
        return dict(self._first_map())

    @property
    def body(self) -> str | None:
        """The inner body of an event, the output of an api/response; ``None`` when absent."""
        if self._pairs is None:
            self._decode()
        return self._body

    # -- output -----------------------------------------------------------

    def serialize(self, fmt: str = "plain") -> bytes:
        """The event as FreeSWITCH would serialize it in ``fmt`` (without the outer frame)."""
        return _codec.serialize(self._decode(), self.body, fmt)

    def frame(self, fmt: str = "plain") -> bytes:
        """The full wire message FreeSWITCH would write for this event in ``fmt``."""
        return _codec.frame(self.serialize(fmt), fmt)

    def __repr__(self) -> str:
        if self._fmt is not None:
            return f"<Event {self.name} uuid={self.uuid} seq={self.sequence}>"
        return f"<Event {self.content_type} {self.get('Reply-Text', '')!r}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping) or not hasattr(other, "items_all"):
            return NotImplemented
        if self.items_all() != other.items_all():
            return False
        body: str | None = other.body  # type: ignore[attr-defined]  # hasattr narrowed only items_all
        return self.body == body

    __hash__ = None  # type: ignore[assignment]


def _opt(raw: bytes | None) -> str | None:
    return None if raw is None else _codec.decode_value(raw)


def _int_text(text: str | None) -> int | None:
    """``int`` of a header value's bytes (ASCII digits), ``None`` when absent or not a number."""
    if text is None:
        return None
    return _int_or_none(text.encode("utf-8", "surrogatepass"))  # a lone surrogate is just not a number


def _int_or_none(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return None


class Tally:
    """A connection's per-event counters: events by name, and Event-Sequence in order.

    ``count(event)`` counts the event under its name (at most ``max_names``
    names, the rest under ``"other"``; ``counts()`` gives them as a dict) and,
    while ``track`` is on, follows ``Event-Sequence``: a number equal to
    ``next`` just moves it on; a jump ahead is recorded in ``gaps`` as
    ``(next, seq)`` (``(-1, seq)`` when ``next`` is below 0: a start); a
    number below ``next`` in ``fills``. It returns True once those lists hold
    ``limit`` entries, for the connection to hand them to its
    :class:`esl.sequence.SequenceTracker`.
    """

    __slots__ = ("_names", "gaps", "fills", "next", "track", "max_names", "limit")

    def __init__(self, max_names: int = 256, limit: int = 4096) -> None:
        self._names: dict[str | None, int] = {}
        self.gaps: list[tuple[int, int]] = []
        self.fills: list[int] = []
        self.next = -1
        self.track = False
        self.max_names = max_names
        self.limit = limit

    def count(self, event: Event) -> bool:
        """Count one event; True when ``gaps``/``fills`` are due to be taken."""
        name = event.name
        names = self._names
        n = names.get(name)
        if n is not None:
            names[name] = n + 1
        elif len(names) < self.max_names:
            names[name] = 1
        else:
            names["other"] = names.get("other", 0) + 1
        if not self.track:
            return False
        seq = event.sequence
        if seq is None:
            return False
        if seq == self.next:
            self.next = seq + 1
            return False
        if self.next < 0:
            self.gaps.append((-1, seq))
            self.next = seq + 1
        elif seq > self.next:
            self.gaps.append((self.next, seq))
            self.next = seq + 1
        else:
            self.fills.append(seq)
        return len(self.gaps) + len(self.fills) >= self.limit

    def counts(self) -> dict[str | None, int]:
        """Events by name so far (``None``: messages without a name; ``"other"``: past ``max_names``)."""
        return dict(self._names)

    def total(self) -> int:
        """Events counted."""
        return sum(self._names.values())

