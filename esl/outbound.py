"""``Outbound``: the server FreeSWITCH's ``socket`` dialplan application connects to.

For every call handed over (``<action application="socket" data="host:port async full"/>``)
FreeSWITCH opens a TCP connection; the server makes a :class:`~esl.session.Session`
for it and, in one task per call:

1. sends ``connect`` first (FreeSWITCH runs only the first command without
   replying to it, and gives up after 25 s) and keeps the channel data of its
   reply as ``session.context``, warning if the dialplan lacks ``async full``;
2. subscribes to the call's events (``filter Unique-ID`` + ``event``, see
   :meth:`Session.subscribe_channel` for why not only ``myevents``);
3. sets ``linger <seconds>`` (never a bare ``linger``, which never ends), so the
   last events (CHANNEL_HANGUP_COMPLETE...) still arrive after hangup;
4. runs ``await handler(session)``;
5. when the handler returns, gives the channel's handlers still queued or
   running (an ``onDTMF`` handler playing a prompt) ``handler_grace`` seconds
   to finish, then sends ``exit`` and closes the socket (FreeSWITCH then hangs
   up a call still up). A handler that raises is logged with the call's UUID
   and the call is hung up, never left parked.

Everything runs on one event loop; a session costs one protocol object, one
Channel and one task, and leaves nothing for the cycle collector once it ends.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Iterable

from esl.exceptions import ChannelError, ConnectionError, TimeoutError
from esl.protocol import ESLProtocol
from esl.session import CONNECT_DEADLINE, Session
from esl.stats import ConnectionStats, OutboundStats
from esl.types import HangupCause

__all__ = ["Outbound"]

log = logging.getLogger("esl.outbound")

OutboundHandler = Callable[[Session], Awaitable[Any]]


class Outbound:
    """An asyncio server running ``handler(session)`` for each call FreeSWITCH sends.

    ``events``: ``True`` subscribes each session to all events of its call
    (filtered on its UUID), a list of names to those only, ``False`` to none.
    ``linger``: seconds FreeSWITCH keeps the socket open after hangup (``True``
    means 10, ``False``/``0``/``None`` disables). ``error_cause``: the cause
    used to hang up when a handler raises. ``timeout``: the default command
    timeout of each session. ``handler_grace``: seconds the channel's own
    handlers (``onDTMF``, lifecycle hooks) may still run after the session
    handler returned, before the socket closes. ``policy``/``max_queue``: each
    session's flow control (see :mod:`esl.dispatch`).

    Use ``await app.start()`` (serves until cancelled), ``await
    app.start(block=False)`` then ``await app.stop()``, or ``async with app:``.
    """

    def __init__(
        self,
        handler: OutboundHandler,
        host: str = "127.0.0.1",
        port: int = 9000,
        *,
        events: "bool | Iterable[str]" = True,
        linger: "int | bool | None" = 10,
        error_cause: "HangupCause | str" = HangupCause.NORMAL_TEMPORARY_FAILURE,
        timeout: float | None = 5.0,
        connect_timeout: float = CONNECT_DEADLINE,
        exit_timeout: float = 2.0,
        session_class: type[Session] = Session,
        handler_grace: float = 5.0,
        policy: str = "pause",
        max_queue: int = 10_000,
        sock: Any = None,
    ) -> None:
        if not callable(handler):
            raise TypeError("handler must be an async callable taking the Session")
        self.handler = handler
        self.host = host
        self._port = port
        self.events: bool | tuple[str, ...] = events if isinstance(events, bool) else tuple(events)
        if linger is True:
            linger = 10
        if linger is not None and linger is not False and (int(linger) != linger or linger < 0):
            raise ValueError("linger must be a non-negative number of seconds")
        self.linger: int | None = int(linger) if linger else None
        self.error_cause = HangupCause.parse(error_cause)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.exit_timeout = exit_timeout
        self.session_class = session_class
        self.handler_grace = handler_grace
        self.policy = policy
        self.max_queue = max_queue
        #: an already bound listening socket to serve on instead of (host, port) (see esl.workers)
        self.sock = sock
        self.sessions: set[Session] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.base_events.Server | None = None
        #: counters: sessions started, handler errors, sessions whose setup failed
        self.handled = 0
        self.errors = 0
        self.setup_failures = 0
        self._accepted = 0
        self._ended = _Totals()

    # -- server -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the real one once started with ``port=0``)."""
        server = self._server
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
        return self._port

    @port.setter
    def port(self, value: int) -> None:
        """Change the port to listen on; only before ``start`` (a listening server cannot move)."""
        if self._server is not None:
            raise RuntimeError("Outbound.port cannot change once the server has started")
        if not isinstance(value, int) or not 0 <= value <= 65535:
            raise ValueError(f"invalid port {value!r}")
        self._port = value

    @property
    def serving(self) -> bool:
        """True while accepting connections."""
        return self._server is not None and self._server.is_serving()

    async def start(self, block: bool = True) -> None:
        """Listen; with ``block`` serve until cancelled (then stop), else return once listening."""
        if self._server is None:
            loop = asyncio.get_running_loop()
            if self.sock is not None:
                self._server = await loop.create_server(self._make_protocol, sock=self.sock, backlog=1024)
            else:
                self._server = await loop.create_server(self._make_protocol, self.host, self._port,
                                                        backlog=1024, reuse_address=True)
        if not block:
            return
        try:
            await self._server.serve_forever()
        finally:
            await self.stop()

    def _make_protocol(self) -> ESLProtocol:
        session = self.session_class(self, timeout=self.timeout, policy=self.policy, max_queue=self.max_queue)
        session.protocol = proto = session._new_protocol()
        return proto

    def _session_made(self, session: Session) -> None:
        self._accepted += 1
        self.sessions.add(session)
        task = asyncio.get_running_loop().create_task(self._serve(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self, grace: float = 0.0) -> None:
        """Stop accepting calls; give running handlers ``grace`` seconds, then cancel them.

        A cancelled handler's session still ends cleanly: ``exit`` is sent, so
        FreeSWITCH hangs up its call.
        """
        server = self._server
        self._server = None
        if server is not None:
            server.close()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks and grace > 0:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            if not task.done():
                task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            try:
                await asyncio.wait_for(server.wait_closed(), 5.0)
            except asyncio.TimeoutError:  # pragma: no cover - a peer that will not go away
                pass

    async def __aenter__(self) -> "Outbound":
        await self.start(block=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- one call -------------------------------------------------------------------

    async def _setup(self, session: Session) -> None:
        await session.connect(timeout=self.connect_timeout)
        await session.subscribe_channel(self.events, self.linger)

    async def _serve(self, session: Session) -> None:
        try:
            try:
                await self._setup(session)
            except (ConnectionError, TimeoutError, ChannelError, Exception) as exc:  # noqa: BLE001
                self.setup_failures += 1
                log.warning("outbound session setup failed (%s): %s", session.uuid or "no uuid", exc)
                return
            self.handled += 1
            try:
                await self.handler(session)
            except asyncio.CancelledError:
                raise
            except ConnectionError as exc:
                log.info("outbound session %s: connection closed during the handler: %s", session.uuid, exc)
            except ChannelError as exc:
                channel = session._channel
                if channel is not None and channel.gone:
                    log.info("outbound session %s: call ended during the handler: %s", session.uuid, exc)
                else:
                    await self._handler_failed(session, exc)
            except Exception as exc:  # noqa: BLE001 - a handler bug must not leave the call parked
                await self._handler_failed(session, exc)
        finally:
            self.sessions.discard(session)
            await asyncio.shield(self._finish(session))

    async def _handler_failed(self, session: Session, exc: BaseException) -> None:
        self.errors += 1
        log.error("outbound handler for call %s raised; hanging up with %s", session.uuid,
                  self.error_cause.name, exc_info=exc)
        channel = session._channel
        if channel is None or channel.gone or session.closed:
            return
        try:
            await channel.hangup(self.error_cause, timeout=self.exit_timeout)
        except Exception as err:  # noqa: BLE001
            log.warning("could not hang up call %s after handler error: %s", session.uuid, err)

    async def _finish(self, session: Session) -> None:
        try:
            if self.handler_grace > 0 and session.executor.busy and not session.closed:
                await session.executor.aclose(self.handler_grace)
            channel = session._channel
            if channel is not None and channel.busy_locked and not channel.gone and session.full_control:
                # an event-locked app still runs (an endless prompt): stop it, or the call is left
                # playing after the socket closes
                await session.api(f"uuid_break {channel.uuid} all", check=False, timeout=self.exit_timeout)
            await session.close_session(self.exit_timeout)
        except Exception:  # noqa: BLE001 - never let teardown raise into the loop
            log.debug("closing session %s failed", session.uuid, exc_info=True)
        finally:
            await session.executor.aclose()
            session._release()
            self._ended.add(session.stats())

    def stats(self) -> OutboundStats:
        """A snapshot: sessions live and in total, and the counters of all sessions added up."""
        totals = self._ended.copy()
        for session in self.sessions:
            totals.add(session.stats())
        return OutboundStats(
            serving=self.serving,
            sessions=len(self.sessions),
            sessions_total=self._accepted,
            sessions_failed=self.errors,
            connections=totals.snapshot(len(self.sessions)),
        )

    def __repr__(self) -> str:
        return f"<Outbound {self.host}:{self.port} sessions={len(self.sessions)}>"


class _Totals:
    """Counters of many sessions added up (ended ones folded in as they end)."""

    __slots__ = ("received", "dropped", "malformed", "lost", "pauses", "errors", "names", "pending",
                 "jobs", "channels", "owners", "depth", "paused")

    def __init__(self) -> None:
        self.received = self.dropped = self.malformed = self.lost = self.pauses = self.errors = 0
        self.pending = self.jobs = self.channels = self.owners = self.depth = self.paused = 0
        self.names: dict[str, int] = {}

    def add(self, s: ConnectionStats) -> None:
        self.received += s.events_received
        self.dropped += s.events_dropped
        self.malformed += s.events_malformed
        self.lost += s.events_lost
        self.pauses += s.pauses
        self.errors += s.handler_errors
        self.pending += s.pending_commands
        self.jobs += s.jobs
        self.channels += s.channels
        self.owners += s.owners
        self.depth += s.queue_depth
        self.paused += s.paused
        for name, n in s.events_by_name.items():
            if name in self.names or len(self.names) < 256:
                self.names[name] = self.names.get(name, 0) + n
            else:
                self.names["other"] = self.names.get("other", 0) + n

    def copy(self) -> "_Totals":
        other = _Totals()
        for slot in self.__slots__:
            value = getattr(self, slot)
            setattr(other, slot, dict(value) if isinstance(value, dict) else value)
        # gauges of ended sessions are zero by now; keep only the counters
        other.pending = other.jobs = other.channels = other.owners = other.depth = other.paused = 0
        return other

    def snapshot(self, live: int) -> ConnectionStats:
        return ConnectionStats(
            connected=live > 0, pending_commands=self.pending, jobs=self.jobs, channels=self.channels,
            owners=self.owners, events_received=self.received, events_dropped=self.dropped,
            events_malformed=self.malformed, events_lost=self.lost, queue_depth=self.depth,
            paused=self.paused > 0, pauses=self.pauses, handler_errors=self.errors, reconnects=0,
            events_by_name=dict(self.names),
        )
