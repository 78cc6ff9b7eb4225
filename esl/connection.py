"""``Connection``: the command layer and event entry shared by :class:`~esl.Inbound` and :class:`~esl.Session`.

A Connection is one *logical* connection to FreeSWITCH. It outlives its
socket (an :class:`~esl.protocol.ESLProtocol`; an Inbound gets a new one on
each reconnect) and composes the pieces that make it up:

* :class:`~esl.owners.Owners` — who owns which Unique-ID / Job-UUID; every
  event goes there first, before any flow control;
* :class:`~esl.executor.Executor` — where user code runs (bounded, ordered);
* :class:`~esl.dispatch.Dispatcher` — user handlers and ``events()``
  iterators, under the flow-control policy;
* the command verbs (``api``, ``bgapi``, ``subscribe``, ``filter``, …), each
  building its bytes through :mod:`esl.commands` (CR/LF/NUL refused), and the
  state they leave (subscriptions, filters, …) that a reconnect re-applies;
  set-up the library does on its own behalf (the BACKGROUND_JOB subscription
  and filter, the channel events, a channel's ``Unique-ID`` filter) is
  one-shot: concurrent callers share one command in flight.

Every method that waits on FreeSWITCH takes a ``timeout`` (seconds; the
default is ``self.timeout``; ``None`` waits without limit) and raises
:class:`esl.exceptions.TimeoutError` when it passes; a dropped connection
raises :class:`esl.exceptions.ConnectionError`.
"""

from __future__ import annotations

import collections
import inspect
import logging
import weakref
from typing import TYPE_CHECKING, Any, Callable, TypeVar, overload

from esl.core import DEFAULT_MAX_SIZE, Tally
from esl.dispatch import Dispatcher, EventStream, Handler
from esl.exceptions import ConnectionError
from esl.executor import Executor
from esl.job import Job
from esl.owners import Owners
from esl.protocol import ESLProtocol
from esl.requests import _Histogram
from esl.sequence import SequenceTracker
from esl.stats import ConnectionStats
from esl.subscriptions import CHANNEL_EVENTS, Subscriptions

if TYPE_CHECKING:  # pragma: no cover
    from esl.channel import Channel
    from esl.core import Event

__all__ = ["CHANNEL_EVENTS", "Connection"]

log = logging.getLogger("esl.connection")

H = TypeVar("H", bound=Callable[..., Any])

#: At most this many Event-Names are counted apart in ``stats().events_by_name``; the rest are "other".
_MAX_NAMES = 256


