"""``ESLProtocol``: the asyncio protocol shared by inbound connections and outbound sessions.

Bytes from the socket go straight into the core's :class:`~esl.core.Parser`
(``data_received``; no ``StreamReader``). What comes out is handled in one
pass, in stream order:

* ``command/reply`` and ``api/response`` resolve the oldest pending command
  future (a FIFO: commands may be pipelined, FreeSWITCH answers in order), so a
  reply is never queued behind events;
* events go first to the owner of their UUID in the :class:`~esl.core.Router`
  (``route(uuid, owner)``; a bgapi :class:`~esl.job.Job` is such an owner),
  then to the handlers registered with ``on(name, ...)`` and to the
  ``events(...)`` iterators, through the :class:`Dispatcher`;
* ``text/disconnect-notice`` ends the connection (every pending command, job
  and wait fails at once with :class:`esl.exceptions.ConnectionError`), except
  its ``Content-Disposition: linger`` form, which calls :meth:`ESLProtocol.on_linger`
  and keeps the connection open.

Flow control (the :class:`Dispatcher`): a sync handler runs inline in the
reader, so a slow one slows the reading itself (TCP backpressure). Async
handlers and ``events()`` iterators are fed through bounded queues, with one of
two policies:

``"pause"`` (default)
    when a queue reaches ``max_queue``, reading from the socket stops
    (``transport.pause_reading``) until it drains to half. Nothing is lost on
    this side, but FreeSWITCH keeps queueing: its per-listener queue holds
    100,000 events, and after 500 consecutive losses it kills the connection
    ("killed listener because of lost events", ESL-PROTOCOL.md §1.12). While a
    command is waiting for its reply, reading resumes so that the reply can
    arrive (no deadlock when a handler awaits a command); events read meanwhile
    may fill a queue up to twice ``max_queue``, beyond which they are dropped
    and counted.
``"drop"``
    an event that finds its queue full is dropped and counted in
    ``stats.dropped``. The connection keeps up with FreeSWITCH, at the price of
    the events a slow handler did not have time for.

``stats`` gives events received, dropped, the queue depth, whether reading is
paused, and the gaps seen in ``Event-Sequence`` (only meaningful when
subscribed to ``ALL`` with no filters: otherwise gaps are normal).
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import uuid as _uuid
import weakref
from dataclasses import dataclass
from types import EllipsisType
from typing import Any, Callable, Iterable, Iterator, Mapping

from esl.commands import build_command, build_sendmsg, check_line, redact
from esl.core import DEFAULT_MAX_SIZE, Parser, Router
from esl.exceptions import CommandError, ConnectionError, ProtocolError, TimeoutError
from esl.job import Job

__all__ = ["ESLProtocol", "Dispatcher", "EventStream", "FlowStats", "Handler"]

log = logging.getLogger("esl.protocol")

Handler = Callable[[Any], Any]

#: Name under which handlers get every event.
ALL = "*"
_POLICIES = ("pause", "drop")
_ERROR_PREFIXES = ("-ERR", "-USAGE")


@dataclass(frozen=True)
class FlowStats:
    """A snapshot of the event-delivery counters of a connection."""

    #: events read from FreeSWITCH
    received: int
    #: deliveries dropped because the async-handler queue or an ``events()`` buffer was full
    #: (one event dropped for two async handlers counts twice)
    dropped: int
    #: events waiting in the async-handler queue and the ``events()`` buffers
    queue_depth: int
    #: number of jumps seen in ``Event-Sequence`` (only meaningful for ``ALL`` without filters)
    sequence_gaps: int
    #: events missing according to those jumps
    sequence_missed: int
    #: handler calls that raised
    handler_errors: int
    #: whether reading from the socket is paused by the "pause" policy right now
    paused: bool
    #: how many times reading was paused
    pauses: int


def _is_async(handler: Handler) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - a callable object with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _discard(awaitable: Any) -> None:
    """Dispose of an awaitable that will not be awaited (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)  # coroutines
    if close is not None:
        close()
    else:
        cancel = getattr(awaitable, "cancel", None)  # futures
        if cancel is not None:
            cancel()


