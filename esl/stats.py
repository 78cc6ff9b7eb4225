"""Typed snapshots of a connection's counters: what ``stats()`` returns.

A snapshot is cheap to take and never changes after it is taken; metrics
exporters read one at scrape time, so the per-event path does no work for
them. Counters only grow for the life of the object that owns them (an
:class:`esl.Inbound` keeps its counters across reconnects); gauges
(``pending_commands``, ``jobs``, ``channels``, ``owners``, ``queue_depth``,
``paused``) say how things are right now.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["LATENCY_BUCKETS", "ConnectionStats", "LatencyHistogram", "OutboundStats"]

#: Upper bounds (seconds) of the command-latency histogram buckets; the last bucket is +Inf.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


@dataclass(frozen=True)
class LatencyHistogram:
    """Reply latency of one kind of command, in the shape Prometheus histograms take.

    ``counts[i]`` is the number of replies that took at most ``LATENCY_BUCKETS[i]``
    seconds and more than the bucket before (not cumulative); the last entry
    counts the rest (+Inf).
    """

    counts: tuple[int, ...]
    #: total seconds over all observations
    sum: float
    #: number of observations
    count: int

    @property
    def buckets(self) -> tuple[float, ...]:
        """The bucket upper bounds, ``LATENCY_BUCKETS``."""
        return LATENCY_BUCKETS

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, count at or below it)`` pairs, ending with ``(inf, count)``."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), self.counts):
            total += n
            out.append((bound, total))
        return out


@dataclass(frozen=True)
class ConnectionStats:
    """A snapshot of one logical connection (an Inbound, or an Outbound Session)."""

    #: whether the socket is up and authenticated right now
    connected: bool
    #: commands written and still waiting for their reply
    pending_commands: int
    #: background jobs waiting for their BACKGROUND_JOB event
    jobs: int
    #: Channel objects the connection tracks (live calls it owns or watches)
    channels: int
    #: entries of the ownership table: Unique-IDs, Job-UUIDs and Application-UUIDs with an owner
    owners: int
    #: events read from FreeSWITCH
    events_received: int
    #: deliveries to user handlers or ``events()`` iterators dropped by flow control
    #: (owners — Channels, Jobs, blocking executes — never lose an event to flow control)
    events_dropped: int
    #: events that could not be decoded (dropped, logged, the connection kept)
    events_malformed: int
    #: an estimate of events FreeSWITCH sent that never arrived, from Event-Sequence numbers
    #: (a reordering window; only meaningful when subscribed to ALL with no filters)
    events_lost: int
    #: events waiting in handler queues and ``events()`` buffers
    queue_depth: int
    #: whether reading from the socket is paused by flow control right now
    paused: bool
    #: how many times reading was paused
    pauses: int
    #: user handler calls that raised (each one is logged)
    handler_errors: int
    #: successful reconnects (Inbound); always 0 for a Session
    reconnects: int
    #: events received, by Event-Name (CUSTOM events by subclass as ``CUSTOM::<subclass>``); at most
    #: a few hundred names, the rest counted under ``"other"``
    events_by_name: dict[str, int] = field(default_factory=dict)
    #: reply latency per command kind (``api``, ``bgapi``, ``sendmsg``, ``event``, ``filter``, ...)
    command_latency: dict[str, LatencyHistogram] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboundStats:
    """A snapshot of an Outbound server: its sessions, live and in total."""

    #: whether the server is accepting connections
    serving: bool
    #: sessions connected right now
    sessions: int
    #: sessions accepted since start
    sessions_total: int
    #: sessions whose handler raised
    sessions_failed: int
    #: totals over live sessions (counters of ended sessions are folded in)
    connections: ConnectionStats
