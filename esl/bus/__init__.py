"""Event bus: FreeSWITCH events from any node to any number of worker processes.

>>> import esl, esl.bus
>>> async def bridge():                                              # doctest: +SKIP
...     bus = esl.bus.connect("redis://127.0.0.1:6379/0")
...     async with esl.Inbound("fs1", 8021, "ClueCon", reconnect=True) as fs, bus.publisher() as pub:
...         pub.attach(fs, node="fs1")
...         await fs.subscribe("ALL")
...         await asyncio.Event().wait()
>>> async def worker():                                              # doctest: +SKIP
...     bus = esl.bus.connect("redis://127.0.0.1:6379/0")
...     async with bus.events(group="billing", consumer="worker-1") as stream:
...         async for event in stream:          # acknowledged once the body has finished
...             print(event.node, event.name, event.uuid)

Delivery is at-least-once: an event is acknowledged only after the loop body
that received it has finished, so a consumer that dies mid-event leaves it to
another member of its group (after ``claim_idle`` seconds) — the same event may
then be handled twice; make handlers idempotent (``event.id`` is unique per
bus message, ``event.deliveries > 1`` marks a redelivery).

``redis`` (redis-py) is needed: ``pip install "esl[redis]"``.
"""

from __future__ import annotations

from typing import Any

from esl.bus.base import BusEvent, EventBus, Publisher, PublisherStats, Subscription, SubscriptionStats

__all__ = [
    "BusEvent", "EventBus", "Publisher", "PublisherStats", "Subscription", "SubscriptionStats", "connect",
]  # fmt: skip


def connect(url: str, **options: Any) -> EventBus:
    """The bus at ``url``: ``redis://`` / ``rediss://`` / ``unix://`` (Redis Streams); options go to the backend."""
    scheme = url.split(":", 1)[0].lower()
    if scheme in ("redis", "rediss", "unix"):
        try:
            from esl.bus.redis_streams import RedisBus
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError('the Redis event bus needs redis-py: pip install "esl[redis]"') from exc
        return RedisBus(url, **options)
    raise ValueError(f"no event bus backend for {scheme!r} URLs (known: redis://, rediss://, unix://)")
