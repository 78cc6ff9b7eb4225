"""What a Channel knows of itself, read from its events: state, direction, host, times, variables, its Call."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from esl.types import CallState, ChannelState

if TYPE_CHECKING:  # pragma: no cover
    from esl.call import Call
    from esl.channel.host import ChannelHost
    from esl.core import Event

__all__ = ["Facts"]


class Facts:
    """Read-only facts of a channel; mixed into :class:`esl.channel.state.ChannelCore`."""

    __slots__ = ()

    connection: "ChannelHost"
    uuid: str
    created: bool
    context: "Event | None"
    created_at: float
    hungup_at: float | None
    _state: ChannelState
    _call_state: CallState | None
    _gone: BaseException | None
    _destroyed: bool
    _state_event: "Event | None"
    _var_event: "Event | None"
    _group: "Call | None"

    @property
    def state(self) -> ChannelState:
        """The latest :class:`~esl.types.ChannelState` reported by the channel's events."""
        return self._state

    @property
    def call_state(self) -> CallState | None:
        """The latest ``Channel-Call-State`` (``None`` until one was seen)."""
        return self._call_state

    @property
    def gone(self) -> bool:
        """True once the channel hung up, failed, or its connection closed for good."""
        return self._gone is not None or self._state >= ChannelState.HANGUP

    @property
    def destroyed(self) -> bool:
        """True once CHANNEL_DESTROY arrived (or the channel was found gone)."""
        return self._destroyed

    @property
    def direction(self) -> str | None:
        """``"inbound"`` (the leg called in) or ``"outbound"`` (FreeSWITCH placed it), from Call-Direction."""
        return self.get_header("Call-Direction")

    def is_inbound(self) -> bool:
        """True for a leg that called into FreeSWITCH (``Call-Direction: inbound``)."""
        return self.direction == "inbound"

    def is_outbound(self) -> bool:
        """True for a leg FreeSWITCH placed (``Call-Direction: outbound``; every ``Channel.create`` leg)."""
        return self.direction == "outbound" or (self.direction is None and self.created)

    @property
    def host(self) -> str | None:
        """The switch the channel lives on (``FreeSWITCH-Hostname`` of its events)."""
        return self.get_header("FreeSWITCH-Hostname")

    @property
    def uptime(self) -> float:
        """Seconds since this object learnt of the channel (until hangup, then frozen)."""
        end = self.hungup_at if self.hungup_at is not None else time.time()
        return max(0.0, end - self.created_at)

    def get_header(self, name: str) -> str | None:
        """The newest value of header ``name`` from the channel's events (or the connect reply)."""
        for source in (self._state_event, self._var_event, self.context):
            if source is not None:
                value = source.get(name)
                if value is not None:
                    return value
        return None

    @property
    def call(self) -> "Call":
        """The :class:`~esl.call.Call` this leg belongs to (made on first use)."""
        if self._group is None:
            from esl.call import Call

            Call(self)  # type: ignore[arg-type]
        assert self._group is not None
        return self._group

    def _link_call(self, event: "Event") -> None:
        owners = self.connection.owners
        for name in ("Other-Leg-Unique-ID", "Channel-Call-UUID"):
            peer_uuid = event.get(name)
            if peer_uuid and peer_uuid != self.uuid:
                peer = owners.channel(peer_uuid)
                if isinstance(peer, Facts):
                    peer.call.add(self)
                    return
