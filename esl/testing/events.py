"""Event names, the standard headers FreeSWITCH stamps on every event, and the
per-listener delivery rules (subscriptions, filters, myevents) of mod_event_socket.

Kept apart from the server so the call simulation and the capture replay use
the same rules as live connections.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from esl import _codec
from esl.core import Event, Parser

__all__ = [
    "EVENT_NAMES",
    "MYEVENTS",
    "EventFactory",
    "Subscription",
    "canonical_event_name",
    "filter_accepts",
    "header_value",
    "serialize_plain",
]

#: Every event name ``switch_name_event`` knows (src/switch_event.c EVENT_NAMES), ALL last.
EVENT_NAMES: tuple[str, ...] = (
    "CUSTOM", "CLONE", "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE",
    "CHANNEL_ANSWER", "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE",
    "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
    "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_OUTGOING", "CHANNEL_PARK", "CHANNEL_UNPARK",
    "CHANNEL_APPLICATION", "CHANNEL_ORIGINATE", "CHANNEL_UUID", "API", "LOG", "INBOUND_CHAN",
    "OUTBOUND_CHAN", "STARTUP", "SHUTDOWN", "PUBLISH", "UNPUBLISH", "TALK", "NOTALK", "SESSION_CRASH",
    "MODULE_LOAD", "MODULE_UNLOAD", "DTMF", "MESSAGE", "PRESENCE_IN", "NOTIFY_IN", "PRESENCE_OUT",
    "PRESENCE_PROBE", "MESSAGE_WAITING", "MESSAGE_QUERY", "ROSTER", "CODEC", "BACKGROUND_JOB",
    "DETECTED_SPEECH", "DETECTED_TONE", "PRIVATE_COMMAND", "HEARTBEAT", "TRAP", "ADD_SCHEDULE",
    "DEL_SCHEDULE", "EXE_SCHEDULE", "RE_SCHEDULE", "RELOADXML", "NOTIFY", "PHONE_FEATURE",
    "PHONE_FEATURE_SUBSCRIBE", "SEND_MESSAGE", "RECV_MESSAGE", "REQUEST_PARAMS", "CHANNEL_DATA",
    "GENERAL", "COMMAND", "SESSION_HEARTBEAT", "CLIENT_DISCONNECTED", "SERVER_DISCONNECTED",
    "SEND_INFO", "RECV_INFO", "RECV_RTCP_MESSAGE", "SEND_RTCP_MESSAGE", "CALL_SECURE", "NAT",
    "RECORD_START", "RECORD_STOP", "PLAYBACK_START", "PLAYBACK_STOP", "CALL_UPDATE", "FAILURE",
    "SOCKET_DATA", "MEDIA_BUG_START", "MEDIA_BUG_STOP", "CONFERENCE_DATA_QUERY", "CONFERENCE_DATA",
    "CALL_SETUP_REQ", "CALL_SETUP_RESULT", "CALL_DETAIL", "DEVICE_STATE", "TEXT",
    "SHUTDOWN_REQUESTED", "CERT_RELOAD", "ALL",
)  # fmt: skip
_NAMES = frozenset(EVENT_NAMES)

#: The fixed set ``myevents`` subscribes to (mod_event_socket.c parse_command).
MYEVENTS: frozenset[str] = frozenset(
    {
        "CHANNEL_ANSWER", "CHANNEL_APPLICATION", "CHANNEL_BRIDGE", "CHANNEL_CREATE", "CHANNEL_DATA",
        "CHANNEL_DESTROY", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_HANGUP",
        "CHANNEL_HANGUP_COMPLETE", "CHANNEL_ORIGINATE", "CHANNEL_UUID", "CHANNEL_OUTGOING",
        "CHANNEL_PARK", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_STATE",
        "CHANNEL_UNBRIDGE", "CHANNEL_UNPARK", "DETECTED_SPEECH", "DTMF", "NOTALK", "TALK",
    }
)  # fmt: skip


def canonical_event_name(token: str) -> str | None:
    """The event name for ``token`` as ``switch_name_event`` reads it (any case,
    optional ``SWITCH_EVENT_`` prefix), or None when FreeSWITCH does not know it."""
    name = token.upper()
    name = name.removeprefix("SWITCH_EVENT_")
    return name if name in _NAMES else None


_STANDARD = (
    "Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname", "FreeSWITCH-IPv4",
    "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp",
    "Event-Calling-File", "Event-Calling-Function", "Event-Calling-Line-Number", "Event-Sequence",
)  # fmt: skip
_STANDARD_SET = frozenset(_STANDARD) | {"Event-Subclass"}


# Channel events repeat the same values (variables, caller profile) over and over.
@functools.lru_cache(maxsize=1 << 17)
def _line(name: str, value: str) -> str:
    """One serialized ``Name: value`` line (memoized: channel events repeat them)."""
    return f"{name}: {_codec.encode_value(value) or '_undef_'}\n"


def serialize_plain(pairs: Iterable[tuple[str, str]], body: str | None = None) -> bytes:
    """switch_event_serialize: exactly ``_codec.serialize(pairs, body, "plain")``, with the
    value encoding memoized (the fake serializes thousands of near-identical events)."""
    line = _line
    lines = [line(name, value if type(value) is str else str(value)) for name, value in pairs]
    if body:
        lines.append(f"Content-Length: {len(_codec.to_bytes(body))}\n\n{body}")
    else:
        lines.append("\n")
    return _codec.to_bytes("".join(lines))


def header_value(event: Event, name: str, known: Mapping[str, str | None] | None = None) -> str | None:
    """A header of ``event`` (case-insensitive): from ``known`` (lowercase name -> value, None
    for absent, given by whoever built the event), else through the core's routing keys when
    it is one of them, so filtering on Unique-ID does not decode the whole event."""
    low = name.lower()
    if known is not None and low in known:
        return known[low]
    if low == "unique-id":
        return event.uuid
    if low == "event-name":
        return event.name
    if low == "job-uuid":
        return event.job_uuid
    if low == "application-uuid":
        return event.application_uuid
    if low == "event-subclass":
        return event.subclass
    return event.get(name)


class EventFactory:
    """Builds events the way ``switch_event_prep_for_delivery`` stamps them: the
    standard headers first (with a global, monotonic ``Event-Sequence``), then
    the event's own headers, in order."""

    def __init__(
        self,
        core_uuid: str,
        hostname: str = "fake",
        ipv4: str = "127.0.0.1",
        ipv6: str = "::1",
        *,
        switchname: str | None = None,
    ) -> None:
        self.core_uuid = core_uuid
        self.hostname = hostname
        self.switchname = switchname or hostname
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self.sequence = 0

    def next_sequence(self) -> int:
        """The next ``Event-Sequence`` number (shared by every event this switch fires)."""
        self.sequence += 1
        return self.sequence

    def standard(self, name: str, calling: tuple[str, str, int] | None = None) -> list[tuple[str, str]]:
        """The standard header pairs of an event called ``name``, in FreeSWITCH's order."""
        now = time.time()
        file, func, line = calling or ("esl_testing.c", "fake_fire", 1)
        return [
            ("Event-Name", name),
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.switchname),
            ("FreeSWITCH-IPv4", self.ipv4),
            ("FreeSWITCH-IPv6", self.ipv6),
            ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))),
            ("Event-Date-GMT", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now))),
            ("Event-Date-Timestamp", str(int(now * 1_000_000))),
            ("Event-Calling-File", file),
            ("Event-Calling-Function", func),
            ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(self.next_sequence())),
        ]

    def make(
        self,
        name: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: str | bytes | None = None,
        subclass: str | None = None,
        calling: tuple[str, str, int] | None = None,
    ) -> Event:
        """An event ``name`` with the standard headers, then ``headers``.

        A header in ``headers`` that is one of the standard ones replaces it in
        place instead of being added twice. ``subclass`` adds ``Event-Subclass``
        (FreeSWITCH puts it right after ``Event-Name`` for CUSTOM events it fires).
        """
        pairs = self.standard(name, calling)
        if subclass is not None:
            pairs.insert(1, ("Event-Subclass", subclass))
        if headers:
            items = headers.items() if isinstance(headers, Mapping) else headers
            index: dict[str, int] | None = None
            std = _STANDARD_SET
            for key, value in items:
                if key in std:
                    if index is None:
                        index = {k: i for i, (k, _) in enumerate(pairs)}
                    pos = index.get(key)
                    if pos is not None:
                        pairs[pos] = (key, str(value))
                        continue
                pairs.append((key, value if type(value) is str else str(value)))
        return build_plain(pairs, body)

    def make_trusted(
        self,
        name: str,
        pairs: list[tuple[str, str]],
        subclass: str | None = None,
        calling: tuple[str, str, int] | None = None,
    ) -> Event:
        """:meth:`make` for header lists known to hold only ``str`` values and no standard
        header (the call simulation's own events): no per-header checks."""
        head = self.standard(name, calling)
        if subclass is not None:
            head.insert(1, ("Event-Subclass", subclass))
        head += pairs
        return build_plain(head)


