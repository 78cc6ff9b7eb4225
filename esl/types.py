"""Call-control value types: channel states, call states and hangup causes.

These mirror FreeSWITCH's own enums (``switch_channel_state_t``,
``switch_channel_callstate_t`` and ``switch_call_cause_t``) so that values read
from events (``Channel-State``, ``Channel-Call-State``, ``Hangup-Cause``) can be
compared, ordered and validated before they are sent back in a command.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

__all__ = ["ChannelState", "CallState", "HangupCause"]

_E = TypeVar("_E", bound=enum.Enum)


_PARSED: dict[tuple[type, str], Any] = {}  # the few strings FreeSWITCH sends, parsed once


def _parse_member(cls: type[_E], value: object, prefix: str, what: str, *, numeric: bool) -> _E:
    """``value`` as a member of ``cls``: a member, its name in any case with or without
    FreeSWITCH's ``prefix``, or (when ``numeric``) its number as int or digits; ValueError otherwise."""
    if isinstance(value, cls):
        return value
    if type(value) is str:
        hit = _PARSED.get((cls, value))
        if hit is not None:
            return hit  # type: ignore[no-any-return]
        member = _parse_text(cls, value, prefix, what, numeric=numeric)
        if len(_PARSED) < 4096:
            _PARSED[(cls, value)] = member
        return member
    return _parse_text(cls, value, prefix, what, numeric=numeric)


def _parse_text(cls: type[_E], value: object, prefix: str, what: str, *, numeric: bool) -> _E:
    number: int | None = None
    if isinstance(value, str):
        text = value.strip().upper()
        if text.startswith(prefix):
            text = text[len(prefix):]
        member = cls.__members__.get(text)
        if member is not None:
            return member
        if text.isdigit():
            number = int(text)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    if numeric and number is not None:
        try:
            return cls(number)
        except ValueError:
            pass
    raise ValueError(f"not a FreeSWITCH {what}: {value!r}")


class _NamedIntEnum(enum.IntEnum):
    """An IntEnum whose members print as their FreeSWITCH name and compare equal to it.

    ``str()``/``format()`` give :attr:`wire` (``f"{state:d}"`` still gives the number);
    ``member == "NAME"`` is True for the wire name, ``member == 4`` for the number, and
    ordering stays numeric. Members hash as their wire name, so a set or dict of members
    answers lookups by the strings FreeSWITCH sends (``event["Hangup-Cause"] in RETRY``);
    looking one up by its number is the one thing that does not work.
    """

    @property
    def wire(self) -> str:
        """The name FreeSWITCH uses on the wire."""
        return self.name

    def __str__(self) -> str:
        return self.wire

    def __format__(self, spec: str) -> str:
        if spec and spec[-1] in "bcdoxXn":
            return format(int(self), spec)
        return format(self.wire, spec)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return other == self.wire
        return int.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(self.wire)

    def __reduce_ex__(self, proto: Any) -> Any:
        return self.__class__, (int(self),)


class ChannelState(_NamedIntEnum):
    """A channel's state machine position, ordered as FreeSWITCH's ``CS_*`` values.

    It prints as FreeSWITCH names it (``print(channel.state)`` shows ``CS_EXECUTE``) and
    compares equal to that name (``channel.state == "CS_EXECUTE"``).

    The order is the order a call moves through (``NEW < INIT < ROUTING < ...
    < HANGUP < REPORTING < DESTROY``), so ``channel.state >= ChannelState.HANGUP``
    reads "the channel is gone". ``NONE`` is FreeSWITCH's out-of-band value
    (``CS_NONE``); it sorts last and is never produced by a live channel's events.
    """

    NEW = 0
    INIT = 1
    ROUTING = 2
    SOFT_EXECUTE = 3
    EXECUTE = 4
    EXCHANGE_MEDIA = 5
    PARK = 6
    CONSUME_MEDIA = 7
    HIBERNATE = 8
    RESET = 9
    HANGUP = 10
    REPORTING = 11
    DESTROY = 12
    NONE = 13

    @classmethod
    def parse(cls, value: "str | int | ChannelState") -> "ChannelState":
        """The state for ``"CS_EXECUTE"``, ``"EXECUTE"``, ``"execute"``, ``4`` or a ChannelState.

        Raises ValueError for anything else.
        """
        return _parse_member(cls, value, "CS_", "channel state", numeric=True)

    # genesis spells it this way
    from_freeswitch = parse

    @property
    def wire(self) -> str:
        """The name FreeSWITCH uses on the wire, e.g. ``"CS_EXECUTE"``."""
        return "CS_" + self.name


class CallState(str, enum.Enum):
    """The call-level state FreeSWITCH reports in ``Channel-Call-State``.

    Unlike :class:`ChannelState` this is not a strict progression (a call goes
    ``ACTIVE -> HELD -> UNHELD -> ACTIVE``), so it is not ordered.
    """

    DOWN = "DOWN"
    DIALING = "DIALING"
    RINGING = "RINGING"
    EARLY = "EARLY"
    ACTIVE = "ACTIVE"
    HELD = "HELD"
    RING_WAIT = "RING_WAIT"
    HANGUP = "HANGUP"
    UNHELD = "UNHELD"

    @classmethod
    def parse(cls, value: "str | CallState") -> "CallState":
        """The call state named ``value`` (any case, optional ``CCS_`` prefix); ValueError otherwise."""
        return _parse_member(cls, value, "CCS_", "call state", numeric=False)

    def __str__(self) -> str:
        return self.value


