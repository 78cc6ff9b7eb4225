"""``History``: the newest events of one channel, with lookups."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from esl.core import Event

__all__ = ["History"]


class History:
    """The newest events of one channel, newest last, with lookups.

    ``history["Hangup-Cause"]`` is the newest value of a header among the kept
    events (``KeyError`` if none has it), ``get(header, default)`` the same
    without the error, ``newest(name)`` the newest event of a name,
    ``reversed(history)`` iterates newest first; ``str(history)`` is a
    readable dump. Its size is ``Channel.history`` (per class) or the
    ``history=`` given when the channel was made.
    """

    __slots__ = ("_events",)

    def __init__(self, maxlen: int) -> None:
        self._events: collections.deque[Event] = collections.deque(maxlen=maxlen)

    def append(self, event: "Event") -> None:
        self._events.append(event)

    @property
    def maxlen(self) -> int:
        """How many events are kept."""
        return self._events.maxlen or 0

    def __len__(self) -> int:
        return len(self._events)

    def __iter__(self) -> Iterator["Event"]:
        return iter(self._events)

    def __reversed__(self) -> Iterator["Event"]:
        return reversed(self._events)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, int):
            return self._events[key]
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, header: str, default: str | None = None) -> str | None:
        """The newest value of ``header`` among the kept events, or ``default``."""
        for event in reversed(self._events):
            value = event.get(header)
            if value is not None:
                return value
        return default

    def newest(self, name: str) -> "Event | None":
        """The newest kept event named ``name``, or ``None``."""
        for event in reversed(self._events):
            if event.name == name:
                return event
        return None

    def clear(self) -> None:
        self._events.clear()

    def __str__(self) -> str:
        lines = []
        for event in self._events:
            extra = [f"{h}={v}" for h in ("Channel-State", "Answer-State", "Application", "DTMF-Digit",
                                          "Hangup-Cause") if (v := event.get(h)) is not None]
            lines.append(f"{event.get('Event-Date-Timestamp') or '-'} {event.name} {' '.join(extra)}".rstrip())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<History {len(self._events)}/{self.maxlen}>"
