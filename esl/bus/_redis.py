"""What the Redis Streams backend's pieces share: the batch script, which errors are worth a retry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar, cast

from redis import exceptions as rexc

log = logging.getLogger("esl.bus")

_T = TypeVar("_T")

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


def _reply(result: object) -> Awaitable[Any]:
    """A ``redis.asyncio`` command's reply, for ``await`` (the caller annotates what it holds).

    redis-py types its commands ``Awaitable[T] | T`` in some versions and ``Awaitable[T]`` in
    others; on the async client they always return an awaitable.
    """
    return cast("Awaitable[Any]", result)
