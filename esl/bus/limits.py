"""Limits that hold across processes: simultaneous calls and calls per second, atomic in Redis.

A dialer running on several workers needs one limit for all of them:
"campaign 42 may have 30 calls up at once" and "tenant acme may start 10
calls a second". Each check is one server-side script (so two workers can
never both take the last slot), timed by the Redis server's clock (so workers'
clocks need not agree).

>>> async def dial(limits, uuid):                                     # doctest: +SKIP
...     gate = limits.gate(concurrency=limits.concurrency("campaign", 30),
...                        rate=limits.rate("tenant", 10))
...     lease = await gate.admit(uuid, concurrency_key="42", rate_key="acme", timeout=5)
...     try:
...         ...  # originate; keep the lease while the call is up
...     finally:
...         await lease.release()  # on hangup

Concurrency slots are leases: a worker that dies without releasing them does
not hold them forever — they lapse after ``lease`` seconds unless renewed
(``renew()`` while the call is up). Waiting for a slot polls with backoff.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

from esl.exceptions import ESLError

__all__ = ["ConcurrencyLimit", "Gate", "Lease", "LimitExceeded", "Limits", "RateLimit"]

#: take a slot (or renew the caller's) unless ARGV[1] live leases exist; expired leases are removed first
_CONCURRENCY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key, limit, holder, lease = KEYS[1], tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZSCORE', key, holder) or redis.call('ZCARD', key) < limit then
  redis.call('ZADD', key, now + lease, holder)
  if redis.call('PTTL', key) < lease then redis.call('PEXPIRE', key, lease) end
  return 1
end
return 0
"""

#: GCRA: '0' when admitted, else the milliseconds until the next admission
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local key, interval, tolerance = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', key) or '0')
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return tostring(wait) end
local new = tat + interval
redis.call('SET', key, string.format('%.3f', new), 'PX', math.ceil(new - now) + 1000)
return '0'
"""


class LimitExceeded(ESLError):
    """A limit refused: no slot or no rate budget within the time allowed."""

    def __init__(self, limit: str, key: str, retry_after: float | None = None) -> None:
        self.limit = limit
        self.key = key
        #: seconds until the rate limit admits again (None for a concurrency limit: unknown)
        self.retry_after = retry_after
        extra = f"; retry in {retry_after:.3f}s" if retry_after is not None else ""
        super().__init__(f"limit {limit!r} reached for {key!r}{extra}")


class ConcurrencyLimit:
    """At most ``limit`` holders at once per key, across every process using the same Redis."""

    def __init__(self, client: aioredis.Redis, prefix: str, name: str, limit: int, lease: float) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        if lease <= 0:
            raise ValueError("lease must be positive")
        self.client = client
        self.name = name
        self.limit = limit
        self.lease = lease
        self._prefix = f"{prefix}:conc:{name}:"
        self._script = client.register_script(_CONCURRENCY)

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def try_acquire(self, key: str, holder: str) -> bool:
        """Take a slot for ``holder`` (a call UUID) now, or renew it if held; False when full."""
        ok = await self._script(keys=[self._key(key)], args=[self.limit, holder, int(self.lease * 1000)])
        return bool(ok)

    async def acquire(self, key: str, holder: str, timeout: float | None = 0.0) -> None:
        """Take a slot, waiting up to ``timeout`` seconds (0: refuse at once; None: wait forever).

        Raises :class:`LimitExceeded` when no slot frees in time.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while not await self.try_acquire(key, holder):
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LimitExceeded(self.name, key)
                delay = min(delay, left)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def renew(self, key: str, holder: str) -> bool:
        """Extend ``holder``'s lease; False if it had lapsed and the limit is now full."""
        return await self.try_acquire(key, holder)

    async def release(self, key: str, holder: str) -> bool:
        """Give the slot back; False if ``holder`` held none."""
        return bool(await self.client.zrem(self._key(key), holder))

    async def count(self, key: str) -> int:
        """Holders right now (leases not yet lapsed)."""
        now_s, now_us = await self.client.time()
        now = now_s * 1000 + now_us // 1000
        return int(await self.client.zcount(self._key(key), f"({now}", "+inf"))


