"""Event delivery to handlers and ``events()`` iterators, with bounded flow control.

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
import weakref
from dataclasses import dataclass
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Callable, Iterable

from esl.exceptions import TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from esl.protocol import ESLProtocol

__all__ = ["ALL", "Dispatcher", "EventStream", "FlowStats", "Handler"]

log = logging.getLogger("esl.dispatch")

Handler = Callable[[Any], Any]

#: Name under which handlers get every event.
ALL = "*"
_POLICIES = ("pause", "drop")


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

    def on(self, name: str, handler: Handler | None = None) -> Any:
        """``add_handler`` that also works as a decorator (``@x.on(name)``); returns the handler."""
        if handler is None:

            def decorator(fn: Handler) -> Handler:
                self.add_handler(name, fn)
                return fn

            return decorator
        self.add_handler(name, handler)
        return handler

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
