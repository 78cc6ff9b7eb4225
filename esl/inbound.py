"""``Inbound``: a client connection to FreeSWITCH's Event Socket (port 8021).

>>> import esl
>>> async def main():                                              # doctest: +SKIP
...     async with esl.Inbound("127.0.0.1", 8021, "ClueCon") as client:
...         print(await client.api("status"))
...         job = await client.bgapi("originate user/1000 &park")
...         print(await job)
...
...         @client.on("CHANNEL_ANSWER")
...         async def answered(event):
...             print("answered", event.uuid)
...
...         await client.subscribe("CHANNEL_ANSWER", "CHANNEL_HANGUP")
...         async for event in client.events("CHANNEL_HANGUP"):
...             print("hangup", event.uuid, event["Hangup-Cause"])
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from types import EllipsisType
from typing import Any, Callable, Iterable, Mapping

from esl.commands import check_line
from esl.dispatch import Dispatcher, EventStream, FlowStats, Handler
from esl.exceptions import AuthenticationError, ConnectionError, TimeoutError
from esl.job import Job
from esl.protocol import ESLProtocol

__all__ = ["Inbound"]

log = logging.getLogger("esl.inbound")


class Inbound:
    """An authenticated connection to FreeSWITCH's Event Socket.

    ``Inbound(host, port, password)`` is an async context manager
    (``connect()`` / ``close()`` do the same by hand). ``user="1000@default"``
    authenticates with ``userauth`` instead of ``auth``. ``timeout`` is the
    default limit, in seconds, on every wait for FreeSWITCH (connecting,
    replies); each call also takes its own ``timeout=``.

    Errors: a refused connection raises :class:`esl.exceptions.ConnectionError`,
    one that does not complete in time :class:`esl.exceptions.TimeoutError`, a
    wrong password :class:`esl.exceptions.AuthenticationError`. When the
    connection drops, every pending command, job and ``events()`` iterator
    fails at once with ``ConnectionError`` (``close_reason`` says why).

    ``reconnect=True`` reconnects after a drop (exponential backoff from
    ``reconnect_delay`` up to ``reconnect_max_delay`` seconds, with jitter,
    ``reconnect_attempts`` tries, ``None`` = forever), authenticates again and
    re-applies the subscriptions, filters, log level, ``myevents``,
    ``divert_events`` and ``linger`` of the lost connection; handlers and
    ``events()`` iterators carry on. Commands and jobs in flight at the drop
    fail with ``ConnectionError``: nothing is replayed. Events fired while
    disconnected are lost (FreeSWITCH keeps no backlog); ``stats`` and
    ``Event-Sequence`` tell how many. While reconnecting, commands raise
    ``ConnectionError`` at once; ``await client.wait_connected()`` waits.

    ``keepalive=<seconds>`` probes a connection that has been silent that long
    with ``api uptime`` and drops it (then reconnects, if enabled) when no
    answer comes within the same time: a half-open TCP connection or a frozen
    FreeSWITCH is detected instead of waiting forever.

    Flow control: see :mod:`esl.protocol` (``policy="pause"`` or ``"drop"``,
    ``max_queue``, ``handler_concurrency``).

    The password never appears in logs, reprs or error messages.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8021,
        password: str = "ClueCon",
        *,
        user: str | None = None,
        timeout: float | None = 5.0,
        connect_timeout: float | None | EllipsisType = ...,
        job_timeout: float | None = 600.0,
        reconnect: bool = False,
        reconnect_delay: float = 0.5,
        reconnect_max_delay: float = 30.0,
        reconnect_attempts: int | None = None,
        keepalive: float | None = None,
        max_queue: int = 10_000,
        policy: str = "pause",
        handler_concurrency: int = 1,
        ssl: Any = None,
    ) -> None:
        check_line(password, "password")
        if user is not None:
            check_line(user, "user")
        self.host = host
        self.port = port
        self.__password = password
        self.user = user
        self._timeout = timeout
        self.connect_timeout = timeout if connect_timeout is ... else connect_timeout
        self.job_timeout = job_timeout
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.reconnect_attempts = reconnect_attempts
        self.keepalive = keepalive
        self._keepalive_task: asyncio.Task[None] | None = None
        self.ssl = ssl
        self.dispatcher = Dispatcher(max_queue=max_queue, policy=policy, concurrency=handler_concurrency)
        self.protocol: ESLProtocol | None = None
        #: reply headers of the authentication (userauth gives Allowed-Events, Allowed-API...)
        self.auth_reply: Any = None
        self.reconnects = 0
        self._closing = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._connected_waiters: list[asyncio.Future[None]] = []
        self._reconnect_callbacks: list[Callable[[Inbound], Any]] = []
        self._close_callbacks: list[Callable[[BaseException], Any]] = []
        self.close_exc: ConnectionError | None = None
        self._routes: dict[str, Callable[[Any], Any]] = {}

    @property
    def timeout(self) -> float | None:
        """The default limit, in seconds, on each wait for FreeSWITCH (``None``: no limit)."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._timeout = value
        if self.protocol is not None:
            self.protocol.timeout = value

    # -- connecting ----------------------------------------------------------

    async def __aenter__(self) -> Inbound:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> Inbound:
        """Connect and authenticate; returns ``self`` (at once if already connected)."""
        if self.connected:
            return self
        self._closing = False
        self.close_exc = None
        self.protocol = await self._open()
        self._start_keepalive(self.protocol)
        self._wake_connected()
        return self

    async def _open(self) -> ESLProtocol:
        loop = asyncio.get_running_loop()

        def factory() -> ESLProtocol:
            return ESLProtocol(timeout=self.timeout, job_timeout=self.job_timeout, dispatcher=self.dispatcher)

        where = f"{self.host}:{self.port}"
        try:
            _transport, protocol = await asyncio.wait_for(
                loop.create_connection(factory, self.host, self.port, ssl=self.ssl), self.connect_timeout
            )
        except asyncio.TimeoutError:
            raise TimeoutError(f"connecting to {where} timed out after {self.connect_timeout}s") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConnectionError(f"cannot connect to {where}: {reason}", reason) from None
        try:
            await protocol.wait_auth_request(self.connect_timeout)
            if self.user is None:
                reply = await protocol.send(f"auth {self.__password}", timeout=self.connect_timeout)
            else:
                reply = await protocol.send(f"userauth {self.user}:{self.__password}", timeout=self.connect_timeout)
        except BaseException:
            protocol.abort("authentication did not complete")
            raise
        text = reply.get("Reply-Text", "")
        if not text.startswith("+OK"):
            protocol.close("authentication failed")
            who = self.user or "auth"
            raise AuthenticationError(f"FreeSWITCH at {where} refused the {who} credentials: {text}")
        self.auth_reply = reply
        for key, owner in self._routes.items():
            protocol.route(key, owner)
        protocol.add_close_callback(functools.partial(self._lost, protocol))
        return protocol

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the async handlers have run every queued event (``TimeoutError`` after ``timeout``)."""
        await self.dispatcher.drain(timeout)

    async def close(self) -> None:
        """Close the connection (sends ``exit`` politely when connected); stops reconnecting.

        Async handler calls still queued are dropped; ``await client.drain()`` first to let them run.
        """
        self._closing = True
        if self._keepalive_task is not None:
            self._keepalive_task.cancel()
        task = self._reconnect_task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        proto = self.protocol
        if proto is not None and proto.connected:
            try:
                await proto.exit(timeout=min(self.timeout or 1.0, 1.0))
            except Exception:
                pass
            if proto.connected:
                proto.close()
            else:
                proto._by_client = True
        if proto is not None:
            try:
                await proto.wait_closed(1.0)
            except TimeoutError:
                proto.abort()
        self.dispatcher.close(None)
        for fut in self._connected_waiters:
            if not fut.done():
                fut.set_exception(ConnectionError("client closed", "client closed"))
                fut.exception()
        self._connected_waiters.clear()

    # -- drop and reconnect -----------------------------------------------------

    def _lost(self, protocol: ESLProtocol, exc: BaseException) -> None:
        if protocol is not self.protocol:
            return
        err = exc if isinstance(exc, ConnectionError) else ConnectionError(str(exc), str(exc))
        self.close_exc = err
        if self._closing or protocol._by_client:
            self.dispatcher.close(None)
            self._fire_close(err)
            return
        log.warning("connection to %s:%s lost: %s", self.host, self.port, err.reason)
        if self.reconnect:
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect_loop(protocol))
        else:
            self.dispatcher.close(err)
            self._fire_close(err)

    def _fire_close(self, err: BaseException) -> None:
        callbacks, self._close_callbacks = self._close_callbacks, []
        for cb in callbacks:
            try:
                cb(err)
            except Exception:
                log.exception("close callback %r raised", cb)
        for fut in self._connected_waiters:
            if not fut.done():
                fut.set_exception(ConnectionError(str(err), getattr(err, "reason", None)))
                fut.exception()
        self._connected_waiters.clear()

    async def _reconnect_loop(self, old: ESLProtocol) -> None:
        delay = self.reconnect_delay
        attempt = 0
        while not self._closing:
            attempt += 1
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            try:
                proto = await self._open()
                try:
                    await self._reapply(old, proto)
                except BaseException:
                    proto.abort("re-applying the subscriptions failed")
                    raise
                if not proto.connected:
                    raise ConnectionError("connection lost while re-applying the subscriptions")
            except asyncio.CancelledError:
                raise
            except AuthenticationError as exc:
                log.error("reconnect to %s:%s: %s; giving up", self.host, self.port, exc)
                self._give_up(ConnectionError(str(exc), "authentication failed on reconnect"))
                return
            except Exception as exc:  # refused, timed out, dropped again, -ERR on re-apply...
                log.info("reconnect attempt %d to %s:%s failed: %s", attempt, self.host, self.port, exc)
                if self.reconnect_attempts is not None and attempt >= self.reconnect_attempts:
                    self._give_up(ConnectionError(f"gave up reconnecting after {attempt} attempts: {exc}", str(exc)))
                    return
                delay = min(delay * 2, self.reconnect_max_delay)
                continue
            self.protocol = proto
            self._start_keepalive(proto)
            self.reconnects += 1
            self.close_exc = None
            log.info("reconnected to %s:%s", self.host, self.port)
            self._wake_connected()
            for cb in list(self._reconnect_callbacks):
                try:
                    res = cb(self)
                    if asyncio.iscoroutine(res):
                        await res
                except Exception:
                    log.exception("reconnect callback %r raised", cb)
            return

    def _give_up(self, err: ConnectionError) -> None:
        self.close_exc = err
        self.dispatcher.close(err)
        self._fire_close(err)

    async def _reapply(self, old: ESLProtocol, new: ESLProtocol) -> None:
        """Re-issue the subscriptions, filters and settings of ``old`` on ``new``."""
        # filters first, so nothing unfiltered slips in between
        for header, value in old.filters:
            await new.filter(header, value)
        if old.job_filter and ("Event-Name", "BACKGROUND_JOB") not in old.filters:
            await new.command("filter Event-Name BACKGROUND_JOB")
            new.job_filter = True
        new.bgapi_used = old.bgapi_used
        names = sorted(old.subscriptions)
        custom = sorted(old.custom_subscriptions)
        if names or custom:
            await new.subscribe(*names, *(f"CUSTOM {c}" for c in custom), format=old.event_format)
        if old.myevents_enabled:
            try:
                await new.myevents(old.myevents_uuid, old.event_format)
            except Exception as exc:  # the channel may be gone
                log.warning("reconnect: myevents %s not re-applied: %s", old.myevents_uuid, exc)
        if old.divert is not None:
            try:
                await new.divert_events(old.divert)
            except Exception as exc:
                log.warning("reconnect: divert_events not re-applied: %s", exc)
        if old.linger_seconds is not ...:
            try:
                await new.linger(old.linger_seconds)
            except Exception as exc:
                log.warning("reconnect: linger not re-applied: %s", exc)
        if old.log_level is not None:
            await new.log(old.log_level)

    def _start_keepalive(self, proto: ESLProtocol) -> None:
        if self.keepalive:
            self._keepalive_task = asyncio.get_running_loop().create_task(self._keepalive_loop(proto))

    async def _keepalive_loop(self, proto: ESLProtocol) -> None:
        """Probe an idle connection with ``api uptime``; abort it when FreeSWITCH does not answer in time.

        Detects a half-open TCP connection or a frozen FreeSWITCH, which
        otherwise look like a quiet one; the abort then fails everything pending
        (and reconnects, with ``reconnect=True``).
        """
        interval = float(self.keepalive or 0)
        loop = asyncio.get_running_loop()
        while proto.connected:
            await asyncio.sleep(interval / 2)
            if not proto.connected or loop.time() - proto.last_received < interval:
                continue
            try:
                await proto.api("uptime", check=False, timeout=interval)
            except TimeoutError:
                log.warning("no answer from %s:%s to a keepalive probe within %ss", self.host, self.port, interval)
                proto.abort(f"keepalive: no answer from FreeSWITCH within {interval}s", by_client=False)
                return
            except ConnectionError:
                return

    def _wake_connected(self) -> None:
        for fut in self._connected_waiters:
            if not fut.done():
                fut.set_result(None)
        self._connected_waiters.clear()

    async def wait_connected(self, timeout: float | None | EllipsisType = ...) -> None:
        """Return once connected (at once if already); waits through a reconnect."""
        if self.connected:
            return
        if self._closing or not self._reconnecting:
            raise ConnectionError("not connected", self.close_reason or "not connected")
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connected_waiters.append(fut)
        if timeout is ...:
            timeout = self.timeout
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"not connected within {timeout}s") from None

    @property
    def _reconnecting(self) -> bool:
        return self._reconnect_task is not None and not self._reconnect_task.done()

    def add_reconnect_callback(self, cb: Callable[[Inbound], Any]) -> None:
        """Call ``cb(client)`` (sync or async) after each successful reconnect."""
        self._reconnect_callbacks.append(cb)

    def add_close_callback(self, cb: Callable[[BaseException], Any]) -> None:
        """Call ``cb(ConnectionError)`` once when the client is finally disconnected (not on a reconnect)."""
        self._close_callbacks.append(cb)

    def remove_close_callback(self, cb: Callable[[BaseException], Any]) -> None:
        """Undo :meth:`add_close_callback`."""
        try:
            self._close_callbacks.remove(cb)
        except ValueError:
            pass

    # -- state -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while authenticated and the socket is open."""
        return self.protocol is not None and self.protocol.connected

    @property
    def closed(self) -> bool:
        """True once the connection ended for good (closed, or lost without reconnect)."""
        return not self.connected and not self._reconnecting

    @property
    def close_reason(self) -> str | None:
        """Why the last connection ended."""
        return None if self.close_exc is None else self.close_exc.reason

    @property
    def filters(self) -> tuple[tuple[str, str], ...]:
        """The ``(header, value)`` filters of the current connection (re-applied on reconnect)."""
        proto = self.protocol
        return tuple(proto.filters) if proto is not None else ()

    @property
    def subscriptions(self) -> frozenset[str]:
        """The event names subscribed on the current connection (``"ALL"`` included; CUSTOM ones aside)."""
        proto = self.protocol
        return frozenset(proto.subscriptions) if proto is not None else frozenset()

    @property
    def event_format(self) -> str:
        """The event format (``plain``/``json``/``xml``) the current connection subscribed in."""
        proto = self.protocol
        return proto.event_format if proto is not None else "plain"

    @property
    def stats(self) -> FlowStats:
        """Event-delivery counters (received, dropped, queue depth, Event-Sequence gaps...)."""
        return self.dispatcher.stats()

    def _proto(self) -> ESLProtocol:
        proto = self.protocol
        if proto is None or not proto.connected:
            if self._reconnecting:
                raise ConnectionError("reconnecting to FreeSWITCH", self.close_reason)
            raise ConnectionError("not connected", self.close_reason or "not connected")
        return proto

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("reconnecting" if self._reconnecting else "disconnected")
        who = f" user={self.user}" if self.user else ""
        return f"<Inbound {self.host}:{self.port}{who} {state}>"

    # -- commands (delegated to the current ESLProtocol) --------------------------

    async def send(
        self,
        command: str,
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: str | bytes | None = None,
        timeout: float | None | EllipsisType = ...,
    ) -> Any:
        """Send a raw command; the reply Event (see :meth:`ESLProtocol.send`)."""
        return await self._proto().send(command, headers=headers, body=body, timeout=timeout)

    async def command(self, command: str, *, timeout: float | None | EllipsisType = ...) -> str:
        """A ``command/reply`` command; its Reply-Text, ``CommandError`` on ``-ERR``."""
        return await self._proto().command(command, timeout=timeout)

    async def api(self, command: str, *, check: bool = True, timeout: float | None | EllipsisType = ...) -> str:
        """``api <command>``: the output; ``CommandError`` on ``-ERR``/``-USAGE`` unless ``check=False``."""
        return await self._proto().api(command, check=check, timeout=timeout)

    async def bgapi(
        self,
        command: str,
        *,
        job_uuid: str | None = None,
        timeout: float | None | EllipsisType = ...,
        job_timeout: float | None | EllipsisType = ...,
    ) -> Job:
        """``bgapi <command>``: a :class:`~esl.Job` (see :meth:`ESLProtocol.bgapi` for the delivery guarantee)."""
        return await self._proto().bgapi(command, job_uuid=job_uuid, timeout=timeout, job_timeout=job_timeout)

    async def sendmsg_raw(
        self,
        uuid: str | None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]],
        body: str | bytes | None = None,
        *,
        timeout: float | None | EllipsisType = ...,
    ) -> Any:
        """``sendmsg <uuid>`` with raw headers; the reply; ``CommandError`` on ``-ERR``."""
        return await self._proto().sendmsg_raw(uuid, headers, body, timeout=timeout)

    async def subscribe(self, *names: str, format: str = "plain", timeout: float | None | EllipsisType = ...) -> str:
        """``event <format> <names>`` (ALL when no name); kept and re-applied after a reconnect."""
        return await self._proto().subscribe(*names, format=format, timeout=timeout)

    async def unsubscribe(self, *names: str, timeout: float | None | EllipsisType = ...) -> str:
        """``nixevent <names>`` (``noevents`` with no name)."""
        return await self._proto().unsubscribe(*names, timeout=timeout)

    async def filter(self, header: str, value: str, *, timeout: float | None | EllipsisType = ...) -> str:
        """``filter <header> <value>`` (kept and re-applied after a reconnect)."""
        return await self._proto().filter(header, value, timeout=timeout)

    async def filter_delete(
        self, header: str, value: str | None = None, *, timeout: float | None | EllipsisType = ...
    ) -> str:
        """``filter delete <header> [<value>]``."""
        return await self._proto().filter_delete(header, value, timeout=timeout)

    async def sendevent(
        self,
        name: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: str | bytes | None = None,
        *,
        timeout: float | None | EllipsisType = ...,
    ) -> str:
        """``sendevent <name>``: fire an event; the reply text."""
        return await self._proto().sendevent(name, headers, body, timeout=timeout)

    async def log(self, level: str | int = "debug", *, timeout: float | None | EllipsisType = ...) -> str:
        """``log <level>``: log lines arrive as ``log/data`` messages to ``on("log/data", ...)``."""
        return await self._proto().log(level, timeout=timeout)

    async def nolog(self, *, timeout: float | None | EllipsisType = ...) -> str:
        """``nolog``."""
        return await self._proto().nolog(timeout=timeout)

    async def myevents(
        self, uuid: str | None = None, format: str = "plain", *, timeout: float | None | EllipsisType = ...
    ) -> str:
        """``myevents <uuid> <format>``: bind this connection to one channel's events."""
        return await self._proto().myevents(uuid, format, timeout=timeout)

    async def divert_events(self, on: bool = True, *, timeout: float | None | EllipsisType = ...) -> str:
        """``divert_events on|off``."""
        return await self._proto().divert_events(on, timeout=timeout)

    async def linger(self, seconds: int | None = None, *, timeout: float | None | EllipsisType = ...) -> str:
        """``linger [seconds]`` (bare: forever)."""
        return await self._proto().linger(seconds, timeout=timeout)

    async def nolinger(self, *, timeout: float | None | EllipsisType = ...) -> str:
        """``nolinger``."""
        return await self._proto().nolinger(timeout=timeout)

    async def exit(self, *, timeout: float | None | EllipsisType = ...) -> str:
        """``exit``: FreeSWITCH says ``+OK bye`` and disconnects (no reconnect follows)."""
        self._closing = True
        return await self._proto().exit(timeout=timeout)

    # -- handlers (kept across reconnects) ------------------------------------------

    def on(self, name: str, handler: Handler | None = None) -> Any:
        """Register ``handler`` for events named ``name`` ("*" = all); also a decorator ``@client.on(name)``.

        Registering a handler does not subscribe: call :meth:`subscribe` (or use :class:`esl.Consumer`).
        """
        return self.dispatcher.on(name, handler)

    def remove(self, name: str, handler: Handler) -> None:
        """Unregister a handler."""
        self.dispatcher.remove_handler(name, handler)

    def events(self, *names: str, maxsize: int = 1000, timeout: float | None = None) -> EventStream:
        """An async iterator over events named ``names`` (all with none), with a buffer of ``maxsize``."""
        return EventStream(self.dispatcher, names, maxsize, timeout)

    def route(self, uuid: str, owner: Callable[[Any], Any]) -> None:
        """Send events of ``uuid`` (Unique-ID, or BACKGROUND_JOB Job-UUID) to ``owner`` first.

        Routes are kept across reconnects.
        """
        self._routes[uuid] = owner
        if self.protocol is not None and self.protocol.connected:
            self.protocol.route(uuid, owner)

    def unroute(self, uuid: str) -> None:
        """Stop routing ``uuid``."""
        self._routes.pop(uuid, None)
        if self.protocol is not None:
            self.protocol.unroute(uuid)

    @property
    def password(self) -> str:
        """Hidden: the password is not readable back (it never appears in reprs or logs)."""
        return "******"