class RateLimit:
    """At most ``per_second`` admissions a second per key (bursts of up to ``burst``), across processes."""

    def __init__(self, client: aioredis.Redis, prefix: str, name: str, per_second: float, burst: int) -> None:
        if per_second <= 0:
            raise ValueError("per_second must be positive")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.client = client
        self.name = name
        self.per_second = per_second
        self.burst = burst
        self._prefix = f"{prefix}:rate:{name}:"
        self._interval = 1000.0 / per_second
        self._script = client.register_script(_RATE)

    async def try_acquire(self, key: str) -> float:
        """Take one admission now: 0.0 when admitted, else the seconds until one is possible."""
        wait = await self._script(
            keys=[self._prefix + key], args=[repr(self._interval), repr(self._interval * (self.burst - 1))]
        )
        return max(0.0, float(wait) / 1000.0)

    async def acquire(self, key: str, timeout: float | None = 0.0) -> None:
        """Take one admission, waiting up to ``timeout`` seconds (0: refuse at once; None: forever).

        Raises :class:`LimitExceeded` (with ``retry_after``) when the wait would be longer.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = await self.try_acquire(key)
            if wait == 0.0:
                return
            if deadline is not None and time.monotonic() + wait > deadline:
                raise LimitExceeded(self.name, key, wait)
            await asyncio.sleep(wait)


@dataclass
class Lease:
    """What :meth:`Gate.admit` gave a call: release it when the call ends."""

    gate: Gate
    holder: str
    concurrency_key: str | None
    released: bool = False

    async def renew(self) -> bool:
        """Keep the concurrency slot for another lease period (call it while the call is up)."""
        lim = self.gate.concurrency
        if lim is None or self.concurrency_key is None or self.released:
            return True
        return await lim.renew(self.concurrency_key, self.holder)

    async def release(self) -> None:
        """Give the concurrency slot back (idempotent)."""
        if not self.released:
            self.released = True
            lim = self.gate.concurrency
            if lim is not None and self.concurrency_key is not None:
                await lim.release(self.concurrency_key, self.holder)


class Gate:
    """A rate limit and a concurrency limit checked together before a call is placed."""

    def __init__(self, concurrency: ConcurrencyLimit | None = None, rate: RateLimit | None = None) -> None:
        self.concurrency = concurrency
        self.rate = rate

    async def admit(
        self,
        holder: str,
        *,
        concurrency_key: str | None = None,
        rate_key: str | None = None,
        timeout: float | None = 0.0,
    ) -> Lease:
        """Wait (up to ``timeout`` in all) for a concurrency slot, then for the rate; LimitExceeded if not.

        The slot is taken first, so a call refused by the rate does not keep one.
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        lease = Lease(self, holder, concurrency_key if self.concurrency is not None else None)
        if self.concurrency is not None and concurrency_key is not None:
            await self.concurrency.acquire(concurrency_key, holder, left())
        if self.rate is not None and rate_key is not None:
            try:
                await self.rate.acquire(rate_key, left())
            except BaseException:
                await lease.release()
                raise
        return lease


class Limits:
    """Makes limits on one Redis; every process that names a limit the same way shares it."""

    def __init__(self, client: aioredis.Redis, prefix: str = "esl:limit") -> None:
        self.client = client
        self.prefix = prefix

    def concurrency(self, name: str, limit: int, *, lease: float = 3600.0) -> ConcurrencyLimit:
        """At most ``limit`` simultaneous holders per key; a slot lapses ``lease`` seconds after its last renew."""
        return ConcurrencyLimit(self.client, self.prefix, name, limit, lease)

    def rate(self, name: str, per_second: float, *, burst: int = 1) -> RateLimit:
        """At most ``per_second`` admissions a second per key, ``burst`` of them back to back."""
        return RateLimit(self.client, self.prefix, name, per_second, burst)

    def gate(self, *, concurrency: ConcurrencyLimit | None = None, rate: RateLimit | None = None) -> Gate:
        """Both limits, checked together by :meth:`Gate.admit`."""
        return Gate(concurrency, rate)
