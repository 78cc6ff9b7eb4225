"""Event delivery to user handlers and ``events()`` iterators, with bounded flow control.

The :class:`Dispatcher` of a connection sees every event after its owners
(Channels, Jobs: :mod:`esl.owners`) have, so flow control here only ever costs
user deliveries, never an owner's event.

* A **sync handler** runs inline in the reader and must be quick: a slow one
  slows the reading itself (TCP backpressure). If it returns an awaitable,
  that is queued on the executor.
* An **async handler** is queued on the connection's
  :class:`~esl.executor.Executor` (bounded; ordered per channel UUID with
  ``handler_concurrency > 1``, in stream order with the default of 1).
* An **events() iterator** buffers up to ``maxsize`` events.

When a queue or buffer is full, the policy decides:

``"pause"`` (default)
    reading from the socket stops (``transport.pause_reading``) until it
    drains to half. Nothing is lost on this side, but FreeSWITCH keeps
    queueing: its per-listener queue holds 100,000 events, and after 500
    consecutive losses it kills the connection (ESL-PROTOCOL.md §1.12). While
    a command waits for its reply, reading resumes so the reply can arrive (no
    deadlock when a handler awaits a command); events read meanwhile may fill a
    queue up to twice its bound, beyond which they are dropped and counted.
``"drop"``
    an event that finds its queue full is dropped and counted.

Counts are in the connection's ``stats()`` (``events_dropped``, ``paused``,
``pauses``, ``queue_depth``, ``handler_errors``).
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import weakref
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, TypeVar, Union

from esl.exceptions import TimeoutError
from esl.executor import Executor

if TYPE_CHECKING:  # pragma: no cover
    from esl.core import Event

__all__ = ["ALL", "Dispatcher", "EventStream", "Handler"]

log = logging.getLogger("esl.dispatch")

#: An event handler: ``handler(event)``, sync or async.
Handler = Callable[["Event"], Union[Awaitable[None], None, Any]]
H = TypeVar("H", bound=Callable[..., Any])

#: Name under which handlers get every event.
ALL = "*"


def _is_async(handler: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - a callable object with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


class Dispatcher:
    """Handlers, ``events()`` iterators and flow control of one logical connection.

    It outlives the socket: an :class:`esl.Inbound` keeps one Dispatcher across
    reconnects, so handlers and iterators carry on. ``set_paused`` is called
    with True when reading should pause and False when it may resume.
    """

    def __init__(self, executor: Executor, set_paused: Callable[[bool], None] | None = None) -> None:
        self.executor = executor
        self.policy = executor.policy
        self.max_queue = executor.max_queue
        self._set_paused = set_paused
        self._keyed = executor.concurrency > 1
        # name -> handlers; "*" kept apart so the hot path does one dict lookup at most
        self._handlers: dict[str, list[Handler]] = {}
        self._sync_star: tuple[Handler, ...] = ()
        self._async_star: tuple[Handler, ...] = ()
        self._sync_named: dict[str, tuple[Handler, ...]] = {}
        self._async_named: dict[str, tuple[Handler, ...]] = {}
        self._sinks: list[_Sink] = []
        self._stream_star: tuple[_Sink, ...] = ()
        self._stream_named: dict[str, tuple[_Sink, ...]] = {}
        self._pausers: set[object] = set()
        self.closed = False
        self.closed_exc: BaseException | None = None
        #: deliveries to events() buffers dropped because they were full
        self.stream_dropped = 0
        #: sync handler calls that raised
        self.sync_errors = 0
        self._more = False  # anything beyond sync '*' handlers to deliver to

    # -- registration -----------------------------------------------------------------

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
        self._sync_star = self._async_star = ()
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
        self.resume(sink)

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

    def _update_more(self) -> None:
        self._more = bool(
            self._async_star or self._sync_named or self._async_named or self._stream_named or self._stream_star
        )

    # -- delivery (hot path) --------------------------------------------------------------

    def deliver(self, event: "Event") -> None:
        """Hand one event to every matching handler and iterator (called by the reader)."""
        for h in self._sync_star:  # inlined _call: the hot path of a "*" handler
            try:
                result = h(event)
            except Exception:
                self._failed(h, event)
                continue
            if result is not None and inspect.isawaitable(result):
                self.executor.submit(event.uuid if self._keyed else None, None, result)
        if self._more:
            self._deliver_more(event)

    def _deliver_more(self, event: "Event") -> None:
        key = event.uuid if self._keyed else None
        submit = self.executor.submit
        for h in self._async_star:
            submit(key, h, event)
        if self._sync_named or self._async_named or self._stream_named:
            name = event.name
            self._deliver_named(name, event, key)
            if name == "CUSTOM":
                sub = event.subclass
                if sub is not None:
                    self._deliver_named(sub, event, key)
        for sink in self._stream_star:
            sink.put(event)

    def deliver_other(self, message: "Event") -> None:
        """Hand a non-event message (``log/data``, a disconnect notice...) to handlers of its Content-Type."""
        self._deliver_named(message.content_type, message, None)

    def _deliver_named(self, name: str | None, event: "Event", key: object) -> None:
        if name is None:
            return
        hs = self._sync_named.get(name)
        if hs is not None:
            for h in hs:
                self._call(h, event)
        ha = self._async_named.get(name)
        if ha is not None:
            submit = self.executor.submit
            for h in ha:
                submit(key, h, event)
        ss = self._stream_named.get(name)
        if ss is not None:
            for sink in ss:
                sink.put(event)

    def _failed(self, handler: Handler, event: "Event") -> None:
        self.sync_errors += 1
        log.exception("event handler %r raised on %r", handler, event)

    def _call(self, handler: Handler, event: "Event") -> None:
        try:
            result = handler(event)
        except Exception:
            self._failed(handler, event)
            return
        if result is not None and inspect.isawaitable(result):
            self.executor.submit(event.uuid if self._keyed else None, None, result)

    # -- flow control ------------------------------------------------------------------------

    def pause(self, who: object) -> None:
        """``who`` (a full queue or buffer) asks reading to pause."""
        if who not in self._pausers:
            self._pausers.add(who)
            if len(self._pausers) == 1 and self._set_paused is not None:
                self._set_paused(True)

    def resume(self, who: object) -> None:
        """``who`` no longer needs reading paused."""
        if who in self._pausers:
            self._pausers.discard(who)
            if not self._pausers and self._set_paused is not None:
                self._set_paused(False)

    def executor_pressure(self, on: bool) -> None:
        """The executor's queue filled up (``on``) or drained to half."""
        if on:
            self.pause(self.executor)
        else:
            self.resume(self.executor)

    @property
    def wants_pause(self) -> bool:
        """True while a queue or buffer asks reading to pause."""
        return bool(self._pausers)

    @property
    def queue_depth(self) -> int:
        """Events waiting for async handlers and in ``events()`` buffers."""
        depth = self.executor.depth
        for sink in self._sinks:
            depth += len(sink.buf)
        return depth

    # -- lifecycle ------------------------------------------------------------------------------

    def close(self, exc: BaseException | None) -> None:
        """The connection is over for good: end the iterators (raising ``exc`` in them, if any)."""
        self.closed = True
        self.closed_exc = exc
        for sink in self._sinks:
            sink.end(exc)
        self._sinks = []
        self._reindex_streams()
        if self._pausers:
            self._pausers.clear()
            if self._set_paused is not None:
                self._set_paused(False)

    def reopen(self) -> None:
        """Deliver again after :meth:`close` (a client connecting anew)."""
        self.closed = False
        self.closed_exc = None

    def on(self, name: str) -> Callable[[H], H]:
        """A decorator registering the decorated function for ``name``; returns it unchanged."""

        def decorator(fn: H) -> H:
            self.add_handler(name, fn)
            return fn

        return decorator


