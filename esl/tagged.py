"""``NodeEvent``: an event together with the FreeSWITCH node it came from; ``ClusterEvents``: a stream of them.

A :class:`esl.Cluster` hands its handlers NodeEvents, and an event bus
consumer yields :class:`esl.bus.BusEvent` (a NodeEvent that also knows its
stream entry). Either reads like the event itself (``ev["Unique-ID"]``,
``ev.name``, ``ev.uuid``, ``ev.body``...); ``ev.event`` is the event, ``ev.node``
the node name the user gave.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from esl.core import Event
from esl.exceptions import TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from esl.cluster import Cluster

__all__ = ["ClusterEvents", "NodeEvent"]


class NodeEvent(Mapping[str, str]):
    """An :class:`esl.Event` tagged with the name of the node that fired it."""

    __slots__ = ("event", "node")

    def __init__(self, event: Event, node: str) -> None:
        self.event = event
        self.node = node

    def __getitem__(self, name: str) -> str:
        return self.event[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.event)

    def __len__(self) -> int:
        return len(self.event)

    def __contains__(self, name: object) -> bool:
        return name in self.event

    def __getattr__(self, name: str) -> Any:
        # name, uuid, sequence, body, raw, getall... come from the event
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.event, name)

    @property
    def hostname(self) -> str | None:
        """FreeSWITCH-Hostname of the node that fired the event."""
        return self.event.get("FreeSWITCH-Hostname")

    @property
    def core_uuid(self) -> str | None:
        """Core-UUID of the node that fired the event (changes when FreeSWITCH restarts)."""
        return self.event.get("Core-UUID")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node} {self.event.name} uuid={self.event.uuid}>"


class ClusterEvents:
    """The merged event stream of :meth:`Cluster.events`."""

    def __init__(self, cluster: Cluster, names: tuple[str, ...], maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        #: events lost because the buffer was full
        self.dropped = 0
        self._cluster: Cluster | None = cluster
        self._names = names
        self._buf: collections.deque[NodeEvent] = collections.deque()
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        for name in names:
            cluster.on(name, self._put)

    def _put(self, event: NodeEvent) -> None:
        if len(self._buf) >= self.maxsize:
            self.dropped += 1
            return
        self._buf.append(event)
        self._wake_one()

    def _wake_one(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
                return

    def close(self) -> None:
        """Stop collecting; the iteration ends after the buffered events."""
        cluster, self._cluster = self._cluster, None
        if cluster is not None:
            for name in self._names:
                cluster.remove(name, self._put)
            cluster._streams.discard(self)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def get(self, timeout: float | None = None) -> NodeEvent:
        """The next event; StopAsyncIteration once closed and empty, TimeoutError after ``timeout``.

        Several tasks may wait on one stream: each event goes to one of them.
        """
        while not self._buf:
            if self._cluster is None:
                raise StopAsyncIteration
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no event within {timeout}s") from None
            finally:
                self._waiters.remove(waiter)
        event = self._buf.popleft()
        if self._buf:
            self._wake_one()  # more for the next waiter
        return event

    def __aiter__(self) -> ClusterEvents:
        return self

    async def __anext__(self) -> NodeEvent:
        return await self.get()

    async def __aenter__(self) -> ClusterEvents:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._buf)
