"""The Redis Streams backend of the event bus, on redis-py's asyncio client.

One stream (``esl:events`` by default) holds the events; each entry has the
fields ``raw``, ``name`` and ``node``. The publisher appends with
``XADD`` (then ``XTRIM MAXLEN ~ maxlen``) from a small server-side script that
takes a whole batch in one call (one round trip and one reply per batch: several
times the rate of a pipeline of single XADDs). Consumers read through a
consumer group (``XREADGROUP``), acknowledge with ``XACK``, and take over
entries another member left pending for ``claim_idle`` seconds
(``XAUTOCLAIM``).

Failures: a publisher that cannot write keeps the batch and retries with
backoff (the batch may then be written twice: at-least-once); a subscription
that cannot read retries with backoff and carries on from its group, which
keeps its place and its pending entries in Redis. If Redis lost the group
(restarted without persistence), the subscription creates it again from the
start of what the stream holds.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from esl.bus.base import EventBus
from esl.bus.redis_publisher import RedisPublisher
from esl.bus.redis_subscription import RedisSubscription

__all__ = ["RedisBus", "RedisPublisher", "RedisSubscription"]


class RedisBus(EventBus):
    """An event bus on one Redis stream.

    ``RedisBus("redis://host:6379/0", stream="esl:events", maxlen=1_000_000)``;
    or ``client=`` an existing ``redis.asyncio.Redis`` (not closed by the bus).
    ``maxlen`` bounds the stream (approximately, as ``MAXLEN ~`` does); ``None``
    never trims. A client passed in should have redis-py's own retries off
    (``retry=Retry(NoBackoff(), 0)``): the bus retries itself, and needs to see
    a failed read to recover what its lost reply held. ``socket_timeout`` is how long a Redis that does not answer is
    waited for before the write or read is retried.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        stream: str = "esl:events",
        maxlen: int | None = 1_000_000,
        client: aioredis.Redis | None = None,
        socket_timeout: float = 5.0,
    ) -> None:
        if maxlen is not None and maxlen < 1:
            raise ValueError("maxlen must be positive or None")
        self.url = url
        self.stream = stream
        self.maxlen = maxlen
        self.socket_timeout = socket_timeout
        if client is not None and client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the event bus needs a client with decode_responses=False (events are bytes)")
        self._own_client = client is None
        self.client: aioredis.Redis = client or self._new_client(socket_timeout)
        self._subs: set[RedisSubscription] = set()

    def _new_client(self, socket_timeout: float) -> aioredis.Redis:
        # no retries inside redis-py: a read whose reply was lost must be seen here (see RedisSubscription)
        client: aioredis.Redis = aioredis.Redis.from_url(  # from_url has no return annotation
            self.url, socket_timeout=socket_timeout, socket_connect_timeout=min(socket_timeout, 5.0),
            retry=Retry(NoBackoff(), 0),
        )
        return client

    def publisher(self, *, max_buffer: int = 100_000, batch_size: int = 1000) -> RedisPublisher:
        return RedisPublisher(self, max_buffer=max_buffer, batch_size=batch_size)

    def events(
        self,
        *,
        group: str,
        consumer: str,
        names: Iterable[str] | None = None,
        ack: str = "auto",
        start: str = "$",
        batch: int = 100,
        block: float = 1.0,
        claim_idle: float = 30.0,
        claim_interval: float = 5.0,
    ) -> RedisSubscription:
        """Member ``consumer`` of consumer group ``group`` (created at ``start`` if new: ``"$"`` only
        what comes next, ``"0"`` everything the stream holds).

        At most ``batch`` entries are held in memory at a time (the backpressure:
        nothing more is read until the consumer has taken them). Entries another
        member has left unacknowledged for ``claim_idle`` seconds are taken over,
        checked every ``claim_interval`` seconds. ``block`` is the longest one read
        waits for new entries.
        """
        owned = self._own_client
        client = self._new_client(self.socket_timeout + block) if owned else self.client
        sub = RedisSubscription(
            client, self.stream, group, consumer, names=names, ack=ack, start=start, batch=batch,
            block=block, claim_idle=claim_idle, claim_interval=claim_interval,
        )  # fmt: skip
        if owned:  # its own connection (a blocking read holds it); closed with the subscription
            self._subs.add(sub)
            sub._owner = self._subs
        return sub

    async def prune(self, group: str, idle: float = 3600.0) -> list[str]:
        """Remove the members of ``group`` idle for ``idle`` seconds with nothing pending; their names.

        A consumer group remembers every member name it has seen; workers named per
        process (``host-pid``) leave one behind each restart. A member with pending
        entries is kept: another member's XAUTOCLAIM takes those over first.
        """
        removed = []
        for info in await self.client.xinfo_consumers(self.stream, group):
            name = info["name"]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if int(info["pending"]) == 0 and int(info["idle"]) >= idle * 1000:
                await self.client.xgroup_delconsumer(self.stream, group, name)
                removed.append(name)
        return removed

    async def close(self) -> None:
        """Close the subscriptions made here that are still open, and the bus's own client."""
        for sub in list(self._subs):
            await sub.close()
        if self._own_client:
            await self.client.aclose()

    def __repr__(self) -> str:
        return f"<RedisBus stream={self.stream!r} maxlen={self.maxlen}>"
