"""An honest estimate of lost events from ``Event-Sequence``.

FreeSWITCH numbers every event it fires, but many threads fire events, so
they reach a listener slightly out of order: a jump in the numbers is not a
loss. :class:`SequenceTracker` keeps the numbers seen ahead of the next
expected one in a window; a number is counted lost only when it is still
missing once the window has moved ``window`` numbers past it (and is taken
back if it turns up later, while still remembered). On a capture with no loss
the estimate is zero.

It only means something when the connection receives every event (subscribed
to ``ALL`` with no filters); the connection only feeds it then.
"""

from __future__ import annotations

import heapq

__all__ = ["SequenceTracker"]


class SequenceTracker:
    """Events missing from a stream of ``Event-Sequence`` numbers, tolerating reordering."""

    __slots__ = ("expected", "ahead", "_heap", "lost", "window", "_given_up", "_rebase")

    def __init__(self, window: int = 4096) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        #: the next number expected in order (-1: none seen yet)
        self.expected = -1
        #: numbers seen beyond ``expected``
        self.ahead: set[int] = set()
        self._heap: list[int] = []
        #: numbers counted lost so far
        self.lost = 0
        self.window = window
        self._given_up: set[int] = set()  # recently counted lost (taken back if they arrive)
        self._rebase = False

    def see(self, seq: int | None) -> None:
        """Record one event's number (the caller's fast path handles ``seq == expected`` with nothing ahead)."""
        if seq is None:
            return
        exp = self.expected
        if exp < 0 or self._rebase:
            if self._rebase and exp >= 0 and seq >= exp:
                self.lost += seq - exp  # fired while we were away
            self._rebase = False
            self.expected = seq + 1
            self.ahead.clear()
            self._heap.clear()
            return
        if seq == exp:
            exp += 1
            ahead = self.ahead
            while exp in ahead:
                ahead.discard(exp)
                exp += 1
            self.expected = exp
            if not ahead:
                self._heap.clear()
            elif len(self._heap) > 2 * len(ahead) + 64:  # drop entries already passed
                self._heap = sorted(ahead)
            return
        if seq < exp:
            if seq in self._given_up:  # late, not lost
                self._given_up.discard(seq)
                self.lost -= 1
            return
        if seq in self.ahead:
            return  # a duplicate
        self.ahead.add(seq)
        heapq.heappush(self._heap, seq)
        if seq - exp > self.window or len(self.ahead) > self.window:
            self._give_up(seq)

    def _give_up(self, newest: int) -> None:
        """Count the oldest holes lost until the window fits again."""
        ahead, heap = self.ahead, self._heap
        exp = self.expected
        given = self._given_up
        while heap and (newest - exp > self.window or len(ahead) > self.window):
            low = heapq.heappop(heap)
            if low not in ahead:
                continue
            if low > exp:
                self.lost += low - exp
                if len(given) < 4 * self.window:
                    given.update(range(exp, min(low, exp + self.window)))
            ahead.discard(low)
            exp = low + 1
            while exp in ahead:
                ahead.discard(exp)
                exp += 1
        self.expected = exp
        if len(given) > 4 * self.window:
            given.clear()
        if not ahead:
            heap.clear()

    def rebase(self) -> None:
        """A reconnect: events fired while away count as lost, unless the numbers restarted."""
        self._rebase = True