class _Sink:
    """The buffer behind one ``events()`` iterator, as the dispatcher sees it.

    Kept apart from :class:`EventStream` so that the dispatcher holds no
    reference to the iterator itself: dropping the iterator unregisters it.
    """

    __slots__ = ("names", "maxsize", "buf", "dropped", "waiters", "closed", "exc", "dispatcher", "__weakref__")

    def __init__(self, dispatcher: Dispatcher, names: tuple[str, ...], maxsize: int) -> None:
        self.dispatcher = dispatcher
        self.names = names
        self.maxsize = maxsize
        self.buf: collections.deque[Event] = collections.deque()
        self.dropped = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.closed = False
        self.exc: BaseException | None = None

    def put(self, event: "Event") -> None:
        buf = self.buf
        n = len(buf)
        d = self.dispatcher
        if n >= self.maxsize and (d.policy == "drop" or n >= 2 * self.maxsize):
            self.dropped += 1
            d.stream_dropped += 1
            return
        buf.append(event)
        if n + 1 >= self.maxsize and d.policy == "pause":
            d.pause(self)
        waiters = self.waiters
        while waiters:
            w = waiters.popleft()
            if not w.done():
                w.set_result(None)
                break

    def end(self, exc: BaseException | None) -> None:
        self.closed = True
        self.exc = exc
        waiters, self.waiters = self.waiters, collections.deque()
        for w in waiters:
            if not w.done():
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
    also unregisters it. Several tasks may wait on one stream: each event goes
    to one of them.
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
        """Events this iterator lost because its buffer was full."""
        return self._sink.dropped

    def close(self) -> None:
        """Stop collecting; the iteration ends after the buffered events."""
        sink = self._sink
        if not sink.closed:
            sink.end(None)
            self._dispatcher._remove_sink(sink)

    def __aiter__(self) -> EventStream:
        return self

    async def get(self, timeout: float | None | EllipsisType = ...) -> "Event":
        """The next event; ``TimeoutError`` after ``timeout`` (default: the stream's ``timeout``)."""
        if timeout is ...:
            timeout = self.timeout
        sink = self._sink
        buf = sink.buf
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not buf:
            if sink.closed:
                if sink.exc is not None:
                    raise sink.exc
                raise StopAsyncIteration
            waiter = loop.create_future()
            sink.waiters.append(waiter)
            try:
                if deadline is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise TimeoutError(f"no event within {timeout}s") from None
            finally:
                if not waiter.done():
                    waiter.cancel()
                try:
                    sink.waiters.remove(waiter)
                except ValueError:
                    pass
        event = buf.popleft()
        if len(buf) <= self.maxsize // 2:
            self._dispatcher.resume(sink)
        if buf and sink.waiters:  # more for the next waiter
            w = sink.waiters[0]
            if not w.done():
                w.set_result(None)
        return event

    async def __anext__(self) -> "Event":
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

