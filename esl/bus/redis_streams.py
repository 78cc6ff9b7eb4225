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

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from esl.bus.base import BusEvent, EventBus, Publisher, PublisherStats, Subscription, SubscriptionStats
from esl.core import Event, Parser
from esl.exceptions import ProtocolError

__all__ = ["RedisBus", "RedisPublisher", "RedisSubscription"]

log = logging.getLogger("esl.bus")

#: XADD every (raw, name, node) triple of ARGV[2..] to KEYS[1], then trim to ~ARGV[1] entries (0: never);
#: one trim per batch costs the server less than MAXLEN on every XADD
_XADD_BATCH = """
local key, n = KEYS[1], 0
for i = 2, #ARGV, 3 do
  redis.call('XADD', key, '*', 'raw', ARGV[i], 'name', ARGV[i + 1], 'node', ARGV[i + 2])
  n = n + 1
end
if ARGV[1] ~= '0' then
  redis.call('XTRIM', key, 'MAXLEN', '~', ARGV[1])
end
return n
"""

#: errors after which a command is worth retrying on a new connection
_TRANSIENT = (rexc.ConnectionError, rexc.TimeoutError, rexc.BusyLoadingError, OSError, asyncio.TimeoutError)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _backoff(current: float, cap: float) -> float:
    return min(cap, max(0.05, current * 2))


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
        return aioredis.Redis.from_url(
            self.url, socket_timeout=socket_timeout, socket_connect_timeout=min(socket_timeout, 5.0),
            retry=Retry(NoBackoff(), 0),
        )

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

    async def close(self) -> None:
        """Close the subscriptions made here that are still open, and the bus's own client."""
        for sub in list(self._subs):
            await sub.close()
        if self._own_client:
            await self.client.aclose()

    def __repr__(self) -> str:
        return f"<RedisBus stream={self.stream!r} maxlen={self.maxlen}>"


