"""Which worker and which FreeSWITCH node own each call, shared by every worker on one Redis.

With Outbound on many processes (or many machines), a call's socket lives in
one worker; a request about the call (a web hook, a supervisor's "hang up
4711") can land on any other. :class:`CallRegistry` answers "who has this
call?" (``owner(uuid)`` → worker and node, so the caller can act on the node
through its own Inbound/Cluster: ``uuid_kill``, ``uuid_transfer``... work on
any event socket connection to that node), and lets a surviving worker take
over the calls of one that died (``orphans()``, ``adopt()``).

Liveness: each registry keeps a heartbeat key that lapses ``lease`` seconds
after the worker stops renewing it; a worker whose key has lapsed is dead,
and its calls are orphans. Every entry has one owner that removes it
(``release()`` on hangup; ``adopt()`` moves it); ``call_ttl`` expires any
entry left behind all the same, so nothing in Redis grows without bound.

Layout (prefix ``esl``): ``esl:call:<uuid>`` a hash (worker, node, since, and
``meta.*`` fields), ``esl:worker:<id>`` the heartbeat, ``esl:worker:<id>:calls``
a set of UUIDs, ``esl:workers`` the set of worker ids.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from esl.bus._redis import _reply

__all__ = ["CallOwner", "CallRegistry"]

log = logging.getLogger("esl.bus")

#: claim KEYS[1]=call hash for ARGV[1]=worker unless a live other worker owns it; 1 claimed, 0 refused
_CLAIM = """
local call, me, node, since, ttl, prefix = KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local uuid = ARGV[6]
local cur = redis.call('HGET', call, 'worker')
if cur and cur ~= me and redis.call('EXISTS', prefix .. ':worker:' .. cur) == 1 then
  return 0
end
if cur and cur ~= me then
  redis.call('SREM', prefix .. ':worker:' .. cur .. ':calls', uuid)
end
redis.call('DEL', call)
redis.call('HSET', call, 'worker', me, 'node', node, 'since', since)
for i = 7, #ARGV, 2 do
  redis.call('HSET', call, 'meta.' .. ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', call, ttl)
redis.call('SADD', prefix .. ':worker:' .. me .. ':calls', uuid)
redis.call('PEXPIRE', prefix .. ':worker:' .. me .. ':calls', ttl)
redis.call('SADD', prefix .. ':workers', me)
return 1
"""

#: release KEYS[1]=call hash if ARGV[1]=worker owns it
_RELEASE = """
local call, me, prefix, uuid = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
redis.call('SREM', prefix .. ':worker:' .. me .. ':calls', uuid)
if redis.call('HGET', call, 'worker') == me then
  redis.call('DEL', call)
  return 1
end
return 0
"""

#: move KEYS[1]=call hash to ARGV[1]=worker when its owner is dead (or is ARGV[1]); -1 when the call is gone
#: (then it is also removed from the set of ARGV[5], the worker it was listed under)
_ADOPT = """
local call, me, prefix, uuid, ttl, listed = KEYS[1], ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5]
local cur = redis.call('HGET', call, 'worker')
if not cur then
  if listed ~= '' then redis.call('SREM', prefix .. ':worker:' .. listed .. ':calls', uuid) end
  return -1
end
if cur ~= me then
  if redis.call('EXISTS', prefix .. ':worker:' .. cur) == 1 then
    return 0
  end
  redis.call('SREM', prefix .. ':worker:' .. cur .. ':calls', uuid)
  redis.call('HSET', call, 'worker', me)
  redis.call('PEXPIRE', call, ttl)
  redis.call('SADD', prefix .. ':worker:' .. me .. ':calls', uuid)
  redis.call('SADD', prefix .. ':workers', me)
