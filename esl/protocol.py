"""``ESLProtocol``: the asyncio protocol shared by inbound connections and outbound sessions.

Bytes from the socket go straight into the core's :class:`~esl.core.Parser`
(``data_received``; no ``StreamReader``). What comes out is handled in one
pass, in stream order:

* ``command/reply`` and ``api/response`` resolve the oldest pending command
  future (a FIFO: commands may be pipelined, FreeSWITCH answers in order), so a
  reply is never queued behind events;
* events go first to the owner of their UUID in the :class:`~esl.core.Router`
  (``route(uuid, owner)``; a bgapi :class:`~esl.job.Job` is such an owner),
  then to the handlers registered with ``on(name, ...)`` and to the
  ``events(...)`` iterators, through the :class:`Dispatcher`;
* ``text/disconnect-notice`` ends the connection (every pending command, job
  and wait fails at once with :class:`esl.exceptions.ConnectionError`), except
  its ``Content-Disposition: linger`` form, which calls :meth:`ESLProtocol.on_linger`
  and keeps the connection open.

Flow control lives in :mod:`esl.dispatch`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid as _uuid
from types import EllipsisType
from typing import Any, Callable, Iterable, Iterator, Mapping

from esl.commands import build_command, build_sendmsg, check_line, redact
from esl.core import DEFAULT_MAX_SIZE, Parser, Router
from esl.dispatch import Dispatcher, EventStream, FlowStats, Handler
from esl.exceptions import CommandError, ConnectionError, ProtocolError, TimeoutError
from esl.job import Job

__all__ = ["ESLProtocol", "Dispatcher", "EventStream", "FlowStats", "Handler"]

log = logging.getLogger("esl.protocol")

_ERROR_PREFIXES = ("-ERR", "-USAGE")



class ESLProtocol(asyncio.Protocol):
    """One Event Socket connection: command FIFO, event routing, failure semantics.

    Used as is by :class:`esl.Inbound` (one per connection) and subclassed by
    the outbound ``Session``. Every method that waits on FreeSWITCH takes a
    ``timeout`` (seconds; the default is ``self.timeout``; ``None`` waits
    without limit) and raises :class:`esl.exceptions.TimeoutError` when it
    passes; a dropped connection raises :class:`esl.exceptions.ConnectionError`.
    Command text and header values holding CR or LF are refused with
    ``ValueError`` before anything is written.
    """

    #: With ``True`` (the default), ``bgapi`` makes sure BACKGROUND_JOB reaches this
    #: connection: it subscribes to it (in the current format) if not subscribed to
    #: it or ALL, and adds ``filter Event-Name BACKGROUND_JOB`` when the connection
    #: has filters (which would otherwise hide it). Outbound sessions may turn it off.
    job_subscribe: bool = True

    def __init__(
        self,
        *,
        timeout: float | None = 5.0,
        job_timeout: float | None = 600.0,
        dispatcher: Dispatcher | None = None,
        max_size: int = DEFAULT_MAX_SIZE,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.timeout = timeout
        self.job_timeout = job_timeout
        self._loop = loop
        self._parser = Parser(max_size)
        self._pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._router = Router(None)
        self._nroutes = 0
        self._jobs: dict[str, Job] = {}
        self._own_dispatcher = dispatcher is None
        self._dispatcher = dispatcher if dispatcher is not None else Dispatcher()
        self._deliver = self._dispatcher.deliver
        self._pausers = self._dispatcher._pausers
        self._backlog: collections.deque[Any] = collections.deque()
        self._backlog_cap = max(2 * self._dispatcher.max_queue, 10_000)
        self._draining = False
        self.transport: asyncio.Transport | None = None
        self._reading_paused = False
        self._want_pause = False
        self._closed = False
        self.close_exc: ConnectionError | None = None
        self._close_reason: str | None = None
        self._close_callbacks: list[Callable[[BaseException], Any]] = []
        self._auth_request: asyncio.Future[Any] | None = None
        self._closed_future: asyncio.Future[None] | None = None
        self.lingering = False
        #: loop time of the last bytes read (for keepalive checks)
        self.last_received = 0.0
        self._by_client = False
        # connection state, kept to re-apply it after a reconnect
        self.event_format = "plain"
        self.subscriptions: set[str] = set()
        self.custom_subscriptions: set[str] = set()
        self.filters: list[tuple[str, str]] = []
        self.log_level: str | None = None
        self.myevents_uuid: str | None = None
        self.myevents_enabled = False
        self.divert: bool | None = None
        self.linger_seconds: int | None | EllipsisType = ...  # ... = never set
        self._job_filter = False
        self._bgapi_used = False
        self._dispatcher.attach(self)

    # -- asyncio.Protocol -----------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self.last_received = self._loop.time()
        if self._want_pause and not self._reading_paused:
            self._update_reading(True)

    def data_received(self, data: bytes) -> None:
        self.last_received = self._loop.time()  # type: ignore[union-attr]
        try:
            messages = self._parser.feed(data)
        except ProtocolError as exc:
            log.error("Event Socket framing error, closing: %s", exc)
            self._close_reason = f"protocol error: {exc}"
            self._shutdown(ConnectionError(f"protocol error: {exc}", self._close_reason))
            if self.transport is not None:
                self.transport.abort()
            return
        if self._backlog:
            self._stash(iter(messages))
            return
        deliver = self._deliver
        pausers = self._pausers
        it = iter(messages)
        for msg in it:
            if msg.is_event:
                if pausers:  # "pause" policy engaged: keep the rest of this read for later
                    self._stash(it, msg)
                    return
                if self._nroutes:
                    try:
                        self._router.route(msg)
                    except Exception:
                        log.exception("event owner raised on %r", msg)
                deliver(msg)
            else:
                self._message(msg)
                if self._closed:
                    return

    def _stash(self, rest: Iterator[Any], first: Any = None) -> None:
        """Hold events back while a queue is full; replies are still handled at once."""
        backlog = self._backlog
        cap = self._backlog_cap
        d = self._dispatcher
        if first is not None:
            backlog.append(first)
        for msg in rest:
            ctype = msg.content_type
            if ctype == "command/reply" or ctype == "api/response" or ctype == "text/disconnect-notice":
                self._message(msg)
            elif len(backlog) >= cap and msg.is_event:
                d.dropped += 1
            else:
                backlog.append(msg)
        self._update_reading(True)

    def _drain_backlog(self) -> None:
        """Deliver held-back events until a queue fills again or none is left."""
        if self._draining:
            return
        self._draining = True
        try:
            backlog = self._backlog
            pausers = self._pausers
            deliver = self._deliver
            while backlog and not pausers and not self._closed:
                msg = backlog.popleft()
                if msg.is_event:
                    if self._nroutes:
                        try:
                            self._router.route(msg)
                        except Exception:
                            log.exception("event owner raised on %r", msg)
                    deliver(msg)
                else:
                    self._message(msg)
        finally:
            self._draining = False

    def eof_received(self) -> bool | None:
        if self._close_reason is None:
            self._close_reason = "FreeSWITCH closed the connection"
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        reason = self._close_reason
        if reason is None:
            reason = f"connection lost: {exc}" if exc is not None else "connection closed by FreeSWITCH"
        self.transport = None
        self._shutdown(ConnectionError(reason, reason))

    # -- non-event messages ----------------------------------------------------

    def _message(self, msg: Any) -> None:
        ctype = msg.content_type
        if ctype == "command/reply" or ctype == "api/response":
            pending = self._pending
            if pending:
                fut = pending.popleft()
                if not fut.done():
                    fut.set_result(msg)
                if not pending and (self._want_pause or self._backlog):
                    self._update_reading(self._want_pause)
            else:
                log.warning("reply with no command waiting for it: %r", msg)
        elif ctype == "auth/request":
            auth = self._auth_request
            if auth is None:
                auth = self._auth_request = self._get_loop().create_future()
            if not auth.done():
                auth.set_result(msg)
        elif ctype == "text/disconnect-notice":
            self._dispatcher.deliver_other(msg)
            if msg.get("Content-Disposition") == "linger":
                self.lingering = True
                self.on_linger(msg)
                return
            text = (msg.body or "").strip() or "disconnect notice"
            self._close_reason = f"FreeSWITCH disconnected: {text}"
            self._shutdown(ConnectionError(self._close_reason, text))
            if self.transport is not None:
                self.transport.close()
        elif ctype == "text/rude-rejection":
            text = (msg.body or "").strip() or "rejected"
            self._close_reason = f"FreeSWITCH rejected the connection: {text}"
            self._shutdown(ConnectionError(self._close_reason, text))
        else:
            if ctype != "log/data":
                log.debug("message of unknown type %r delivered to its handlers", ctype)
            self._dispatcher.deliver_other(msg)

    def on_linger(self, event: Any) -> None:
        """Called with the ``Content-Disposition: linger`` disconnect notice; the connection stays open.

        The controlled channel is gone but FreeSWITCH keeps sending its last
        events for the linger time. The default only logs; sessions override it.
        """
        log.debug("linger notice for %s", event.get("Controlled-Session-UUID"))

    # -- flow control ----------------------------------------------------------

    def _update_reading(self, want_pause: bool) -> None:
        if not want_pause and self._backlog and not self._closed:
            self._drain_backlog()
            want_pause = bool(self._pausers)
        self._want_pause = want_pause
        transport = self.transport
        if transport is None or self._closed:
            return
        pause = (want_pause or bool(self._backlog)) and not self._pending
        if pause and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    # -- closing ---------------------------------------------------------------

    def _shutdown(self, err: ConnectionError) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_exc = err
        reason = err.reason
        if self._backlog:
            self._dispatcher.dropped += sum(1 for m in self._backlog if m.is_event)
            self._backlog.clear()
        pending = self._pending
        self._pending = collections.deque()
        for fut in pending:
            if not fut.done():
                fut.set_exception(ConnectionError(str(err), reason))
        jobs = self._jobs
        self._jobs = {}
        for job in jobs.values():
            job._fail(ConnectionError(f"{err} (job {job.uuid} {job.command!r} lost)", reason))
        if self._auth_request is not None and not self._auth_request.done():
            self._auth_request.set_exception(ConnectionError(str(err), reason))
            self._auth_request.exception()
        self._dispatcher.detach(self)
        if self._own_dispatcher:
            self._dispatcher.close(None if self._by_client else err)
        callbacks = self._close_callbacks
        self._close_callbacks = []
        for cb in callbacks:
            try:
                cb(err)
            except Exception:
                log.exception("close callback %r raised", cb)
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(None)

    def close(self, reason: str = "closed by the client") -> None:
        """Close the socket now; everything pending fails with ConnectionError(reason)."""
        self._by_client = True
        if self._close_reason is None:
            self._close_reason = reason
        transport = self.transport
        self._shutdown(ConnectionError(reason, reason))
        if transport is not None:
            transport.close()

    def abort(self, reason: str = "aborted by the client", *, by_client: bool = True) -> None:
        """Drop the socket without flushing buffered writes.

        ``by_client=False`` marks it as a failure (e.g. a keepalive timeout):
        pending waits get ``ConnectionError(reason)`` and an Inbound reconnects if enabled.
        """
        self._by_client = by_client
        if self._close_reason is None:
            self._close_reason = reason
        transport = self.transport
        self._shutdown(ConnectionError(reason, reason))
        if transport is not None:
            transport.abort()

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the connection is closed (by either side)."""
        if self._closed:
            return
        if self._closed_future is None:
            self._closed_future = self._get_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed_future), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"connection still open after {timeout}s") from None

    def add_close_callback(self, cb: Callable[[BaseException], Any]) -> None:
        """Call ``cb(ConnectionError)`` once when the connection ends (soon, if it already has)."""
        if self._closed:
            assert self.close_exc is not None
            self._get_loop().call_soon(cb, self.close_exc)
        else:
            self._close_callbacks.append(cb)

    def remove_close_callback(self, cb: Callable[[BaseException], Any]) -> None:
        """Undo :meth:`add_close_callback` (no error if absent)."""
        try:
            self._close_callbacks.remove(cb)
        except ValueError:
            pass

    @property
    def closed(self) -> bool:
        """True once the connection has ended."""
        return self._closed

    @property
    def connected(self) -> bool:
        """True while the socket is open and not shutting down."""
        return self.transport is not None and not self._closed

    @property
    def close_reason(self) -> str | None:
        """Why the connection ended (the disconnect-notice text, the socket error...)."""
        return None if self.close_exc is None else self.close_exc.reason

    @property
    def dispatcher(self) -> Dispatcher:
        """The handlers, iterators and counters this connection delivers to."""
        return self._dispatcher

    @property
    def stats(self) -> FlowStats:
        """Event-delivery counters: received, dropped, queue depth, Event-Sequence gaps..."""
        return self._dispatcher.stats()

    @property
    def pending_commands(self) -> int:
        """Commands written whose reply has not arrived yet."""
        return len(self._pending)

    # -- commands --------------------------------------------------------------

    def _raise_closed(self) -> None:
        err = self.close_exc
        if err is not None:
            raise ConnectionError(str(err), err.reason)
        raise ConnectionError("not connected", "not connected")

    def write_command(self, data: bytes) -> asyncio.Future[Any]:
        """Write pre-built command bytes; return the future of its reply (FIFO order)."""
        transport = self.transport
        if transport is None or self._closed:
            self._raise_closed()
        fut = self._get_loop().create_future()
        self._pending.append(fut)
        assert transport is not None
        transport.write(data)
        if self._reading_paused:
            self._update_reading(self._want_pause)
        return fut

    async def _wait_reply(self, fut: asyncio.Future[Any], timeout: Any, what: str) -> Any:
        if timeout is ...:
            timeout = self.timeout
        if timeout is None:
            return await fut
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            if fut.done() and not fut.cancelled():
                return fut.result()
            raise TimeoutError(f"no reply to {redact(what)!r} within {timeout}s") from None

    async def send(
        self,
        command: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: str | bytes | None = None,
        timeout: float | None | EllipsisType = ...,
    ) -> Any:
        """Send a raw command (with optional headers and body); return the reply Event.

        The reply is the ``command/reply`` (look at ``reply["Reply-Text"]``) or
        the ``api/response`` (``reply.body``); ``-ERR`` is *not* raised here.
        """
        fut = self.write_command(build_command(command, headers, body))
        return await self._wait_reply(fut, timeout, command)

    async def command(self, command: str, *, timeout: float | None | EllipsisType = ...) -> str:
        """Send a command that answers with ``command/reply``; its Reply-Text, ``CommandError`` on ``-ERR``."""
        reply = await self.send(command, timeout=timeout)
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, redact(command))
        return text

    async def api(self, command: str, *, check: bool = True, timeout: float | None | EllipsisType = ...) -> str:
        """Run ``api <command>``; the output text.

        With ``check`` (the default) an output starting with ``-ERR`` or
        ``-USAGE`` raises :class:`~esl.exceptions.CommandError` carrying it;
        ``check=False`` returns it. FreeSWITCH's ``-ERR no reply`` (the text it
        sends when a command printed nothing) comes back as ``""``.
        """
        check_line(command, "api command")
        reply = await self.send("api " + command, timeout=timeout)
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
        timeout: float | None | EllipsisType = ...,
        job_timeout: float | None | EllipsisType = ...,
    ) -> Job:
        """Run ``bgapi <command>`` in the background; the :class:`~esl.job.Job` of its result.

        The Job-UUID is chosen here (``job_uuid`` or a random UUID) and the Job
        registered before the command is written, so the BACKGROUND_JOB event
        cannot be missed. With ``job_subscribe`` (the default) the connection is
        subscribed to BACKGROUND_JOB first if needed, and when it has filters,
        ``filter Event-Name BACKGROUND_JOB`` is added (once) so the filters do
        not hide the result. ``timeout`` bounds the wait for the ``+OK Job-UUID``
        reply; ``await job`` waits at most ``job_timeout`` (default
        ``self.job_timeout``). ``CommandError`` if FreeSWITCH refuses the command.
        """
        check_line(command, "bgapi command")
        job_id = job_uuid or str(_uuid.uuid4())
        check_line(job_id, "job uuid")
        if job_id in self._jobs:
            raise ValueError(f"a job with uuid {job_id} is already pending")
        if self.job_subscribe:
            await self._ensure_job_delivery(timeout)
        if job_timeout is ...:
            job_timeout = self.job_timeout
        job = Job(job_id, command, timeout=job_timeout, loop=self._get_loop())
        self._jobs[job_id] = job

        def owner(event: Any) -> None:
            if event.name != "BACKGROUND_JOB":
                return
            self._jobs.pop(job_id, None)
            self.unroute(job_id)
            job._resolve(event)

        self.route(job_id, owner)
        try:
            fut = self.write_command(build_command("bgapi " + command, (("Job-UUID", job_id),)))
            reply = await self._wait_reply(fut, timeout, "bgapi " + command)
        except BaseException:
            self._jobs.pop(job_id, None)
            self.unroute(job_id)
            job.cancel()
            raise
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            self._jobs.pop(job_id, None)
            self.unroute(job_id)
            job.cancel()
            raise CommandError(text, "bgapi " + command)
        return job

    async def _ensure_job_delivery(self, timeout: Any) -> None:
        self._bgapi_used = True
        if not (self.subscriptions & {"ALL", "BACKGROUND_JOB"}):
            await self.command(f"event {self.event_format} BACKGROUND_JOB", timeout=timeout)
            self.subscriptions.add("BACKGROUND_JOB")
        if self.filters and not self._job_filter:
            await self.command("filter Event-Name BACKGROUND_JOB", timeout=timeout)
            self._job_filter = True

    @property
    def job_filter(self) -> bool:
        """True when this connection's filters already let its BACKGROUND_JOB events through.

        While it is False, ``bgapi`` on a connection with filters first adds
        ``filter Event-Name BACKGROUND_JOB``. Set it True when another filter
        already passes the connection's own job results (an outbound socket's
        ``filter Job-Owner-UUID <uuid>``), so other connections' jobs stay out.
        """
        return self._job_filter

    @job_filter.setter
    def job_filter(self, value: bool) -> None:
        self._job_filter = bool(value)

    @property
    def bgapi_used(self) -> bool:
        """True once ``bgapi`` has run on this connection (later filters then keep BACKGROUND_JOB visible).

        Settable so a replacement connection (an Inbound reconnecting) carries it over.
        """
        return self._bgapi_used

    @bgapi_used.setter
    def bgapi_used(self, value: bool) -> None:
        self._bgapi_used = bool(value)

    @property
    def jobs(self) -> dict[str, Job]:
        """Background jobs waiting for their result, by Job-UUID."""
        return dict(self._jobs)

    async def sendmsg_raw(
        self,
        uuid: str | None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: str | bytes | None = None,
        *,
        timeout: float | None | EllipsisType = ...,
    ) -> Any:
        """Write ``sendmsg [<uuid>]`` with these headers (and body); the reply Event; ``CommandError`` on -ERR."""
        fut = self.write_command(build_sendmsg(uuid, headers, body))
        reply = await self._wait_reply(fut, timeout, "sendmsg")
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, f"sendmsg {uuid or ''}".strip())
        return reply

    # -- subscriptions and filters ------------------------------------------------

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

    async def subscribe(
        self, *names: str, format: str = "plain", timeout: float | None | EllipsisType = ...
    ) -> str:
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
        self.event_format = format
        self.subscriptions.update(n.upper() for n in plain)
        self.custom_subscriptions.update(custom)
        return text

    async def unsubscribe(self, *names: str, timeout: float | None | EllipsisType = ...) -> str:
        """``nixevent <names...>``; with no name, ``noevents`` (stop all events)."""
        if not names:
            text = await self.command("noevents", timeout=timeout)
            self.subscriptions.clear()
            self.custom_subscriptions.clear()
            return text
        plain, custom = self._split_names(names)
        parts = ["nixevent", *plain]
        if custom:
            parts += ["CUSTOM", *custom]
        text = await self.command(" ".join(parts), timeout=timeout)
        self.subscriptions.difference_update(n.upper() for n in plain)
        self.custom_subscriptions.difference_update(custom)
        return text

    async def filter(self, header: str, value: str, *, timeout: float | None | EllipsisType = ...) -> str:
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
            await self.command("filter Event-Name BACKGROUND_JOB", timeout=timeout)
            self._job_filter = True
        text = await self.command(f"filter {header} {value}", timeout=timeout)
        self.filters.append((header, value))
        if (header, value) == ("Event-Name", "BACKGROUND_JOB"):
            self._job_filter = True
        return text

    async def filter_delete(
        self, header: str, value: str | None = None, *, timeout: float | None | EllipsisType = ...
    ) -> str:
        """``filter delete <header> [<value>]`` (``header="all"`` deletes every filter)."""
        check_line(header, "filter header")
        command = f"filter delete {header}"
        if value is not None:
            check_line(value, "filter value")
            command += f" {value}"
        text = await self.command(command, timeout=timeout)
        if header.lower() == "all":
            self.filters.clear()
            self._job_filter = False
        else:
            self.filters = [
                (h, v) for h, v in self.filters if not (h == header and (value is None or v == value))
            ]
            if header == "Event-Name" and value in (None, "BACKGROUND_JOB"):
                self._job_filter = False
        return text

    async def sendevent(
        self,
        name: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: str | bytes | None = None,
        *,
        timeout: float | None | EllipsisType = ...,
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

    async def log(self, level: str | int = "debug", *, timeout: float | None | EllipsisType = ...) -> str:
        """``log <level>``: receive log lines as ``log/data`` messages (handlers under ``"log/data"``)."""
        text_level = str(level)
        check_line(text_level, "log level")
        text = await self.command(f"log {text_level}", timeout=timeout)
        self.log_level = text_level
        return text

    async def nolog(self, *, timeout: float | None | EllipsisType = ...) -> str:
        """``nolog``: stop log lines."""
        text = await self.command("nolog", timeout=timeout)
        self.log_level = None
        return text

    async def myevents(
        self, uuid: str | None = None, format: str = "plain", *, timeout: float | None | EllipsisType = ...
    ) -> str:
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
        self.event_format = format
        return text

    async def divert_events(self, on: bool = True, *, timeout: float | None | EllipsisType = ...) -> str:
        """``divert_events on|off``: input-callback events (DTMF...) only to this socket."""
        text = await self.command(f"divert_events {'on' if on else 'off'}", timeout=timeout)
        self.divert = bool(on)
        return text

    async def linger(self, seconds: int | None = None, *, timeout: float | None | EllipsisType = ...) -> str:
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

    async def nolinger(self, *, timeout: float | None | EllipsisType = ...) -> str:
        """``nolinger``."""
        text = await self.command("nolinger", timeout=timeout)
        self.linger_seconds = ...
        return text

    async def exit(self, *, timeout: float | None | EllipsisType = ...) -> str:
        """``exit``: ask FreeSWITCH to close the connection (it answers ``+OK bye`` then disconnects)."""
        self._close_reason = "closed by the client (exit)"
        self._by_client = True
        try:
            reply = await self.send("exit", timeout=timeout)
        except ConnectionError:
            return "+OK bye"
        return reply.get("Reply-Text", "")

    # -- handlers, iterators, routes ---------------------------------------------

    def on(self, name: str, handler: Handler | None = None) -> Any:
        """Call ``handler(event)`` for each event named ``name``; usable as ``@conn.on(name)``.

        ``"*"`` matches every event; a CUSTOM subclass name (``"sofia::register"``)
        matches CUSTOM events of that subclass; a Content-Type (``"log/data"``,
        ``"text/disconnect-notice"``) matches those messages. Sync handlers run
        in the reader and must be quick; async handlers run in the dispatcher's
        worker(s). A raising handler is logged and does not stop the others.
        """
        return self._dispatcher.on(name, handler)

    def remove(self, name: str, handler: Handler) -> None:
        """Unregister a handler added with :meth:`on`."""
        self._dispatcher.remove_handler(name, handler)

    def events(self, *names: str, maxsize: int = 1000, timeout: float | None = None) -> EventStream:
        """An async iterator over events of these names (all with none or ``"*"``), buffering ``maxsize``.

        ``timeout`` bounds the wait for each event (``None``: no limit).
        """
        return EventStream(self._dispatcher, names, maxsize, timeout)

    def route(self, uuid: str, owner: Callable[[Any], Any]) -> None:
        """Send events whose ``Unique-ID`` (or BACKGROUND_JOB ``Job-UUID``) is ``uuid`` to ``owner(event)``.

        Owners are called synchronously by the reader, before the handlers; they must be quick.
        """
        self._router.add(uuid, owner)
        self._nroutes = len(self._router)

    def unroute(self, uuid: str) -> None:
        """Stop routing ``uuid``."""
        self._router.discard(uuid)
        self._nroutes = len(self._router)

    @property
    def router(self) -> Any:
        """The core :class:`~esl.core.Router` (owners by UUID)."""
        return self._router

    # -- inbound handshake -----------------------------------------------------

    async def wait_auth_request(self, timeout: float | None | EllipsisType = ...) -> Any:
        """Wait for FreeSWITCH's ``auth/request`` greeting (inbound connections)."""
        if self._auth_request is None:
            self._auth_request = self._get_loop().create_future()
        if self._closed and not self._auth_request.done():
            self._raise_closed()
        if timeout is ...:
            timeout = self.timeout
        try:
            return await asyncio.wait_for(asyncio.shield(self._auth_request), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no auth/request from FreeSWITCH within {timeout}s") from None

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self.transport is not None else "new")
        return f"<{type(self).__name__} {state} pending={len(self._pending)} jobs={len(self._jobs)}>"
