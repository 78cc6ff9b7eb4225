"""``App``: named scenarios, the calls they run, and the table of live and recent calls.

A scenario is a coroutine function ``scenario(call, data)`` registered with
``@app.scenario("name")``. :meth:`App.start_call` places a call through the
app's connection (an :class:`esl.Inbound`, or anything ``Channel.create``
accepts), runs the scenario with the caller's custom data once the call is
answered, and keeps a :class:`CallRecord` of it: state, legs, timestamps,
hangup cause, the scenario's result or error, and the lifecycle events the
HTTP server streams. Live records are bounded by ``max_concurrent``; ended
ones stay in a table bounded by ``max_finished`` entries and ``finished_ttl``
seconds.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from esl.channel import Channel
from esl.exceptions import ChannelError, ESLError, OriginateError
from esl.serve.record import CallRecord, Context, _cause, _current, _jsonable, context, report
from esl.types import ChannelState

__all__ = ["App", "CallRecord", "Context", "LimitExceeded", "ScenarioStats", "context", "report"]

log = logging.getLogger("esl.serve")

Scenario = Callable[..., Awaitable[Any]]

#: Outcomes a scenario call ends with.
OUTCOMES = ("completed", "failed", "disconnected", "error", "timeout", "cancelled")

#: Seconds past the ring timeout to wait for an answer or a failure before giving up on a call.
ANSWER_GRACE = 10.0



def encode_data(data: Any) -> str:
    """``data`` as the compact JSON put in the channel variable.

    ``$`` is written ``\\u0024`` (same JSON): FreeSWITCH would drop an originate
    value holding ``${``. Channel.create escapes everything else.
    """
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("$", "\\u0024")


class LimitExceeded(ESLError):
    """A call was refused because ``max_concurrent`` calls are already live."""


class _Overtime(Exception):
    """The scenario ran past ``max_duration``."""


class _NoAnswer(Exception):
    """The call neither answered nor failed in time (FreeSWITCH never said)."""


@dataclass(frozen=True)
class ScenarioStats:
    """A snapshot of an App's scenario counters (what the metrics exporter reads)."""

    #: calls placing or running right now
    live: int
    #: the configured limit on ``live``
    max_concurrent: int
    #: whether the app's connection to FreeSWITCH is up
    connected: bool
    #: calls started, by scenario
    started: dict[str, int] = field(default_factory=dict)
    #: calls ended, by (scenario, outcome)
    outcomes: dict[tuple[str, str], int] = field(default_factory=dict)
    #: requests refused, by reason (``limit``, ``not_ready``)
    refused: dict[str, int] = field(default_factory=dict)
    #: ended calls kept in the table for ``GET /calls/{id}``
    finished_kept: int = 0


class App:
    """Named scenarios and the calls started with them.

    ``connection`` is the :class:`esl.Inbound` calls are placed through; without
    one, ``host``/``port``/``password`` make an auto-reconnecting Inbound when the
    app starts. ``answer_first``: run the scenario once the call is answered (a
    call that fails never runs it); otherwise at once after placing it.
    ``hangup_on_return``: hang up every leg still up when the scenario returns.
    ``max_duration``: seconds a scenario may run before it is cancelled (outcome
    ``timeout``). ``ring_timeout``: default seconds of ringing. ``variable``: the
    channel variable that carries the data as JSON (``None``: the data stays out of
    FreeSWITCH). ``variables``: more channel variables set on every call (besides
    ``esl_scenario`` and ``esl_call_id``).
    """

    def __init__(self, connection: Any = None, *, host: str = "127.0.0.1", port: int = 8021,
                 password: str = "ClueCon", max_concurrent: int = 100, max_finished: int = 1000,
                 finished_ttl: float = 3600.0, max_events: int = 256, max_duration: float | None = 3600.0,
                 ring_timeout: float = 60.0, answer_first: bool = True, hangup_on_return: bool = True,
                 variable: str | None = "esl_data", variables: Mapping[str, str] | None = None) -> None:
        if max_concurrent < 1 or max_finished < 0 or max_events < 1:
            raise ValueError("max_concurrent and max_events must be positive, max_finished non-negative")
        self.connection = connection
        self.host, self.port, self._password = host, port, password
        self.max_concurrent = max_concurrent
        self.max_finished = max_finished
        self.finished_ttl = finished_ttl
        self.max_events = max_events
        self.max_duration = max_duration
        self.ring_timeout = ring_timeout
        self.answer_first = answer_first
        self.hangup_on_return = hangup_on_return
        self.variable = variable
        self.variables = dict(variables or {})
        self.scenarios: dict[str, Scenario] = {}
        self.calls: dict[str, CallRecord] = {}
        self.finished: collections.OrderedDict[str, CallRecord] = collections.OrderedDict()
        self._runners: set[asyncio.Task[None]] = set()
        self._owns_connection = False
        self._started: collections.Counter[str] = collections.Counter()
        self._outcomes: collections.Counter[tuple[str, str]] = collections.Counter()
        self._refused: collections.Counter[str] = collections.Counter()

    def __repr__(self) -> str:
        return f"<esl.serve.App scenarios={sorted(self.scenarios)} live={len(self.calls)}>"

    # -- scenarios ---------------------------------------------------------------

    def scenario(self, name: str) -> Callable[[Scenario], Scenario]:
        """Register the decorated coroutine function as scenario ``name``."""
        if not isinstance(name, str) or not name or len(name) > 64 or not all(
                c.isalnum() or c in "-_." for c in name):
            raise ValueError(f"invalid scenario name {name!r} (letters, digits, '-', '_', '.')")

        def register(fn: Scenario) -> Scenario:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"scenario {name!r} must be an async function")
            if name in self.scenarios:
                raise ValueError(f"scenario {name!r} is already registered")
            self.scenarios[name] = fn
            return fn

        return register

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Connect the app's Inbound (made here when none was given)."""
        if self.connection is None:
            from esl.inbound import Inbound

            self.connection = Inbound(self.host, self.port, self._password, reconnect=True, keepalive=20.0)
            self._owns_connection = True
        if not getattr(self.connection, "connected", True):
            await self.connection.connect()

    async def stop(self, grace: float = 5.0) -> None:
        """Cancel running scenarios (their calls are hung up), wait up to ``grace`` seconds, disconnect."""
        for rec in list(self.calls.values()):
            rec.cancel_requested = True
            if rec._body is not None:
                rec._body.cancel()
        if self._runners:
            await asyncio.wait(set(self._runners), timeout=grace)
        if self._owns_connection and self.connection is not None:
            await self.connection.close()

    @property
    def ready(self) -> bool:
        """Whether calls can be placed: the connection to FreeSWITCH is up."""
        conn = self.connection
        return conn is not None and bool(getattr(conn, "connected", False))

    def stats(self) -> ScenarioStats:
        self._expire()
        return ScenarioStats(live=len(self.calls), max_concurrent=self.max_concurrent, connected=self.ready,
                             started=dict(self._started), outcomes=dict(self._outcomes),
                             refused=dict(self._refused), finished_kept=len(self.finished))

    # -- the call table ------------------------------------------------------------

    def get(self, call_id: str) -> CallRecord | None:
        """A live or recently ended call by id."""
        self._expire()
        return self.calls.get(call_id) or self.finished.get(call_id)

    def _expire(self) -> None:
        horizon = time.time() - self.finished_ttl
        finished = self.finished
        while finished:
            oldest = next(iter(finished.values()))
            if len(finished) <= self.max_finished and (oldest.ended_at or 0) >= horizon:
                break
            finished.popitem(last=False)

    def start_call(self, scenario: str, destination: str, data: dict[str, Any] | None = None, *,
                   caller_id_number: str | None = None, caller_id_name: str | None = None,
                   timeout: float | None = None) -> CallRecord:
        """Place a call and run ``scenario`` on it in the background; returns its record at once.

        Raises KeyError for an unknown scenario, :class:`LimitExceeded` when
        ``max_concurrent`` calls are live, :class:`esl.exceptions.ConnectionError`
        when the connection to FreeSWITCH is down.
        """
        if scenario not in self.scenarios:
            raise KeyError(scenario)
        if not self.ready:
            self._refused["not_ready"] += 1
            from esl.exceptions import ConnectionError

            raise ConnectionError("not connected to FreeSWITCH")
        if len(self.calls) >= self.max_concurrent:
            self._refused["limit"] += 1
            raise LimitExceeded(f"{len(self.calls)} calls are live (max_concurrent={self.max_concurrent})")
        rec = CallRecord(self, scenario, destination, dict(data or {}), caller_id_number, caller_id_name,
                         timeout if timeout is not None else self.ring_timeout)
        self.calls[rec.id] = rec
        self._started[scenario] += 1
        log.info("call %s (%s) to %s started", rec.id, scenario, destination,
                 extra={"call_id": rec.id, "scenario": scenario})
        task = asyncio.ensure_future(self._run(rec))
        self._runners.add(task)
        task.add_done_callback(self._runners.discard)
        return rec

    async def hangup(self, rec: CallRecord, cause: str = "NORMAL_CLEARING") -> None:
        """Hang up every leg of a live call and stop its scenario (outcome ``cancelled``)."""
        if not rec.live:
            return
        rec.cancel_requested = True
        if rec._body is not None and not rec._body.done():
            rec._body.cancel()
        await self._hangup_legs(rec, cause)

    # -- running one call -------------------------------------------------------------

    async def _run(self, rec: CallRecord) -> None:
        outcome, cause_hint = "error", None
        try:
            try:
                variables = {**self.variables, "esl_scenario": rec.scenario, "esl_call_id": rec.id}
                if self.variable:
                    variables[self.variable] = encode_data(rec.data)
                channel = await Channel.create(self.connection, rec.destination, variables,
                                               caller_id_number=rec.caller_id_number,
                                               caller_id_name=rec.caller_id_name, timeout=rec.timeout)
            except (ValueError, ESLError, OSError) as exc:
                rec.error = f"{type(exc).__name__}: {exc}"
                outcome, cause_hint = "failed", "PLACEMENT_FAILED"
                return
            rec.channel = channel
            rec.placed_at = time.time()
            rec.state = "ringing"
            rec.emit("placed", {"uuid": channel.uuid})
            self._watch(rec, channel)
            if rec.cancel_requested:
                outcome = "cancelled"
                return
            body = rec._body = asyncio.ensure_future(self._body(rec, channel))
            try:
                rec.result = _jsonable(await body)
                outcome = "completed"
            except asyncio.CancelledError:
                if not rec.cancel_requested:
                    raise
                outcome = "cancelled"
            except OriginateError as exc:
                outcome, cause_hint = "failed", exc.cause
            except _NoAnswer as exc:
                outcome, cause_hint = "failed", "NO_ANSWER"
                rec.error = str(exc)
            except ChannelError as exc:
                outcome, cause_hint = "disconnected", exc.cause
                rec.error = f"{type(exc).__name__}: {exc}"
            except _Overtime as exc:
                outcome = "timeout"
                rec.error = str(exc)
            except Exception as exc:
                outcome = "error"
                rec.error = f"{type(exc).__name__}: {exc}"
                log.error("scenario %s of call %s raised", rec.scenario, rec.id, exc_info=exc,
                          extra={"call_id": rec.id, "uuid": channel.uuid})
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            if rec.channel is not None and (self.hangup_on_return or outcome != "completed"):
                await self._hangup_legs(rec, "NORMAL_CLEARING", wait=2.0)
            self._finish(rec, outcome, cause_hint)

    async def _body(self, rec: CallRecord, channel: Channel) -> Any:
        if self.answer_first:
            limit = (rec.timeout or self.ring_timeout) + ANSWER_GRACE
            try:
                await channel.wait("CHANNEL_ANSWER", timeout=limit)
            except asyncio.TimeoutError:
                raise _NoAnswer(f"neither an answer nor a failure was seen within {limit:g}s") from None
            rec.mark("connected", channel.uuid)
        fn = self.scenarios[rec.scenario]
        ctx = Context(rec)
        _current.set(ctx)  # the body runs in its own task: the value stays with it
        try:
            params = len(inspect.signature(fn).parameters)
        except (TypeError, ValueError):  # pragma: no cover - builtins
            params = 2
        coro = fn(channel.call, rec.data, ctx) if params >= 3 else fn(channel.call, rec.data)
        if self.max_duration is None:
            return await coro
        task = asyncio.ensure_future(coro)
        try:
            done, _ = await asyncio.wait({task}, timeout=self.max_duration)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.cancel()
            await asyncio.wait({task})
            raise _Overtime(f"the scenario ran longer than max_duration ({self.max_duration:g}s)")
        return task.result()

    def _watch(self, rec: CallRecord, channel: Channel) -> None:
        # the hooks run on the connection's executor; each mark is emitted once, whoever comes first
        channel.on("answered", lambda ch, _event: rec.mark("connected", ch.uuid))
        channel.on("failed", lambda ch, cause: rec.mark("failed", ch.uuid, cause))
        channel.on("hangup", lambda ch, cause: rec.mark("disconnected", ch.uuid, cause))
        if channel.answered:  # answered before the hooks were in place
            rec.mark("connected", channel.uuid)

    async def _hangup_legs(self, rec: CallRecord, cause: str, wait: float = 0.0) -> None:
        ch = rec.channel
        if ch is None:
            return
        legs = [leg for leg in ch.call.legs if not leg.gone]
        for leg in legs:
            try:
                await leg.hangup(cause, block=False)
            except (ESLError, OSError) as exc:
                log.warning("hanging up %s of call %s failed: %s", leg.uuid, rec.id, exc)
        if wait and legs and not ch.gone:
            try:
                await ch.wait(ChannelState.HANGUP, timeout=wait)
            except (ESLError, asyncio.TimeoutError):
                pass

    def _finish(self, rec: CallRecord, outcome: str, cause_hint: str | None) -> None:
        ch = rec.channel
        if ch is not None and ch.hangup_cause is not None:
            rec.hangup_cause = _cause(ch.hangup_cause)
        elif rec.hangup_cause is None and cause_hint is not None:
            rec.hangup_cause = str(cause_hint)
        uuid = ch.uuid if ch is not None else ""
        if outcome == "failed":
            rec.mark("failed", uuid)
        elif ch is not None and ch.gone and "connected" in rec._marked:
            rec.mark("disconnected", uuid)
        rec.outcome = outcome
        rec.state = "ended"
        rec.ended_at = time.time()
        rec._legs_final = rec.legs()
        rec.emit("ended", {"outcome": outcome, "hangup_cause": rec.hangup_cause, "result": rec.result,
                           "error": rec.error})
        rec.channel = None  # the Channel (and its event history) is not kept with the record
        rec._body = None
        rec.ended.set()
        rec._changed.set()
        self._outcomes[(rec.scenario, outcome)] += 1
        self.calls.pop(rec.id, None)
        if self.max_finished:
            self.finished[rec.id] = rec
        self._expire()
        log.info("call %s (%s) ended: %s", rec.id, rec.scenario, outcome,
                 extra={"call_id": rec.id, "outcome": outcome, "hangup_cause": rec.hangup_cause})
