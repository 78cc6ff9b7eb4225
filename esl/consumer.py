"""``Consumer`` and ``filtrate``: declare event handlers, then run them against FreeSWITCH.

>>> import esl
>>> app = esl.Consumer("127.0.0.1", 8021, "ClueCon")
>>> @app.handle("CHANNEL_ANSWER")
... @esl.filtrate("Caller-Destination-Number", "1000")
... async def answered(event):
...     print("answered", event.uuid)
>>> @app.handle("sofia::register")       # a CUSTOM subclass
... def registered(event):
...     print(event["from-user"])
>>> # await app.start()   # subscribes to CHANNEL_ANSWER and CUSTOM sofia::register only

The Consumer subscribes only to the events it has handlers for (server-side
filtering: FreeSWITCH does not even serialize the others); a ``"*"`` handler
subscribes to ``ALL``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from typing import Any, Callable

from esl.exceptions import TimeoutError
from esl.inbound import Inbound
from esl.dispatch import Handler

__all__ = ["Consumer", "filtrate"]


def filtrate(key: str, value: str | None = None, regex: bool = False) -> Callable[[Handler], Handler]:
    """Decorate a handler so it only runs for events that have header ``key``.

    With ``value`` the header must also equal it (or match it from the start
    when ``regex=True``, as :func:`re.match`). Sync handlers stay sync and
    async ones async. Stack several to require them all.
    """
    pattern = re.compile(value) if (regex and value is not None) else None

    def matches(event: Any) -> bool:
        try:
            content = event[key]
        except (KeyError, TypeError):
            return False
        if value is None:
            return True
        if isinstance(content, list):
            content = content[0] if content else ""
        if pattern is not None:
            return pattern.match(str(content)) is not None
        return content == value

    def decorator(function: Handler) -> Handler:
        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(event: Any) -> Any:
                if matches(event):
                    return await function(event)
                return None

            return async_wrapper

        @functools.wraps(function)
        def wrapper(event: Any) -> Any:
            if matches(event):
                return function(event)
            return None

        return wrapper

    return decorator


class Consumer:
    """An event consumer: ``@app.handle(name)`` handlers, ``await app.start()`` to run them.

    ``start()`` connects, subscribes to exactly the handled events (plain
    names, CUSTOM subclasses such as ``"sofia::register"``; ``"*"`` means
    ``ALL``) and then waits until the connection ends or ``stop()`` is called.
    Extra keyword arguments go to :class:`esl.Inbound` (``reconnect=True``,
    ``policy=``...); ``app.client`` is that Inbound (also ``app.protocol``, the
    genesis name).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8021,
        password: str = "ClueCon",
        timeout: float | None = 5.0,
        *,
        format: str = "plain",
        **inbound_options: Any,
    ) -> None:
        self.host = host
        self.port = port
        self.format = format
        self.client = Inbound(host, port, password, timeout=timeout, **inbound_options)
        self._stopped: asyncio.Event | None = None
        self._ready: asyncio.Event = asyncio.Event()

    @property
    def protocol(self) -> Inbound:
        """The underlying :class:`esl.Inbound` (genesis calls it ``protocol``)."""
        return self.client

    def handle(self, event: str) -> Callable[[Handler], Handler]:
        """Decorator registering a handler (sync or async) for ``event``."""

        def decorator(function: Handler) -> Handler:
            self.client.on(event, function)
            return function

        return decorator

    def subscriptions(self) -> list[str]:
        """The subscription the handlers need: event names, CUSTOM subclasses, or ``["ALL"]``."""
        names = self.client.dispatcher.handler_names()
        if "*" in names:
            return ["ALL"]
        plain = [n for n in names if "::" not in n and "/" not in n]
        custom = [n for n in names if "::" in n]
        if custom and "CUSTOM" in plain:
            plain.remove("CUSTOM")
            return [*plain, "CUSTOM"]  # all CUSTOM events already cover the subclasses
        return [*plain, *(f"CUSTOM {c}" for c in custom)]

    async def start(self) -> None:
        """Connect, subscribe to the handled events, and run until ``stop()`` or disconnection.

        A lost connection (without ``reconnect=True``) ends ``start()`` with
        :class:`~esl.exceptions.ConnectionError`.
        """
        self._stopped = asyncio.Event()
        lost: list[BaseException] = []

        def on_close(exc: BaseException) -> None:
            lost.append(exc)
            if self._stopped is not None:
                self._stopped.set()

        await self.client.connect()
        self.client.add_close_callback(on_close)
        try:
            names = self.subscriptions()
            if names:
                await self.client.subscribe(*names, format=self.format)
            self._ready.set()
            await self._stopped.wait()
        finally:
            self._ready.clear()
            self.client.remove_close_callback(on_close)
            await self.client.close()
        if lost:
            raise lost[0]

    async def stop(self) -> None:
        """Make ``start()`` return (closing the connection)."""
        if self._stopped is not None:
            self._stopped.set()
        else:
            await self.client.close()

    async def wait_ready(self, timeout: float | None = 5.0) -> None:
        """Wait until ``start()`` (running in another task) is connected and subscribed."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"consumer not ready within {timeout}s") from None

    async def wait(self) -> None:
        """Wait until the consumer stops (``stop()`` or disconnection)."""
        while self._stopped is None:
            await asyncio.sleep(0.01)
        await self._stopped.wait()
