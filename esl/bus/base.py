"""The backend-neutral face of the event bus: what a Redis, Kafka or NATS backend provides.

A bus moves FreeSWITCH events between processes. One side is a
:class:`Publisher`: it takes every event of an :class:`esl.Inbound` (or an
:class:`esl.Cluster`) without ever blocking the reader, keeps at most
``max_buffer`` of them while the broker is slow or down (the rest are
counted in ``stats().dropped``, never queued without bound), and writes them
in batches. The other side is a :class:`Subscription`: ``async for event in
bus.events(group=..., consumer=...)`` hands out events re-parsed with the same
core that read them from FreeSWITCH, each tagged with its node, and
acknowledges an event only after the loop body that received it has finished
(at-least-once: a consumer that dies mid-event leaves it pending, and another
consumer of the group takes it over; duplicates are possible, loss is not).

A message on the bus carries three fields: ``raw`` (the event's frame exactly
as FreeSWITCH sent it), ``node`` and ``name`` (Event-Name, so a consumer can
skip events without parsing them).
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from esl.core import Event
from esl.tagged import NodeEvent

__all__ = ["BusEvent", "EventBus", "Publisher", "PublisherStats", "Subscription", "SubscriptionStats"]


class BusEvent(NodeEvent):
    """An event read from the bus: the event, its node, and its message id on the bus."""

    __slots__ = ("deliveries", "id")

    def __init__(self, event: Event, node: str, id: str, deliveries: int = 1) -> None:
        super().__init__(event, node)
        #: the message id on the bus (for Redis, the stream entry id "<ms>-<seq>")
        self.id = id
        #: 1 on first delivery; more when it was recovered from a consumer that did not acknowledge it
        self.deliveries = deliveries

    def __repr__(self) -> str:
        return f"<BusEvent {self.id} {self.node} {self.event.name} uuid={self.event.uuid}>"


@dataclass(frozen=True)
class PublisherStats:
    """A snapshot of a publisher's counters."""

    #: events written to the bus (acknowledged by the broker)
    published: int
    #: events refused because the buffer was full (the broker slow or down)
    dropped: int
    #: events waiting in the buffer right now
    buffered: int
    #: the buffer's bound
    max_buffer: int
    #: batches written
    batches: int
    #: failed writes (each retried; the events stay buffered)
    errors: int
    #: whether the last write succeeded
    connected: bool


@dataclass(frozen=True)
class SubscriptionStats:
    """A snapshot of a subscription's counters."""

    #: events handed to the consumer
    delivered: int
    #: events acknowledged
    acked: int
    #: events taken over from other (dead or stalled) consumers of the group
    claimed: int
    #: messages that were not a parsable event (acknowledged and skipped, logged)
    malformed: int
    #: failed reads or acknowledgements (each retried)
    errors: int


class Publisher(abc.ABC):
    """Takes events and writes them to the bus in the background; never blocks the caller."""

    @abc.abstractmethod
    def publish(self, event: Event, node: str) -> bool:
        """Buffer one event for the bus; False (and counted as dropped) when the buffer is full."""

    @abc.abstractmethod
    def attach(self, source: Any, node: str | None = None) -> None:
        """Publish every event of an Inbound (tagged ``node``, default ``host:port``) or a Cluster."""

    @abc.abstractmethod
    def detach(self, source: Any) -> None:
        """Stop publishing the events of ``source``."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Start the background writer (``async with`` does it)."""

    @abc.abstractmethod
    async def flush(self, timeout: float | None = None) -> None:
        """Wait until the buffer is empty; TimeoutError when it is not within ``timeout``."""

    @abc.abstractmethod
    async def close(self, timeout: float | None = 5.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop; events still buffered count as dropped."""

    @abc.abstractmethod
    def stats(self) -> PublisherStats:
        """A snapshot of the counters."""

    async def __aenter__(self) -> Publisher:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Subscription(abc.ABC, AsyncIterator[BusEvent]):
    """The events of a consumer group, as one member of it sees them.

    With ``ack="auto"`` an event is acknowledged when the iterator is asked for
    the next one (the loop body has finished with it) or when the ``async
    with`` block ends normally; an exception in the body leaves it pending.
    With ``ack="manual"``, call :meth:`ack`.
    """

    @abc.abstractmethod
    async def ack(self, *events: BusEvent) -> None:
        """Acknowledge these events: they will not be delivered again."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Send outstanding acknowledgements and stop."""

    @abc.abstractmethod
    def stats(self) -> SubscriptionStats:
        """A snapshot of the counters."""

    def __aiter__(self) -> Subscription:
        return self

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        await self.close()


class EventBus(abc.ABC):
    """A broker connection that makes publishers and subscriptions."""

    @abc.abstractmethod
    def publisher(self, *, max_buffer: int = 100_000, batch_size: int = 1000) -> Publisher:
        """A publisher writing to this bus."""

    @abc.abstractmethod
    def events(
        self,
        *,
        group: str,
        consumer: str,
        names: Iterable[str] | None = None,
        ack: str = "auto",
    ) -> Subscription:
        """The events of consumer group ``group`` for member ``consumer`` (``names``: only those Event-Names)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release the broker connection."""

    async def __aenter__(self) -> EventBus:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
