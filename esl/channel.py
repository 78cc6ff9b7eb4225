"""``Channel``: one call leg, driven the same way from an outbound Session or an Inbound connection.

A Channel owns the events of its UUID (the connection's Router hands them over
synchronously from the reader), keeps the channel's state from *its own* events
only, resolves waits and blocking executes, runs DTMF and lifecycle handlers,
and offers the call-control verbs. On an outbound :class:`~esl.session.Session`
the verbs that run dialplan applications are ``sendmsg`` executes on the
session's socket; on an :class:`~esl.inbound.Inbound` connection they are
``sendmsg <uuid>`` executes, and the verbs FreeSWITCH offers as ``uuid_*`` API
commands (kill, bridge, transfer, variables, hold, break, broadcast...) use
those.

A blocking execute sends a client-chosen ``Event-UUID`` and waits for the
``CHANNEL_EXECUTE_COMPLETE`` whose ``Application-UUID`` matches; the wait fails
with :class:`~esl.exceptions.ChannelError` when the channel hangs up first and
with :class:`~esl.exceptions.ConnectionError` when the socket closes first.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import uuid as _uuid_mod
import weakref
from urllib.parse import unquote as _unquote
from typing import TYPE_CHECKING, Any, Awaitable, Callable, ClassVar, Iterable, Mapping

from esl.commands import check_line
from esl.exceptions import ChannelError, CommandError, ConnectionError, OriginateError, TimeoutError
from esl.types import CallState, ChannelState, HangupCause

if TYPE_CHECKING:  # pragma: no cover
    from esl.call import Call
    from esl.core import Event

__all__ = ["Channel", "LIFECYCLE"]

log = logging.getLogger("esl.channel")

#: Lifecycle hook names accepted by :meth:`Channel.on` (Voximplant-style call events).
LIFECYCLE = frozenset({"answered", "hangup", "failed", "bridged", "unbridged", "destroyed"})

# Arguments longer than this (or holding a newline) go in the sendmsg body.
_MAX_HEADER_ARG = 1024

# Events whose headers are decoded to update state; other events are only
# recorded and offered to waiters/handlers, without decoding their headers.
_STATEFUL = frozenset({
    "CHANNEL_CREATE", "CHANNEL_STATE", "CHANNEL_CALLSTATE", "CHANNEL_ANSWER", "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "CHANNEL_UUID", "CHANNEL_ORIGINATE", "CHANNEL_OUTGOING",
})
# Events that carry every ``variable_*`` of the channel (FreeSWITCH "extended data").
_EXTENDED = frozenset({
    "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_DESTROY",
    "CHANNEL_DATA", "PLAYBACK_START", "PLAYBACK_STOP", "RECORD_START", "RECORD_STOP",
    "CHANNEL_ORIGINATE", "CHANNEL_OUTGOING", "CALL_UPDATE", "CHANNEL_HOLD", "CHANNEL_UNHOLD",
})
# The states every call passes through in order; the others are detours.
_MAIN_LINE = frozenset({ChannelState.NEW, ChannelState.INIT, ChannelState.ROUTING, ChannelState.EXECUTE,
                        ChannelState.HANGUP, ChannelState.REPORTING, ChannelState.DESTROY})
# Events a channel fires at most once: a wait for one already seen returns it at once,
# so ``await ch.wait("CHANNEL_ANSWER")`` cannot miss an answer that raced the command reply.
_ONCE = frozenset({
    "CHANNEL_CREATE", "CHANNEL_ANSWER", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "CHANNEL_ORIGINATE", "CHANNEL_OUTGOING",
})
# Events a wait may still receive after the channel hung up (teardown traffic).
_AFTER_HANGUP = frozenset({
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "CHANNEL_STATE",
    "CHANNEL_CALLSTATE", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_UNPARK", "CHANNEL_UNBRIDGE",
    "PLAYBACK_STOP", "RECORD_STOP",
})

Handler = Callable[..., Any]


# ---------------------------------------------------------------------------
# Per-connection bookkeeping: which Channels live on a connection, one close
# callback for all of them, and what was done to make their events arrive.
# ---------------------------------------------------------------------------


class _Registry:
    """The channels of one connection, and its event-delivery arrangements."""

    __slots__ = ("channels", "subscribed", "__weakref__")

    def __init__(self, protocol: Any) -> None:
        self.channels: dict[str, Channel] = {}
        self.subscribed = False
        add = getattr(protocol, "add_close_callback", None)
        if add is not None:
            add(self._closed)
        again = getattr(protocol, "add_reconnect_callback", None)
        if again is not None:  # events may have been lost while reconnecting
            again(self._reconnected)

    def _reconnected(self, _client: Any) -> None:
        self.subscribed = False
        err = ConnectionError("the connection was lost and re-established; events may have been missed")
        for channel in list(self.channels.values()):
            channel._fail_pending(err)

    def _closed(self, exc: BaseException | None) -> None:
        err = exc if isinstance(exc, ConnectionError) else ConnectionError("connection closed")
        for channel in list(self.channels.values()):
            channel._connection_lost(err)


_REGISTRIES: "weakref.WeakKeyDictionary[Any, _Registry]" = weakref.WeakKeyDictionary()


def _registry(protocol: Any) -> _Registry:
    """The channel registry of one connection (kept beside it, not on it)."""
    reg = _REGISTRIES.get(protocol)
    if reg is None:
        reg = _REGISTRIES[protocol] = _Registry(protocol)
    return reg


def _is_session(protocol: Any) -> bool:
    from esl.session import Session

    return isinstance(protocol, Session)


def _api_allowed(protocol: Any) -> bool:
    """False on an outbound socket without ``full`` control, where ``api``/``bgapi`` are refused."""
    return getattr(protocol, "full_control", True)


def header(event: "Event", name: str) -> str | None:
    """One header of ``event`` without decoding the others (plain events and replies).

    The decoded header map of an Event is large (a plain channel event has
    ~70-120 headers); the channel only needs a few values per event, so for
    the plain wire format it reads them straight from the raw bytes (the
    first occurrence within the header block, never the body). Other formats
    use the normal lookup.
    """
    fmt = event.format
    if fmt is not None and fmt != "plain":
        return event.get(name)
    raw = event.raw
    key = b"\n" + name.encode("ascii") + b": "
    begin = 0 if fmt is None else raw.find(b"\n\n") + 1  # inner headers start after the outer frame
    limit = raw.find(b"\n\n", begin + 1)  # the header block ends at the first blank line
    if limit < 0:
        limit = len(raw)
    if fmt is None and raw.startswith(key[1:]):
        start = len(key) - 1
    else:
        at = raw.find(key, begin, limit)
        if at < 0:
            return None
        start = at + len(key)
    end = raw.find(b"\n", start)
    value = raw[start:end] if end >= 0 else raw[start:]
    text = value.decode("utf-8", "surrogateescape")
    return _unquote(text) if "%" in text else text


def _cause_of(text: str | None) -> HangupCause | str:
    """The cause in an originate ``-ERR <CAUSE>`` result or a ``Hangup-Cause`` header."""
    word = (text or "").strip()
    if word.startswith("-ERR"):
        word = word[4:].strip()
    word = word.split()[0] if word else "NONE"
    try:
        return HangupCause.parse(word)
    except ValueError:
        return word


def _quote_var(value: object) -> str:
    """A value for an originate ``{name=value}`` list: commas escaped, spaces single-quoted."""
    text = check_line(value if isinstance(value, str) else str(value), "originate variable value")
    text = text.replace(",", "\\,")
    if " " in text or "'" in text:
        text = "'" + text.replace("'", "\\'") + "'"
    return text


class Channel:
    """One call leg (FreeSWITCH channel), in outbound or inbound mode.

    Get one from :meth:`create` (originate), :meth:`from_session` (the call an
    outbound socket controls; ``session.channel`` is one) or :meth:`attach`
    (an existing UUID on an inbound connection).

    State (``state``, ``call_state``, ``answered``, ``hangup_cause``,
    ``variables``) comes from the channel's own events only. ``events`` holds
    the newest ``Channel.history`` events (a bounded deque, newest last).
    """

    #: How many events each channel keeps in ``channel.events`` (0 disables).
    history: ClassVar[int] = 32

    __slots__ = (
        "protocol", "uuid", "dial_path", "created", "context", "answered", "hangup_cause",
        "failure", "job", "other_uuid", "events", "_state", "_top_state", "_visited", "_call_state",
        "_state_event", "_var_event", "_vars", "_waiters", "_apps", "_dtmf", "_handlers",
        "_tasks", "_filtered", "_gone", "_destroyed", "_group", "_seen", "__weakref__",
    )

    def __init__(self, protocol: Any, uuid: str, *, dial_path: str | None = None,
                 context: "Event | None" = None, created: bool = False) -> None:
        self.protocol = protocol
        self.uuid = check_line(uuid, "uuid")
        self.dial_path = dial_path
        self.created = created
        self.context = context
        self.answered = False
        self.hangup_cause: HangupCause | str | None = None
        self.failure: OriginateError | None = None
        self.job: Any = None
        self.other_uuid: str | None = None
        self.events: collections.deque[Event] | None = (
            collections.deque(maxlen=self.history) if self.history > 0 else None
        )
        self._state = ChannelState.NEW
        self._top_state = ChannelState.NEW  # highest main-line state reached below HANGUP
        self._visited = 1  # bit set of every state seen (NEW included)
        self._call_state: CallState | None = None
        self._state_event: Event | None = None
        self._var_event: Event | None = context
        self._vars: dict[str, str] | None = None
        self._waiters: list[tuple[Any, asyncio.Future[Any]]] | None = None
        self._apps: dict[str, asyncio.Future[Any]] | None = None
        self._dtmf: dict[str | None, list[Handler]] | None = None
        self._handlers: dict[str, list[Handler]] | None = None
        self._tasks: set[asyncio.Task[Any]] | None = None
        self._filtered = False
        self._gone: BaseException | None = None  # set once the channel hung up / connection closed
        self._destroyed = False
        self._group: Call | None = None
        self._seen: dict[str, Event] | None = None
        if context is not None:
            self._apply_context(context)

    def __repr__(self) -> str:
        return f"<Channel {self.uuid} {self._state.name} answered={self.answered}>"

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_session(cls, session: Any) -> "Channel":
        """The channel an outbound session controls (``session.channel`` is this object)."""
        existing = getattr(session, "channel", None)
        if existing is not None:
            return existing  # type: ignore[no-any-return]
        uuid = session.uuid
        if not uuid:
            raise ChannelError("the session has no channel (connect has not completed)")
        channel = cls(session, uuid, context=session.context)
        channel._register()
        return channel

    @classmethod
    def attach(cls, protocol: Any, uuid: str, *, context: "Event | None" = None) -> "Channel":
        """The Channel object for an existing ``uuid`` on ``protocol`` (made and routed if new).

        The connection must receive the channel's events: call
        :meth:`ensure_events` (``await``) on a connection with filters.
        """
        reg = _registry(protocol)
        channel = reg.channels.get(uuid)
        if channel is None:
            channel = cls(protocol, uuid, context=context)
            channel._register()
        return channel

    @classmethod
    async def create(
        cls,
        protocol: Any,
        dial_path: str,
        variables: Mapping[str, object] | None = None,
        *,
        caller_id_number: str | None = None,
        caller_id_name: str | None = None,
        timeout: float | None = None,
        app: str = "&park()",
    ) -> "Channel":
        """Place a call to ``dial_path`` and return its Channel at once (before it is answered).

        The channel UUID is chosen here and passed as ``origination_uuid``
        (a ``variables`` entry of that name is ignored); the UUID's events are
        routed to the channel, and the connection made to receive them, before
        ``bgapi originate`` is written. ``timeout`` becomes ``originate_timeout``
        (seconds of ringing). ``app`` is what the answered leg runs (``&park()``
        by default, or ``"<extension> XML <context>"``).

        A failure (``-ERR <CAUSE>`` from the originate, or a hangup before
        answer) is kept in ``channel.failure`` and raised as
        :class:`~esl.exceptions.OriginateError` by every wait on the channel.
        """
        check_line(dial_path, "dial path")
        check_line(app, "originate application")
        if not dial_path.strip() or " " in dial_path.strip():
            raise ValueError(f"invalid dial path {dial_path!r}")
        uuid = str(_uuid_mod.uuid4())
        pairs: dict[str, str] = {}
        for name, value in (variables or {}).items():
            check_line(name, "originate variable name")
            if not name or any(c in name for c in "=,{} "):
                raise ValueError(f"invalid originate variable name {name!r}")
            if name.lower() == "origination_uuid":
                log.warning("Channel.create: ignoring user variable origination_uuid (the UUID is chosen by esl)")
                continue
            pairs[name] = _quote_var(value)
        if caller_id_number is not None:
            pairs["origination_caller_id_number"] = _quote_var(caller_id_number)
        if caller_id_name is not None:
            pairs["origination_caller_id_name"] = _quote_var(caller_id_name)
        if timeout is not None:
            pairs["originate_timeout"] = str(max(1, int(round(timeout))))
        pairs["origination_uuid"] = uuid
        varlist = ",".join(f"{k}={v}" for k, v in pairs.items())
        channel = cls(protocol, uuid, dial_path=dial_path, created=True)
        channel._register()
        try:
            await channel.ensure_events()
            job = await protocol.bgapi(f"originate {{{varlist}}}{dial_path.strip()} {app}")
        except BaseException:
            channel._unregister()
            raise
        channel.job = job
        job.add_done_callback(channel._job_done)
        return channel

    # -- event delivery -----------------------------------------------------------

    def _register(self) -> None:
        reg = _registry(self.protocol)
        reg.channels[self.uuid] = self
        self.protocol.route(self.uuid, self._on_event)

    def _unregister(self) -> None:
        reg = _registry(self.protocol)
        if reg.channels.get(self.uuid) is self:
            del reg.channels[self.uuid]
            try:
                self.protocol.unroute(self.uuid)
            except Exception:  # pragma: no cover - connection already torn down
                pass
        if self._filtered and not getattr(self.protocol, "closed", True):
            self._filtered = False
            self._spawn(self._drop_filter(self.uuid))

    async def _drop_filter(self, uuid: str) -> None:
        try:
            await self.protocol.filter_delete("Unique-ID", uuid)
        except Exception:  # the connection may be going away; the filter dies with it
            pass

    async def ensure_events(self) -> None:
        """Make sure this connection receives this channel's events (and a bgapi's result).

        An outbound session already filters on its own UUID and is subscribed
        to all events, so only a ``filter Unique-ID <uuid>`` is added for other
        channels. On an inbound connection the channel events are subscribed
        once (additively, in the connection's format, unless it already has
        ALL); a ``filter Unique-ID`` is added only when the connection already
        has filters — adding the first filter would hide every other event
        from the user's handlers. (``bgapi`` itself makes BACKGROUND_JOB
        visible.)
        """
        protocol = self.protocol
        if _is_session(protocol):
            if self.uuid != protocol.uuid and protocol.uses_filters:
                await protocol.filter("Unique-ID", self.uuid)
                self._filtered = True
            return
        reg = _registry(protocol)
        if not reg.subscribed:
            subs = getattr(protocol, "subscriptions", None) or ()
            if "ALL" not in subs:
                fmt = getattr(protocol, "event_format", None) or "plain"
                await protocol.subscribe(*_CHANNEL_EVENTS, format=fmt)
            reg.subscribed = True
        if _has_filters(protocol):
            await protocol.filter("Unique-ID", self.uuid)
            self._filtered = True

    def _on_event(self, event: "Event") -> None:
        """Router owner: one event of this channel (called synchronously by the reader)."""
        if self.events is not None:
            self.events.append(event)
        name = event.name or ""
        if name in _STATEFUL:
            self._update(event, name)
        elif name == "CHANNEL_EXECUTE_COMPLETE":
            apps = self._apps
            if apps:  # keyed by the routing key: no header decoding
                fut = apps.pop(event.application_uuid or "", None)
                if fut is not None and not fut.done():
                    fut.set_result(event)
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
            for h in handlers.get("*", ()):
                self._call(h, event)

    def _apply_context(self, event: "Event") -> None:
        self._update_state(event)
        answer = header(event, "Answer-State")
        if answer == "answered":
            self.answered = True

    def _update_state(self, event: "Event") -> None:
        text = header(event, "Channel-State")
        number = header(event, "Channel-State-Number")
        state: ChannelState | None = None
        try:
            if text:
                state = ChannelState.parse(text)
            if number:
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
            if state in _MAIN_LINE and state < ChannelState.HANGUP and state > self._top_state:
                self._top_state = state
        call_state = header(event, "Channel-Call-State")
        if call_state:
            try:
                self._call_state = CallState.parse(call_state)
            except ValueError:
                pass

    def _update(self, event: "Event", name: str) -> None:
        if name in _ONCE:
            seen = self._seen
            if seen is None:
                seen = self._seen = {}
            seen.setdefault(name, event)
        if name == "CHANNEL_UUID":
            self._renamed(event)
        self._update_state(event)
        if name == "CHANNEL_ANSWER":
            if not self.answered:
                self.answered = True
                self._lifecycle("answered", event)
        elif name == "CHANNEL_BRIDGE":
            other = header(event, "Other-Leg-Unique-ID")
            if other and other != self.uuid:
                self.other_uuid = other
            self._link_call(event)
            self._lifecycle("bridged", self.other_uuid)
        elif name == "CHANNEL_UNBRIDGE":
            self._lifecycle("unbridged", header(event, "Other-Leg-Unique-ID") or self.other_uuid)
        elif name in ("CHANNEL_CREATE", "CHANNEL_ORIGINATE", "CHANNEL_OUTGOING"):
            self._link_call(event)
        elif name == "CHANNEL_HANGUP" or name == "CHANNEL_HANGUP_COMPLETE":
            if self.hangup_cause is None:
                self.hangup_cause = _cause_of(header(event, "Hangup-Cause"))
            if self._state < ChannelState.HANGUP:
                self._state = ChannelState.HANGUP
            self._hung_up()
        elif name == "CHANNEL_DESTROY":
            self._state = ChannelState.DESTROY
            if self.hangup_cause is None:
                self.hangup_cause = _cause_of(header(event, "Hangup-Cause"))
            self._hung_up()
            self._destroy()

    def _renamed(self, event: "Event") -> None:
        """CHANNEL_UUID: the channel's UUID changed; the Router already re-keyed the route."""
        new = event.uuid
        if not new or new == self.uuid:
            return
        reg = _registry(self.protocol)
        if reg.channels.get(self.uuid) is self:
            del reg.channels[self.uuid]
        old = self.uuid
        self.uuid = new
        reg.channels[new] = self
        try:  # keep the route even if the router did not re-key it
            self.protocol.route(new, self._on_event)
        except Exception:  # pragma: no cover
            pass
        if self._filtered:
            self._spawn(self._refilter(old, new))

    async def _refilter(self, old: str, new: str) -> None:
        try:
            await self.protocol.filter("Unique-ID", new)
            await self.protocol.filter_delete("Unique-ID", old)
        except Exception:
            pass

    def _job_done(self, job: Any) -> None:
        """The originate's BACKGROUND_JOB arrived (or the connection dropped)."""
        exc = job.exception()
        if exc is None or isinstance(exc, asyncio.CancelledError):
            return
        if isinstance(exc, CommandError):
            cause = _cause_of(exc.reply)
            self.hangup_cause = self.hangup_cause or cause
            self._fail_originate(cause)
            self._state = max(self._state, ChannelState.HANGUP)
            self._hung_up()
            self._destroy()
        elif isinstance(exc, ConnectionError):
            self._connection_lost(exc)

    def _fail_originate(self, cause: HangupCause | str) -> None:
        if self.failure is None:
            self.failure = OriginateError(f"originate of {self.dial_path or self.uuid} failed: {cause}",
                                          self.uuid, str(cause))
            self._lifecycle("failed", cause)

    def _hung_up(self) -> None:
        """First sign the channel is gone: fail what cannot complete any more."""
        if self._gone is not None:
            return
        cause = self.hangup_cause or HangupCause.NORMAL_CLEARING
        if self.created and not self.answered:
            self._fail_originate(cause)
        self._gone = self.failure or ChannelError(f"channel {self.uuid} hung up ({cause})", self.uuid, str(cause))
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
                fut.set_exception(ConnectionError(str(exc), getattr(exc, "reason", None)))

    def _connection_lost(self, exc: ConnectionError) -> None:
        """The connection closed: fail every pending wait and execute with ``exc``."""
        self._fail_pending(exc)
        if self._gone is None:
            self._gone = ConnectionError(str(exc), getattr(exc, "reason", None))
        reg = _registry(self.protocol)
        if reg.channels.get(self.uuid) is self:
            del reg.channels[self.uuid]

    def _gone_error(self) -> BaseException:
        gone = self._gone
        if isinstance(gone, OriginateError):
            return OriginateError(str(gone), gone.uuid, gone.cause)
        if isinstance(gone, ConnectionError):
            return ConnectionError(str(gone), gone.reason)
        if isinstance(gone, ChannelError):
            return ChannelError(str(gone), gone.uuid, gone.cause)
        return ChannelError(f"channel {self.uuid} is gone", self.uuid)

    # -- properties --------------------------------------------------------------

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
        """True once the channel hung up, failed, or its connection closed."""
        return self._gone is not None or self._state >= ChannelState.HANGUP

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

    def _set_local(self, changes: Mapping[str, str | None]) -> None:
        """Apply a set/unset FreeSWITCH accepted to :attr:`variables` now (``None`` = unset).

        The next full event of the channel replaces the whole view again.
        """
        view = self.variables
        for name, value in changes.items():
            if not value:  # an empty value unsets in FreeSWITCH too
                view.pop(name, None)
            else:
                view[name] = value

    @property
    def call(self) -> "Call":
        """The :class:`~esl.call.Call` this leg belongs to (made on first use)."""
        if self._group is None:
            from esl.call import Call

            Call(self)
        assert self._group is not None
        return self._group

    def _link_call(self, event: "Event") -> None:
        reg = _registry(self.protocol)
        for name in ("Other-Leg-Unique-ID", "Channel-Call-UUID"):
            peer_uuid = header(event, name)
            if peer_uuid and peer_uuid != self.uuid:
                peer = reg.channels.get(peer_uuid)
                if peer is not None:
                    peer.call.add(self)
                    return

    # -- handlers ----------------------------------------------------------------

    def _spawn(self, coro: Awaitable[Any]) -> None:
        try:
            task = asyncio.ensure_future(coro)
        except RuntimeError:  # no running loop (closing)
            if inspect.iscoroutine(coro):
                coro.close()
            return
        tasks = self._tasks
        if tasks is None:
            tasks = self._tasks = set()
        tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not isinstance(exc, (ChannelError, ConnectionError)):
            log.error("handler on channel %s raised", self.uuid, exc_info=exc)

    def _call(self, handler: Handler, *args: Any) -> None:
        try:
            result = handler(*args)
        except Exception:
            log.exception("handler on channel %s raised", self.uuid)
            return
        if inspect.isawaitable(result):
            self._spawn(result)

    def _lifecycle(self, name: str, info: Any) -> None:
        handlers = self._handlers
        if handlers is not None:
            for h in handlers.get(name, ()):
                self._call(h, self, info)

    def on(self, name: str, handler: Handler | None = None) -> Any:
        """Run ``handler`` for this channel's events named ``name`` (decorator or direct call).

        ``name`` is an event name (``"CHANNEL_ANSWER"``, ``"PLAYBACK_STOP"``,
        ``"*"`` for all): the handler gets the Event. Or a lifecycle hook from
        :data:`LIFECYCLE`, called as ``handler(channel, info)``: ``"answered"``
        (info: the CHANNEL_ANSWER event), ``"failed"`` (info: the cause,
        a :class:`~esl.types.HangupCause` or string), ``"hangup"`` (the cause),
        ``"bridged"``/``"unbridged"`` (the other leg's UUID), ``"destroyed"``.
        A hook registered after its moment (e.g. ``"failed"`` on an already
        failed channel) runs at once. Async handlers are run as tasks.
        """
        check_line(name, "event name")

        def register(fn: Handler) -> Handler:
            handlers = self._handlers
            if handlers is None:
                handlers = self._handlers = {}
            handlers.setdefault(name, []).append(fn)
            if name == "failed" and self.failure is not None:
                self._call(fn, self, self.failure.cause)
            elif name == "answered" and self.answered and self._state_event is not None:
                pass  # answered hooks fire on the event; registered late they are not replayed
            return fn

        if handler is None:
            return register
        return register(handler)

    def remove(self, name: str, handler: Handler) -> None:
        """Unregister a handler added with :meth:`on`."""
        if self._handlers and handler in self._handlers.get(name, ()):
            self._handlers[name].remove(handler)

    def onDTMF(self, digit: str | None = None) -> Callable[[Handler], Handler]:  # noqa: N802 - genesis name
        """Decorator: run the handler with the digit (a ``str``) when this channel receives DTMF.

        ``@channel.onDTMF("1")`` handles one digit; ``@channel.onDTMF()`` is the
        wildcard, which sees only digits that have no specific handler.
        """
        if digit is not None:
            check_line(digit, "DTMF digit")

        def register(fn: Handler) -> Handler:
            table = self._dtmf
            if table is None:
                table = self._dtmf = {}
            table.setdefault(digit, []).append(fn)
            return fn

        return register

    on_dtmf = onDTMF

    def _dispatch_dtmf(self, event: "Event") -> None:
        table = self._dtmf
        if table is None:
            return
        digit = header(event, "DTMF-Digit")
        if not digit:
            return
        for h in table.get(digit) or table.get(None) or ():
            self._call(h, digit)

    # -- waiting -----------------------------------------------------------------

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
                    if self._state >= target or (target is not ChannelState.DESTROY and self._destroyed):
                        fut.set_result(event if event is not None else self._state_event)
                        continue
                elif self._reached(target) and event is not None:
                    fut.set_result(event)
                    continue
                elif gone:
                    fut.set_exception(self._gone_error())
                    continue
            else:
                if event is not None and name == target:
                    fut.set_result(event)
                    continue
                if self._destroyed or (gone and target not in _AFTER_HANGUP):
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
        ``"DTMF"``, ``"CHANNEL_ANSWER"``, ``"CHANNEL_HANGUP_COMPLETE"`` (the next
        such event of this channel; for events a channel fires only once, such
        as CHANNEL_ANSWER or CHANNEL_HANGUP, one already received is returned
        at once). Raises :class:`~esl.exceptions.TimeoutError`
        after ``timeout`` seconds, :class:`~esl.exceptions.OriginateError` if the
        originate failed, :class:`~esl.exceptions.ChannelError` at once if the
        channel is gone and can no longer produce the target, and
        :class:`~esl.exceptions.ConnectionError` if the connection closes.
        """
        if isinstance(target, str) and target.upper().startswith("CS_"):
            target = ChannelState.parse(target)
        if isinstance(target, ChannelState):
            if target >= ChannelState.HANGUP:
                if self._state >= target:
                    return self._state_event
            elif self._reached(target):
                return self._state_event
        elif isinstance(target, str):
            check_line(target, "event name")
            target = target.upper()
            if self._seen is not None and target in self._seen:
                return self._seen[target]
        else:
            raise TypeError(f"wait target must be a ChannelState or an event name, not {target!r}")
        if isinstance(self._gone, ConnectionError):
            raise self._gone_error()
        if self._gone is not None:
            if self._destroyed or isinstance(target, ChannelState) or target not in _AFTER_HANGUP:
                raise self._gone_error()
        if getattr(self.protocol, "closed", False):
            raise ConnectionError("connection closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = []
        waiters.append((target, fut))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            if fut.done() and not fut.cancelled():
                return fut.result()
            name = target.name if isinstance(target, ChannelState) else target
            raise TimeoutError(f"channel {self.uuid}: no {name} within {timeout}s") from None
        finally:
            if self._waiters:
                self._waiters = [w for w in self._waiters if w[1] is not fut] or None

    def _reached(self, target: ChannelState) -> bool:
        """Whether a live state was reached: seen itself, or passed on FreeSWITCH's main line.

        Only NEW, INIT, ROUTING and EXECUTE count as "passed": the other live
        states are detours (a ringing outgoing leg sits in CONSUME_MEDIA, which
        sorts above EXECUTE, before it is answered and parked in EXECUTE).
        """
        if (self._visited >> target) & 1:
            return True
        return target in _MAIN_LINE and self._top_state >= target

    def _check_alive(self) -> None:
        if self._gone is not None:
            raise self._gone_error()
        if self._state >= ChannelState.HANGUP:
            raise ChannelError(f"channel {self.uuid} is gone", self.uuid, str(self.hangup_cause or ""))

    # -- commands ----------------------------------------------------------------

    def _own(self) -> bool:
        """True when this is the channel of the outbound socket it is driven from."""
        return _is_session(self.protocol) and self.protocol.uuid == self.uuid

    async def execute(
        self,
        app: str,
        arg: object = None,
        *,
        block: bool = True,
        lock: bool = False,
        timeout: float | None = None,
        loops: int | None = None,
        headers: Mapping[str, object] | None = None,
    ) -> "Event":
        """Run dialplan application ``app`` with ``arg`` on this channel (``sendmsg`` execute).

        ``block=True`` waits for the application's ``CHANNEL_EXECUTE_COMPLETE``
        (matched by a client-chosen ``Event-UUID``) and returns it; ``timeout``
        bounds that wait (``None``: until the app ends, the channel hangs up or
        the connection closes). ``block=False`` returns FreeSWITCH's ``+OK``
        reply (queued, not done). ``lock`` adds ``event-lock: true`` so later
        messages wait for this one. Long or multi-line arguments are sent as
        the body (``content-type: text/plain``).
        """
        self._check_alive()
        check_line(app, "application name")
        if not app or " " in app:
            raise ValueError(f"invalid application name {app!r}")
        hdrs: dict[str, str] = {"call-command": "execute", "execute-app-name": app}
        body: str | None = None
        if arg is not None:
            text = arg if isinstance(arg, str) else str(arg)
            if "\n" in text or "\r" in text or len(text) > _MAX_HEADER_ARG:
                body = text
            elif text:
                hdrs["execute-app-arg"] = text
        app_uuid = str(_uuid_mod.uuid4())
        hdrs["Event-UUID"] = app_uuid
        if lock:
            hdrs["event-lock"] = "true"
        if loops is not None:
            hdrs["loops"] = str(int(loops))
        for name, value in (headers or {}).items():
            hdrs[check_line(name, "header name")] = check_line(str(value), "header value")
        fut: asyncio.Future[Any] | None = None
        if block:
            fut = asyncio.get_running_loop().create_future()
            apps = self._apps
            if apps is None:
                apps = self._apps = {}
            apps[app_uuid] = fut  # registered before the command is written
        try:
            reply = await self.protocol.sendmsg_raw(None if self._own() else self.uuid, hdrs, body)
            if fut is None:
                return reply  # type: ignore[no-any-return]
            try:
                return await asyncio.wait_for(fut, timeout)  # type: ignore[no-any-return]
            except asyncio.TimeoutError:
                raise TimeoutError(f"{app} on channel {self.uuid} not complete after {timeout}s") from None
        except CommandError as exc:
            raise ChannelError(f"{app} refused on channel {self.uuid}: {exc.reply.strip()}", self.uuid) from exc
        finally:
            if fut is not None and self._apps:
                self._apps.pop(app_uuid, None)

    async def _api(self, command: str, timeout: float | None = None) -> str:
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            return await self.protocol.api(command, **kwargs)  # type: ignore[no-any-return]
        except CommandError as exc:
            raise ChannelError(f"{command.split()[0]} failed on channel {self.uuid}: {exc.reply.strip()}",
                               self.uuid) from exc

    async def _until(self, target: "ChannelState | str", block: bool, timeout: float | None) -> "Event | None":
        if not block:
            return None
        return await self.wait(target, timeout=timeout if timeout is not None else 30.0)

    # -- call-control verbs ---------------------------------------------------------

    async def answer(self, *, block: bool = True, timeout: float | None = None) -> "Event":
        """Answer the call (``answer`` application)."""
        return await self.execute("answer", block=block, timeout=timeout)

    async def pre_answer(self, *, block: bool = True, timeout: float | None = None) -> "Event":
        """Open early media before answering (``pre_answer``)."""
        return await self.execute("pre_answer", block=block, timeout=timeout)

    async def ring_ready(self, *, block: bool = True, timeout: float | None = None) -> "Event":
        """Signal ringing to the caller (``ring_ready``)."""
        return await self.execute("ring_ready", block=block, timeout=timeout)

    async def park(self) -> Any:
        """Park the channel. Returns once FreeSWITCH accepted it (a park never "completes")."""
        self._check_alive()
        if self._own() or not _api_allowed(self.protocol):
            return await self.execute("park", block=False)
        return await self._api(f"uuid_park {self.uuid}")

    async def hangup(self, cause: "HangupCause | str | int" = "NORMAL_CLEARING", *, block: bool = True,
                     timeout: float | None = 10.0) -> "Event | None":
        """Hang up with ``cause`` (validated against :class:`~esl.types.HangupCause`).

        Blocking waits for the channel's CHANNEL_HANGUP. Hanging up a channel
        that is already gone does nothing and returns ``None``.
        """
        reason = HangupCause.parse(cause)
        if self.gone:
            return None
        if self._own():
            await self.protocol.sendmsg_raw(None, {"call-command": "hangup", "hangup-cause": reason.name})
        else:
            await self._api(f"uuid_kill {self.uuid} {reason.name}")
        if not block or self.gone:
            return self._state_event if self.gone else None
        try:
            return await self.wait(ChannelState.HANGUP, timeout=timeout)
        except OriginateError:
            return self._state_event

    async def playback(self, path: str, *, block: bool = True, lock: bool = True,
                       timeout: float | None = None) -> "Event":
        """Play a file, tone stream or any FreeSWITCH playable (``playback``)."""
        check_line(path, "playback path")
        return await self.execute("playback", path, block=block, lock=lock, timeout=timeout)

    async def say(self, text: str, module: str = "en", lang: str | None = None, kind: str = "NUMBER",
                  method: str = "pronounced", gender: str = "FEMININE", *, block: bool = True,
                  timeout: float | None = None) -> "Event":
        """Say ``text`` with a say module (``say <module>[:<lang>] <kind> <method> <gender> <text>``)."""
        check_line(text, "say text")
        for part in (module, kind, method, gender) + ((lang,) if lang else ()):
            check_line(part, "say argument")
            if not part or " " in part:
                raise ValueError(f"invalid say argument {part!r}")
        mod = f"{module}:{lang}" if lang else module
        return await self.execute("say", f"{mod} {kind} {method} {gender} {text}", block=block,
                                  lock=True, timeout=timeout)

    async def speak(self, text: str, engine: str = "flite", voice: str = "kal", *, block: bool = True,
                    timeout: float | None = None) -> "Event":
        """Text-to-speech (``speak <engine>|<voice>|<text>``)."""
        check_line(engine, "speak engine")
        check_line(voice, "speak voice")
        if "|" in engine or "|" in voice:
            raise ValueError("engine and voice must not contain '|'")
        return await self.execute("speak", f"{engine}|{voice}|{text}", block=block, lock=True, timeout=timeout)

    async def play_and_get_digits(
        self,
        tries: int,
        timeout: int,
        terminators: str,
        file: str,
        minimal: int = 0,
        maximum: int = 128,
        *,
        regexp: str | None = None,
        var_name: str | None = None,
        invalid_file: str | None = None,
        digit_timeout: int | None = None,
        transfer_on_failure: str | None = None,
        sendmsg_timeout: float | None = None,
    ) -> str:
        """Play ``file`` and collect digits; return them (``""`` when none matched).

        Arguments follow genesis and FreeSWITCH's ``play_and_get_digits``:
        ``timeout`` and ``digit_timeout`` are milliseconds. Empty optional
        fields are filled with neutral values, because FreeSWITCH splits the
        argument on spaces and an empty field would shift the others.
        """
        var = var_name or "esl_digits"
        fields = [
            str(int(minimal)), str(int(maximum)), str(int(tries)), str(int(timeout)), terminators or "none",
            file, invalid_file or "silence_stream://250", var, regexp or "\\d+",
            str(int(digit_timeout if digit_timeout is not None else timeout)),
        ]
        if transfer_on_failure:
            fields.append(transfer_on_failure)
        for f in fields:
            check_line(f, "play_and_get_digits field")
            if not f or " " in f:
                raise ValueError(f"invalid play_and_get_digits field {f!r}")
        event = await self.execute("play_and_get_digits", " ".join(fields), lock=True, timeout=sendmsg_timeout)
        if event.get("variable_read_result") == "failure":
            # switch_ivr_read() stores even too few digits in var_name and sets
            # read_result=failure; switch_play_and_get_digits() (switch_ivr_play_say.c)
            # then gives up without clearing var_name, so its value is no answer.
            return ""
        return _result_var(event, var)

    async def read_digits(self, minimal: int, maximum: int, file: str, *, timeout: int = 5000,
                          terminators: str = "#", var_name: str = "esl_read",
                          sendmsg_timeout: float | None = None) -> str:
        """Play ``file`` and read ``minimal``..``maximum`` digits (``read``); return them."""
        fields = [str(int(minimal)), str(int(maximum)), file, var_name, str(int(timeout)), terminators or "none"]
        for f in fields:
            check_line(f, "read field")
            if not f or " " in f:
                raise ValueError(f"invalid read field {f!r}")
        event = await self.execute("read", " ".join(fields), lock=True, timeout=sendmsg_timeout)
        if event.get("variable_read_result") == "failure":
            return ""  # too few digits: switch_ivr_read() still stores them in var_name
        return _result_var(event, var_name)

    async def bridge(self, other: "Channel | Any | str", *, block: bool = True,
                     timeout: float | None = None) -> "Event | None":
        """Bridge this leg with ``other``.

        ``other`` a Channel or Session (two existing legs): ``uuid_bridge``; with
        ``block`` it waits (``timeout``, default 30 s) for this leg's
        CHANNEL_BRIDGE. ``other`` a dial string: the ``bridge`` application,
        which (blocking) returns when the bridge ends (``timeout``: no limit by
        default; hangup and socket close still end the wait).
        """
        self._check_alive()
        if isinstance(other, str):
            check_line(other, "bridge dial string")
            return await self.execute("bridge", other, block=block, timeout=timeout)
        peer: object = other.channel if _is_session(other) else other  # type: ignore[union-attr]
        if not isinstance(peer, Channel):
            raise TypeError(f"cannot bridge to {other!r}")
        if peer is self:
            raise ValueError("cannot bridge a channel to itself")
        peer._check_alive()
        self.call.add(peer)
        await self._api(f"uuid_bridge {self.uuid} {peer.uuid}")
        return await self._until("CHANNEL_BRIDGE", block and self.other_uuid != peer.uuid,
                                 30.0 if timeout is None else timeout)

    async def transfer(self, extension: str, dialplan: str = "XML", context: str = "default", *,
                       block: bool = True, timeout: float | None = None) -> Any:
        """Send the channel to ``extension`` in ``dialplan``/``context``."""
        for part in (extension, dialplan, context):
            check_line(part, "transfer argument")
            if not part or " " in part:
                raise ValueError(f"invalid transfer argument {part!r}")
        self._check_alive()
        if self._own() or not _api_allowed(self.protocol):
            return await self.execute("transfer", f"{extension} {dialplan} {context}", block=block,
                                      timeout=timeout)
        return await self._api(f"uuid_transfer {self.uuid} {extension} {dialplan} {context}")

    async def record(self, path: str, time_limit: int | None = None) -> Any:
        """Start recording the call to ``path`` in the background (until :meth:`stop_record` or hangup)."""
        check_line(path, "record path")
        if not path or " " in path:
            raise ValueError(f"invalid record path {path!r}")
        self._check_alive()
        if self._own() or not _api_allowed(self.protocol):
            # the application takes its limit as "+<seconds>" (a bare second word would be its variables)
            return await self.execute("record_session", path if time_limit is None else f"{path} +{int(time_limit)}")
        limit = "" if time_limit is None else f" {int(time_limit)}"
        return await self._api(f"uuid_record {self.uuid} start {path}{limit}")

    async def stop_record(self, path: str = "all") -> Any:
        """Stop a recording started with :meth:`record` (``"all"``: every one)."""
        check_line(path, "record path")
        if not path or " " in path:
            raise ValueError(f"invalid record path {path!r}")
        self._check_alive()
        if self._own() or not _api_allowed(self.protocol):
            return await self.execute("stop_record_session", path)
        return await self._api(f"uuid_record {self.uuid} stop {path}")

    async def send_dtmf(self, digits: str, *, block: bool = True) -> Any:
        """Send DTMF ``digits`` (``0-9*#A-D``, ``w``/``W`` pauses, ``@<ms>`` duration) to the channel."""
        check_line(digits, "DTMF digits")
        if not digits or " " in digits:
            raise ValueError(f"invalid DTMF digits {digits!r}")
        self._check_alive()
        if self._own() or not _api_allowed(self.protocol):
            return await self.execute("send_dtmf", digits, block=block)
        return await self._api(f"uuid_send_dtmf {self.uuid} {digits}")

    async def setvar(self, name: str, value: object) -> Any:
        """Set channel variable ``name`` to ``value``."""
        _check_var(name)
        text = check_line(value if isinstance(value, str) else str(value), "variable value")
        self._check_alive()
        result: Any
        if not _api_allowed(self.protocol):
            result = await self.execute("set", f"{name}={text}")
        else:
            result = await self._api(f"uuid_setvar {self.uuid} {name} {text}")
        self._set_local({name: text})
        return result

    async def setvars(self, variables: Mapping[str, object]) -> Any:
        """Set several channel variables at once."""
        items = []
        for name, value in variables.items():
            _check_var(name)
            text = check_line(value if isinstance(value, str) else str(value), "variable value")
            if ";" in text:
                raise ValueError(f"value of {name} must not contain ';' (it separates variables)")
            items.append(f"{name}={text}")
        if not items:
            return None
        self._check_alive()
        result: Any
        if not _api_allowed(self.protocol):
            result = await self.execute("multiset", "^^;" + ";".join(items))
        else:
            result = await self._api(f"uuid_setvar_multi {self.uuid} {';'.join(items)}")
        self._set_local(dict(item.split("=", 1) for item in items))  # type: ignore[misc]
        return result

    async def getvar(self, name: str) -> str | None:
        """The value of channel variable ``name``, or ``None`` when unset."""
        _check_var(name)
        self._check_alive()
        if not _api_allowed(self.protocol):
            reply = await self.protocol.send(f"getvar {name}")
            text = reply.get("Reply-Text", "")
            return None if text.startswith("-ERR") or text == "_undef_" else text
        text = await self._api(f"uuid_getvar {self.uuid} {name}")
        text = text.rstrip("\n")
        return None if text in ("_undef_", "") else text

    async def unsetvar(self, name: str) -> Any:
        """Unset channel variable ``name``."""
        _check_var(name)
        self._check_alive()
        result: Any
        if not _api_allowed(self.protocol):
            result = await self.execute("unset", name)
        else:
            result = await self._api(f"uuid_setvar {self.uuid} {name}")
        self._set_local({name: None})
        return result

    async def mute(self, direction: str = "read") -> str:
        """Mute the channel's audio in ``direction`` (``"read"``: what the caller says, or ``"write"``)."""
        if direction not in ("read", "write"):
            raise ValueError("direction must be 'read' or 'write'")
        self._check_alive()
        return await self._api(f"uuid_audio {self.uuid} start {direction} mute 1")

    async def unmute(self, direction: str = "read") -> str:
        """Undo :meth:`mute`."""
        if direction not in ("read", "write"):
            raise ValueError("direction must be 'read' or 'write'")
        self._check_alive()
        return await self._api(f"uuid_audio {self.uuid} start {direction} mute 0")

    async def hold(self) -> str:
        """Put the call on hold (``uuid_hold``)."""
        self._check_alive()
        return await self._api(f"uuid_hold {self.uuid}")

    async def unhold(self) -> str:
        """Take the call off hold (``uuid_hold off``)."""
        self._check_alive()
        return await self._api(f"uuid_hold off {self.uuid}")

    async def echo(self, *, block: bool = False, timeout: float | None = None) -> "Event":
        """Echo the caller's audio back (``echo``; it runs until :meth:`break_media` or hangup)."""
        return await self.execute("echo", block=block, timeout=timeout)

    async def sched_hangup(self, seconds: float, cause: "HangupCause | str | int" = "ALLOTTED_TIMEOUT") -> Any:
        """Hang up after ``seconds`` with ``cause``."""
        reason = HangupCause.parse(cause)
        secs = max(0, int(round(seconds)))
        self._check_alive()
        if not _api_allowed(self.protocol):
            return await self.execute("sched_hangup", f"+{secs} {reason.name}")
        return await self._api(f"sched_hangup +{secs} {self.uuid} {reason.name}")

    async def broadcast(self, path: str, leg: str = "aleg") -> str:
        """Play ``path`` to ``leg`` (``aleg``, ``bleg`` or ``both``) without stopping the current app."""
        if leg not in ("aleg", "bleg", "both"):
            raise ValueError("leg must be 'aleg', 'bleg' or 'both'")
        if not path or " " in path:
            raise ValueError(f"invalid path {path!r}")
        self._check_alive()
        return await self._api(f"uuid_broadcast {self.uuid} {check_line(path, 'path')} {leg}")

    async def break_media(self, all: bool = False) -> Any:  # noqa: A002 - FreeSWITCH's word
        """Stop the playback (``all``: and everything queued) running on the channel."""
        self._check_alive()
        if not _api_allowed(self.protocol):
            # mod_dptools break_function flushes the queued messages only when its
            # argument is present and *not* "all" (the reverse of uuid_break), so
            # "break all" would leave them queued; any other word flushes.
            return await self.execute("break", "flush" if all else None, block=False)
        return await self._api(f"uuid_break {self.uuid}{' all' if all else ''}")


_CHANNEL_EVENTS = (
    "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE", "CHANNEL_ANSWER",
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_OUTGOING", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_ORIGINATE", "CHANNEL_UUID",
    "CHANNEL_HOLD", "CHANNEL_UNHOLD", "DTMF", "PLAYBACK_START", "PLAYBACK_STOP", "RECORD_START",
    "RECORD_STOP", "CALL_UPDATE", "BACKGROUND_JOB",
)


def _has_filters(protocol: Any) -> bool:
    """True when the connection (an Inbound or an ESLProtocol) has event filters."""
    return bool(getattr(protocol, "filters", None))


def _check_var(name: str) -> None:
    check_line(name, "variable name")
    if not name or " " in name or "=" in name:
        raise ValueError(f"invalid variable name {name!r}")


def _result_var(event: "Event", var: str) -> str:
    value = event.get(f"variable_{var}")
    if value is None or value == "_undef_":
        return ""
    return value


def channels_of(protocol: Any) -> Iterable[Channel]:
    """The live Channel objects on a connection."""
    return tuple(_registry(protocol).channels.values())