end
return 1
"""


@dataclass(frozen=True)
class CallOwner:
    """Who has a call: the worker id, the FreeSWITCH node, since when, and what the owner stored with it."""

    uuid: str
    worker: str
    node: str
    #: Unix time (seconds) the owner claimed the call
    since: float
    #: whether the owning worker's heartbeat is current
    alive: bool
    meta: dict[str, str] = field(default_factory=dict)


def _text(value: Any) -> str:
    """A reply value as str, whether the client decodes responses or not."""
    return value.decode() if isinstance(value, bytes) else str(value)


def default_worker_id() -> str:
    """``<hostname>:<pid>``: unique per live process on a machine."""
    return f"{socket.gethostname()}:{os.getpid()}"


class CallRegistry:
    """The shared table of calls and their owners; one per worker process (``start()`` begins its heartbeat)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        worker: str | None = None,
        prefix: str = "esl",
        lease: float = 15.0,
        call_ttl: float = 6 * 3600.0,
    ) -> None:
        if lease <= 0 or call_ttl <= 0:
            raise ValueError("lease and call_ttl must be positive")
        self.client = client
        self.worker = worker or default_worker_id()
        self.prefix = prefix
        self.lease = lease
        self.call_ttl = call_ttl
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._adopt = client.register_script(_ADOPT)
        self._task: asyncio.Task[None] | None = None

    # -- keys ----------------------------------------------------------------------

    def _call(self, uuid: str) -> str:
        return f"{self.prefix}:call:{uuid}"

    def _alive(self, worker: str) -> str:
        return f"{self.prefix}:worker:{worker}"

    def _calls_of(self, worker: str) -> str:
        return f"{self.prefix}:worker:{worker}:calls"

    # -- liveness ------------------------------------------------------------------

    async def start(self) -> CallRegistry:
        """Announce this worker and keep its heartbeat current until ``close()``."""
        await self.heartbeat()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._beat(), name="esl-call-registry")
        return self

    async def heartbeat(self) -> None:
        """Renew this worker's heartbeat once (``start()`` does it every ``lease/3`` seconds)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.set(self._alive(self.worker), str(time.time()), px=int(self.lease * 1000))
        pipe.sadd(f"{self.prefix}:workers", self.worker)
        await pipe.execute()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self.heartbeat()
            except Exception as exc:  # noqa: BLE001 - Redis down: keep trying, the lease tells the others
                log.warning("call registry: heartbeat failed (%s)", exc)

    async def close(self) -> None:
        """Stop the heartbeat and say this worker is gone (its remaining calls become orphans at once)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self.client.delete(self._alive(self.worker))

    async def __aenter__(self) -> CallRegistry:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def alive(self, worker: str) -> bool:
        """Whether ``worker``'s heartbeat is current."""
        return bool(await self.client.exists(self._alive(worker)))

    async def workers(self) -> dict[str, bool]:
        """Every worker id known, and whether it is alive."""
        members: set[bytes | str] = await _reply(self.client.smembers(f"{self.prefix}:workers"))
        ids = sorted(_text(w) for w in members)
        if not ids:
            return {}
        pipe = self.client.pipeline(transaction=False)
        for w in ids:
            pipe.exists(self._alive(w))
        return {w: bool(n) for w, n in zip(ids, await pipe.execute())}

    # -- calls ---------------------------------------------------------------------

    async def claim(self, uuid: str, node: str, **meta: str) -> bool:
        """Record this worker as the owner of call ``uuid`` on ``node``; False if a live other worker has it."""
        args: list[str | int] = [self.worker, node, repr(time.time()), int(self.call_ttl * 1000), self.prefix, uuid]
        for k, v in meta.items():
            args += (k, str(v))
        return bool(await self._claim(keys=[self._call(uuid)], args=args))

    async def release(self, uuid: str) -> bool:
        """Forget call ``uuid`` (on hangup); False if this worker did not own it."""
        return bool(await self._release(keys=[self._call(uuid)], args=[self.worker, self.prefix, uuid]))

    async def owner(self, uuid: str) -> CallOwner | None:
        """Who owns call ``uuid`` right now, or None."""
        h: dict[bytes | str, bytes | str] = await _reply(self.client.hgetall(self._call(uuid)))
        if not h:
            return None
        d = {_text(k): _text(v) for k, v in h.items()}
        worker = d.get("worker", "")
        meta = {k[5:]: v for k, v in d.items() if k.startswith("meta.")}
        return CallOwner(uuid, worker, d.get("node", ""), float(d.get("since", "0")), await self.alive(worker), meta)

    async def node_of(self, uuid: str) -> str | None:
        """The node call ``uuid`` is on, or None when no worker owns it."""
        node: bytes | str | None = await _reply(self.client.hget(self._call(uuid), "node"))
        return _text(node) if node is not None else None

    async def calls(self, worker: str | None = None) -> set[str]:
        """UUIDs owned by ``worker`` (default: this one)."""
        calls: set[bytes | str] = await _reply(self.client.smembers(self._calls_of(worker or self.worker)))
        return {_text(u) for u in calls}

    async def orphans(self) -> dict[str, set[str]]:
        """Calls of workers whose heartbeat has lapsed, by worker."""
        out: dict[str, set[str]] = {}
        for w, alive in (await self.workers()).items():
            if not alive:
                calls = await self.calls(w)
                if calls:
                    out[w] = calls
                else:
                    removed: int = await _reply(self.client.srem(f"{self.prefix}:workers", w))  # dead: forget it
                    del removed
        return out

    async def adopt(self, uuid: str, listed_under: str | None = None) -> bool:
        """Take over call ``uuid`` if its owner is dead; False if a live worker owns it or it is gone.

        ``listed_under``: the worker ``orphans()`` listed it under, so a call whose entry has
        expired is also removed from that worker's list.
        """
        res = await self._adopt(
            keys=[self._call(uuid)],
            args=[self.worker, self.prefix, uuid, int(self.call_ttl * 1000), listed_under or ""],
        )
        return bool(res == 1)

    def __repr__(self) -> str:
        return f"<CallRegistry worker={self.worker!r} prefix={self.prefix!r}>"
