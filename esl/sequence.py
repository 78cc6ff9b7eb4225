"""An honest estimate of lost events from ``Event-Sequence``.

Two things make a plain "gap count" wrong:

* FreeSWITCH numbers an event when it is *created* (``switch_event_create``
  calls ``switch_event_prep_for_delivery``), and many threads create and fire
  events, so they reach a listener out of order — in the real captures an
  event arrives up to ~3,800 numbers after its successors;
* some events are created and never fired (REQUEST_PARAMS for XML lookups,
  CHANNEL_DATA dumps...): their numbers never arrive. In the captures these
  are isolated (runs of 1 to 3 missing numbers, ~2% of the numbers), with no
  event lost.

So :class:`SequenceTracker` keeps the numbers seen ahead of the next expected
one in a window (``window`` numbers), settles a hole only once the window has
moved past it (a late number inside a settled run is taken back), and counts
as lost only runs of at least ``min_run`` consecutive missing numbers — what
a full listener queue or an outage produces. Shorter holes are counted apart
as ``unfired``. The result is a lower bound: scattered single losses look like
unfired events. On the real captures (no loss) it is zero.

It only means something when the connection receives every event (subscribed
to ``ALL`` with no filters); the connection only feeds it then.
"""

from __future__ import annotations

import heapq

__all__ = ["SequenceTracker"]


class SequenceTracker:
    """Events missing from a stream of ``Event-Sequence`` numbers, tolerating reordering."""

    __slots__ = ("expected", "ahead", "_heap", "lost", "unfired", "window", "min_run", "_given_up", "_rebase")

    def __init__(self, window: int = 16384, min_run: int = 4) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        #: the next number expected in order (-1: none seen yet)
        self.expected = -1
        #: numbers seen beyond ``expected``
        self.ahead: set[int] = set()
        self._heap: list[int] = []
        #: numbers counted lost so far (runs of ``min_run`` or more)
        self.lost = 0
        #: numbers missing in shorter runs: events FreeSWITCH created but never fired
        self.unfired = 0
        self.window = window
        self.min_run = min_run
        self._given_up: set[int] = set()  # recently counted lost (taken back if they arrive)
        self._rebase = False

    def see(self, seq: int | None) -> None:
        """Record one event's number (the caller's fast path handles ``seq == expected`` with nothing ahead)."""
        if seq is None:
            return
        exp = self.expected
        if exp < 0 or self._rebase:
            if self._rebase and exp >= 0 and seq - exp >= self.min_run:
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
                run = low - exp
                if run >= self.min_run:
                    self.lost += run
                    if len(given) < 4 * self.window:
                        given.update(range(exp, min(low, exp + self.window)))
                else:
                    self.unfired += run
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
