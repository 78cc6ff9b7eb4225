"""A Channel's handlers: ``on`` (events and lifecycle hooks) and ``onDTMF``, run on the connection's executor."""

from __future__ import annotations

import inspect

from typing import TYPE_CHECKING, Any, Callable, TypeVar, overload

from esl.commands import check_line

if TYPE_CHECKING:  # pragma: no cover
    from esl.channel.host import ChannelHost
    from esl.core import Event
    from esl.exceptions import OriginateError

__all__ = ["Hooks", "LIFECYCLE"]

#: Lifecycle hook names accepted by :meth:`Channel.on` (Voximplant-style call events).
LIFECYCLE = frozenset({"answered", "hangup", "failed", "bridged", "unbridged", "destroyed"})

H = TypeVar("H", bound=Callable[..., Any])


class Hooks:
    """The handler tables of a channel; mixed into :class:`esl.channel.state.ChannelCore`."""

    __slots__ = ("_dtmf", "_handlers")

    _dtmf: dict[str | None, list[Callable[..., Any]]] | None
    _handlers: dict[str, list[Callable[..., Any]]] | None
    connection: "ChannelHost"
    uuid: str
    failure: "OriginateError | None"

    def _call(self, handler: Callable[..., Any], *args: Any) -> None:
        """Run a user handler in order with this channel's others: a sync one at once when none of
        them waits or runs (so it has run before anything read after its event reaches the app's
        coroutine), else, and async ones always, on the connection's executor."""
        executor = self.connection.executor
        if inspect.iscoroutinefunction(handler):
            executor.submit(self.uuid, handler, *args)
        else:
            executor.run_now(self.uuid, handler, *args)

    def _lifecycle(self, name: str, info: Any) -> None:
        handlers = self._handlers
        if handlers is not None:
            for h in handlers.get(name, ()):
                self._call(h, self, info)

    @overload
    def on(self, name: str) -> Callable[[H], H]: ...

    @overload
    def on(self, name: str, handler: H) -> H: ...

    def on(self, name: str, handler: H | None = None) -> Any:
        """Run ``handler`` for this channel's events named ``name`` (decorator or direct call).

        ``name`` is an event name (``"CHANNEL_ANSWER"``, ``"PLAYBACK_STOP"``,
        ``"*"`` for all) or a CUSTOM subclass (``"avmd::beep"``): the handler gets the Event. Or a lifecycle hook from
        :data:`LIFECYCLE`, called as ``handler(channel, info)``: ``"answered"``
        (info: the CHANNEL_ANSWER event), ``"failed"`` (info: the cause,
        a :class:`~esl.types.HangupCause` or string), ``"hangup"`` (the cause),
        ``"bridged"``/``"unbridged"`` (the other leg's UUID), ``"destroyed"``.
        A ``"failed"`` hook registered on an already failed channel runs at
        once. Handlers run in order for this channel and an error is logged. A
        sync handler runs as its event is read, when none of the channel's
        handlers waits or runs (so a flag it sets is seen by the app's code
        that resumes after that event); async handlers, and sync ones behind
        them, run on the connection's executor, under its flow control: with
        ``policy="drop"`` a full queue drops (and counts) them. The channel's
        own state never depends on them.
        """
        check_line(name, "event name")

        def register(fn: H) -> H:
            handlers = self._handlers
            if handlers is None:
                handlers = self._handlers = {}
            handlers.setdefault(name, []).append(fn)
            if name == "failed" and self.failure is not None:
                self._call(fn, self, self.failure.cause)
            return fn

        if handler is None:
            return register
        return register(handler)

    def remove(self, name: str, handler: Callable[..., Any]) -> None:
        """Unregister a handler added with :meth:`on`."""
        if self._handlers and handler in self._handlers.get(name, ()):
            self._handlers[name].remove(handler)

    def onDTMF(self, digit: str | None = None) -> Callable[[H], H]:  # noqa: N802 - genesis name
        """Decorator: run the handler with the digit (a ``str``) when this channel receives DTMF.

        ``@channel.onDTMF("1")`` handles one digit; ``@channel.onDTMF()`` is the
        wildcard, which sees only digits that have no specific handler.
        """
        if digit is not None:
            check_line(digit, "DTMF digit")

        def register(fn: H) -> H:
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
        digit = event.dtmf_digit
        if not digit:
            return
        for h in table.get(digit) or table.get(None) or ():
            self._call(h, digit)
