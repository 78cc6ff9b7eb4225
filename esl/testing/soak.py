"""A soak run: many simulated calls through one Inbound, to show nothing grows and no owned event is lost.

``await soak(fake, client, calls=200_000)`` drives the connection the way a
busy switch does, fast: for every call a :class:`~esl.Channel` is attached
(owned by the connection), the fake writes the call's events straight to the
socket (CHANNEL_CREATE, ANSWER, a CHANNEL_UUID rename for some, HANGUP,
DESTROY), some calls also run a ``bgapi`` job, a user handler on ``"*"`` is
slow now and then (flow control engages), and the connection is dropped and
reconnected ``reconnects`` times along the way. The report says how many
calls ended as they should (every channel saw its DESTROY), what the
connection's tables hold afterwards (they should be empty), and, with
``trace=True``, how much traced memory grew after the warm-up.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
import uuid as uuidlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from esl.core import Event

if TYPE_CHECKING:  # pragma: no cover
    from esl.inbound import Inbound
    from esl.stats import ConnectionStats
    from esl.testing.server import FakeFreeSWITCH

__all__ = ["SoakReport", "soak"]

_PLACEHOLDER = "00000000-0000-4000-8000-000000000000"
_OLD = "11111111-1111-4111-8111-111111111111"


@dataclass(frozen=True)
class SoakReport:
    """What a :func:`soak` run did and what it left behind."""

    calls: int
    seconds: float
    events: int
    renames: int
    jobs: int
    reconnects: int
    #: calls whose Channel never saw its end (should be 0)
    unfinished: int
    #: the connection's counters after the run (channels, jobs and owners should be 0)
    stats: "ConnectionStats"
    #: memory the library held at the end minus after the warm-up (tracemalloc, the fake's own
    #: allocations left out); ``None`` without ``trace``
    memory_growth: int | None
    #: CHANNEL_ANSWER events a sync handler on each Channel saw (calls answered, less drops)
    answers: int = 0

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0


def _template(name: str, **headers: str) -> bytes:
    pairs = [("Event-Name", name), ("Core-UUID", "soak"), ("FreeSWITCH-Hostname", "soak")]
    pairs += [(k.replace("_", "-"), v) for k, v in headers.items()]
    return Event.build(pairs).frame("plain")


_LIFE = b"".join([
    _template("CHANNEL_CREATE", Unique_ID=_PLACEHOLDER, Channel_State="CS_INIT", Call_Direction="outbound"),
    _template("CHANNEL_ANSWER", Unique_ID=_PLACEHOLDER, Channel_State="CS_EXECUTE", Answer_State="answered"),
])
_RENAME = _template("CHANNEL_UUID", Unique_ID=_PLACEHOLDER, Old_Unique_ID=_OLD)
_END = b"".join([
    _template("CHANNEL_HANGUP", Unique_ID=_PLACEHOLDER, Channel_State="CS_HANGUP", Hangup_Cause="NORMAL_CLEARING"),
    _template("CHANNEL_DESTROY", Unique_ID=_PLACEHOLDER, Channel_State="CS_DESTROY",
              Hangup_Cause="NORMAL_CLEARING"),
])


def _call_bytes(uuid: str, renamed_to: str | None) -> bytes:
    u = uuid.encode()
    if renamed_to is None:
        return (_LIFE + _END).replace(_PLACEHOLDER.encode(), u)
    n = renamed_to.encode()
    return (_LIFE.replace(_PLACEHOLDER.encode(), u) + _RENAME.replace(_PLACEHOLDER.encode(), n).replace(
        _OLD.encode(), u) + _END.replace(_PLACEHOLDER.encode(), n))


async def soak(
    fake: "FakeFreeSWITCH",
    client: "Inbound",
    *,
    calls: int,
    batch: int = 500,
    rename_every: int = 10,
    job_every: int = 4,
    reconnects: int = 2,
    slow_every: int = 500,
    trace: bool = False,
    timeout: float = 60.0,
) -> SoakReport:
    """Run ``calls`` simulated calls through ``client`` (connected to ``fake``); see the module docstring."""
    from esl.channel import Channel

    handled = 0

    async def slow(event: Any) -> None:
        nonlocal handled
        handled += 1
        if handled % slow_every == 0:
            await asyncio.sleep(0.002)

    answers = 0

    def count_answer(event: Any) -> None:
        nonlocal answers
        answers += 1

    client.on("*", slow)
    batches = max(1, -(-calls // batch))
    drop_at = {batches * (i + 1) // (reconnects + 1) for i in range(reconnects)} if reconnects else set()
    # the core's bounded string caches fill during the warm-up (a tenth of the run, at least two batches)
    warmup = min(max(2, batches // 10), batches - 1)
    base_memory: int | None = None
    events = renames = jobs = 0
    unfinished = 0
    started = time.perf_counter()
    placed = 0
    try:
        for index in range(batches):
            if index == 0 and trace:
                tracemalloc.start()  # from the start: caches filled in the warm-up are not growth
            if index == warmup and trace:
                base_memory = _client_memory()
            if index in drop_at:
                before = client.reconnects
                await fake.drop_all()
                await _until(lambda: client.reconnects > before and client.connected, timeout)
            count = min(batch, calls - placed)
            uuids = [str(uuidlib.uuid4()) for _ in range(count)]
            channels = [Channel.attach(client, u, history=0) for u in uuids]
            for ch in channels:
                ch.on("CHANNEL_ANSWER", count_answer)  # a sync Channel handler per call
            if index == 0:
                await channels[0].ensure_events()
            pending_jobs = [client.bgapi(f"echo {placed + i}") for i in range(0, count, job_every)]
            jobs += len(pending_jobs)
            chunks = []
            for i, uuid in enumerate(uuids):
                renamed = None
                if rename_every and (placed + i) % rename_every == 0:
                    renamed = str(uuidlib.uuid4())
                    renames += 1
                chunks.append(_call_bytes(uuid, renamed))
                events += 5 if renamed else 4
            job_objects = await asyncio.gather(*pending_jobs)
            await fake.fire_raw(_conn(fake), b"".join(chunks))
            for job in job_objects:
                await job.wait(timeout)
            try:
                await _until(lambda: all(ch.destroyed for ch in channels), timeout)
            except asyncio.TimeoutError:
                pass
            unfinished += sum(not ch.destroyed for ch in channels)
            placed += count
        await client.drain(timeout)
        seconds = time.perf_counter() - started
        growth = None
        if trace and base_memory is not None:
            growth = _client_memory() - base_memory
    finally:
        if trace and tracemalloc.is_tracing():
            tracemalloc.stop()
        client.remove("*", slow)
    return SoakReport(calls=placed, seconds=seconds, events=events, renames=renames, jobs=jobs,
                      reconnects=client.reconnects, unfinished=unfinished, stats=client.stats(),
                      memory_growth=growth, answers=answers)


def _client_memory() -> int:
    """Traced bytes allocated by the library itself (the fake in the same process left out)."""
    gc.collect()  # one-off garbage (a reconnect's exceptions) is not growth
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(True, "*/esl/*"),
        tracemalloc.Filter(False, "*/esl/testing/*"),
    ])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def _conn(fake: "FakeFreeSWITCH") -> Any:
    live = [c for c in fake.connections if c.authenticated and not getattr(c, "outbound", False)]
    return live[-1]


async def _until(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise asyncio.TimeoutError
        await asyncio.sleep(0.002)
