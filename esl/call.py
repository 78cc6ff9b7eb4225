"""``Call``: the legs (Channels) that make up one call.

Legs are grouped when the library sees them belong together: a bridge
(``CHANNEL_BRIDGE`` with ``Other-Leg-Unique-ID``), a leg whose
``Channel-Call-UUID`` or ``Other-Leg-Unique-ID`` names a known leg, or an
explicit :meth:`Channel.bridge`. ``channel.call`` gives a leg's Call; each
leg keeps its own bounded event history in ``channel.events``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Iterator

from esl.types import ChannelState, HangupCause

if TYPE_CHECKING:  # pragma: no cover
    from esl.channel import Channel

__all__ = ["Call"]


class Call:
    """The legs of one call, in the order they joined (the first leg is the call's origin).

    ``legs`` (switchio: ``sessions``), ``first``, ``last``, ``get_peer(leg)``,
    ``answered``, ``done``; ``vars``: a dict for the application's own data
    about the call (switchio's ``call.vars``); ``await call.hangup(cause)``
    ends every leg (Voximplant's ``terminate``).
    """

    __slots__ = ("legs", "vars")

    def __init__(self, first: "Channel") -> None:
        self.legs: list[Channel] = []
        #: the application's own data about this call (nothing of the library's)
        self.vars: dict[str, Any] = {}
        self.add(first)

    @property
    def sessions(self) -> list["Channel"]:
        """The legs (switchio's name)."""
        return self.legs

    @property
    def uuid(self) -> str:
        """The call's identity: the first leg's UUID (what FreeSWITCH puts in ``Channel-Call-UUID``)."""
        return self.legs[0].uuid

    @property
    def first(self) -> "Channel":
        """The leg the call started with."""
        return self.legs[0]

    @property
    def last(self) -> "Channel":
        """The most recently joined leg."""
        return self.legs[-1]

    def add(self, leg: "Channel") -> "Call":
        """Make ``leg`` (and any legs already grouped with it) part of this call; returns self."""
        other = leg._group
        if other is self:
            return self
        moving = [leg] if other is None else list(other.legs)
        for ch in moving:
            if ch not in self.legs:
                self.legs.append(ch)
            ch._group = self
        if other is not None:
            for key, value in other.vars.items():
                self.vars.setdefault(key, value)
            other.legs = []
        return self

    def get_peer(self, leg: "Channel") -> "Channel | None":
        """The leg ``leg`` talks to: the one it is bridged with, else the other leg of a two-leg call."""
        if leg not in self.legs:
            raise ValueError(f"{leg!r} is not a leg of this call")
        if leg.other_uuid is not None:
            for ch in self.legs:
                if ch.uuid == leg.other_uuid:
                    return ch
        others = [ch for ch in self.legs if ch is not leg]
        if len(others) == 1:
            return others[0]
        live = [ch for ch in others if ch.state < ChannelState.HANGUP]
        return live[0] if len(live) == 1 else None

    @property
    def answered(self) -> bool:
        """True once any leg was answered."""
        return any(ch.answered for ch in self.legs)

    @property
    def done(self) -> bool:
        """True once every leg hung up."""
        return all(ch.gone for ch in self.legs)

    async def hangup(self, cause: "HangupCause | str | int" = "NORMAL_CLEARING", *,
                     timeout: float | None = 10.0) -> None:
        """Hang up every leg still up with ``cause``, at once, and wait until each has hung up.

        Legs already gone are skipped. An error hanging up one leg (a
        :class:`~esl.exceptions.ChannelError`, :class:`~esl.exceptions.ConnectionError`...)
        does not stop the others; the first one is raised once all were tried.
        """
        reason = HangupCause.parse(cause)
        live = [leg for leg in self.legs if not leg.gone]
        if not live:
            return
        results = await asyncio.gather(*(leg.hangup(reason, timeout=timeout) for leg in live),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def __iter__(self) -> Iterator["Channel"]:
        return iter(list(self.legs))

    def __len__(self) -> int:
        return len(self.legs)

    def __contains__(self, leg: object) -> bool:
        return leg in self.legs

    def __repr__(self) -> str:
        return f"<Call {self.uuid if self.legs else '-'} legs={len(self.legs)}>"
