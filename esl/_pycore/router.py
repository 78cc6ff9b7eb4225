"""The twin's ``Router``: each event to the owner of its UUID."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from esl._pycore.event import Event

__all__ = ["Router"]


class Router:
    """The UUID event filter: sends each event to the owner of its UUID.

    The key of an event is its ``Job-UUID`` for BACKGROUND_JOB and its
    ``Unique-ID`` otherwise. A target is a callable or anything with
    ``put_nowait`` (an ``asyncio.Queue``). Events whose key has no route go to
    ``default`` (or are dropped when it is ``None``) without their headers
    being decoded. A ``CHANNEL_UUID`` event moves the route of
    ``Old-Unique-ID`` to the new ``Unique-ID`` so a channel keeps its events.
    """

    __slots__ = ("_default", "_default_call", "_routes", "_targets", "matched", "unmatched")

    def __init__(self, default: Any = None) -> None:
        self._routes: dict[str, Callable[[Event], Any]] = {}
        self._targets: dict[str, Any] = {}
        self.default = default
        self.matched = 0
        self.unmatched = 0

    @property
    def default(self) -> Any:
        """Where events with no route go; ``None`` drops them."""
        return self._default

    @default.setter
    def default(self, target: Any) -> None:
        self._default = target
        self._default_call = None if target is None else _deliverer(target)

    def add(self, key: str, target: Any) -> None:
        """Route events whose UUID is ``key`` to ``target`` (replacing any earlier route)."""
        self._routes[key] = _deliverer(target)
        self._targets[key] = target

    def discard(self, key: str) -> None:
        """Remove the route for ``key`` if there is one."""
        self._routes.pop(key, None)
        self._targets.pop(key, None)

    def get(self, key: str) -> Any:
        """The target routed for ``key``, or ``None``."""
        return self._targets.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._routes

    def __len__(self) -> int:
        return len(self._routes)

    def lookup(self, event: Event) -> Any:
        """The target owning ``event``, or ``None``; follows CHANNEL_UUID renames."""
        key = event.job_uuid if event.name == "BACKGROUND_JOB" else event.uuid
        if key is None:
            return None
        target = self._targets.get(key)
        if target is None and event.name == "CHANNEL_UUID":
            old = event.get("Old-Unique-ID")
            if old is not None and old in self._routes:
                self._routes[key] = self._routes.pop(old)
                target = self._targets[key] = self._targets.pop(old)
        return target

    def route(self, event: Event) -> bool:
        """Deliver one event; True when a route matched."""
        key = event.job_uuid if event.name == "BACKGROUND_JOB" else event.uuid
        call = self._routes.get(key) if key is not None else None
        if call is None and event.name == "CHANNEL_UUID" and self.lookup(event) is not None:
            call = self._routes.get(key) if key is not None else None
        if call is not None:
            self.matched += 1
            call(event)
            return True
        self.unmatched += 1
        if self._default_call is not None:
            self._default_call(event)
        return False

    def dispatch(self, events: Iterable[Event]) -> int:
        """Deliver each event; return how many matched a route."""
        matched = 0
        for event in events:
            if self.route(event):
                matched += 1
        return matched


def _deliverer(target: Any) -> Callable[[Event], Any]:
    put = getattr(target, "put_nowait", None)
    if put is not None:
        return put  # type: ignore[no-any-return]
    if not callable(target):
        raise TypeError(f"route target must be callable or have put_nowait, not {type(target).__name__}")
    return target  # type: ignore[no-any-return]




