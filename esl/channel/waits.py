"""Waiting on a channel: ``wait(state or event name)`` and the waiters the reader resolves."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from esl.channel.hooks import Hooks
from esl.commands import check_line
from esl.exceptions import ConnectionError, TimeoutError, ChannelError
from esl.types import ChannelState

if TYPE_CHECKING:  # pragma: no cover
    from esl.channel.host import ChannelHost
    from esl.core import Event

__all__ = ["AFTER_HANGUP", "MAIN_LINE", "Waits"]

#: The states every call passes through in order; the others are detours.
MAIN_LINE = frozenset({ChannelState.NEW, ChannelState.INIT, ChannelState.ROUTING, ChannelState.EXECUTE,
                        ChannelState.HANGUP, ChannelState.REPORTING, ChannelState.DESTROY})
#: Events a wait may still receive after the channel hung up (teardown traffic).
AFTER_HANGUP = frozenset({
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "CHANNEL_STATE",
    "CHANNEL_CALLSTATE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_UNPARK", "CHANNEL_UNBRIDGE",
    "PLAYBACK_STOP", "RECORD_STOP",
})


class Waits(Hooks):
    """The waits of a channel (and, below them, its handlers); the base of :class:`esl.channel.state.ChannelCore`."""

    __slots__ = ("_waiters",)

    connection: "ChannelHost"
    uuid: str
    _waiters: list[tuple[Any, "asyncio.Future[Any]"]] | None
    _gone: BaseException | None
    _state: ChannelState
    _destroyed: bool
    _state_event: "Event | None"
    _visited: int
    _top_state: ChannelState
    _seen: "dict[str, Event] | None"

    def _gone_error(self) -> BaseException:  # the channel's own (see ChannelCore)
        raise NotImplementedError

    def _check_waiters(self, event: "Event | None", name: str) -> None:
        waiters = self._waiters
        if not waiters:
            return
        keep: list[tuple[Any, asyncio.Future[Any]]] = []
        gone = self._gone is not None
        for target, fut in waiters:
            if fut.done():
                continue
            if isinstance(target, ChannelState):
                if target >= ChannelState.HANGUP:
                    if self._state >= target:
                        fut.set_result(event if event is not None else self._state_event)
                        continue
                    if self._destroyed:  # REPORTING may be skipped on the way to DESTROY
                        fut.set_result(event if event is not None else self._state_event)
                        continue
                elif self._reached(target) and event is not None:
                    fut.set_result(event)
                    continue
                elif gone:
                    fut.set_exception(self._gone_error())
                    continue
            else:
                if event is not None and (name == target or (name == "CUSTOM" and "::" in target
                                                             and event.get("Event-Subclass") == target)):
                    fut.set_result(event)
                    continue
                if self._destroyed or (gone and target not in AFTER_HANGUP):
                    fut.set_exception(self._gone_error())
                    continue
            keep.append((target, fut))
        self._waiters = keep or None

    async def wait(self, target: "ChannelState | str", timeout: float | None = 30.0) -> "Event | None":
        """Wait until the channel reaches ``target`` and return the event that showed it.

        ``target`` is a :class:`~esl.types.ChannelState` (returns at once if the
        channel already reached it, or passed it on the NEW -> INIT -> ROUTING ->
        EXECUTE -> HANGUP -> REPORTING -> DESTROY line; a ringing outgoing leg in
        CONSUME_MEDIA has not "passed" EXECUTE, it gets there once answered) or an event name such as
        ``"DTMF"``, ``"CHANNEL_ANSWER"``, ``"CHANNEL_DESTROY"``, a CUSTOM subclass
        such as ``"avmd::beep"`` (the next such
        event of this channel; for events a channel fires only once, such as
        CHANNEL_ANSWER or CHANNEL_HANGUP, one already received is returned at
        once). Raises :class:`~esl.exceptions.TimeoutError` after ``timeout``
        seconds, :class:`~esl.exceptions.OriginateError` if the originate failed,
        :class:`~esl.exceptions.ChannelError` at once if the channel is gone and
        can no longer produce the target (or when the connection receives no
        events for it: ``Outbound(events=False)``), and
        :class:`~esl.exceptions.ConnectionError` if the connection drops.
        """
        if isinstance(target, str) and target.upper().startswith("CS_"):
            target = ChannelState.parse(target)
        if isinstance(target, ChannelState):
            if target >= ChannelState.HANGUP:
                if self._state >= target or self._destroyed:
                    return self._state_event
            elif self._reached(target):
                return self._state_event
        elif isinstance(target, str):
            check_line(target, "event name")
            if "::" not in target:  # CUSTOM subclasses (avmd::beep) are case-sensitive
                target = target.upper()
            if self._seen is not None and target in self._seen:
                return self._seen[target]
        else:
            raise TypeError(f"wait target must be a ChannelState or an event name, not {target!r}")
        gone = self._gone
        if isinstance(gone, ConnectionError):
            raise self._gone_error()
        if gone is not None:
            if self._destroyed:
                raise self._gone_error()
            if isinstance(target, ChannelState):
                if target < ChannelState.HANGUP:
                    raise self._gone_error()
            elif target not in AFTER_HANGUP:
                raise self._gone_error()
        conn = self.connection
        if not conn.receives_channel_events:
            raise ChannelError(f"channel {self.uuid}: this connection receives no events for it "
                               "(Outbound(events=False)); nothing to wait for", self.uuid)
        if not conn.connected:
            raise ConnectionError("not connected", "not connected")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append((target, fut))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            if fut.done() and not fut.cancelled():
                return fut.result()  # type: ignore[no-any-return]
            name = target.name if isinstance(target, ChannelState) else target
            raise TimeoutError(f"channel {self.uuid}: no {name} within {timeout}s") from None
        finally:
            if self._waiters:
                self._waiters = [w for w in self._waiters if w[1] is not fut] or None

    def _expect(self, target: str) -> "asyncio.Future[Any]":
        """A future resolved (synchronously, by the reader) with the next event ``target`` of this channel.

        For verbs that must know whether an event came before a command's reply or completion:
        unlike a task running :meth:`wait`, it is done the moment the event is read. The caller
        removes it with :meth:`_unexpect`.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append((target, fut))
        return fut

    def _unexpect(self, fut: "asyncio.Future[Any]") -> None:
        if self._waiters:
            self._waiters = [w for w in self._waiters if w[1] is not fut] or None
        if not fut.done():
            fut.cancel()
        elif not fut.cancelled():
            fut.exception()  # retrieved: a failure here is reported by the caller

    def _reached(self, target: ChannelState) -> bool:
        """Whether a live state was reached: seen itself, or passed on FreeSWITCH's main line."""
        if (self._visited >> target) & 1:
            return True
        return target in MAIN_LINE and self._top_state >= target
