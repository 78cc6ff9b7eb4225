"""``NodeEvent``: an event together with the FreeSWITCH node it came from.

A :class:`esl.Cluster` hands its handlers NodeEvents, and an event bus
consumer yields :class:`esl.bus.BusEvent` (a NodeEvent that also knows its
stream entry). Either reads like the event itself (``ev["Unique-ID"]``,
``ev.name``, ``ev.uuid``, ``ev.body``...); ``ev.event`` is the event, ``ev.node``
the node name the user gave.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from esl.core import Event

__all__ = ["NodeEvent"]


class NodeEvent(Mapping[str, str]):
    """An :class:`esl.Event` tagged with the name of the node that fired it."""

    __slots__ = ("event", "node")

    def __init__(self, event: Event, node: str) -> None:
        self.event = event
        self.node = node

    def __getitem__(self, name: str) -> str:
        return self.event[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.event)

    def __len__(self) -> int:
        return len(self.event)

    def __contains__(self, name: object) -> bool:
        return name in self.event

    def __getattr__(self, name: str) -> Any:
        # name, uuid, sequence, body, raw, getall... come from the event
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.event, name)

    @property
    def hostname(self) -> str | None:
        """FreeSWITCH-Hostname of the node that fired the event."""
        return self.event.get("FreeSWITCH-Hostname")

    @property
    def core_uuid(self) -> str | None:
        """Core-UUID of the node that fired the event (changes when FreeSWITCH restarts)."""
        return self.event.get("Core-UUID")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.node} {self.event.name} uuid={self.event.uuid}>"
