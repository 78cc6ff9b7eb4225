"""``Owners``: the one table that says who owns an event, for one logical connection.

Three namespaces, kept apart so one can never steal another's events:

* **channels**, by ``Unique-ID`` — a :class:`~esl.channel.Channel` gets every
  event of its UUID, and the table follows ``CHANNEL_UUID`` renames
  (``Old-Unique-ID`` → ``Unique-ID``);
* **jobs**, by ``Job-UUID`` — a :class:`~esl.job.Job` gets its
  ``BACKGROUND_JOB`` event; a job has a deadline, after which it fails with
  :class:`~esl.exceptions.TimeoutError` and leaves the table;
* **applications**, by ``Application-UUID`` — kept by the owning Channel
  (a blocking ``execute`` waits for the ``CHANNEL_EXECUTE_COMPLETE`` whose
  ``Application-UUID`` is the ``Event-UUID`` it sent), so they live and die
  with their channel.

The connection hands **every** event to :meth:`Owners.dispatch` as it is read,
before any flow-control decision: flow control may drop what user handlers
see, never what an owner needs. Each entry has one way out: a channel leaves
on CHANNEL_DESTROY (or when the connection is closed for good, or when a
reconnect finds it gone), a job when its result arrives, its deadline passes,
it is cancelled, or the connection drops.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Iterator, Protocol

from esl.exceptions import ConnectionError, TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from esl.core import Event
    from esl.job import Job

__all__ = ["Owned", "Owners"]

log = logging.getLogger("esl.owners")


class Owned(Protocol):
    """What the table needs of a channel owner."""

    uuid: str

    def _on_event(self, event: "Event") -> None: ...

    def _renamed(self, old: str, new: str) -> None: ...

    def _connection_lost(self, exc: ConnectionError) -> None: ...

    def _connection_closed(self, exc: ConnectionError) -> None: ...

    def _ended_while_away(self, reason: str) -> None: ...


class Owners:
    """Channels by Unique-ID and jobs by Job-UUID, of one Inbound or Session."""

    __slots__ = ("channels", "jobs", "_timers", "active", "renames", "expired", "__weakref__")

    def __init__(self) -> None:
        self.channels: dict[str, Owned] = {}
        self.jobs: dict[str, Job] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        #: number of entries; the reader skips the table while it is 0
        self.active = 0
        #: CHANNEL_UUID renames followed
        self.renames = 0
        #: jobs that reached their deadline
        self.expired = 0

    def __len__(self) -> int:
        return self.active

    # -- the reader's entry point -----------------------------------------------------

    def dispatch(self, event: "Event") -> None:
        """Hand ``event`` to its owner, if it has one (called for every event, in stream order)."""
        uuid = event.uuid
        if uuid is not None and self.channels:
            owner = self.channels.get(uuid)
            if owner is None and event.name == "CHANNEL_UUID":
                owner = self._follow_rename(event, uuid)
            if owner is not None:
                owner._on_event(event)
        if self.jobs:
            job_uuid = event.job_uuid
            if job_uuid is not None and event.name == "BACKGROUND_JOB":
                job = self.jobs.get(job_uuid)
                if job is not None:
                    self.remove_job(job_uuid)
                    job._resolve(event)

    def _follow_rename(self, event: "Event", new: str) -> Owned | None:
        old = event.get("Old-Unique-ID")
        if not old:
            return None
        owner = self.channels.pop(old, None)
        if owner is None:
            return None
        self.channels[new] = owner
        self.renames += 1
        owner._renamed(old, new)
        return owner

    # -- channels ---------------------------------------------------------------------

    def add_channel(self, owner: Owned) -> None:
        """Route the events of ``owner.uuid`` to ``owner`` (replacing no one: ``ValueError`` if taken)."""
        current = self.channels.get(owner.uuid)
        if current is owner:
            return
        if current is not None:
            raise ValueError(f"channel {owner.uuid} already has an owner on this connection")
        self.channels[owner.uuid] = owner
        self.active += 1

    def remove_channel(self, owner: Owned) -> None:
        """Stop routing ``owner``'s events (no error if it is not there)."""
        if self.channels.get(owner.uuid) is owner:
            del self.channels[owner.uuid]
            self.active -= 1

    def channel(self, uuid: str) -> Owned | None:
        """The owner of ``uuid``, or ``None``."""
        return self.channels.get(uuid)

    def __iter__(self) -> Iterator[Owned]:
        return iter(tuple(self.channels.values()))

    # -- jobs -------------------------------------------------------------------------

    def add_job(self, job: "Job", deadline: float | None) -> None:
        """Own ``job`` until its BACKGROUND_JOB arrives, or for ``deadline`` seconds at most."""
        if job.uuid in self.jobs:
            raise ValueError(f"a job with uuid {job.uuid} is already pending")
        self.jobs[job.uuid] = job
        self.active += 1
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timers[job.uuid] = loop.call_later(deadline, self._expire, job.uuid)
        job.add_done_callback(self._job_done)

    def _job_done(self, job: "Job") -> None:
        if self.jobs.get(job.uuid) is job:  # cancelled or failed from outside
            self.remove_job(job.uuid)

    def remove_job(self, job_uuid: str) -> "Job | None":
        """Stop owning the job ``job_uuid``; the Job, or ``None``."""
        job = self.jobs.pop(job_uuid, None)
        if job is not None:
            self.active -= 1
            timer = self._timers.pop(job_uuid, None)
            if timer is not None:
                timer.cancel()
        return job

    def _expire(self, job_uuid: str) -> None:
        job = self.remove_job(job_uuid)
        if job is not None:
            self.expired += 1
            job._fail(TimeoutError(f"background job {job_uuid} ({job.command!r}): no result within its deadline"))

    # -- the connection's life --------------------------------------------------------

    def connection_lost(self, exc: ConnectionError) -> None:
        """The socket dropped: jobs fail and leave; channels fail their pending waits but stay owned.

        (An Inbound that reconnects checks them afterwards; one closed for good calls :meth:`close`.)
        """
        for job_uuid in list(self.jobs):
            job = self.remove_job(job_uuid)
            if job is not None:
                job._fail(ConnectionError(f"{exc} (job {job_uuid} {job.command!r} lost)", exc.reason))
        for owner in tuple(self.channels.values()):
            try:
                owner._connection_lost(exc)
            except Exception:  # pragma: no cover - an owner bug must not stop the others
                log.exception("channel owner %r failed on connection loss", owner)

    def close(self, exc: ConnectionError) -> None:
        """The logical connection is over for good: fail and remove everything."""
        self.connection_lost(exc)
        for owner in tuple(self.channels.values()):
            self.remove_channel(owner)
            try:
                owner._connection_closed(exc)
            except Exception:  # pragma: no cover
                log.exception("channel owner %r failed on close", owner)

    def end_missing(self, alive: set[str], reason: str) -> list[Owned]:
        """After a reconnect: end and remove every channel whose UUID is not in ``alive``."""
        ended = []
        for owner in tuple(self.channels.values()):
            if owner.uuid not in alive:
                self.remove_channel(owner)
                try:
                    owner._ended_while_away(reason)
                except Exception:  # pragma: no cover
                    log.exception("channel owner %r failed to end", owner)
                ended.append(owner)
        return ended

    def __repr__(self) -> str:
        return f"<Owners channels={len(self.channels)} jobs={len(self.jobs)}>"
