"""``RedisSubscription``: one member of a consumer group on the stream (see :mod:`esl.bus.redis_streams`)."""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as rexc

from esl.bus._redis import _TRANSIENT, _backoff, _text, log
from esl.bus.base import BusEvent, Subscription, SubscriptionStats
from esl.core import Event, Parser
from esl.exceptions import ProtocolError

__all__ = ["RedisSubscription"]


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
            except asyncio.CancelledError:
                self._reread_own()  # a read cancelled mid-way (a timeout around __anext__) may have lost a reply
                raise
            except _TRANSIENT as exc:
                self._errors += 1
                if delay == 0.0:
                    log.warning("event bus: reading from Redis failed (%s); retrying", exc)
                self._reread_own()
                delay = _backoff(delay, self.max_backoff)
                await asyncio.sleep(delay)
        ev = self._queue.popleft()
        self._delivered += 1
        if self.auto_ack:
            self._last = ev
        return ev

    def _reread_own(self) -> None:
        # a reply lost on the way may have held entries Redis now counts as ours: read our own
        # pending entries again before anything new, so they are not left waiting for claim_idle
        # (with manual acks, entries the user still holds are pending too: claim_idle recovers those)
        if self._ready and self._own_cursor is None and self.auto_ack:
            self._own_cursor = b"0"

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
