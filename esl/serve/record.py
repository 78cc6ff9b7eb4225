"""``CallRecord`` and ``Context``: one scenario call as the HTTP API and the scenario see it.

A record holds what ``GET /calls/{id}`` shows (state, legs, timestamps, hangup cause, result or
error) and the call's lifecycle events in a bounded log that event streams read from; the
scenario reports into it through its :class:`Context` (or :func:`report`).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import itertools
import json
import time
import uuid as _uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from esl.channel import Channel
    from esl.serve.app import App

__all__ = ["CallRecord", "Context", "context", "report"]

_current: contextvars.ContextVar[Context] = contextvars.ContextVar("esl_serve_context")


def _cause(value: object) -> str | None:
    return None if value is None else str(value)


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


class Context:
    """What a running scenario knows about itself: its call id, data and first leg, and a way to report.

    Passed as the third argument to scenarios declared with three parameters, and
    returned by :func:`esl.serve.context` inside any scenario.
    """

    __slots__ = ("_record",)

    def __init__(self, record: CallRecord) -> None:
        self._record = record

    @property
    def id(self) -> str:
        """The call id the HTTP API knows this call by."""
        return self._record.id

    @property
    def scenario(self) -> str:
        return self._record.scenario

    @property
    def data(self) -> dict[str, Any]:
        """The custom data the call was started with."""
        return self._record.data

    @property
    def channel(self) -> Channel | None:
        """The call's first leg (``None`` before it is placed)."""
        return self._record.channel

    def report(self, name: str, /, **fields: Any) -> None:
        """Publish a scenario event to the call's stream: ``report`` with ``{"name": name, "data": fields}``.

        Field values should be JSON-serialisable (others are sent as their repr).
        """
        if not isinstance(name, str) or not name or len(name) > 64 or not name.isprintable():
            raise ValueError(f"invalid report name {name!r}")
        self._record.emit("report", {"name": name, "data": {k: _jsonable(v) for k, v in fields.items()}})


def context() -> Context:
    """The :class:`Context` of the scenario running in the current task (LookupError outside one)."""
    return _current.get()


def report(name: str, /, **fields: Any) -> None:
    """Report a scenario event for the call of the current scenario (see :meth:`Context.report`)."""
    _current.get().report(name, **fields)


class CallRecord:
    """One call started by :meth:`App.start_call`, from placing to the end of its scenario."""

    def __init__(self, app: App, scenario: str, destination: str, data: dict[str, Any],
                 caller_id_number: str | None, caller_id_name: str | None, timeout: float | None) -> None:
        self.id = str(_uuid.uuid4())
        self.app = app
        self.scenario = scenario
        self.destination = destination
        self.data = data
        self.caller_id_number = caller_id_number
        self.caller_id_name = caller_id_name
        self.timeout = timeout
        #: placing -> ringing -> connected -> ended
        self.state = "placing"
        self.outcome: str | None = None
        self.hangup_cause: str | None = None
        self.result: Any = None
        self.error: str | None = None
        self.created_at = time.time()
        self.placed_at: float | None = None
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.channel: Channel | None = None
        self.cancel_requested = False
        self._body: asyncio.Future[Any] | None = None
        self._legs_final: list[dict[str, Any]] | None = None
        self._log: collections.deque[tuple[int, str, dict[str, Any]]] = collections.deque(maxlen=app.max_events)
        self._seq = itertools.count(1)
        self._changed = asyncio.Event()
        self._marked: set[str] = set()
        self.ended = asyncio.Event()

    # -- events -----------------------------------------------------------------

    def emit(self, name: str, data: dict[str, Any]) -> None:
        """Append a lifecycle event to the call's bounded log and wake its streams."""
        if self.ended.is_set():
            return
        payload = {"call_id": self.id, "time": _iso(time.time()), **data}
        self._log.append((next(self._seq), name, payload))
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def mark(self, what: str, uuid: str, cause: Any = None) -> None:
        """Record and emit a lifecycle moment once: ``connected``, ``failed`` or ``disconnected``."""
        marked = self._marked
        if what in marked or (what == "disconnected" and "failed" in marked):
            return
        marked.add(what)
        if what == "connected":
            self.answered_at = time.time()
            if self.state != "ended":
                self.state = "connected"
            self.emit("connected", {"uuid": uuid})
            return
        if cause is not None:
            self.hangup_cause = _cause(cause)
        payload = {"uuid": uuid, "cause": self.hangup_cause}
        if what == "failed" and self.error:
            payload["error"] = self.error
        self.emit(what, payload)

    def events_after(self, seq: int) -> list[tuple[int, str, dict[str, Any]]]:
        """Logged events newer than ``seq`` (the oldest may have been dropped from a long log)."""
        return [entry for entry in self._log if entry[0] > seq]

    async def wait_changed(self, timeout: float) -> None:
        """Wait until an event is emitted (or the call ends), at most ``timeout`` seconds."""
        if self.ended.is_set():
            return
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    # -- views -------------------------------------------------------------------

    @property
    def live(self) -> bool:
        return not self.ended.is_set()

    def legs(self) -> list[dict[str, Any]]:
        """The call's legs as JSON-ready dicts (frozen when the call ends)."""
        if self._legs_final is not None:
            return self._legs_final
        ch = self.channel
        if ch is None:
            return []
        return [
            {"uuid": leg.uuid, "state": leg.state.name, "answered": leg.answered,
             "hangup_cause": _cause(leg.hangup_cause), "dial_path": leg.dial_path}
            for leg in ch.call.legs
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "scenario": self.scenario, "destination": self.destination,
            "state": self.state, "outcome": self.outcome, "hangup_cause": self.hangup_cause,
            "result": self.result, "error": self.error, "legs": self.legs(),
            "created_at": _iso(self.created_at), "placed_at": _iso(self.placed_at),
            "answered_at": _iso(self.answered_at), "ended_at": _iso(self.ended_at),
        }