def build_plain(pairs: list[tuple[str, str]], body: str | bytes | None = None) -> Event:
    """The Event a client would parse from these headers and body in plain format."""
    if isinstance(body, bytes):
        body = _codec.to_str(body)
    payload = serialize_plain(pairs, body or None)
    return Parser().feed(
        b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(payload), payload)
    )[0]


@dataclass
class Subscription:
    """What one listener asked for with ``event`` / ``nixevent`` / ``myevents``."""

    names: set[str] = field(default_factory=set)  # canonical names, "ALL" included when set
    custom: set[str] = field(default_factory=set)  # CUSTOM subclasses
    enabled: bool = False  # LFLAG_EVENTS

    def wants(self, name: str | None, subclass: str | None) -> bool:
        """Whether an event of this name/subclass passes the subscription (before filters)."""
        if not self.enabled or name is None:
            return False
        if "ALL" in self.names:
            return True
        if name not in self.names:
            return False
        return name != "CUSTOM" or not subclass or subclass in self.custom

    def clear(self) -> None:
        self.names.clear()
        self.custom.clear()
        self.enabled = False


def _regex_match(value: str, spec: str) -> bool:
    """``/re/flags`` as switch_regex does it (flags i, s); a bad pattern never matches."""
    body = spec[1:]
    flags = 0
    end = body.rfind("/")
    if end >= 0:
        for ch in body[end + 1 :]:
            if ch == "i":
                flags |= re.IGNORECASE
            elif ch == "s":
                flags |= re.DOTALL
        body = body[:end]
    try:
        return re.search(body, value, flags) is not None
    except re.error:
        return False


def filter_accepts(
    filters: list[tuple[str, str]], event: Mapping[str, str], known: Mapping[str, str | None] | None = None
) -> bool:
    """mod_event_socket's ``event_handler`` filter loop, step for step.

    Each filter is (header, value); a value may start with ``+``/``-`` (include /
    exclude) and ``/`` marks a regex, checked on the original first character, so
    ``-/re/`` compares literally, as in FreeSWITCH. A missing header never matches.
    """
    if not filters:
        return True
    send = False
    for header, raw in filters:
        hval = header_value(event, header, known)  # type: ignore[arg-type,unused-ignore]
        if hval is None:
            continue
        pos = True
        i = 0
        while i < len(raw):
            ch = raw[i]
            if ch == "+":
                pos = True
            elif ch == "-":
                pos = False
            elif ch != " ":
                break
            i += 1
        if send and pos:
            continue
        comp = raw[i:]
        if raw[:1] == "/":
            matched = _regex_match(hval, comp)
        else:
            matched = hval.lower() == comp.lower()
        if matched:
            if pos:
                send = True
            else:
                return False
    return send
