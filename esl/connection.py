"""``Connection``: the command layer and event entry shared by :class:`~esl.Inbound` and :class:`~esl.Session`.

A Connection is one *logical* connection to FreeSWITCH. It outlives its
socket (an :class:`~esl.protocol.ESLProtocol`; an Inbound gets a new one on
each reconnect) and composes the pieces that make it up:

* :class:`~esl.owners.Owners` — who owns which Unique-ID / Job-UUID; every
  event goes there first, before any flow control;
* :class:`~esl.executor.Executor` — where user code runs (bounded, ordered);
* :class:`~esl.dispatch.Dispatcher` — user handlers and ``events()``
  iterators, under the flow-control policy;
* the command verbs (``api``, ``bgapi``, ``subscribe``, ``filter``, …), each
  building its bytes through :mod:`esl.commands` (CR/LF/NUL refused), and the
  state they leave (subscriptions, filters, …) that a reconnect re-applies;
  set-up the library does on its own behalf (the BACKGROUND_JOB subscription
  and filter, the channel events, a channel's ``Unique-ID`` filter) is
  one-shot: concurrent callers share one command in flight.

Every method that waits on FreeSWITCH takes a ``timeout`` (seconds; the
default is ``self.timeout``; ``None`` waits without limit) and raises
:class:`esl.exceptions.TimeoutError` when it passes; a dropped connection
raises :class:`esl.exceptions.ConnectionError`.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import logging
import uuid as _uuid
import weakref
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Callable, Iterable, TypeVar, overload

from esl.commands import HeaderItems, build_command, build_sendmsg, check_line, redact
from esl.core import DEFAULT_MAX_SIZE
from esl.dispatch import Dispatcher, EventStream, Handler
from esl.exceptions import CommandError, ConnectionError, TimeoutError
from esl.executor import Executor
from esl.job import Job
from esl.owners import Owners
from esl.protocol import ESLProtocol
from esl.sequence import SequenceTracker
from esl.stats import LATENCY_BUCKETS, ConnectionStats, LatencyHistogram

if TYPE_CHECKING:  # pragma: no cover
    from esl.channel import Channel
    from esl.core import Event

__all__ = ["CHANNEL_EVENTS", "Connection"]

log = logging.getLogger("esl.connection")

_ERROR_PREFIXES = ("-ERR", "-USAGE")
H = TypeVar("H", bound=Callable[..., Any])
Timeout = float | None | EllipsisType

#: The events a Channel lives on; subscribed (additively) when a Channel is used on an Inbound.
CHANNEL_EVENTS = (
    "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE", "CHANNEL_ANSWER",
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_OUTGOING", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_ORIGINATE", "CHANNEL_UUID",
    "CHANNEL_HOLD", "CHANNEL_UNHOLD", "DTMF", "PLAYBACK_START", "PLAYBACK_STOP", "RECORD_START",
    "RECORD_STOP", "CALL_UPDATE", "BACKGROUND_JOB",
)

#: Command words measured under their own name in ``stats().command_latency``; the rest are "other".
_KINDS = frozenset({
    "api", "bgapi", "sendmsg", "event", "nixevent", "noevents", "filter", "sendevent", "log", "nolog",
    "myevents", "divert_events", "linger", "nolinger", "exit", "auth", "userauth", "connect", "getvar",
    "resume",
})
#: At most this many Event-Names are counted apart in ``stats().events_by_name``; the rest are "other".
_MAX_NAMES = 256


class _Histogram:
    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def snapshot(self) -> LatencyHistogram:
        return LatencyHistogram(tuple(self.counts), self.sum, self.count)


def _kind(command: str) -> str:
    word = command.split(None, 1)[0].lower() if command.strip() else ""
    return word if word in _KINDS else "other"


class Connection:
    """One logical connection to FreeSWITCH: owners, executor, dispatcher, and the command verbs."""

    #: With ``True`` (the default), ``bgapi`` makes sure BACKGROUND_JOB reaches this
    #: connection: it subscribes to it (in the current format) if not subscribed to
    #: it or ALL, and adds ``filter Event-Name BACKGROUND_JOB`` when the connection
    #: has filters (which would otherwise hide it).
    job_subscribe: bool = True

    def __init__(
        self,
        *,
        timeout: float | None = 5.0,
        job_timeout: float | None = 600.0,
        max_queue: int = 10_000,
        policy: str = "pause",
        handler_concurrency: int = 1,
        max_size: int = DEFAULT_MAX_SIZE,
    ) -> None:
        self._timeout = timeout
        #: default deadline (seconds) of a bgapi Job: past it the Job fails with TimeoutError and is forgotten
        self.job_timeout = job_timeout
        self.max_size = max_size
        self.owners = Owners()
        self.executor = Executor(max_queue=max_queue, policy=policy, concurrency=handler_concurrency)
        # weak callbacks: the connection owns these parts, they must not keep it alive (no cycles)
        self.dispatcher = Dispatcher(self.executor, _weak(self._set_paused))
        self.executor._pressure = _weak(self.dispatcher.executor_pressure)
        self.protocol: ESLProtocol | None = None
        # state a reconnect re-applies
        self._format = "plain"
        self._subs: set[str] = set()
        self._custom: set[str] = set()
        self._filters: list[tuple[str, str]] = []
        self.log_level: str | None = None
        self.myevents_uuid: str | None = None
        self.myevents_enabled = False
        self.divert: bool | None = None
        self.linger_seconds: int | None | EllipsisType = ...  # ... = never set
        self._job_filter = False
        self._bgapi_used = False
        self._inflight: dict[object, asyncio.Future[None]] = {}
        # counters
        self._received = 0
        self._malformed = 0
        self._reconnects = 0
        self._pauses = 0
        self._names: dict[str | None, int] = {}
        self._seq = SequenceTracker()
        self._track_seq = False
        self._latency: dict[str, _Histogram] = {}
        # events read while flow control is engaged, not yet offered to the user's handlers
        self._backlog: collections.deque[Event] = collections.deque()
        self._backlog_cap = max(2 * max_queue, 10_000)
        self._backlog_dropped = 0
        self._draining = False

    # -- the socket's callbacks (esl.protocol.WireOwner) --------------------------------------

    def _new_protocol(self) -> ESLProtocol:
        return ESLProtocol(self, max_size=self.max_size)

    def _wire_event(self, event: "Event") -> None:
        """Every event read, in stream order: counters, then owners, then user delivery."""
        self._received += 1
        if self._track_seq:
            seq = event.sequence
            t = self._seq
            if seq == t.expected and not t.ahead:
                t.expected = seq + 1
            else:
                t.see(seq)
        name = event.name
        names = self._names
        n = names.get(name)
        if n is not None:
            names[name] = n + 1
        elif len(names) < _MAX_NAMES:
            names[name] = 1
        else:
            names["other"] = names.get("other", 0) + 1
        if self.owners.active:
            self.owners.dispatch(event)
        if self._backlog or self.dispatcher._pausers:
            self._hold(event)
        else:
            self.dispatcher.deliver(event)

    def _hold(self, event: "Event") -> None:
        """Flow control engaged: keep the event for the user's handlers until the queues drain."""
        backlog = self._backlog
        if len(backlog) >= self._backlog_cap:
            self._backlog_dropped += 1
        else:
            backlog.append(event)

    def _drain_backlog(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            backlog = self._backlog
            pausers = self.dispatcher._pausers
            deliver = self.dispatcher.deliver
            while backlog and not pausers:
                deliver(backlog.popleft())
        finally:
            self._draining = False

    def _drop_backlog(self) -> None:
        self._backlog_dropped += len(self._backlog)
        self._backlog.clear()

    def _wire_bad_event(self, event: "Event", exc: BaseException) -> None:
        self._malformed += 1
        log.warning("dropped an event that could not be decoded (%s: %s)", type(exc).__name__, exc,
                    exc_info=log.isEnabledFor(logging.DEBUG))

    def _wire_message(self, message: "Event") -> None:
        self.dispatcher.deliver_other(message)

    def _wire_linger(self, notice: "Event") -> None:
        log.debug("linger notice for %s", notice.get("Controlled-Session-UUID"))

    def _wire_made(self, protocol: ESLProtocol) -> None:
        pass

    def _wire_lost(self, protocol: ESLProtocol, exc: ConnectionError) -> None:
        if protocol is not self.protocol:
            return
        self.owners.connection_lost(exc)
        self._socket_lost(protocol, exc)

    def _socket_lost(self, protocol: ESLProtocol, exc: ConnectionError) -> None:
        """The current socket ended; subclasses decide what follows (reconnect, end of session)."""

    @property
    def reconnects(self) -> int:
        """Successful reconnects so far."""
        return self._reconnects

    def _set_paused(self, want: bool) -> None:
        if not want and self._backlog:
            self._drain_backlog()
            want = bool(self.dispatcher._pausers)
            if want:
                return  # paused again while draining (already counted)
        if want:
            self._pauses += 1
        proto = self.protocol
        if proto is not None:
            proto.set_paused(want)

    # -- state ----------------------------------------------------------------------------------

    @property
    def timeout(self) -> float | None:
        """The default limit, in seconds, on each wait for FreeSWITCH (``None``: no limit)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = value

    @property
    def connected(self) -> bool:
        """True while the socket is open (and, for an Inbound, authenticated)."""
        proto = self.protocol
        return proto is not None and proto.connected

    @property
    def closed(self) -> bool:
        """True once the logical connection is over for good (no reconnect will follow)."""
        proto = self.protocol
        return proto is None or proto.closed

    @property
    def lingering(self) -> bool:
        """True once FreeSWITCH said the channel is gone but the socket stays open (``linger``)."""
        proto = self.protocol
        return proto is not None and proto.lingering

    @property
    def full_control(self) -> bool:
        """False where FreeSWITCH refuses ``api``/``bgapi``/``event`` (an outbound socket without ``full``)."""
        return True

    @property
    def controlled_uuid(self) -> str | None:
        """The UUID of the call this socket controls (outbound sessions); ``None`` on an Inbound."""
        return None

    @property
    def receives_channel_events(self) -> bool:
        """Whether a Channel on this connection can get its events (False: blocking verbs refuse)."""
        return True

    @property
    def filters(self) -> tuple[tuple[str, str], ...]:
        """The ``(header, value)`` filters in force (re-applied on reconnect)."""
        return tuple(self._filters)

    @property
    def subscriptions(self) -> frozenset[str]:
        """The event names subscribed (``"ALL"`` included; CUSTOM subclasses in :attr:`custom_subscriptions`)."""
        return frozenset(self._subs)

    @property
    def custom_subscriptions(self) -> frozenset[str]:
        """The CUSTOM subclasses subscribed."""
        return frozenset(self._custom)

    @property
    def event_format(self) -> str:
        """The event format (``plain``/``json``/``xml``) of the latest subscription."""
        return self._format

    @property
    def job_filter(self) -> bool:
        """True when this connection's filters already let its BACKGROUND_JOB events through."""
        return self._job_filter

    @job_filter.setter
    def job_filter(self, value: bool) -> None:
        self._job_filter = bool(value)

    @property
    def bgapi_used(self) -> bool:
        """True once ``bgapi`` ran here (later filters then keep BACKGROUND_JOB visible)."""
        return self._bgapi_used

    @property
    def jobs(self) -> dict[str, Job]:
        """Background jobs waiting for their result, by Job-UUID (a copy)."""
        return dict(self.owners.jobs)

    @property
    def pending_commands(self) -> int:
        """Commands written whose reply has not arrived yet."""
        proto = self.protocol
        return 0 if proto is None else proto.pending_commands

    def channels(self) -> tuple["Channel", ...]:
        """The Channel objects this connection owns (live calls it placed, controls or watches)."""
        return tuple(self.owners.channels.values())  # type: ignore[arg-type]

    def _update_tracking(self) -> None:
        track = "ALL" in self._subs and not self._filters and not self.myevents_enabled
        if track and not self._track_seq:
            self._seq = SequenceTracker()
        self._track_seq = track

    def stats(self) -> ConnectionStats:
        """A snapshot of this connection's counters and tables (see :class:`esl.stats.ConnectionStats`)."""
        proto = self.protocol
        owners = self.owners
        dispatcher = self.dispatcher
        executor = self.executor
        return ConnectionStats(
            connected=self.connected,
            pending_commands=0 if proto is None else proto.pending_commands,
            jobs=len(owners.jobs),
            channels=len(owners.channels),
            owners=owners.active,
            events_received=self._received,
            events_dropped=executor.dropped + dispatcher.stream_dropped + self._backlog_dropped,
            events_malformed=self._malformed,
            events_lost=self._seq.lost,
            queue_depth=dispatcher.queue_depth + len(self._backlog),
            paused=proto is not None and proto.paused,
            pauses=self._pauses,
            handler_errors=executor.errors + dispatcher.sync_errors,
            reconnects=self._reconnects,
            events_by_name={("(none)" if k is None else k): v for k, v in self._names.items()},
            command_latency={k: h.snapshot() for k, h in self._latency.items()},
        )

    # -- sending --------------------------------------------------------------------------------

    def _wire(self) -> ESLProtocol:
        proto = self.protocol
        if proto is None or not proto.connected:
            reason = None if proto is None else proto.close_reason
            raise ConnectionError("not connected", reason or "not connected")
        return proto

    async def _request(self, data: bytes, what: str, *, api: bool = False, tag: str | None = None,
                       timeout: Timeout = ...) -> "Event":
        """Write one command and wait for its reply (``TimeoutError``/``ConnectionError``)."""
        proto = self._wire()
        fut = proto.write(data, api=api, tag=tag)
        if timeout is ...:
            timeout = self._timeout
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            if timeout is None:
                reply = await fut
            else:
                reply = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            if fut.done() and not fut.cancelled():
                reply = fut.result()
            else:
                self._timed_out(proto)
                raise TimeoutError(f"no reply to {redact(what)!r} within {timeout}s") from None
        kind = _kind(what)
        hist = self._latency.get(kind)
        if hist is None:
            hist = self._latency[kind] = _Histogram()
        hist.observe(loop.time() - start)
        return reply  # type: ignore[no-any-return]

    def _timed_out(self, proto: ESLProtocol) -> None:
        """A reply did not come in time: probe, so a lost reply cannot shift every later one."""
        if not self.full_control:
            return
        fut = proto.probe()
        if fut is not None:
            fut.add_done_callback(_retrieve)

    async def send(
        self,
        command: str,
        *,
        headers: HeaderItems | None = None,
        body: str | bytes | None = None,
        timeout: Timeout = ...,
    ) -> "Event":
        """Send a raw command (with optional headers and body); return the reply Event.

        The reply is the ``command/reply`` (look at ``reply["Reply-Text"]``) or
        the ``api/response`` (``reply.body``); ``-ERR`` is *not* raised here.
        A ``Content-Length`` header is refused (the body sets it).
        """
        data = build_command(command, headers, body)
        return await self._request(data, command, api=_kind(command) == "api", timeout=timeout)

    async def command(self, command: str, *, timeout: Timeout = ...) -> str:
        """Send a command that answers with ``command/reply``; its Reply-Text, ``CommandError`` on ``-ERR``."""
        reply = await self.send(command, timeout=timeout)
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, redact(command))
        return text

    async def api(self, command: str, *, check: bool = True, timeout: Timeout = ...) -> str:
        """Run ``api <command>``; the output text.

        With ``check`` (the default) an output starting with ``-ERR`` or
        ``-USAGE`` raises :class:`~esl.exceptions.CommandError` carrying it;
        ``check=False`` returns it. FreeSWITCH's ``-ERR no reply`` (the text it
        sends when a command printed nothing) comes back as ``""``.
        """
        check_line(command, "api command")
        reply = await self._request(build_command("api " + command), "api " + command, api=True,
                                    timeout=timeout)
        if reply.content_type == "command/reply":  # refused before it ran (e.g. no "full" control)
            text = reply.get("Reply-Text", "")
            if check:
                raise CommandError(text, command)
            return text
        body = reply.body or ""
        if body.startswith("-ERR no reply"):
            return ""
        if check and body.startswith(_ERROR_PREFIXES):
            raise CommandError(body, command)
        return body

    async def bgapi(
        self,
        command: str,
        *,
        job_uuid: str | None = None,
        timeout: Timeout = ...,
        job_timeout: Timeout = ...,
    ) -> Job:
        """Run ``bgapi <command>`` in the background; the :class:`~esl.job.Job` of its result.

        The Job-UUID is chosen here (``job_uuid`` or a random UUID) and the Job
        owned by this connection before the command is written, so the
        BACKGROUND_JOB event cannot be missed. With ``job_subscribe`` (the
        default) the connection is subscribed to BACKGROUND_JOB first if needed,
        and when it has filters, ``filter Event-Name BACKGROUND_JOB`` is added
        (once) so the filters do not hide the result. ``timeout`` bounds the
        wait for the ``+OK Job-UUID`` reply; ``job_timeout`` (default
        ``self.job_timeout``) is the job's deadline: past it the Job fails with
        :class:`~esl.exceptions.TimeoutError` and is forgotten. ``CommandError``
        if FreeSWITCH refuses the command; ``ValueError`` for a Job-UUID already
        pending here.
        """
        check_line(command, "bgapi command")
        job_id = job_uuid or str(_uuid.uuid4())
        check_line(job_id, "job uuid")
        if not job_id or " " in job_id:
            raise ValueError(f"invalid job uuid {job_id!r}")
        if job_id in self.owners.jobs:
            raise ValueError(f"a job with uuid {job_id} is already pending")
        if self.job_subscribe:
            await self._ensure_job_delivery(timeout)
        deadline = self.job_timeout if job_timeout is ... else job_timeout
        job = Job(job_id, command, timeout=deadline, loop=asyncio.get_running_loop())
        self.owners.add_job(job, deadline)
        try:
            reply = await self._request(build_command("bgapi " + command, (("Job-UUID", job_id),)),
                                        "bgapi " + command, tag=job_id, timeout=timeout)
        except BaseException:
            self.owners.remove_job(job_id)
            job.cancel()
            raise
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            self.owners.remove_job(job_id)
            job.cancel()
            raise CommandError(text, "bgapi " + command)
        return job

    async def sendmsg_raw(
        self,
        uuid: str | None,
        headers: HeaderItems,
        body: str | bytes | None = None,
        *,
        timeout: Timeout = ...,
    ) -> "Event":
        """Write ``sendmsg [<uuid>]`` with these headers (and body); the reply Event; ``CommandError`` on -ERR."""
        reply = await self._request(build_sendmsg(uuid, headers, body), "sendmsg", timeout=timeout)
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, f"sendmsg {uuid or ''}".strip())
        return reply

    # -- one-shot set-up ------------------------------------------------------------------------

    async def _once(self, key: object, step: Callable[[], Any]) -> None:
        """Run ``step()`` unless the same step is already in flight; then wait for that one."""
        while True:
            fut = self._inflight.get(key)
            if fut is None:
                break
            await asyncio.shield(fut)
            return
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            await step()
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError("set-up interrupted"))
                fut.exception()
            raise
        else:
            if not fut.done():
                fut.set_result(None)
        finally:
            if self._inflight.get(key) is fut:
                del self._inflight[key]

    async def ensure_subscribed(self, names: Iterable[str], timeout: Timeout = ...) -> None:
        """Subscribe to those of ``names`` not yet subscribed (nothing if ALL is), one command at a time."""
        wanted = tuple(n.upper() for n in names)
        while True:
            if "ALL" in self._subs:
                return
            missing = [n for n in wanted if n not in self._subs]
            if not missing:
                return
            if "subscribe" in self._inflight:
                try:
                    await asyncio.shield(self._inflight["subscribe"])
                except Exception:  # noqa: BLE001 - the other caller sees it; we try ourselves
                    pass
                continue

            async def step(missing: list[str] = missing) -> None:
                await self.subscribe(*missing, format=self._format, timeout=timeout)

            await self._once("subscribe", step)

    async def ensure_filter(self, header: str, value: str, timeout: Timeout = ...) -> bool:
        """Add ``filter <header> <value>`` unless it is in force or in flight; True if it is in force now."""
        if (header, value) in self._filters:
            return True

        async def step() -> None:
            if (header, value) not in self._filters:
                await self.filter(header, value, timeout=timeout)

        await self._once(("filter", header, value), step)
        return (header, value) in self._filters

    async def _ensure_job_delivery(self, timeout: Timeout) -> None:
        self._bgapi_used = True
        if not (self._subs & {"ALL", "BACKGROUND_JOB"}):
            await self.ensure_subscribed(("BACKGROUND_JOB",), timeout)
        if self._filters and not self._job_filter:
            await self._ensure_job_filter(timeout)

    async def _ensure_job_filter(self, timeout: Timeout) -> None:
        async def step() -> None:
            if not self._job_filter:
                await self.command("filter Event-Name BACKGROUND_JOB", timeout=timeout)
                self._job_filter = True

        await self._once(("filter", "Event-Name", "BACKGROUND_JOB"), step)

    async def ensure_channel_events(self, uuid: str) -> bool:
        """Make sure the events of channel ``uuid`` reach this connection; True if a filter was added for it.

        The channel events are subscribed once (additively, in the current
        format, unless ALL is); a ``filter Unique-ID <uuid>`` is added only when
        the connection already has filters — adding the first filter would hide
        every other event from the user's handlers.
        """
        await self.ensure_subscribed(CHANNEL_EVENTS)
        if self._filters:
            return await self.ensure_filter("Unique-ID", uuid)
        return False

    def release_channel_events(self, uuid: str) -> None:
        """Drop the ``filter Unique-ID <uuid>`` added for a channel that has ended (in the background)."""
        if ("Unique-ID", uuid) not in self._filters or not self.connected:
            return

        async def drop() -> None:
            try:
                await self.filter_delete("Unique-ID", uuid)
            except (ConnectionError, TimeoutError, CommandError):
                pass  # the filter dies with the connection anyway

        self.executor.spawn(drop(), f"dropping the Unique-ID filter of {uuid}")

    # -- subscriptions and filters -----------------------------------------------------------------

    @staticmethod
    def _split_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
        plain: list[str] = []
        custom: list[str] = []
        for name in names:
            check_line(name, "event name")
            words = name.split()
            if not words:
                raise ValueError("empty event name")
            if words[0].upper() == "CUSTOM":
                if len(words) == 1:
                    plain.append("CUSTOM")
                custom.extend(words[1:])
            elif "::" in words[0] or len(words) > 1:
                custom.extend(words)  # subclass names such as sofia::register
            else:
                plain.append(words[0])
        return plain, custom

    async def subscribe(self, *names: str, format: str = "plain", timeout: Timeout = ...) -> str:
        """``event <format> <names...>``: receive these events (all of them when no name is given).

        A name may be ``"CUSTOM sofia::register"`` or just a subclass
        (``"sofia::register"``, anything with ``::``). Subscriptions add up.
        Returns FreeSWITCH's reply text; ``CommandError`` on ``-ERR``.
        """
        if format not in ("plain", "json", "xml"):
            raise ValueError(f"format must be plain, json or xml, not {format!r}")
        plain, custom = self._split_names(names)
        if not plain and not custom:
            plain = ["ALL"]
        parts = ["event", format, *plain]
        if custom:
            parts += ["CUSTOM", *custom]
        text = await self.command(" ".join(parts), timeout=timeout)
        self._format = format
        self._subs.update(n.upper() for n in plain)
        self._custom.update(custom)
        self._update_tracking()
        return text

    async def unsubscribe(self, *names: str, timeout: Timeout = ...) -> str:
        """``nixevent <names...>``; with no name, ``noevents`` (stop all events)."""
        if not names:
            text = await self.command("noevents", timeout=timeout)
            self._subs.clear()
            self._custom.clear()
            self._update_tracking()
            return text
        plain, custom = self._split_names(names)
        parts = ["nixevent", *plain]
        if custom:
            parts += ["CUSTOM", *custom]
        text = await self.command(" ".join(parts), timeout=timeout)
        self._subs.difference_update(n.upper() for n in plain)
        self._custom.difference_update(custom)
        self._update_tracking()
        return text

    async def filter(self, header: str, value: str, *, timeout: Timeout = ...) -> str:
        """``filter <header> <value>``: only events matching a filter are sent (FreeSWITCH's semantics).

        Once bgapi has been used on this connection (and ``job_subscribe`` is
        on), ``filter Event-Name BACKGROUND_JOB`` is added first so that job
        results keep arriving.
        """
        check_line(header, "filter header")
        check_line(value, "filter value")
        if not header or " " in header:
            raise ValueError(f"invalid filter header {header!r}")
        if (
            self.job_subscribe
            and self._bgapi_used
            and not self._job_filter
            and (header, value) != ("Event-Name", "BACKGROUND_JOB")
        ):
            await self._ensure_job_filter(timeout)
        text = await self.command(f"filter {header} {value}", timeout=timeout)
        if (header, value) not in self._filters:
            self._filters.append((header, value))
        if (header, value) == ("Event-Name", "BACKGROUND_JOB"):
            self._job_filter = True
        self._update_tracking()
        return text

    async def filter_delete(self, header: str, value: str | None = None, *, timeout: Timeout = ...) -> str:
        """``filter delete <header> [<value>]`` (``header="all"`` deletes every filter)."""
        check_line(header, "filter header")
        command = f"filter delete {header}"
        if value is not None:
            check_line(value, "filter value")
            command += f" {value}"
        text = await self.command(command, timeout=timeout)
        if header.lower() == "all":
            self._filters.clear()
            self._job_filter = False
        else:
            self._filters = [(h, v) for h, v in self._filters if not (h == header and value in (None, v))]
            if header == "Event-Name" and value in (None, "BACKGROUND_JOB"):
                self._job_filter = False
        self._update_tracking()
        return text

    async def sendevent(
        self,
        name: str,
        headers: HeaderItems | None = None,
        body: str | bytes | None = None,
        *,
        timeout: Timeout = ...,
    ) -> str:
        """``sendevent <name>`` with these headers (and body): fire an event; the reply text (``+OK <uuid>``)."""
        check_line(name, "event name")
        if not name or " " in name:
            raise ValueError(f"invalid event name {name!r}")
        reply = await self.send(f"sendevent {name}", headers=headers, body=body, timeout=timeout)
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, f"sendevent {name}")
        return text

    async def log(self, level: str | int = "debug", *, timeout: Timeout = ...) -> str:
        """``log <level>``: receive log lines as ``log/data`` messages (handlers under ``"log/data"``)."""
        text_level = str(level)
        check_line(text_level, "log level")
        text = await self.command(f"log {text_level}", timeout=timeout)
        self.log_level = text_level
        return text

    async def nolog(self, *, timeout: Timeout = ...) -> str:
        """``nolog``: stop log lines."""
        text = await self.command("nolog", timeout=timeout)
        self.log_level = None
        return text

    async def myevents(self, uuid: str | None = None, format: str = "plain", *, timeout: Timeout = ...) -> str:
        """``myevents [<uuid>] <format>``: the events of one channel (inbound: binds the connection to it)."""
        if format not in ("plain", "json", "xml"):
            raise ValueError(f"format must be plain, json or xml, not {format!r}")
        command = "myevents"
        if uuid is not None:
            check_line(uuid, "uuid")
            if not uuid or " " in uuid:
                raise ValueError(f"invalid uuid {uuid!r}")
            command += f" {uuid}"
        text = await self.command(f"{command} {format}", timeout=timeout)
        self.myevents_enabled = True
        self.myevents_uuid = uuid
        self._format = format
        self._update_tracking()
        return text

    async def divert_events(self, on: bool = True, *, timeout: Timeout = ...) -> str:
        """``divert_events on|off``: input-callback events (DTMF...) only to this socket."""
        text = await self.command(f"divert_events {'on' if on else 'off'}", timeout=timeout)
        self.divert = bool(on)
        return text

    async def linger(self, seconds: int | None = None, *, timeout: Timeout = ...) -> str:
        """``linger <seconds>``: keep the socket open that long after the channel hangs up.

        ``None`` sends a bare ``linger``, which in FreeSWITCH means *forever*: you must then ``exit``.
        """
        if seconds is None:
            command = "linger"
        else:
            if int(seconds) != seconds or seconds < 0:
                raise ValueError("linger seconds must be a non-negative integer")
            command = f"linger {int(seconds)}"
        text = await self.command(command, timeout=timeout)
        self.linger_seconds = seconds
        return text

    async def nolinger(self, *, timeout: Timeout = ...) -> str:
        """``nolinger``."""
        text = await self.command("nolinger", timeout=timeout)
        self.linger_seconds = ...
        return text

    async def exit(self, *, timeout: Timeout = ...) -> str:
        """``exit``: ask FreeSWITCH to close the connection (it answers ``+OK bye`` then disconnects).

        If FreeSWITCH does not answer in time, the connection is left as it was
        (a later drop is still a failure, not a close by the client).
        """
        proto = self._wire()
        proto.by_client = True
        try:
            reply = await self._request(build_command("exit"), "exit", timeout=timeout)
        except ConnectionError:
            return "+OK bye"
        except BaseException:
            if not proto.closed:
                proto.by_client = False
            raise
        return reply.get("Reply-Text", "")

    # -- handlers and iterators ---------------------------------------------------------------------

    @overload
    def on(self, name: str) -> Callable[[H], H]: ...

    @overload
    def on(self, name: str, handler: H) -> H: ...

    def on(self, name: str, handler: H | None = None) -> Any:
        """Call ``handler(event)`` for each event named ``name``; usable as ``@conn.on(name)``.

        ``"*"`` matches every event; a CUSTOM subclass name (``"sofia::register"``)
        matches CUSTOM events of that subclass; a Content-Type (``"log/data"``,
        ``"text/disconnect-notice"``) matches those messages. Sync handlers run
        in the reader and must be quick; async handlers run on the connection's
        executor. A raising handler is logged and does not stop the others.
        """
        if handler is None:
            return self.dispatcher.on(name)
        self.dispatcher.add_handler(name, handler)
        return handler

    def remove(self, name: str, handler: Handler) -> None:
        """Unregister a handler added with :meth:`on`."""
        self.dispatcher.remove_handler(name, handler)

    def events(self, *names: str, maxsize: int = 1000, timeout: float | None = None) -> EventStream:
        """An async iterator over events of these names (all with none or ``"*"``), buffering ``maxsize``.

        ``timeout`` bounds the wait for each event (``None``: no limit).
        """
        return EventStream(self.dispatcher, names, maxsize, timeout)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the async handlers have run every queued event (``TimeoutError`` after ``timeout``)."""
        await self.executor.drain(timeout)

    # -- re-applying state on a new socket --------------------------------------------------------

    async def _reapply(self) -> None:
        """Re-issue the subscriptions, filters and settings on the current (new) socket."""
        filters = list(self._filters)
        self._filters = []
        job_filter, self._job_filter = self._job_filter, False
        for header, value in filters:  # filters first, so nothing unfiltered slips in between
            await self.filter(header, value)
        if job_filter and not self._job_filter:
            await self._ensure_job_filter(...)
        names = sorted(self._subs)
        custom = sorted(self._custom)
        if names or custom:
            await self.subscribe(*names, *(f"CUSTOM {c}" for c in custom), format=self._format)
        if self.myevents_enabled:
            try:
                await self.myevents(self.myevents_uuid, self._format)
            except Exception as exc:  # noqa: BLE001 - the channel may be gone
                log.warning("reconnect: myevents %s not re-applied: %s", self.myevents_uuid, exc)
        if self.divert is not None:
            try:
                await self.divert_events(self.divert)
            except Exception as exc:  # noqa: BLE001
                log.warning("reconnect: divert_events not re-applied: %s", exc)
        if self.linger_seconds is not ...:
            try:
                await self.linger(self.linger_seconds)
            except Exception as exc:  # noqa: BLE001
                log.warning("reconnect: linger not re-applied: %s", exc)
        if self.log_level is not None:
            await self.log(self.log_level)

    async def _verify_channels(self) -> None:
        """After a reconnect: end the owned channels FreeSWITCH no longer has (one pipelined round)."""
        owned = [ch.uuid for ch in self.owners]
        if not owned:
            return
        replies = await asyncio.gather(*(self.api(f"uuid_exists {u}", check=False) for u in owned),
                                       return_exceptions=True)
        alive: set[str] = set()
        for uuid, reply in zip(owned, replies):
            if isinstance(reply, BaseException) or reply.strip() != "false":
                alive.add(uuid)  # keep it when the answer is not a clear "no"
        alive.update(u for u in self.owners.channels if u not in owned)  # placed meanwhile
        for channel in self.owners.end_missing(alive, "the channel ended while the connection was down"):
            self.release_channel_events(channel.uuid)


def _weak(method: Callable[[bool], None]) -> Callable[[bool], None]:
    """A callback calling ``method`` while its object lives (no reference cycle through it)."""
    ref = weakref.WeakMethod(method)

    def call(value: bool) -> None:
        bound = ref()
        if bound is not None:
            bound(value)

    return call


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