class RedisPublisher(Publisher):
    """Buffers events (at most ``max_buffer``) and appends them to the stream in batches.

    ``publish`` is cheap and synchronous (it runs in the Inbound's reader); the
    background writer takes up to ``batch_size`` buffered events per call, so
    batches grow by themselves when events come faster than one round trip.
    When the buffer is full, new events are dropped and counted: the oldest
    buffered events are written first, in order.
    """

    def __init__(self, bus: RedisBus, *, max_buffer: int = 100_000, batch_size: int = 1000) -> None:
        if max_buffer < 1 or batch_size < 1:
            raise ValueError("max_buffer and batch_size must be positive")
        self.bus = bus
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self._buf: collections.deque[tuple[bytes, bytes, bytes]] = collections.deque()
        #: batches written but not yet acknowledged by Redis, at most
        self.depth = 2
        self._maxlen = str(bus.maxlen or 0)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._empty_waiters: list[asyncio.Future[None]] = []
        self._sources: dict[int, tuple[Any, Callable[[Any], None]]] = {}
        self._node_bytes: dict[str, bytes] = {}
        self._name_bytes: dict[str, bytes] = {}
        self.max_backoff = 2.0
        self._published = 0
        self._dropped = 0
        self._batches = 0
        self._errors = 0
        self._connected = True

    # -- the reader side: never blocks ----------------------------------------------

    def publish(self, event: Event, node: str) -> bool:
        buf = self._buf
        if len(buf) >= self.max_buffer or self._closing:
            self._dropped += 1
            return False
        nb = self._node_bytes.get(node)
        if nb is None:
            nb = self._node_bytes[node] = node.encode()
        name = event.name or ""
        eb = self._name_bytes.get(name)
        if eb is None:
            eb = self._name_bytes[name] = name.encode()
        buf.append((event.raw, eb, nb))
        if not self._wake.is_set():
            self._wake.set()
        return True

    def attach(self, source: Any, node: str | None = None) -> None:
        if id(source) in self._sources:
            raise ValueError(f"{source!r} is already attached")
        handler: Callable[[Any], None]
        if getattr(source, "is_cluster", False):
            publish = self.publish

            def handler(ev: Any) -> None:
                publish(ev.event, ev.node)

        else:
            name = node or f"{source.host}:{source.port}"

            def handler(ev: Any) -> None:
                self.publish(ev, name)

        source.on("*", handler)
        self._sources[id(source)] = (source, handler)

    def detach(self, source: Any) -> None:
        entry = self._sources.pop(id(source), None)
        if entry is not None:
            source.remove("*", entry[1])

    # -- the writer ----------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run(), name="esl-bus-publisher")

    async def _run(self) -> None:
        """Write buffered events, up to ``depth`` batches in flight on one connection.

        With two batches in flight Redis runs one script while this process packs the
        next, instead of the two taking turns. One connection keeps the batches in
        order. Events leave the buffer only when their batch's reply has come; after a
        failure every batch in flight is sent again (at-least-once).
        """
        buf = self._buf
        stream = self.bus.stream.encode()
        maxlen = self._maxlen.encode()
        delay = 0.0
        conn: Any = None
        sha = b""
        inflight: collections.deque[int] = collections.deque()
        sent = 0  # buffered events already sent (the sum of inflight)
        try:
            while True:
                try:
                    if conn is None:
                        conn, sha = await self._connect()
                    while len(inflight) < self.depth and len(buf) > sent:
                        n = min(len(buf) - sent, self.batch_size)
                        args: list[Any] = [b"EVALSHA", sha, b"1", stream, maxlen]
                        for item in itertools.islice(buf, sent, sent + n):
                            args.extend(item)
                        await conn.send_packed_command(conn.pack_command(*args), check_health=False)
                        inflight.append(n)
                        sent += n
                    if not inflight:
                        self._notify_empty()
                        if self._closing:
                            return
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    await conn.read_response()
                except (*_TRANSIENT, rexc.ResponseError) as exc:
                    self._errors += 1
                    if self._connected:
                        log.warning("event bus: writing to Redis failed (%s); %d events buffered", exc, len(buf))
                    self._connected = False
                    await self._release(conn, broken=True)
                    conn = None
                    inflight.clear()
                    sent = 0
                    delay = _backoff(delay, self.max_backoff)
                    await asyncio.sleep(delay)
                    continue
                n = inflight.popleft()
                sent -= n
                for _ in range(n):
                    buf.popleft()
                self._published += n
                self._batches += 1
                if not self._connected:
                    log.warning("event bus: writing to Redis again")
                    self._connected = True
                delay = 0.0
        finally:
            await self._release(conn, broken=bool(inflight))

    async def _connect(self) -> tuple[Any, bytes]:
        """A connection of the bus's pool, with the batch script loaded on its server."""
        pool = self.bus.client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_command("SCRIPT", "LOAD", _XADD_BATCH)
            sha = await conn.read_response()
        except BaseException:
            await self._release(conn, broken=True)
            raise
        return conn, sha if isinstance(sha, bytes) else str(sha).encode()

    async def _release(self, conn: Any, broken: bool) -> None:
        if conn is None:
            return
        if broken:  # replies may still be on their way: the connection cannot be reused
            await conn.disconnect()
        await self.bus.client.connection_pool.release(conn)

    def _notify_empty(self) -> None:
        waiters, self._empty_waiters = self._empty_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def flush(self, timeout: float | None = None) -> None:
        if not self._buf:
            return
        if self._task is None:
            raise RuntimeError("the publisher is not started")
        fut = asyncio.get_running_loop().create_future()
        self._empty_waiters.append(fut)
        self._wake.set()
        await asyncio.wait_for(fut, timeout)

    async def close(self, timeout: float | None = 5.0) -> None:
        for source, handler in list(self._sources.values()):
            source.remove("*", handler)
        self._sources.clear()
        task, self._task = self._task, None
        self._closing = True
        if task is None:
            self._dropped += len(self._buf)
            self._buf.clear()
            return
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._buf:
            log.warning("event bus: closing with %d events not written", len(self._buf))
            self._dropped += len(self._buf)
            self._buf.clear()
        self._notify_empty()

    def stats(self) -> PublisherStats:
        return PublisherStats(
            published=self._published, dropped=self._dropped, buffered=len(self._buf),
            max_buffer=self.max_buffer, batches=self._batches, errors=self._errors, connected=self._connected,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<RedisPublisher {self.bus.stream!r} buffered={len(self._buf)} dropped={self._dropped}>"


class RedisSubscription(Subscription):
    """One member of a consumer group on the stream; see :meth:`RedisBus.events`."""

    def __init__(
        self,
        client: aioredis.Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        names: Iterable[str] | None = None,
        ack: str = "auto",
        start: str = "$",
        batch: int = 100,
        block: float = 1.0,
        claim_idle: float = 30.0,
        claim_interval: float = 5.0,
    ) -> None:
        if ack not in ("auto", "manual"):
            raise ValueError("ack must be 'auto' or 'manual'")
        if batch < 1:
            raise ValueError("batch must be positive")
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.names = frozenset(names) if names is not None else None
        self.auto_ack = ack == "auto"
        self.start = start
        self.batch = batch
        self.block_ms = max(1, int(block * 1000))
        self.claim_idle_ms = max(1, int(claim_idle * 1000))
        self.claim_interval = claim_interval
        self.max_backoff = 2.0
        self._parser = Parser()
        #: the set of its bus that holds it while it has a client of its own
        self._owner: set[RedisSubscription] | None = None
        self._ready = False
        self._own_cursor: bytes | None = b"0"  # reading our own pending entries first; None when done
        self._claim_cursor = b"0-0"
        self._next_claim = 0.0
        self._queue: collections.deque[BusEvent] = collections.deque()
        self._to_ack: list[str] = []
        self._last: BusEvent | None = None
        self._closed = False
        self._delivered = 0
        self._acked = 0
        self._claimed = 0
        self._malformed = 0
        self._errors = 0

    async def __anext__(self) -> BusEvent:
        if self._last is not None:
            self._to_ack.append(self._last.id)
            self._last = None
        delay = 0.0
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            try:
                await self._fill()
                delay = 0.0
            except _TRANSIENT as exc:
                self._errors += 1
                if delay == 0.0:
                    log.warning("event bus: reading from Redis failed (%s); retrying", exc)
                # a reply lost on the way may have held entries Redis now counts as ours: read our own
                # pending entries again before anything new, so they are not left waiting for claim_idle
                # (with manual acks, entries the user still holds are pending too: claim_idle recovers those)
                if self._ready and self._own_cursor is None and self.auto_ack:
                    self._own_cursor = b"0"
                delay = _backoff(delay, self.max_backoff)
                await asyncio.sleep(delay)
        ev = self._queue.popleft()
        self._delivered += 1
        if self.auto_ack:
            self._last = ev
        return ev

    async def _fill(self) -> None:
        if not self._ready:
            await self._create_group(self.start)
        await self._flush_acks()
        try:
            if self._own_cursor is not None:
                await self._read_own()
            elif time.monotonic() >= self._next_claim:
                await self._claim()
            else:
                reply: Any = await self.client.xreadgroup(
                    self.group, self.consumer, {self.stream: ">"}, count=self.batch, block=self.block_ms
                )
                for _stream, entries in reply or ():
                    self._take(entries, 1)
        except rexc.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # the group is gone (Redis restarted without persistence, or it was deleted): start it again
            log.warning("event bus: consumer group %r is gone; creating it again from the stream's start", self.group)
            self._ready = False
            self.start = "0"

    async def _create_group(self, start: str) -> None:
        try:
            await self.client.xgroup_create(self.stream, self.group, id=start, mkstream=True)
        except rexc.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._ready = True
        self._own_cursor = b"0"
        self._claim_cursor = b"0-0"

    async def _read_own(self) -> None:
        """Entries delivered to this consumer name before (a restart) and never acknowledged."""
        assert self._own_cursor is not None
        reply: Any = await self.client.xreadgroup(
            self.group, self.consumer, {self.stream: self._own_cursor}, count=self.batch
        )
        entries = reply[0][1] if reply else []
        if not entries:
            self._own_cursor = None
            return
        self._own_cursor = entries[-1][0]
        waiting = set(self._to_ack)
        if waiting:  # handled already, their acknowledgement not yet through
            entries = [e for e in entries if _text(e[0]) not in waiting]
        self._take(entries, 2)

    async def _claim(self) -> None:
        """Take over entries other members left pending for longer than ``claim_idle``."""
        reply: Any = await self.client.xautoclaim(
            self.stream, self.group, self.consumer, self.claim_idle_ms, start_id=self._claim_cursor,
            count=self.batch,
        )  # fmt: skip
        cursor, entries = reply[0], reply[1]
        self._claim_cursor = cursor if isinstance(cursor, bytes) else str(cursor).encode()
        if self._claim_cursor in (b"0-0", b"0"):
            self._claim_cursor = b"0-0"
            self._next_claim = time.monotonic() + self.claim_interval
        self._claimed += self._take(entries, 2)

    def _take(self, entries: list[Any], deliveries: int) -> int:
        """Parse entries into the queue; acknowledge at once what is gone, unwanted or unreadable."""
        taken = 0
        for entry_id, fields in entries:
            eid = _text(entry_id)
            if not fields:  # trimmed by MAXLEN while pending
                self._to_ack.append(eid)
                continue
            name = fields.get(b"name", b"").decode("utf-8", "replace")
            if self.names is not None and name not in self.names:
                self._to_ack.append(eid)
                continue
            event = self._parse(fields.get(b"raw"))
            if event is None:
                self._malformed += 1
                log.warning("event bus: entry %s of %r is not an event; skipped", eid, self.stream)
                self._to_ack.append(eid)
                continue
            node = fields.get(b"node", b"").decode("utf-8", "replace")
            self._queue.append(BusEvent(event, node, eid, deliveries))
            taken += 1
        return taken

    def _parse(self, raw: bytes | None) -> Event | None:
        if not raw:
            return None
        parser = self._parser
        try:
            events = parser.feed(raw)
        except ProtocolError:
            parser.reset()
            return None
        if len(events) != 1 or parser.buffered or not events[0].is_event:
            parser.reset()
            return None
        return events[0]

    async def _flush_acks(self) -> None:
        if self._to_ack:
            ids = self._to_ack
            await self.client.xack(self.stream, self.group, *ids)
            self._acked += len(ids)
            del ids[: len(ids)]

    async def ack(self, *events: BusEvent) -> None:
        if events:
            await self.client.xack(self.stream, self.group, *(e.id for e in events))
            self._acked += len(events)

    async def close(self) -> None:
        self._closed = True
        try:
            await self._flush_acks()
        except _TRANSIENT as exc:
            log.warning("event bus: %d acknowledgements not sent (%s); those events will be delivered again",
                        len(self._to_ack), exc)
        if self._owner is not None:
            self._owner.discard(self)
            self._owner = None
            await self.client.aclose()

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None and self._last is not None:
            self._to_ack.append(self._last.id)
        self._last = None
        await self.close()

    def stats(self) -> SubscriptionStats:
        return SubscriptionStats(
            delivered=self._delivered, acked=self._acked, claimed=self._claimed,
            malformed=self._malformed, errors=self._errors,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"<RedisSubscription {self.stream!r} group={self.group!r} consumer={self.consumer!r}>"