class Dispatcher:
    """Handlers, ``events()`` iterators and flow control of one logical connection.

    It outlives the socket: :class:`esl.Inbound` keeps one Dispatcher and attaches
    each new :class:`ESLProtocol` to it after a reconnect, so handlers and
    iterators carry on. Sync handlers are called directly by the reader; async
    handlers are run by ``concurrency`` worker tasks from one bounded queue
    (with ``concurrency=1``, the default, they see events in order, one at a
    time). A handler that raises is logged and counted; the others still run.
    """

    def __init__(self, *, max_queue: int = 10_000, policy: str = "pause", concurrency: int = 1) -> None:
        if policy not in _POLICIES:
            raise ValueError(f"policy must be one of {_POLICIES}, not {policy!r}")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.max_queue = max_queue
        self.policy = policy
        self.concurrency = concurrency
        # name -> handlers; "*" kept apart so the hot path does one dict lookup at most
        self._handlers: dict[str, list[Handler]] = {}
        self._sync_star: tuple[Handler, ...] = ()
        self._async_star: tuple[Handler, ...] = ()
        self._sync_named: dict[str, tuple[Handler, ...]] = {}
        self._async_named: dict[str, tuple[Handler, ...]] = {}
        self._sinks: list[_Sink] = []
        self._stream_star: tuple[_Sink, ...] = ()
        self._stream_named: dict[str, tuple[_Sink, ...]] = {}
        # async handler work
        self._queue: collections.deque[tuple[Any, Any]] = collections.deque()
        self._workers: list[asyncio.Task[None]] = []
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        # flow control
        self._pausers: set[object] = set()
        self.protocol: ESLProtocol | None = None
        self.closed = False
        self.closed_exc: BaseException | None = None
        # counters
        self.received = 0
        self.dropped = 0
        self.gaps = 0
        self.missed = 0
        self.handler_errors = 0
        self.pauses = 0
        self._next_seq = -1  # the Event-Sequence expected next (-1: none yet)
        self._more = False  # anything beyond sync '*' handlers to deliver to

    # -- registration ---------------------------------------------------------

    def add_handler(self, name: str, handler: Handler) -> None:
        """Call ``handler(event)`` for events named ``name`` ("*": all; a CUSTOM subclass name: those)."""
        if not isinstance(name, str) or not name:
            raise ValueError("event name must be a non-empty string")
        if not callable(handler):
            raise TypeError("handler must be callable")
        self._handlers.setdefault(name, []).append(handler)
        self._reindex()

    def remove_handler(self, name: str, handler: Handler) -> None:
        """Stop calling ``handler`` for ``name``; ``ValueError`` if it was not registered."""
        handlers = self._handlers.get(name)
        if not handlers or handler not in handlers:
            raise ValueError(f"{handler!r} is not a handler of {name!r}")
        handlers.remove(handler)
        if not handlers:
            del self._handlers[name]
        self._reindex()

    def handler_names(self) -> list[str]:
        """The names that have at least one handler."""
        return list(self._handlers)

    def handlers(self, name: str) -> list[Handler]:
        """The handlers registered for ``name``."""
        return list(self._handlers.get(name, ()))

    def _reindex(self) -> None:
        sync_named: dict[str, tuple[Handler, ...]] = {}
        async_named: dict[str, tuple[Handler, ...]] = {}
        for name, handlers in self._handlers.items():
            s = tuple(h for h in handlers if not _is_async(h))
            a = tuple(h for h in handlers if _is_async(h))
            if name == ALL:
                self._sync_star, self._async_star = s, a
                continue
            if s:
                sync_named[name] = s
            if a:
                async_named[name] = a
        if ALL not in self._handlers:
            self._sync_star = self._async_star = ()
        self._sync_named = sync_named
        self._async_named = async_named
        self._update_more()

    def _add_sink(self, sink: _Sink) -> None:
        self._sinks.append(sink)
        self._reindex_streams()

    def _remove_sink(self, sink: _Sink) -> None:
        """Unregister an ``events()`` buffer (closed, or its iterator was dropped)."""
        sink.closed = True
        if sink in self._sinks:
            self._sinks.remove(sink)
        self._reindex_streams()
        if sink in self._pausers:
            self._pausers.discard(sink)
            self._update_reading()

    def _reindex_streams(self) -> None:
        star: list[_Sink] = []
        named: dict[str, list[_Sink]] = {}
        for sink in self._sinks:
            if not sink.names:
                star.append(sink)
            for n in sink.names:
                named.setdefault(n, []).append(sink)
        self._stream_star = tuple(star)
        self._stream_named = {k: tuple(v) for k, v in named.items()}
        self._update_more()

    # -- delivery (hot path) ----------------------------------------------------

    def deliver(self, event: Any) -> None:
        """Hand one event to every matching handler and iterator (called by the reader)."""
        self.received += 1
        seq = event.sequence
        if seq == self._next_seq:
            self._next_seq = seq + 1
        elif seq is not None:
            self._sequence_jump(seq)
        for h in self._sync_star:  # inlined _call: the hot path of a "*" handler
            try:
                result = h(event)
            except Exception:
                self._failed(h, event)
                continue
            if result is not None and inspect.isawaitable(result):
                self._enqueue(None, result)
        if self._more:
            self._deliver_more(event)

    def _sequence_jump(self, seq: int) -> None:
        expected = self._next_seq
        if expected >= 0 and seq > expected:
            self.gaps += 1
            self.missed += seq - expected
        self._next_seq = seq + 1

    def _deliver_more(self, event: Any) -> None:
        for h in self._async_star:
            self._enqueue(h, event)
        if self._sync_named or self._async_named or self._stream_named:
            name = event.name
            self._deliver_named(name, event)
            if name == "CUSTOM":
                sub = event.subclass
                if sub is not None:
                    self._deliver_named(sub, event)
        for sink in self._stream_star:
            sink.put(event)

    def _update_more(self) -> None:
        self._more = bool(
            self._async_star or self._sync_named or self._async_named or self._stream_named or self._stream_star
        )

    def deliver_other(self, message: Any) -> None:
        """Hand a non-event message (``log/data``, a disconnect notice...) to handlers of its Content-Type."""
        self._deliver_named(message.content_type, message)

    def _deliver_named(self, name: str | None, event: Any) -> None:
        if name is None:
            return
        hs = self._sync_named.get(name)
        if hs is not None:
            for h in hs:
                self._call(h, event)
        ha = self._async_named.get(name)
        if ha is not None:
            for h in ha:
                self._enqueue(h, event)
        ss = self._stream_named.get(name)
        if ss is not None:
            for sink in ss:
                sink.put(event)

    def _failed(self, handler: Handler, event: Any) -> None:
        self.handler_errors += 1
        log.exception("event handler %r raised on %r", handler, event)

    def _call(self, handler: Handler, event: Any) -> None:
        try:
            result = handler(event)
        except Exception:
            self._failed(handler, event)
            return
        if result is not None and inspect.isawaitable(result):
            self._enqueue(None, result)

    def _enqueue(self, handler: Handler | None, event: Any) -> None:
        if self.closed:
            if handler is None:
                _discard(event)
            return
        q = self._queue
        n = len(q)
        if n >= self.max_queue and (self.policy == "drop" or n >= 2 * self.max_queue):
            self.dropped += 1
            if handler is None:
                _discard(event)  # an awaitable returned by a sync handler, never to be awaited
            return
        q.append((handler, event))
        if n + 1 >= self.max_queue and self.policy == "pause":
            self._pause(self)
        idle = self._idle
        if idle:
            fut = idle.popleft()
            if not fut.done():
                fut.set_result(None)
        elif len(self._workers) < self.concurrency:
            self._start_worker()

    def _start_worker(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._work())
        self._workers.append(task)

    async def _work(self) -> None:
        q = self._queue
        loop = asyncio.get_running_loop()
        low = self.max_queue // 2
        try:
            while True:
                while q:
                    handler, event = q.popleft()
                    if self._pausers and len(q) <= low and self in self._pausers:
                        self._resume(self)
                    try:
                        if handler is None:
                            await event
                        else:
                            await handler(event)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        self.handler_errors += 1
                        log.exception("event handler %r raised on %r", handler, event)
                fut = loop.create_future()
                self._idle.append(fut)
                await fut
        finally:
            task = asyncio.current_task()
            if task in self._workers:
                self._workers.remove(task)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the async-handler queue is empty and the handlers are idle."""

        async def _drained() -> None:
            while self._queue or len(self._idle) < len(self._workers):
                await asyncio.sleep(0.001)

        try:
            await asyncio.wait_for(_drained(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"handlers still busy after {timeout}s") from None

    # -- flow control --------------------------------------------------------

    def _pause(self, who: object) -> None:
        if who not in self._pausers:
            self._pausers.add(who)
            self.pauses += 1
            self._update_reading()

    def _resume(self, who: object) -> None:
        if who in self._pausers:
            self._pausers.discard(who)
            self._update_reading()

    def _update_reading(self) -> None:
        proto = self.protocol
        if proto is not None:
            proto._update_reading(bool(self._pausers))

    @property
    def queue_depth(self) -> int:
        """Events waiting for async handlers and in ``events()`` buffers."""
        depth = len(self._queue)
        for sink in self._sinks:
            depth += len(sink.buf)
        return depth

    def stats(self) -> FlowStats:
        """A snapshot of the counters."""
        proto = self.protocol
        return FlowStats(
            received=self.received,
            dropped=self.dropped,
            queue_depth=self.queue_depth,
            sequence_gaps=self.gaps,
            sequence_missed=self.missed,
            handler_errors=self.handler_errors,
            paused=bool(proto is not None and proto._reading_paused),
            pauses=self.pauses,
        )

    # -- lifecycle ------------------------------------------------------------

    def attach(self, protocol: ESLProtocol) -> None:
        """Make ``protocol`` the connection this dispatcher pauses/resumes (after a (re)connect)."""
        self.protocol = protocol
        self.closed = False
        self.closed_exc = None
        self._next_seq = -1
        protocol._update_reading(bool(self._pausers))

    def detach(self, protocol: ESLProtocol) -> None:
        """``protocol`` is gone; a reconnect may attach another one."""
        if self.protocol is protocol:
            self.protocol = None

    def close(self, exc: BaseException | None) -> None:
        """The connection is over for good: end the iterators (raising ``exc`` in them if any), stop handlers."""
        self.closed = True
        self.closed_exc = exc
        self.protocol = None
        for sink in self._sinks:
            sink.end(exc)
        self._sinks = []
        self._reindex_streams()
        self._pausers.clear()
        for fut in self._idle:
            if not fut.done():
                fut.cancel()
        self._idle.clear()
        for task in list(self._workers):
            task.cancel()
        self._workers.clear()
        for handler, event in self._queue:
            if handler is None:
                _discard(event)
        self._queue.clear()


class _Sink:
    """The buffer behind one ``events()`` iterator, as the dispatcher sees it.

    Kept apart from :class:`EventStream` so that the dispatcher holds no
    reference to the iterator itself: dropping the iterator unregisters it.
    """

    __slots__ = ("names", "maxsize", "buf", "dropped", "waiter", "closed", "exc", "dispatcher", "__weakref__")

    def __init__(self, dispatcher: Dispatcher, names: tuple[str, ...], maxsize: int) -> None:
        self.dispatcher = dispatcher
        self.names = names
        self.maxsize = maxsize
        self.buf: collections.deque[Any] = collections.deque()
        self.dropped = 0
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False
        self.exc: BaseException | None = None

    def put(self, event: Any) -> None:
        buf = self.buf
        n = len(buf)
        d = self.dispatcher
        if n >= self.maxsize and (d.policy == "drop" or n >= 2 * self.maxsize):
            self.dropped += 1
            d.dropped += 1
            return
        buf.append(event)
        if n + 1 >= self.maxsize and d.policy == "pause":
            d._pause(self)
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def end(self, exc: BaseException | None) -> None:
        self.closed = True
        self.exc = exc
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


class EventStream:
    """An async iterator over the events of some names, with a bounded buffer.

    Made by ``client.events(*names, maxsize=...)``; it starts collecting at once
    (not at the first ``__anext__``). No names means every event. When the buffer
    is full the connection's policy applies ("pause" reading, or "drop" and
    count). The iteration ends when the client is closed, and raises
    :class:`~esl.exceptions.ConnectionError` if the connection was lost (with
    ``reconnect=True`` it goes on across reconnects). Use ``async with`` or
    ``close()`` to stop it early; dropping the object (e.g. after ``break``)
    also unregisters it.
    """

    def __init__(self, dispatcher: Dispatcher, names: Iterable[str], maxsize: int, timeout: float | None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        wanted = tuple(names)
        for n in wanted:
            if not isinstance(n, str) or not n:
                raise ValueError("event names must be non-empty strings")
        if ALL in wanted:
            wanted = ()
        self.names = wanted
        self.maxsize = maxsize
        self.timeout = timeout
        self._dispatcher = dispatcher
        self._sink = sink = _Sink(dispatcher, wanted, maxsize)
        if dispatcher.closed:
            sink.end(dispatcher.closed_exc)
        else:
            dispatcher._add_sink(sink)
            self._finalizer = weakref.finalize(self, dispatcher._remove_sink, sink)

    @property
    def dropped(self) -> int:
        """Events this iterator lost because its buffer was full ("drop" policy)."""
        return self._sink.dropped

    def close(self) -> None:
        """Stop collecting; the iteration ends after the buffered events."""
        sink = self._sink
        if not sink.closed:
            sink.end(None)
            self._dispatcher._remove_sink(sink)

    def __aiter__(self) -> EventStream:
        return self

    async def get(self, timeout: float | None | EllipsisType = ...) -> Any:
        """The next event; ``TimeoutError`` after ``timeout`` (default: the stream's ``timeout``)."""
        if timeout is ...:
            timeout = self.timeout
        sink = self._sink
        buf = sink.buf
        while not buf:
            if sink.closed:
                if sink.exc is not None:
                    raise sink.exc
                raise StopAsyncIteration
            sink.waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await sink.waiter
                else:
                    await asyncio.wait_for(sink.waiter, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no event within {timeout}s") from None
            finally:
                sink.waiter = None
        event = buf.popleft()
        d = self._dispatcher
        if d._pausers and len(buf) <= self.maxsize // 2 and sink in d._pausers:
            d._resume(sink)
        return event

    async def __anext__(self) -> Any:
        return await self.get()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._sink.buf)

    def __repr__(self) -> str:
        names = ",".join(self.names) or "*"
        return f"<EventStream {names} buffered={len(self._sink.buf)} dropped={self._sink.dropped}>"


class ESLProtocol(asyncio.Protocol):
    """One Event Socket connection: command FIFO, event routing, failure semantics.

    Used as is by :class:`esl.Inbound` (one per connection) and subclassed by
    the outbound ``Session``. Every method that waits on FreeSWITCH takes a
    ``timeout`` (seconds; the default is ``self.timeout``; ``None`` waits
    without limit) and raises :class:`esl.exceptions.TimeoutError` when it
    passes; a dropped connection raises :class:`esl.exceptions.ConnectionError`.
    Command text and header values holding CR or LF are refused with
    ``ValueError`` before anything is written.
    """

    #: With ``True`` (the default), ``bgapi`` makes sure BACKGROUND_JOB reaches this
    #: connection: it subscribes to it (in the current format) if not subscribed to
    #: it or ALL, and adds ``filter Event-Name BACKGROUND_JOB`` when the connection
    #: has filters (which would otherwise hide it). Outbound sessions may turn it off.
    job_subscribe: bool = True

    def __init__(
        self,
        *,
        timeout: float | None = 5.0,
        job_timeout: float | None = 600.0,
        dispatcher: Dispatcher | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.timeout = timeout
        self.job_timeout = job_timeout
        self._loop = loop
        self._parser = Parser(max_size)
        self._pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._router = Router(None)
        self._nroutes = 0
        self._jobs: dict[str, Job] = {}
        self._own_dispatcher = dispatcher is None
        self._dispatcher = dispatcher if dispatcher is not None else Dispatcher()
        self._deliver = self._dispatcher.deliver
        self._pausers = self._dispatcher._pausers
        self._backlog: collections.deque[Any] = collections.deque()
        self._backlog_cap = max(2 * self._dispatcher.max_queue, 10_000)
        self._draining = False
        self.transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._want_pause = False
        self._closed = False
        self.close_exc: ConnectionError | None = None
        self._close_reason: str | None = None
        self._close_callbacks: list[Callable[[BaseException], Any]] = []
        self._auth_request: asyncio.Future[Any] | None = None
        self._closed_future: asyncio.Future[None] | None = None
        self.lingering = False
        #: loop time of the last bytes read (for keepalive checks)
        self.last_received = 0.0
        self._by_client = False
        # connection state, kept to re-apply it after a reconnect
        self.event_format = "plain"
        self.subscriptions: set[str] = set()
        self.custom_subscriptions: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.log_level: str | None = None
        self.myevents_uuid: str | None = None
        self.myevents_enabled = False
        self.divert: bool | None = None
        self.linger_seconds: int | None | EllipsisType = ...  # ... = never set
        self._job_filter = False
        self._bgapi_used = False
        self._dispatcher.attach(self)

    # -- asyncio.Protocol -----------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self.last_received = self._loop.time()
        if self._want_pause and not self._reading_paused:
            self._update_reading(True)

    def data_received(self, data: bytes) -> None:
        self.last_received = self._loop.time()  # type: ignore[union-attr]
        try:
            messages = self._parser.feed(data)
        except ProtocolError as exc:
            log.error("Event Socket framing error, closing: %s", exc)
            self._close_reason = f"protocol error: {exc}"
            self._shutdown(ConnectionError(f"protocol error: {exc}", self._close_reason))
            if self.transport is not None:
                self.transport.abort()
            return
        if self._backlog:
            self._stash(iter(messages))
            return
        deliver = self._deliver
        pausers = self._pausers
        it = iter(messages)
        for msg in it:
            if msg.is_event:
                if pausers:  # "pause" policy engaged: keep the rest of this read for later
                    self._stash(it, msg)
                    return
                if self._nroutes:
                    try:
                        self._router.route(msg)
                    except Exception:
                        log.exception("event owner raised on %r", msg)
                deliver(msg)
            else:
                self._message(msg)
                if self._closed:
                    return

    def _stash(self, rest: Iterator[Any], first: Any = None) -> None:
        """Hold events back while a queue is full; replies are still handled at once."""
        backlog = self._backlog
        cap = self._backlog_cap
        d = self._dispatcher
        if first is not None:
            backlog.append(first)
        for msg in rest:
            ctype = msg.content_type
            if ctype == "command/reply" or ctype == "api/response" or ctype == "text/disconnect-notice":
                self._message(msg)
            elif len(backlog) >= cap and msg.is_event:
                d.dropped += 1
            else:
                backlog.append(msg)
        self._update_reading(True)

    def _drain_backlog(self) -> None:
        """Deliver held-back events until a queue fills again or none is left."""
        if self._draining:
            return
        self._draining = True
        try:
            backlog = self._backlog
            pausers = self._pausers
            deliver = self._deliver
            while backlog and not pausers and not self._closed:
                msg = backlog.popleft()
                if msg.is_event:
                    if self._nroutes:
                        try:
                            self._router.route(msg)
                        except Exception:
                            log.exception("event owner raised on %r", msg)
                    deliver(msg)
                else:
                    self._message(msg)
        finally:
            self._draining = False

    def eof_received(self) -> bool | None:
        if self._close_reason is None:
            self._close_reason = "FreeSWITCH closed the connection"
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self._close_reason
        if reason is None:
            reason = f"connection lost: {exc}" if exc is not None else "connection closed by FreeSWITCH"
        self.transport = None
        self._shutdown(ConnectionError(reason, reason))

    # -- non-event messages ----------------------------------------------------

    def _message(self, msg: Any) -> None:
        ctype = msg.content_type
        if ctype == "command/reply" or ctype == "api/response":
            pending = self._pending
            if pending:
                fut = pending.popleft()
                if not fut.done():
                    fut.set_result(msg)
                if not pending and (self._want_pause or self._backlog):
                    self._update_reading(self._want_pause)
            else:
                log.warning("reply with no command waiting for it: %r", msg)
        elif ctype == "auth/request":
            auth = self._auth_request
            if auth is None:
                auth = self._auth_request = self._get_loop().create_future()
            if not auth.done():
                auth.set_result(msg)
        elif ctype == "text/disconnect-notice":
            self._dispatcher.deliver_other(msg)
            if msg.get("Content-Disposition") == "linger":
                self.lingering = True
                self.on_linger(msg)
                return
            text = (msg.body or "").strip() or "disconnect notice"
            self._close_reason = f"FreeSWITCH disconnected: {text}"
            self._shutdown(ConnectionError(self._close_reason, text))
            if self.transport is not None:
                self.transport.close()
        elif ctype == "text/rude-rejection":
            text = (msg.body or "").strip() or "rejected"
            self._close_reason = f"FreeSWITCH rejected the connection: {text}"
            self._shutdown(ConnectionError(self._close_reason, text))
        else:
            if ctype != "log/data":
                log.debug("message of unknown type %r delivered to its handlers", ctype)
            self._dispatcher.deliver_other(msg)

    def on_linger(self, event: Any) -> None:
        """Called with the ``Content-Disposition: linger`` disconnect notice; the connection stays open.

        The controlled channel is gone but FreeSWITCH keeps sending its last
        events for the linger time. The default only logs; sessions override it.
        """
        log.debug("linger notice for %s", event.get("Controlled-Session-UUID"))

    # -- flow control ----------------------------------------------------------

    def _update_reading(self, want_pause: bool) -> None:
        if not want_pause and self._backlog and not self._closed:
            self._drain_backlog()
            want_pause = bool(self._pausers)
        self._want_pause = want_pause
        transport = self.transport
        if transport is None or self._closed:
            return
        pause = (want_pause or bool(self._backlog)) and not self._pending
        if pause and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    # -- closing ---------------------------------------------------------------

    def _shutdown(self, err: ConnectionError) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_exc = err
        reason = err.reason
        if self._backlog:
            self._dispatcher.dropped += sum(1 for m in self._backlog if m.is_event)
            self._backlog.clear()
        pending = self._pending
        self._pending = collections.deque()
        for fut in pending:
            if not fut.done():
                fut.set_exception(ConnectionError(str(err), reason))
        jobs = self._jobs
        self._jobs = {}
        for job in jobs.values():
            job._fail(ConnectionError(f"{err} (job {job.uuid} {job.command!r} lost)", reason))
        if self._auth_request is not None and not self._auth_request.done():
            self._auth_request.set_exception(ConnectionError(str(err), reason))
            self._auth_request.exception()
        self._dispatcher.detach(self)
        if self._own_dispatcher:
            self._dispatcher.close(None if self._by_client else err)
        callbacks = self._close_callbacks
        self._close_callbacks = []
        for cb in callbacks:
            try:
                cb(err)
            except Exception:
                log.exception("close callback %r raised", cb)
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(None)

    def close(self, reason: str = "closed by the client") -> None:
        """Close the socket now; everything pending fails with ConnectionError(reason)."""
        self._by_client = True
        if self._close_reason is None:
            self._close_reason = reason
        transport = self.transport
        self._shutdown(ConnectionError(reason, reason))
        if transport is not None:
            transport.close()

    def abort(self, reason: str = "aborted by the client", *, by_client: bool = True) -> None:
        """Drop the socket without flushing buffered writes.

        ``by_client=False`` marks it as a failure (e.g. a keepalive timeout):
        pending waits get ``ConnectionError(reason)`` and an Inbound reconnects if enabled.
        """
        self._by_client = by_client
        if self._close_reason is None:
            self._close_reason = reason
        transport = self.transport
        self._shutdown(ConnectionError(reason, reason))
        if transport is not None:
            transport.abort()

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the connection is closed (by either side)."""
        if self._closed:
            return
        if self._closed_future is None:
            self._closed_future = self._get_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed_future), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"connection still open after {timeout}s") from None

    def add_close_callback(self, cb: Callable[[BaseException], Any]) -> None:
        """Call ``cb(ConnectionError)`` once when the connection ends (soon, if it already has)."""
        if self._closed:
            assert self.close_exc is not None
            self._get_loop().call_soon(cb, self.close_exc)
        else:
            self._close_callbacks.append(cb)

    def remove_close_callback(self, cb: Callable[[BaseException], Any]) -> None:
        """Undo :meth:`add_close_callback` (no error if absent)."""
        try:
            self._close_callbacks.remove(cb)
        except ValueError:
            pass

    @property
    def closed(self) -> bool:
        """True once the connection has ended."""
        return self._closed

    @property
    def connected(self) -> bool:
        """True while the socket is open and not shutting down."""
        return self.transport is not None and not self._closed

    @property
    def close_reason(self) -> str | None:
        """Why the connection ended (the disconnect-notice text, the socket error...)."""
        return None if self.close_exc is None else self.close_exc.reason

    @property
    def dispatcher(self) -> Dispatcher:
        """The handlers, iterators and counters this connection delivers to."""
        return self._dispatcher

    @property
    def stats(self) -> FlowStats:
        """Event-delivery counters: received, dropped, queue depth, Event-Sequence gaps..."""
        return self._dispatcher.stats()

    @property
    def pending_commands(self) -> int:
        """Commands written whose reply has not arrived yet."""
        return len(self._pending)

    # -- commands --------------------------------------------------------------

    def _raise_closed(self) -> None:
        err = self.close_exc
        if err is not None:
            raise ConnectionError(str(err), err.reason)
        raise ConnectionError("not connected", "not connected")

    def write_command(self, data: bytes) -> asyncio.Future[Any]:
        """Write pre-built command bytes; return the future of its reply (FIFO order)."""
        transport = self.transport
        if transport is None or self._closed:
            self._raise_closed()
        fut = self._get_loop().create_future()
        self._pending.append(fut)
        assert transport is not None
        transport.write(data)
        if self._reading_paused:
            self._update_reading(self._want_pause)
        return fut

    async def _wait_reply(self, fut: asyncio.Future[Any], timeout: Any, what: str) -> Any:
        if timeout is ...:
            timeout = self.timeout
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            if fut.done() and not fut.cancelled():
                return fut.result()
            raise TimeoutError(f"no reply to {redact(what)!r} within {timeout}s") from None

    async def send(
        self,
        command: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: str | bytes | None = None,
        timeout: float | None | EllipsisType = ...,
    ) -> Any:
        """Send a raw command (with optional headers and body); return the reply Event.

        The reply is the ``command/reply`` (look at ``reply["Reply-Text"]``) or
        the ``api/response`` (``reply.body``); ``-ERR`` is *not* raised here.
        """
        fut = self.write_command(build_command(command, headers, body))
        return await self._wait_reply(fut, timeout, command)

    async def command(self, command: str, *, timeout: float | None | EllipsisType = ...) -> str:
        """Send a command that answers with ``command/reply``; its Reply-Text, ``CommandError`` on ``-ERR``."""
        reply = await self.send(command, timeout=timeout)
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, redact(command))
        return text

    async def api(self, command: str, *, check: bool = True, timeout: float | None | EllipsisType = ...) -> str:
        """Run ``api <command>``; the output text.

        With ``check`` (the default) an output starting with ``-ERR`` or
        ``-USAGE`` raises :class:`~esl.exceptions.CommandError` carrying it;
        ``check=False`` returns it. FreeSWITCH's ``-ERR no reply`` (the text it
        sends when a command printed nothing) comes back as ``""``.
        """
        check_line(command, "api command")
        reply = await self.send("api " + command, timeout=timeout)
        body = reply.body or ""
        if body.startswith("-ERR no reply"):
            return ""
        if check and body.startswith(_ERROR_PREFIXES):
            raise CommandError(body, command)
        return body

    async def bgapi(
        self,
        command: str,
        *,
        job_uuid: str | None = None,
        timeout: float | None | EllipsisType = ...,
        job_timeout: float | None | EllipsisType = ...,
    ) -> Job:
        """Run ``bgapi <command>`` in the background; the :class:`~esl.job.Job` of its result.

        The Job-UUID is chosen here (``job_uuid`` or a random UUID) and the Job
        registered before the command is written, so the BACKGROUND_JOB event
        cannot be missed. With ``job_subscribe`` (the default) the connection is
        subscribed to BACKGROUND_JOB first if needed, and when it has filters,
        ``filter Event-Name BACKGROUND_JOB`` is added (once) so the filters do
        not hide the result. ``timeout`` bounds the wait for the ``+OK Job-UUID``
        reply; ``await job`` waits at most ``job_timeout`` (default
        ``self.job_timeout``). ``CommandError`` if FreeSWITCH refuses the command.
        """
        check_line(command, "bgapi command")
        job_id = job_uuid or str(_uuid.uuid4())
        check_line(job_id, "job uuid")
        if job_id in self._jobs:
            raise ValueError(f"a job with uuid {job_id} is already pending")
        if self.job_subscribe:
            await self._ensure_job_delivery(timeout)
        if job_timeout is ...:
            job_timeout = self.job_timeout
        job = Job(job_id, command, timeout=job_timeout, loop=self._get_loop())
        self._jobs[job_id] = job

        def owner(event: Any) -> None:
            if event.name != "BACKGROUND_JOB":
                return
            self._jobs.pop(job_id, None)
            self.unroute(job_id)
            job._resolve(event)

        self.route(job_id, owner)
        try:
            fut = self.write_command(build_command("bgapi " + command, (("Job-UUID", job_id),)))
            reply = await self._wait_reply(fut, timeout, "bgapi " + command)
        except BaseException:
            self._jobs.pop(job_id, None)
            self.unroute(job_id)
            job.cancel()
            raise
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            self._jobs.pop(job_id, None)
            self.unroute(job_id)
            job.cancel()
            raise CommandError(text, "bgapi " + command)
        return job

    async def _ensure_job_delivery(self, timeout: Any) -> None:
        self._bgapi_used = True
        if not (self.subscriptions & {"ALL", "BACKGROUND_JOB"}):
            await self.command(f"event {self.event_format} BACKGROUND_JOB", timeout=timeout)
            self.subscriptions.add("BACKGROUND_JOB")
        if self.filters and not self._job_filter:
            await self.command("filter Event-Name BACKGROUND_JOB", timeout=timeout)
            self._job_filter = True

    @property
    def job_filter(self) -> bool:
        """True when this connection's filters already let its BACKGROUND_JOB events through.

        While it is False, ``bgapi`` on a connection with filters first adds
        ``filter Event-Name BACKGROUND_JOB``. Set it True when another filter
        already passes the connection's own job results (an outbound socket's
        ``filter Job-Owner-UUID <uuid>``), so other connections' jobs stay out.
        """
        return self._job_filter

    @job_filter.setter
    def job_filter(self, value: bool) -> None:
        self._job_filter = bool(value)

    @property
    def bgapi_used(self) -> bool:
        """True once ``bgapi`` has run on this connection (later filters then keep BACKGROUND_JOB visible).

        Settable so a replacement connection (an Inbound reconnecting) carries it over.
        """
        return self._bgapi_used

    @bgapi_used.setter
    def bgapi_used(self, value: bool) -> None:
        self._bgapi_used = bool(value)

    @property
    def jobs(self) -> dict[str, Job]:
        """Background jobs waiting for their result, by Job-UUID."""
        return dict(self._jobs)

    async def sendmsg_raw(
        self,
        uuid: str | None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: str | bytes | None = None,
        *,
        timeout: float | None | EllipsisType = ...,
    ) -> Any:
        """Write ``sendmsg [<uuid>]`` with these headers (and body); the reply Event; ``CommandError`` on -ERR."""
        fut = self.write_command(build_sendmsg(uuid, headers, body))
        reply = await self._wait_reply(fut, timeout, "sendmsg")
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, f"sendmsg {uuid or ''}".strip())
        return reply

    # -- subscriptions and filters ------------------------------------------------

    @staticmethod
    def _split_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
        plain: list[str] = []
        custom: list[str] = []
        for name in names:
            check_line(name, "event name")
            words = name.split()
            if not words:
                raise ValueError("empty event name")
            if words[0].upper() == "CUSTOM":
                if len(words) == 1:
                    plain.append("CUSTOM")
                custom.extend(words[1:])
            elif "::" in words[0] or len(words) > 1:
                custom.extend(words)  # subclass names such as sofia::register
            else:
                plain.append(words[0])
        return plain, custom

    async def subscribe(
        self, *names: str, format: str = "plain", timeout: float | None | EllipsisType = ...
    ) -> str:
        """``event <format> <names...>``: receive these events (all of them when no name is given).

        A name may be ``"CUSTOM sofia::register"`` or just a subclass
        (``"sofia::register"``, anything with ``::``). Subscriptions add up.
        Returns FreeSWITCH's reply text; ``CommandError`` on ``-ERR``.
        """
        if format not in ("plain", "json", "xml"):
            raise ValueError(f"format must be plain, json or xml, not {format!r}")
        plain, custom = self._split_names(names)
        if not plain and not custom:
            plain = ["ALL"]
        parts = ["event", format, *plain]
        if custom:
            parts += ["CUSTOM", *custom]
        text = await self.command(" ".join(parts), timeout=timeout)
        self.event_format = format
        self.subscriptions.update(n.upper() for n in plain)
        self.custom_subscriptions.update(custom)
        return text

    async def unsubscribe(self, *names: str, timeout: float | None | EllipsisType = ...) -> str:
        """``nixevent <names...>``; with no name, ``noevents`` (stop all events)."""
        if not names:
            text = await self.command("noevents", timeout=timeout)
            self.subscriptions.clear()
            self.custom_subscriptions.clear()
            return text
        plain, custom = self._split_names(names)
        parts = ["nixevent", *plain]
        if custom:
            parts += ["CUSTOM", *custom]
        text = await self.command(" ".join(parts), timeout=timeout)
        self.subscriptions.difference_update(n.upper() for n in plain)
        self.custom_subscriptions.difference_update(custom)
        return text

    async def filter(self, header: str, value: str, *, timeout: float | None | EllipsisType = ...) -> str:
        """``filter <header> <value>``: only events matching a filter are sent (FreeSWITCH's semantics).

        Once bgapi has been used on this connection (and ``job_subscribe`` is
        on), ``filter Event-Name BACKGROUND_JOB`` is added first so that job
        results keep arriving.
        """
        check_line(header, "filter header")
        check_line(value, "filter value")
        if not header or " " in header:
            raise ValueError(f"invalid filter header {header!r}")
        if (
            self.job_subscribe
            and self._bgapi_used
            and not self._job_filter
            and (header, value) != ("Event-Name", "BACKGROUND_JOB")
        ):
            await self.command("filter Event-Name BACKGROUND_JOB", timeout=timeout)
            self._job_filter = True
        text = await self.command(f"filter {header} {value}", timeout=timeout)
        self.filters.append((header, value))
        if (header, value) == ("Event-Name", "BACKGROUND_JOB"):
            self._job_filter = True
        return text

    async def filter_delete(
        self, header: str, value: str | None = None, *, timeout: float | None | EllipsisType = ...
    ) -> str:
        """``filter delete <header> [<value>]`` (``header="all"`` deletes every filter)."""
        check_line(header, "filter header")
        command = f"filter delete {header}"
        if value is not None:
            check_line(value, "filter value")
            command += f" {value}"
        text = await self.command(command, timeout=timeout)
        if header.lower() == "all":
            self.filters.clear()
            self._job_filter = False
        else:
            self.filters = [
                (h, v) for h, v in self.filters if not (h == header and (value is None or v == value))
            ]
            if header == "Event-Name" and value in (None, "BACKGROUND_JOB"):
                self._job_filter = False
        return text

    async def sendevent(
        self,
        name: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: str | bytes | None = None,
        *,
        timeout: float | None | EllipsisType = ...,
    ) -> str:
        """``sendevent <name>`` with these headers (and body): fire an event; the reply text (``+OK <uuid>``)."""
        check_line(name, "event name")
        if not name or " " in name:
            raise ValueError(f"invalid event name {name!r}")
        reply = await self.send(f"sendevent {name}", headers=headers, body=body, timeout=timeout)
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, f"sendevent {name}")
        return text

    async def log(self, level: str | int = "debug", *, timeout: float | None | EllipsisType = ...) -> str:
        """``log <level>``: receive log lines as ``log/data`` messages (handlers under ``"log/data"``)."""
        text_level = str(level)
        check_line(text_level, "log level")
        text = await self.command(f"log {text_level}", timeout=timeout)
        self.log_level = text_level
        return text

    async def nolog(self, *, timeout: float | None | EllipsisType = ...) -> str:
        """``nolog``: stop log lines."""
        text = await self.command("nolog", timeout=timeout)
        self.log_level = None
        return text

    async def myevents(
        self, uuid: str | None = None, format: str = "plain", *, timeout: float | None | EllipsisType = ...
    ) -> str:
        """``myevents [<uuid>] <format>``: the events of one channel (inbound: binds the connection to it)."""
        if format not in ("plain", "json", "xml"):
            raise ValueError(f"format must be plain, json or xml, not {format!r}")
        command = "myevents"
        if uuid is not None:
            check_line(uuid, "uuid")
            if not uuid or " " in uuid:
                raise ValueError(f"invalid uuid {uuid!r}")
            command += f" {uuid}"
        text = await self.command(f"{command} {format}", timeout=timeout)
        self.myevents_enabled = True
        self.myevents_uuid = uuid
        self.event_format = format
        return text

    async def divert_events(self, on: bool = True, *, timeout: float | None | EllipsisType = ...) -> str:
        """``divert_events on|off``: input-callback events (DTMF...) only to this socket."""
        text = await self.command(f"divert_events {'on' if on else 'off'}", timeout=timeout)
        self.divert = bool(on)
        return text

    async def linger(self, seconds: int | None = None, *, timeout: float | None | EllipsisType = ...) -> str:
        """``linger <seconds>``: keep the socket open that long after the channel hangs up.

        ``None`` sends a bare ``linger``, which in FreeSWITCH means *forever*: you must then ``exit``.
        """
        if seconds is None:
            command = "linger"
        else:
            if int(seconds) != seconds or seconds < 0:
                raise ValueError("linger seconds must be a non-negative integer")
            command = f"linger {int(seconds)}"
        text = await self.command(command, timeout=timeout)
        self.linger_seconds = seconds
        return text

    async def nolinger(self, *, timeout: float | None | EllipsisType = ...) -> str:
        """``nolinger``."""
        text = await self.command("nolinger", timeout=timeout)
        self.linger_seconds = ...
        return text

    async def exit(self, *, timeout: float | None | EllipsisType = ...) -> str:
        """``exit``: ask FreeSWITCH to close the connection (it answers ``+OK bye`` then disconnects)."""
        self._close_reason = "closed by the client (exit)"
        self._by_client = True
        try:
            reply = await self.send("exit", timeout=timeout)
        except ConnectionError:
            return "+OK bye"
        return reply.get("Reply-Text", "")

    # -- handlers, iterators, routes ---------------------------------------------

    def on(self, name: str, handler: Handler | None = None) -> Any:
        """Call ``handler(event)`` for each event named ``name``; usable as ``@conn.on(name)``.

        ``"*"`` matches every event; a CUSTOM subclass name (``"sofia::register"``)
        matches CUSTOM events of that subclass; a Content-Type (``"log/data"``,
        ``"text/disconnect-notice"``) matches those messages. Sync handlers run
        in the reader and must be quick; async handlers run in the dispatcher's
        worker(s). A raising handler is logged and does not stop the others.
        """
        if handler is None:

            def decorator(fn: Handler) -> Handler:
                self._dispatcher.add_handler(name, fn)
                return fn

            return decorator
        self._dispatcher.add_handler(name, handler)
        return handler

    def remove(self, name: str, handler: Handler) -> None:
        """Unregister a handler added with :meth:`on`."""
        self._dispatcher.remove_handler(name, handler)

    def events(self, *names: str, maxsize: int = 1000, timeout: float | None = None) -> EventStream:
        """An async iterator over events of these names (all with none or ``"*"``), buffering ``maxsize``.

        ``timeout`` bounds the wait for each event (``None``: no limit).
        """
        return EventStream(self._dispatcher, names, maxsize, timeout)

    def route(self, uuid: str, owner: Callable[[Any], Any]) -> None:
        """Send events whose ``Unique-ID`` (or BACKGROUND_JOB ``Job-UUID``) is ``uuid`` to ``owner(event)``.

        Owners are called synchronously by the reader, before the handlers; they must be quick.
        """
        self._router.add(uuid, owner)
        self._nroutes = len(self._router)

    def unroute(self, uuid: str) -> None:
        """Stop routing ``uuid``."""
        self._router.discard(uuid)
        self._nroutes = len(self._router)

    @property
    def router(self) -> Any:
        """The core :class:`~esl.core.Router` (owners by UUID)."""
        return self._router

    # -- inbound handshake -----------------------------------------------------

    async def wait_auth_request(self, timeout: float | None | EllipsisType = ...) -> Any:
        """Wait for FreeSWITCH's ``auth/request`` greeting (inbound connections)."""
        if self._auth_request is None:
            self._auth_request = self._get_loop().create_future()
        if self._closed and not self._auth_request.done():
            self._raise_closed()
        if timeout is ...:
            timeout = self.timeout
        try:
            return await asyncio.wait_for(asyncio.shield(self._auth_request), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no auth/request from FreeSWITCH within {timeout}s") from None

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self.transport is not None else "new")
        return f"<{type(self).__name__} {state} pending={len(self._pending)} jobs={len(self._jobs)}>"
