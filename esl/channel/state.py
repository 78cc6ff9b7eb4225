"""A Channel's state, waits and handlers: everything it learns from its own events.

The connection's owners table (:mod:`esl.owners`) hands a Channel every event
of its UUID synchronously, before any flow control. Here the channel keeps its
state from those events only, resolves waits and blocking executes, and queues
its handlers (``onDTMF``, ``on``, lifecycle hooks) on the connection's
executor, so user code never runs in the reader.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Mapping, ClassVar

from esl.channel.facts import Facts
from esl.channel.history import History
from esl.channel.waits import MAIN_LINE, Waits
from esl.channel.host import ENDED, ChannelHost
from esl.commands import check_line
from esl.exceptions import ChannelError, ConnectionError, OriginateError
from esl.types import CallState, ChannelState, HangupCause

if TYPE_CHECKING:  # pragma: no cover
    from esl.call import Call
    from esl.core import Event
    from esl.job import Job

__all__ = ["ChannelCore", "cause_of"]

log = logging.getLogger("esl.channel")


# Events whose headers update state; other events are only recorded and offered to waiters/handlers.
_STATEFUL = frozenset({
    "CHANNEL_CREATE", "CHANNEL_STATE", "CHANNEL_CALLSTATE", "CHANNEL_ANSWER", "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "CHANNEL_ORIGINATE", "CHANNEL_OUTGOING",
})
# Events that carry every ``variable_*`` of the channel (FreeSWITCH "extended data").
_EXTENDED = frozenset({
    "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_DESTROY",
    "CHANNEL_DATA", "PLAYBACK_START", "PLAYBACK_STOP", "RECORD_START", "RECORD_STOP",
    "CHANNEL_ORIGINATE", "CHANNEL_OUTGOING", "CALL_UPDATE", "CHANNEL_HOLD", "CHANNEL_UNHOLD",
})

# Events a channel fires at most once: a wait for one already seen returns it at once.
_ONCE = frozenset({
    "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "CHANNEL_ORIGINATE", "CHANNEL_OUTGOING",
})


def cause_of(text: str | None) -> HangupCause | str:
    """The cause in an originate ``-ERR <CAUSE>`` result or a ``Hangup-Cause`` header."""
    word = (text or "").strip()
    if word.startswith("-ERR"):
        word = word[4:].strip()
    word = word.split()[0] if word else "NONE"
    try:
        return HangupCause.parse(word)
    except ValueError:
        return word


class ChannelCore(Facts, Waits):
    """State, waits and handlers of one leg; :class:`esl.channel.Channel` adds the verbs."""

    #: How many events each channel keeps in ``channel.events`` (0 disables).
    history: ClassVar[int] = 32

    __slots__ = (
        "connection", "uuid", "dial_path", "created", "context", "answered", "hangup_cause",
        "failure", "job", "other_uuid", "events", "created_at", "answered_at", "hungup_at",
        "_state", "_top_state", "_visited", "_call_state", "_state_event", "_var_event", "_vars",
        "_apps", "_locked", "_filtered", "_gone", "_destroyed", "_group", "_seen", "_custom_seq",
        "__weakref__",
    )

    def __init__(self, connection: ChannelHost, uuid: str, *, dial_path: str | None = None,
                 context: "Event | None" = None, created: bool = False, history: int | None = None) -> None:
        self.connection: ChannelHost = connection
        self.uuid = check_line(uuid, "uuid")
        self.dial_path = dial_path
        self.created = created
        self.context = context
        self.answered = False
        self.hangup_cause: HangupCause | str | None = None
        self.failure: OriginateError | None = None
        self.job: Job | None = None
        self.other_uuid: str | None = None
        size = self.history if history is None else history
        self.events: History | None = History(size) if size > 0 else None
        #: wall-clock times (``time.time()``): when this object learnt of the channel, answer, hangup
        self.created_at = time.time()
        self.answered_at: float | None = None
        self.hungup_at: float | None = None
        self._state = ChannelState.NEW
        self._top_state = ChannelState.NEW  # highest main-line state reached below HANGUP
        self._visited = 1  # bit set of every state seen (NEW included)
        self._call_state: CallState | None = None
        self._state_event: Event | None = None
        self._var_event: Event | None = context
        self._vars: dict[str, str] | None = None
        self._waiters: list[tuple[Any, asyncio.Future[Any]]] | None = None
        self._apps: dict[str, asyncio.Future[Any]] | None = None
        self._locked: set[str] | None = None  # Event-UUIDs of event-locked executes still running
        self._dtmf = None
        self._handlers = None
        self._filtered = False
        self._gone: BaseException | None = None  # set once the channel hung up / connection closed
        self._destroyed = False
        self._group: Call | None = None
        self._seen: dict[str, Event] | None = None
        self._custom_seq: tuple[str, ...] = ()  # Event-Sequence of the last CUSTOM events (see _on_event)
        if context is not None:
            self._apply_context(context)

    def __repr__(self) -> str:
        return f"<Channel {self.uuid} {self._state.name} answered={self.answered}>"

    @property
    def protocol(self) -> ChannelHost:
        """The connection this channel is driven from (old name of :attr:`connection`)."""
        return self.connection

    # -- ownership -------------------------------------------------------------------------

    def _register(self) -> None:
        self.connection.owners.add_channel(self)

    def _unregister(self) -> None:
        conn = self.connection
        conn.owners.remove_channel(self)
        if self._filtered:
            self._filtered = False
            conn.release_channel_events(self.uuid)

    @property
    def busy_locked(self) -> bool:
        """True while an application sent with ``event-lock`` still runs (later messages queue behind it)."""
        return bool(self._locked)

    def _detach(self) -> None:
        """The connection is over: drop what ties this object to it (the state stays readable)."""
        self._locked = None
        self._waiters = None
        self._apps = None
        self._dtmf = None
        self._handlers = None
        self.connection = ENDED

    # -- events from the owners table ---------------------------------------------------------

    def _on_event(self, event: "Event") -> None:
        """One event of this channel (called synchronously by the reader, before flow control)."""
        name = event.name or ""
        if name == "CUSTOM":
            # A module that queues its event to the session and fires a copy (mod_avmd) reaches the
            # socket twice, the second time with the channel's data: same Event-Sequence. Once is enough.
            seq = event.get("Event-Sequence")
            if seq is not None:
                if seq in self._custom_seq:
                    return
                self._custom_seq = (*self._custom_seq[-3:], seq)
        if self.events is not None:
            self.events.append(event)
        terminal = False
        if name in _STATEFUL:
            terminal = self._update(event, name)
        elif name == "CHANNEL_EXECUTE_COMPLETE":
            apps = self._apps
            if apps:  # keyed by the routing key: no header decoding
                fut = apps.pop(event.application_uuid or "", None)
                if fut is not None and not fut.done():
                    fut.set_result(event)
            if self._locked:
                self._locked.discard(event.application_uuid or "")
        elif name == "DTMF":
            self._dispatch_dtmf(event)
        if name in _EXTENDED:
            self._var_event = event
            self._vars = None
        if self._waiters:
            self._check_waiters(event, name)
        handlers = self._handlers
        if handlers is not None:
            for h in handlers.get(name, ()):
                self._call(h, event)
            if name == "CUSTOM":  # a CUSTOM event is also known by its subclass (avmd::beep...)
                for h in handlers.get(event.get("Event-Subclass") or "", ()):
                    self._call(h, event)
            for h in handlers.get("*", ()):
                self._call(h, event)
        if terminal:
            self._end_of_life(name)

    def _apply_context(self, event: "Event") -> None:
        self._update_state(event)
        if event.answer_state == "answered":
            self.answered = True

    def _update_state(self, event: "Event") -> None:
        text = event.channel_state  # channel fields are found by the core's key scan
        number = event.channel_state_number
        state: ChannelState | None = None
        try:
            if text:
                state = ChannelState.parse(text)
            if number is not None:
                by_number = ChannelState.parse(number)
                if state is None or by_number > state:  # CHANNEL_HANGUP reports the new number first
                    state = by_number
        except ValueError:
            state = None
        if state is not None and state is not ChannelState.NONE:
            if self._state >= ChannelState.HANGUP and state < self._state:
                return  # never back to life
            self._state = state
            self._state_event = event
            self._visited |= 1 << state
            if state in MAIN_LINE and state < ChannelState.HANGUP and state > self._top_state:
                self._top_state = state
        call_state = event.call_state
        if call_state:
            try:
                self._call_state = CallState.parse(call_state)
            except ValueError:
                pass

    def _update(self, event: "Event", name: str) -> bool:
        """Apply a state-changing event; True when it ends the channel's life (hangup, destroy)."""
        if name in _ONCE:
            seen = self._seen
            if seen is None:
                seen = self._seen = {}
            seen.setdefault(name, event)
        self._update_state(event)
        if name == "CHANNEL_ANSWER":
            if not self.answered:
                self.answered = True
                self.answered_at = time.time()
                self._lifecycle("answered", event)
        elif name == "CHANNEL_BRIDGE":
            other = event.other_leg_uuid
            if other and other != self.uuid:
                self.other_uuid = other
            self._link_call(event)
            self._lifecycle("bridged", self.other_uuid)
        elif name == "CHANNEL_UNBRIDGE":
            self._lifecycle("unbridged", event.other_leg_uuid or self.other_uuid)
        elif name in ("CHANNEL_CREATE", "CHANNEL_ORIGINATE", "CHANNEL_OUTGOING"):
            self._link_call(event)
        elif name == "CHANNEL_HANGUP" or name == "CHANNEL_HANGUP_COMPLETE":
            if self.hangup_cause is None:
                self.hangup_cause = cause_of(event.hangup_cause)
            if self._state < ChannelState.HANGUP:
                self._state = ChannelState.HANGUP
            return True
        elif name == "CHANNEL_DESTROY":
            self._state = ChannelState.DESTROY
            if self.hangup_cause is None:
                self.hangup_cause = cause_of(event.hangup_cause)
            return True
        return False

    def _end_of_life(self, name: str) -> None:
        self._hung_up()
        if name == "CHANNEL_DESTROY":
            self._destroy()

    def _renamed(self, old: str, new: str) -> None:
        """CHANNEL_UUID: the owners table re-keyed this channel from ``old`` to ``new``."""
        self.uuid = new
        if self._filtered:
            conn = self.connection

            async def refilter() -> None:
                try:
                    await conn.ensure_channel_events(new)
                finally:
                    conn.release_channel_events(old)

            conn.executor.spawn(refilter(), f"re-filtering renamed channel {old} -> {new}")

    def _job_done(self, job: "Job") -> None:
        """The originate's BACKGROUND_JOB arrived (or the connection dropped, or the deadline passed)."""
        from esl.exceptions import CommandError

        exc = job.exception()
        if exc is None or isinstance(exc, asyncio.CancelledError):
            return
        if isinstance(exc, CommandError):
            cause = cause_of(exc.reply)
            self.hangup_cause = self.hangup_cause or cause
            self._fail_originate(cause)
            if self._state < ChannelState.HANGUP:
                self._state = ChannelState.HANGUP
            self._hung_up()
            self._destroy()

    def _fail_originate(self, cause: HangupCause | str) -> None:
        if self.failure is None:
            self.failure = OriginateError(f"originate of {self.dial_path or self.uuid} failed: {cause}",
                                          self.uuid, str(cause))
            self._lifecycle("failed", cause)

    def _hung_up(self) -> None:
        """First sign the channel is gone: fail what cannot complete any more."""
        if self._gone is not None:
            return
        if self.hungup_at is None:
            self.hungup_at = time.time()
        cause = self.hangup_cause or HangupCause.NORMAL_CLEARING
        if self.created and not self.answered:
            self._fail_originate(cause)
        self._gone = self.failure or ChannelError(f"channel {self.uuid} hung up ({cause})", self.uuid, str(cause))
        self._locked = None
        apps = self._apps
        if apps:
            self._apps = None
            for fut in apps.values():
                if not fut.done():
                    fut.set_exception(self._gone_error())
        if self._waiters:
            self._check_waiters(None, "")
        if self.failure is None:
            self._lifecycle("hangup", cause)

    def _destroy(self) -> None:
        if self._destroyed:
            return
        self._destroyed = True
        if self._waiters:
            self._check_waiters(None, "")
        self._lifecycle("destroyed", self.hangup_cause)
        self._unregister()

    def _on_linger(self) -> None:
        """The outbound socket said the channel is gone but the socket stays open (linger)."""
        if self._state < ChannelState.HANGUP:
            self._state = ChannelState.HANGUP
        self._hung_up()

    def _fail_pending(self, exc: ConnectionError) -> None:
        apps, waiters = self._apps, self._waiters
        self._apps = None
        self._waiters = None
        for fut in list((apps or {}).values()) + [f for _, f in (waiters or ())]:
            if not fut.done():
                fut.set_exception(ConnectionError(str(exc), exc.reason))

    def _connection_lost(self, exc: ConnectionError) -> None:
        """The socket dropped: every pending wait and blocking execute fails with ``exc``.

        The channel stays owned: after a reconnect it is checked and carries on, or ends.
        """
        self._fail_pending(exc)

    def _connection_closed(self, exc: ConnectionError) -> None:
        """The connection is over for good: the channel can no longer be followed."""
        self._fail_pending(exc)
        if self._gone is None:
            self._gone = ConnectionError(str(exc), exc.reason)

    def _ended_while_away(self, reason: str) -> None:
        """A reconnect found the channel gone: it ended while the connection was down."""
        if self._state < ChannelState.DESTROY:
            self._state = ChannelState.DESTROY
        if self.created and not self.answered:
            self._fail_originate(self.hangup_cause or "UNKNOWN")
        if self._gone is None:
            self.hungup_at = self.hungup_at or time.time()
            self._gone = self.failure or ChannelError(f"channel {self.uuid}: {reason}", self.uuid)
            self._lifecycle("hangup", self.hangup_cause)
        if not self._destroyed:
            self._destroyed = True
            self._lifecycle("destroyed", self.hangup_cause)
        if self._filtered:
            self._filtered = False

    def _gone_error(self) -> BaseException:
        gone = self._gone
        if isinstance(gone, OriginateError):
            return OriginateError(str(gone), gone.uuid, gone.cause)
        if isinstance(gone, ConnectionError):
            return ConnectionError(str(gone), gone.reason)
        if isinstance(gone, ChannelError):
            return ChannelError(str(gone), gone.uuid, gone.cause)
        return ChannelError(f"channel {self.uuid} is gone", self.uuid)

    @property
    def variables(self) -> dict[str, str]:
        """The channel variables (``variable_*`` without the prefix) from its latest full event."""
        cached = self._vars
        if cached is None:
            cached = {}
            source = self._var_event
            if source is not None:
                for key, value in source.items():
                    if key.startswith("variable_"):
                        cached[key[9:]] = value
            self._vars = cached
        return cached

    def get(self, name: str, default: str | None = None) -> str | None:
        """Channel variable ``name`` from the latest full event (:attr:`variables`), or ``default``."""
        return self.variables.get(name, default)

    def _set_local(self, changes: Mapping[str, str | None]) -> None:
        """Apply a set/unset FreeSWITCH accepted to :attr:`variables` now (``None`` = unset)."""
        view = self.variables
        for name, value in changes.items():
            if not value:  # an empty value unsets in FreeSWITCH too
                view.pop(name, None)
            else:
                view[name] = value

    def _check_alive(self) -> None:
        if self._gone is not None:
            raise self._gone_error()
        if self._state >= ChannelState.HANGUP:
            raise ChannelError(f"channel {self.uuid} is gone", self.uuid, str(self.hangup_cause or ""))
