"""``RedisPublisher``: events into a Redis stream, in batches, from a bounded buffer (see :mod:`esl.bus.redis_streams`)."""

from __future__ import annotations

import asyncio
import collections
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis import exceptions as rexc

from esl.bus._redis import _TRANSIENT, _XADD_BATCH, _backoff, log
from esl.bus.base import Publisher, PublisherStats
from esl.core import Event

if TYPE_CHECKING:  # pragma: no cover
    from esl.bus.redis_streams import RedisBus

__all__ = ["RedisPublisher"]


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
        pool: Any = self.bus.client.connection_pool  # typed differently across redis-py versions
        conn = await pool.get_connection()
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