class Connection(Subscriptions):
    """One logical connection to FreeSWITCH: owners, executor, dispatcher, and the command verbs."""

    def __init__(
        self,
        *,
        timeout: float | None = 5.0,
        job_timeout: float | None = 600.0,
        max_queue: int = 10_000,
        policy: str = "pause",
        handler_concurrency: int = 1,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._timeout = timeout
        #: the name a :class:`~esl.Cluster` gave this connection's node (in its connection errors)
        self.node_name: str | None = None
        #: default deadline (seconds) of a bgapi Job: past it the Job fails with TimeoutError and is forgotten
        self.job_timeout = job_timeout
        self.max_size = max_size
        self.owners = Owners()
        self.executor = Executor(max_queue=max_queue, policy=policy, concurrency=handler_concurrency)
        # weak callbacks: the connection owns these parts, they must not keep it alive (no cycles)
        self.dispatcher = Dispatcher(self.executor, _weak(self._set_paused))
        self.executor._pressure = _weak(self.dispatcher.executor_pressure)
        self.protocol: ESLProtocol | None = None
        self._init_subscriptions()  # state a reconnect re-applies
        # counters
        self._malformed = 0
        self._unnamed = 0
        self._reconnects = 0
        self._pauses = 0
        self._tally = Tally(_MAX_NAMES)  # events by name and Event-Sequence in order, counted in C
        self._seq = SequenceTracker()
        self._latency: dict[str, _Histogram] = {}
        # events read while flow control is engaged, not yet offered to the user's handlers
        self._backlog: collections.deque[Event] = collections.deque()
        self._backlog_cap = max(2 * max_queue, 10_000)
        self._backlog_dropped = 0
        self._draining = False
        self._holding = False  # flow control engaged, or events still held back
        self._deliver = self.dispatcher.deliver

    # -- the socket's callbacks (esl.protocol.WireOwner) --------------------------------------

    def _new_protocol(self) -> ESLProtocol:
        return ESLProtocol(self, max_size=self.max_size)

    def _wire_event(self, event: "Event") -> None:
        """Every event read, in stream order: counters, then owners, then user delivery (the hot path).

        The counters are the core's :class:`~esl.core.Tally` (events by name,
        Event-Sequence in order: C work only). The sync "*" handlers of
        :meth:`Dispatcher.deliver` are inlined here: one call less per event.
        """
        if self._tally.count(event):
            self._absorb()
        if self.owners.active:
            self.owners.dispatch(event)
        if self._holding:
            self._hold(event)
            return
        d = self.dispatcher
        for h in d._sync_star:
            try:
                result = h(event)
            except Exception:
                d._failed(h, event)
                continue
            if result is not None and inspect.isawaitable(result):
                d.executor.submit(event.uuid if d._keyed else None, None, result)
        if d._more:
            d._deliver_more(event)

    def _absorb(self) -> None:
        """Hand the Event-Sequence jumps the tally recorded to the loss estimate."""
        tally = self._tally
        self._seq.absorb(tally.next, tally.gaps, tally.fills)
        tally.gaps = []
        tally.fills = []

    def _rebase_sequence(self) -> None:
        """A new socket after a reconnect: the gap in the numbers is what was fired meanwhile."""
        self._absorb()
        self._seq.rebase()
        self._tally.next = -1

    def _events_lost(self) -> int:
        self._absorb()
        return self._seq.lost

    def _hold(self, event: "Event") -> None:
        """Flow control engaged: keep the event for the user's handlers until the queues drain."""
        backlog = self._backlog
        if len(backlog) >= self._backlog_cap:
            self._backlog_dropped += 1
        else:
            backlog.append(event)

    def _drain_backlog(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            backlog = self._backlog
            pausers = self.dispatcher._pausers
            deliver = self._deliver
            while backlog and not pausers:
                deliver(backlog.popleft())
        finally:
            self._draining = False

    def _end_for_good(self, exc: ConnectionError, iterators: ConnectionError | None) -> None:
        """The logical connection is over: held events dropped (counted), owners fail and leave,
        ``events()`` iterators end (raising ``iterators``, or quietly for ``None``)."""
        self._drop_backlog()
        self.owners.close(exc)
        self.dispatcher.close(iterators)

    def _drop_backlog(self) -> None:
        self._backlog_dropped += len(self._backlog)
        self._backlog.clear()
        self._holding = bool(self.dispatcher._pausers)

    def _wire_bad_event(self, event: "Event", exc: BaseException) -> None:
        self._malformed += 1
        try:
            event.name
        except Exception:  # noqa: BLE001 - it failed before it was counted by name
            self._unnamed += 1
        log.warning("dropped an event that could not be decoded (%s: %s)", type(exc).__name__, exc,
                    exc_info=log.isEnabledFor(logging.DEBUG))

    def _wire_message(self, message: "Event") -> None:
        self.dispatcher.deliver_other(message)

    def _wire_linger(self, notice: "Event") -> None:
        log.debug("linger notice for %s", notice.get("Controlled-Session-UUID"))

    def _wire_made(self, protocol: ESLProtocol) -> None:
        pass

    def _wire_lost(self, protocol: ESLProtocol, exc: ConnectionError) -> None:
        if protocol is not self.protocol:
            return
        if self.node_name is not None:
            exc = ConnectionError(f"node {self.node_name}: {exc}", exc.reason)
        self.owners.connection_lost(exc)
        self._socket_lost(protocol, exc)

    def _socket_lost(self, protocol: ESLProtocol, exc: ConnectionError) -> None:
        """The current socket ended; subclasses decide what follows (reconnect, end of session)."""

    @property
    def reconnects(self) -> int:
        """Successful reconnects so far."""
        return self._reconnects

    def _set_paused(self, want: bool) -> None:
        if not want and self._backlog:
            self._drain_backlog()
            want = bool(self.dispatcher._pausers)
            if want:
                return  # paused again while draining (already counted)
        self._holding = want
        if want:
            self._pauses += 1
        proto = self.protocol
        if proto is not None:
            proto.set_paused(want)

    # -- state ----------------------------------------------------------------------------------

    @property
    def timeout(self) -> float | None:
        """The default limit, in seconds, on each wait for FreeSWITCH (``None``: no limit)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = value

    @property
    def connected(self) -> bool:
        """True while the socket is open (and, for an Inbound, authenticated)."""
        proto = self.protocol
        return proto is not None and proto.connected

    @property
    def closed(self) -> bool:
        """True once the logical connection is over for good (no reconnect will follow)."""
        proto = self.protocol
        return proto is None or proto.closed

    @property
    def lingering(self) -> bool:
        """True once FreeSWITCH said the channel is gone but the socket stays open (``linger``)."""
        proto = self.protocol
        return proto is not None and proto.lingering

    @property
    def controlled_uuid(self) -> str | None:
        """The UUID of the call this socket controls (outbound sessions); ``None`` on an Inbound."""
        return None

    @property
    def receives_channel_events(self) -> bool:
        """Whether a Channel on this connection can get its events (False: blocking verbs refuse)."""
        return True

    @property
    def jobs(self) -> dict[str, Job]:
        """Background jobs waiting for their result, by Job-UUID (a copy)."""
        return dict(self.owners.jobs)

    @property
    def pending_commands(self) -> int:
        """Commands written whose reply has not arrived yet."""
        proto = self.protocol
        return 0 if proto is None else proto.pending_commands

    def channels(self) -> tuple["Channel", ...]:
        """The Channel objects this connection owns (live calls it placed, controls or watches)."""
        return tuple(self.owners.channels.values())  # type: ignore[arg-type]

    def _update_tracking(self) -> None:
        track = "ALL" in self._subs and not self._filters and not self.myevents_enabled
        tally = self._tally
        if track and not tally.track:  # a fresh estimate from the first number seen
            tally.gaps = []
            tally.fills = []
            tally.next = -1
            self._seq = SequenceTracker()
        tally.track = track

    def stats(self) -> ConnectionStats:
        """A snapshot of this connection's counters and tables (see :class:`esl.stats.ConnectionStats`)."""
        proto = self.protocol
        owners = self.owners
        dispatcher = self.dispatcher
        executor = self.executor
        return ConnectionStats(
            connected=self.connected,
            pending_commands=0 if proto is None else proto.pending_commands,
            jobs=len(owners.jobs),
            channels=len(owners.channels),
            owners=owners.active,
            events_received=self._tally.total() + self._unnamed,
            events_dropped=executor.dropped + dispatcher.stream_dropped + self._backlog_dropped,
            events_malformed=self._malformed,
            events_lost=self._events_lost(),
            queue_depth=dispatcher.queue_depth + len(self._backlog),
            paused=proto is not None and proto.paused,
            pauses=self._pauses,
            handler_errors=executor.errors + dispatcher.sync_errors,
            reconnects=self._reconnects,
            events_by_name={("(none)" if k is None else k): v for k, v in self._tally.counts().items()},
            command_latency={k: h.snapshot() for k, h in self._latency.items()},
        )

    # -- handlers and iterators ---------------------------------------------------------------------

    @overload
    def on(self, name: str) -> Callable[[H], H]: ...

    @overload
    def on(self, name: str, handler: H) -> H: ...

    def on(self, name: str, handler: H | None = None) -> Any:
        """Call ``handler(event)`` for each event named ``name``; usable as ``@conn.on(name)``.

        ``"*"`` matches every event; a CUSTOM subclass name (``"sofia::register"``)
        matches CUSTOM events of that subclass; a Content-Type (``"log/data"``,
        ``"text/disconnect-notice"``) matches those messages. Sync handlers run
        in the reader and must be quick; async handlers run on the connection's
        executor. A raising handler is logged and does not stop the others.
        """
        if handler is None:
            return self.dispatcher.on(name)
        self.dispatcher.add_handler(name, handler)
        return handler

    def remove(self, name: str, handler: Handler) -> None:
        """Unregister a handler added with :meth:`on`."""
        self.dispatcher.remove_handler(name, handler)

    def events(self, *names: str, maxsize: int = 1000, timeout: float | None = None) -> EventStream:
        """An async iterator over events of these names (all with none or ``"*"``), buffering ``maxsize``.

        ``timeout`` bounds the wait for each event (``None``: no limit).
        """
        return EventStream(self.dispatcher, names, maxsize, timeout)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the async handlers have run every queued event (``TimeoutError`` after ``timeout``)."""
        await self.executor.drain(timeout)

def _weak(method: Callable[[bool], None]) -> Callable[[bool], None]:
    """A callback calling ``method`` while its object lives (no reference cycle through it)."""
    ref = weakref.WeakMethod(method)

    def call(value: bool) -> None:
        bound = ref()
        if bound is not None:
            bound(value)

    return call


