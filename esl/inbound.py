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
import logging
import random
from types import EllipsisType
from typing import Any, Awaitable, Callable

from esl.commands import check_line
from esl.connection import Connection
from esl.core import DEFAULT_MAX_SIZE
from esl.exceptions import AuthenticationError, ConnectionError, TimeoutError
from esl.protocol import ESLProtocol

__all__ = ["Inbound"]

log = logging.getLogger("esl.inbound")


class Inbound(Connection):
    """An authenticated connection to FreeSWITCH's Event Socket.

    ``Inbound(host, port, password)`` is an async context manager
    (``connect()`` / ``close()`` do the same by hand). ``user="1000@default"``
    authenticates with ``userauth`` instead of ``auth``. ``timeout`` is the
    default limit, in seconds, on every wait for FreeSWITCH (connecting,
    replies); each call also takes its own ``timeout=``.

    Errors: a refused connection raises :class:`esl.exceptions.ConnectionError`,
    one that does not complete in time :class:`esl.exceptions.TimeoutError`, a
    wrong password :class:`esl.exceptions.AuthenticationError`. When the
    connection drops, every pending command, job, channel wait and
    ``events()`` iterator fails at once with ``ConnectionError``
    (``close_reason`` says why).

    ``reconnect=True`` reconnects after a drop (exponential backoff from
    ``reconnect_delay`` up to ``reconnect_max_delay`` seconds, with jitter,
    ``reconnect_attempts`` tries, ``None`` = forever), authenticates again and
    re-applies the subscriptions, filters, log level, ``myevents``,
    ``divert_events`` and ``linger`` of the lost connection; handlers and
    ``events()`` iterators carry on. Channels it owns stay owned: after the
    reconnect one pipelined round of ``uuid_exists`` tells which still exist,
    and the others end (``channel.gone``; their ``"hangup"`` hooks run).
    Commands and jobs in flight at the drop fail with ``ConnectionError``:
    nothing is replayed. Events fired while disconnected are lost (FreeSWITCH
    keeps no backlog); ``stats().events_lost`` estimates how many. While
    reconnecting, commands raise ``ConnectionError`` at once;
    ``await client.wait_connected()`` waits.

    ``keepalive=<seconds>`` probes a connection that has been silent that long
    with ``api uptime`` and drops it (then reconnects, if enabled) when no
    answer comes within the same time: a half-open TCP connection or a frozen
    FreeSWITCH is detected instead of waiting forever.

    Flow control (:mod:`esl.dispatch`): ``policy="pause"`` or ``"drop"``,
    ``max_queue``, ``handler_concurrency``; owners (Channels, Jobs) never lose
    an event to it.

    ``close()`` then ``connect()`` on the same object starts afresh: no
    subscription, filter or channel of the earlier connection survives
    (handlers registered with ``on`` do).

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
        max_size: int = DEFAULT_MAX_SIZE,
        ssl: Any = None,
    ) -> None:
        check_line(password, "password")
        if user is not None:
            check_line(user, "user")
        super().__init__(timeout=timeout, job_timeout=job_timeout, max_queue=max_queue, policy=policy,
                         handler_concurrency=handler_concurrency, max_size=max_size)
        self.host = host
        self.port = port
        self.__password = password
        self.user = user
        self.connect_timeout = timeout if connect_timeout is ... else connect_timeout
        self.reconnect = reconnect
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.reconnect_attempts = reconnect_attempts
        self.keepalive = keepalive
        self.ssl = ssl
        #: reply headers of the authentication (userauth gives Allowed-Events, Allowed-API...)
        self.auth_reply: Any = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._reconnect_task: asyncio.Task[None] | None = None
        self._closing = False
        self._finished = False
        self._connected_waiters: list[asyncio.Future[None]] = []
        self._reconnect_callbacks: list[Callable[[Inbound], Any]] = []
        self._close_callbacks: list[Callable[[BaseException], Any]] = []
        self.close_exc: ConnectionError | None = None

    # -- connecting ----------------------------------------------------------------------

    async def __aenter__(self) -> Inbound:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> Inbound:
        """Connect and authenticate; returns ``self`` (at once if already connected)."""
        if self.connected:
            return self
        if self._finished:  # close() then connect(): start afresh
            self._reset()
        self._closing = False
        self.close_exc = None
        self.protocol = await self._open()
        self._start_keepalive(self.protocol)
        self._wake_connected()
        return self

    def _reset(self) -> None:
        self._finished = False
        self._subs.clear()
        self._custom.clear()
        self._filters.clear()
        self._job_filter = self._bgapi_used = False
        self.log_level = self.myevents_uuid = None
        self.myevents_enabled = False
        self.divert = None
        self.linger_seconds = ...
        self._update_tracking()
        self.dispatcher.reopen()
        self.executor.reopen()

    async def _open(self) -> ESLProtocol:
        loop = asyncio.get_running_loop()
        where = f"{self.host}:{self.port}"
        try:
            _transport, protocol = await asyncio.wait_for(
                loop.create_connection(self._new_protocol, self.host, self.port, ssl=self.ssl),
                self.connect_timeout,
            )
        except asyncio.TimeoutError:
            raise TimeoutError(f"connecting to {where} timed out after {self.connect_timeout}s") from None
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise ConnectionError(f"cannot connect to {where}: {reason}", reason) from None
        try:
            await protocol.wait_auth_request(self.connect_timeout)
            if self.user is None:
                line = f"auth {self.__password}\n\n"
            else:
                line = f"userauth {self.user}:{self.__password}\n\n"
            fut = protocol.write(line.encode("utf-8"))
            try:
                reply = await asyncio.wait_for(fut, self.connect_timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"no reply to the authentication within {self.connect_timeout}s") from None
        except BaseException:
            protocol.abort("authentication did not complete")
            raise
        text = reply.get("Reply-Text", "")
        if not text.startswith("+OK"):
            protocol.close("authentication failed")
            who = self.user or "auth"
            raise AuthenticationError(f"FreeSWITCH at {where} refused the {who} credentials: {text}")
        self.auth_reply = reply
        return protocol

    async def close(self) -> None:
        """Close the connection (sends ``exit`` politely when connected); stops reconnecting.

        Async handler calls still queued are dropped; ``await client.drain()`` first to let them run.
        Every task the connection started (handlers, keepalive, reconnect) is cancelled and awaited.
        """
        self._closing = True
        for task in (self._keepalive_task, self._reconnect_task):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):  # noqa: BLE001
                    pass
        self._keepalive_task = self._reconnect_task = None
        proto = self.protocol
        if proto is not None and proto.connected:
            try:
                await self.exit(timeout=min(self.timeout or 1.0, 1.0))
            except Exception:  # noqa: BLE001 - closing anyway
                pass
            if proto.connected:
                proto.close()
        if proto is not None:
            try:
                await proto.wait_closed(1.0)
            except TimeoutError:
                proto.abort()
        self._finish(None)
        await self.executor.aclose()
        for fut in self._connected_waiters:
            if not fut.done():
                fut.set_exception(ConnectionError("client closed", "client closed"))
                fut.exception()
        self._connected_waiters.clear()

    # -- drop and reconnect ---------------------------------------------------------------

    def _socket_lost(self, protocol: ESLProtocol, exc: ConnectionError) -> None:
        self.close_exc = exc
        if self._closing or protocol.by_client:
            self._finish(None)
            return
        if self._reconnecting:
            return  # the reconnect loop sees the failure and tries again
        log.warning("connection to %s:%s lost: %s", self.host, self.port, exc.reason)
        if self.reconnect:
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect_loop())
        else:
            self._finish(exc)

    def _finish(self, err: ConnectionError | None) -> None:
        """The logical connection is over: owners, iterators and waiters are told; close callbacks run."""
        if self._finished:
            return
        self._finished = True
        exc = err or self.close_exc or ConnectionError("client closed", "client closed")
        self._end_for_good(exc, err)
        if self._keepalive_task is not None and self._keepalive_task is not asyncio.current_task():
            self._keepalive_task.cancel()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for cb in callbacks:
            try:
                cb(exc)
            except Exception:  # noqa: BLE001
                log.exception("close callback %r raised", cb)
        for fut in self._connected_waiters:
            if not fut.done():
                fut.set_exception(ConnectionError(str(exc), exc.reason))
                fut.exception()
        self._connected_waiters.clear()

    async def _reconnect_loop(self) -> None:
        delay = self.reconnect_delay
        attempt = 0
        while not self._closing:
            attempt += 1
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            try:
                proto = await self._open()
                self.protocol = proto
                try:
                    await self._reapply()
                    await self._verify_channels()
                except BaseException:
                    proto.abort("re-applying the connection's state failed", by_client=False)
                    raise
                if not proto.connected:
                    raise ConnectionError("connection lost while re-applying the subscriptions")
            except asyncio.CancelledError:
                raise
            except AuthenticationError as exc:
                log.error("reconnect to %s:%s: %s; giving up", self.host, self.port, exc)
                self._give_up(ConnectionError(str(exc), "authentication failed on reconnect"))
                return
            except Exception as exc:  # noqa: BLE001 - refused, timed out, dropped again...
                log.info("reconnect attempt %d to %s:%s failed: %s", attempt, self.host, self.port, exc)
                if self.reconnect_attempts is not None and attempt >= self.reconnect_attempts:
                    self._give_up(ConnectionError(f"gave up reconnecting after {attempt} attempts: {exc}", str(exc)))
                    return
                delay = min(delay * 2, self.reconnect_max_delay)
                continue
            self._start_keepalive(proto)
            self._reconnects += 1
            self._rebase_sequence()
            self.close_exc = None
            log.info("reconnected to %s:%s", self.host, self.port)
            self._wake_connected()
            for cb in list(self._reconnect_callbacks):
                try:
                    res = cb(self)
                    if asyncio.iscoroutine(res):
                        await res
                except Exception:  # noqa: BLE001
                    log.exception("reconnect callback %r raised", cb)
            return

    def _give_up(self, err: ConnectionError) -> None:
        self.close_exc = err
        self._finish(err)

    def _start_keepalive(self, proto: ESLProtocol) -> None:
        old = self._keepalive_task
        if old is not None and not old.done() and old is not asyncio.current_task():
            old.cancel()
        self._keepalive_task = None
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
        while proto.connected and proto is self.protocol:
            await asyncio.sleep(interval / 2)
            if not proto.connected or loop.time() - proto.last_received < interval:
                continue
            try:
                await self.api("uptime", check=False, timeout=interval)
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

    def add_reconnect_callback(self, cb: Callable[[Inbound], Awaitable[None] | None]) -> None:
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

    # -- state -------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection ended for good (closed, or lost without reconnect)."""
        return not self.connected and not self._reconnecting

    @property
    def close_reason(self) -> str | None:
        """Why the last connection ended."""
        return None if self.close_exc is None else self.close_exc.reason

    @property
    def password(self) -> str:
        """Hidden: the password is not readable back (it never appears in reprs or logs)."""
        return "******"

    def _wire(self) -> ESLProtocol:
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