class HangupCause(_NamedIntEnum):
    """Every hangup cause FreeSWITCH knows, valued as ``switch_call_cause_t``.

    Values below 128 are the Q.850 cause codes; the 400s and up are
    FreeSWITCH's own. ``str(cause)`` is the name sent on the wire
    (``hangup-cause: USER_BUSY``, ``uuid_kill <uuid> USER_BUSY``), and a cause
    compares equal to it: ``channel.hangup_cause == "USER_BUSY"``.
    """

    NONE = 0
    UNALLOCATED_NUMBER = 1
    NO_ROUTE_TRANSIT_NET = 2
    NO_ROUTE_DESTINATION = 3
    CHANNEL_UNACCEPTABLE = 6
    CALL_AWARDED_DELIVERED = 7
    NORMAL_CLEARING = 16
    USER_BUSY = 17
    NO_USER_RESPONSE = 18
    NO_ANSWER = 19
    SUBSCRIBER_ABSENT = 20
    CALL_REJECTED = 21
    NUMBER_CHANGED = 22
    REDIRECTION_TO_NEW_DESTINATION = 23
    EXCHANGE_ROUTING_ERROR = 25
    DESTINATION_OUT_OF_ORDER = 27
    INVALID_NUMBER_FORMAT = 28
    FACILITY_REJECTED = 29
    RESPONSE_TO_STATUS_ENQUIRY = 30
    NORMAL_UNSPECIFIED = 31
    NORMAL_CIRCUIT_CONGESTION = 34
    NETWORK_OUT_OF_ORDER = 38
    NORMAL_TEMPORARY_FAILURE = 41
    SWITCH_CONGESTION = 42
    ACCESS_INFO_DISCARDED = 43
    REQUESTED_CHAN_UNAVAIL = 44
    PRE_EMPTED = 45
    FACILITY_NOT_SUBSCRIBED = 50
    OUTGOING_CALL_BARRED = 52
    INCOMING_CALL_BARRED = 54
    BEARERCAPABILITY_NOTAUTH = 57
    BEARERCAPABILITY_NOTAVAIL = 58
    SERVICE_UNAVAILABLE = 63
    BEARERCAPABILITY_NOTIMPL = 65
    CHAN_NOT_IMPLEMENTED = 66
    FACILITY_NOT_IMPLEMENTED = 69
    SERVICE_NOT_IMPLEMENTED = 79
    INVALID_CALL_REFERENCE = 81
    INCOMPATIBLE_DESTINATION = 88
    INVALID_MSG_UNSPECIFIED = 95
    MANDATORY_IE_MISSING = 96
    MESSAGE_TYPE_NONEXIST = 97
    WRONG_MESSAGE = 98
    IE_NONEXIST = 99
    INVALID_IE_CONTENTS = 100
    WRONG_CALL_STATE = 101
    RECOVERY_ON_TIMER_EXPIRE = 102
    MANDATORY_IE_LENGTH_ERROR = 103
    PROTOCOL_ERROR = 111
    INTERWORKING = 127
    SUCCESS = 142
    ORIGINATOR_CANCEL = 487
    CRASH = 700
    SYSTEM_SHUTDOWN = 701
    LOSE_RACE = 702
    MANAGER_REQUEST = 703
    BLIND_TRANSFER = 800
    ATTENDED_TRANSFER = 801
    ALLOTTED_TIMEOUT = 802
    USER_CHALLENGE = 803
    MEDIA_TIMEOUT = 804
    PICKED_OFF = 805
    USER_NOT_REGISTERED = 806
    PROGRESS_TIMEOUT = 807
    INVALID_GATEWAY = 808
    GATEWAY_DOWN = 809
    INVALID_URL = 810
    INVALID_PROFILE = 811
    NO_PICKUP = 812
    SRTP_READ_ERROR = 813
    BOWOUT = 814
    BUSY_EVERYWHERE = 815
    DECLINE = 816
    DOES_NOT_EXIST_ANYWHERE = 817
    NOT_ACCEPTABLE = 818
    UNWANTED = 819
    NO_IDENTITY = 820
    BAD_IDENTITY_INFO = 821
    UNSUPPORTED_CERTIFICATE = 822
    INVALID_IDENTITY = 823
    STALE_DATE = 824
    REJECT_ALL = 825

    @classmethod
    def parse(cls, value: "str | int | HangupCause") -> "HangupCause":
        """The cause for ``"USER_BUSY"``, ``"user_busy"``, ``"SWITCH_CAUSE_USER_BUSY"``, ``17`` ...

        Raises ValueError for a name or number FreeSWITCH does not know; this is
        what validates a cause before it is put in a command.
        """
        return _parse_member(cls, value, "SWITCH_CAUSE_", "hangup cause", numeric=True)

    @property
    def q850(self) -> int | None:
        """The Q.850 code (1-127) when this cause is one, else ``None``."""
        return int(self) if 0 < self < 128 else None
