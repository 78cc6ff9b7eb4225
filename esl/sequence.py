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

__all__ = ["SequenceTracker"]


class SequenceTracker:
    """Events missing from a stream of ``Event-Sequence`` numbers, tolerating reordering.

    ``expected`` is one past the highest number seen; the numbers below it not
    seen yet are ``holes``. A number that turns up late fills its hole. Holes
    more than ``window`` numbers behind are settled: runs of ``min_run`` or
    more count as lost, shorter ones as unfired. The caller may handle the
    in-order case itself (``seq == expected``: ``expected += 1``) and call
    :meth:`see` for the rest.
    """

    __slots__ = ("expected", "holes", "lost", "unfired", "window", "min_run", "_given_up", "_rebase", "_settle_at")

    def __init__(self, window: int = 8192, min_run: int = 4) -> None:
        if window < 2:
            raise ValueError("window must be at least 2")
        #: one past the highest number seen (-1: none seen yet)
        self.expected = -1
        #: numbers below ``expected`` not seen (yet)
        self.holes: set[int] = set()
        #: numbers counted lost so far (runs of ``min_run`` or more)
        self.lost = 0
        #: numbers missing in shorter runs: events FreeSWITCH created but never fired
        self.unfired = 0
        self.window = window
        self.min_run = min_run
        self._given_up: set[int] = set()  # recently counted lost (taken back if they arrive)
        self._rebase = False
        self._settle_at = 0

    def see(self, seq: int | None) -> None:
        """Record one event's number."""
        if seq is None:
            return
        exp = self.expected
        if exp < 0 or self._rebase:
            self._restart(seq)
            self.expected = seq + 1
        elif seq == exp:
            self.expected = exp + 1
        elif seq > exp:
            self._open(exp, seq)
            self.expected = seq + 1
        else:
            self._fill(seq)
        if self.expected >= self._settle_at:
            self.settle()

    def _restart(self, seq: int) -> None:
        """The first number, or the first after a reconnect."""
        exp = self.expected
        if self._rebase and exp >= 0:
            if seq - exp >= self.min_run:
                self.lost += seq - exp  # fired while we were away
            elif seq < exp:
                self.holes.clear()  # the numbers restarted (FreeSWITCH did): the old holes mean nothing
        self._rebase = False
        if exp < 0 or seq < exp:
            self._settle_at = seq + self.window

    def _open(self, start: int, stop: int) -> None:
        """Numbers ``start`` to ``stop - 1`` were skipped."""
        if stop - start > self.window:
            self.lost += stop - start  # one run far longer than any reordering
        else:
            self.holes.update(range(start, stop))

    def _fill(self, seq: int) -> None:
        """A number below ``expected`` came late."""
        if seq in self.holes:
            self.holes.discard(seq)
        elif seq in self._given_up:  # counted lost already: taken back
            self._given_up.discard(seq)
            self.lost -= 1

    def settle(self) -> None:
        """Settle the holes more than ``window`` numbers behind (called as the numbers advance)."""
        cut = self.expected - self.window
        self._settle_at = self.expected + self.window // 4
        holes = self.holes
        if not holes:
            return
        old = sorted(h for h in holes if h < cut)
        if not old:
            return
        holes.difference_update(old)
        given = self._given_up
        if len(given) > 4 * self.window:
            given.clear()
        start = prev = old[0]
        for h in old[1:] + [None]:
            if h is not None and h == prev + 1:
                prev = h
                continue
            run = prev - start + 1
            if run >= self.min_run:
                self.lost += run
                given.update(range(start, prev + 1))
            else:
                self.unfired += run
            if h is not None:
                start = prev = h

    def absorb(self, expected: int, gaps: list[tuple[int, int]], fills: list[int]) -> None:
        """Take what a :class:`esl.core.Tally` recorded since the last call (then cleared by the caller).

        ``gaps`` are jumps ahead, ``(start, stop)`` (``(-1, seq)``: the first
        number, or the first after a reconnect); ``fills`` numbers that came
        late; ``expected`` the tally's next number. A fill can only belong to
        a hole opened earlier, so taking every gap before the fills is exact.
        """
        for start, stop in gaps:
            if start < 0:
                self._restart(stop)
            else:
                self._open(start, stop)
        for seq in fills:
            self._fill(seq)
        if expected >= 0:
            self.expected = expected
        if self.expected >= self._settle_at:
            self.settle()

    def rebase(self) -> None:
        """A reconnect: events fired while away count as lost, unless the numbers restarted."""
        self._rebase = True
