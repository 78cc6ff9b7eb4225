"""``Session``: one outbound-socket connection, i.e. one call FreeSWITCH handed to the application.

A Session is a :class:`~esl.connection.Connection` (so ``api``, ``bgapi``,
``send``, ``on``, ``events`` all work on it, and ``Channel.create(session, ...)``
places further calls from it), plus the call it controls: ``session.uuid``,
``session.context`` (the channel data FreeSWITCH sent in reply to ``connect``)
and ``session.channel`` (the :class:`~esl.channel.Channel` of that call).
Sessions are made by :class:`~esl.outbound.Outbound`; the handler gets them
ready to use.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Mapping

from esl.channel import Channel
from esl.commands import build_command, check_line
from esl.connection import Connection
from esl.exceptions import ChannelError, CommandError, ConnectionError, OriginateError
from esl.protocol import ESLProtocol
from esl.types import ChannelState, HangupCause

if TYPE_CHECKING:  # pragma: no cover
    from esl.core import Event
    from esl.outbound import Outbound

__all__ = ["Session", "CONNECT_DEADLINE"]

log = logging.getLogger("esl.session")

#: Events call control needs on a session subscribed to a list of events.
_CONTROL_EVENTS = (
    "CHANNEL_ANSWER", "CHANNEL_EXECUTE_COMPLETE", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "BACKGROUND_JOB",
)

#: FreeSWITCH gives up on an outbound socket whose first command does not arrive within 25 s.
CONNECT_DEADLINE = 25.0


class Session(Connection):
    """The connection FreeSWITCH opened for one call (``socket`` dialplan application).

    ``context`` is the ``connect`` reply (an Event holding the caller profile,
    channel state and every ``variable_*``); ``uuid`` its ``Unique-ID``;
    ``channel`` the call's Channel; ``control`` / ``socket_mode`` say how the
    dialplan invoked the socket (``"full"``/``"single-channel"``,
    ``"async"``/``"static"``).
    """

    def __init__(self, server: "Outbound | None" = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server
        self.context: Event | None = None
        self._channel: Channel | None = None
        self._uuid: str | None = None
        self.uses_filters = False
        self._events_enabled = True
        self._ended = False

    # -- the socket ---------------------------------------------------------------------

    def _wire_made(self, protocol: ESLProtocol) -> None:
        if self.server is not None:
            self.server._session_made(self)

    def _socket_lost(self, protocol: ESLProtocol, exc: ConnectionError) -> None:
        self._end(exc)

    def _wire_linger(self, notice: "Event") -> None:
        channel = self._channel
        if channel is not None:
            channel._on_linger()

    def _end(self, exc: ConnectionError) -> None:
        """The socket is gone for good: owners fail and leave, iterators end."""
        if self._ended:
            return
        self._ended = True
        self._end_for_good(exc, None if self.protocol is not None and self.protocol.by_client else exc)

    def _release(self) -> None:
        """After the session: let go of the channel so nothing needs the cycle collector."""
        channel = self._channel
        if channel is not None:
            channel._detach()

    # -- identity -------------------------------------------------------------------------

    @property
    def uuid(self) -> str | None:
        """The UUID of the call this socket controls (``None`` before ``connect``)."""
        channel = self._channel
        if channel is not None:
            return channel.uuid  # follows CHANNEL_UUID renames
        return self._uuid

    @property
    def channel(self) -> Channel:
        """The call's Channel (set once ``connect`` completed, which Outbound does before the handler)."""
        channel = self._channel
        if channel is None:
            raise ChannelError("the session has no channel yet (connect has not completed)")
        return channel

    @property
    def controlled_uuid(self) -> str | None:
        return self.uuid

    @property
    def control(self) -> str | None:
        """``"full"`` or ``"single-channel"`` (the ``Control`` header of the connect reply)."""
        return None if self.context is None else self.context.get("Control")

    @property
    def socket_mode(self) -> str | None:
        """``"async"`` or ``"static"`` (the ``Socket-Mode`` header of the connect reply)."""
        return None if self.context is None else self.context.get("Socket-Mode")

    @property
    def full_control(self) -> bool:
        """False when the dialplan lacks ``full``: then api, bgapi, event, linger... are refused."""
        return self.control != "single-channel"

    @property
    def receives_channel_events(self) -> bool:
        return self._events_enabled

    @property
    def closed(self) -> bool:
        proto = self.protocol
        return self._ended or proto is None or proto.closed

    # -- setup (driven by Outbound) ---------------------------------------------------------

    async def connect(self, timeout: float = CONNECT_DEADLINE) -> "Event":
        """Send ``connect`` (it must be the first command) and keep the channel data it returns.

        Warns when the dialplan did not ask for ``async full``: without
        ``full`` most commands are refused; without ``async`` the socket blocks
        while an application runs and no events (DTMF included) flow meanwhile.
        """
        reply = await self._request(build_command("connect"), "connect", timeout=timeout)
        text = reply.get("Reply-Text") or ""
        if text.startswith("-ERR"):
            raise CommandError(text, "connect")
        self.context = reply
        uuid = reply.get("Unique-ID") or reply.get("Channel-Unique-ID")
        if not uuid:
            raise ChannelError("connect reply carries no Unique-ID")
        self._uuid = uuid
        if reply.get("Control") == "single-channel":
            log.warning(
                "outbound session %s: Control: single-channel - the dialplan's socket application lacks "
                "'full'; api, bgapi, event, linger and most commands will be refused", uuid)
        if reply.get("Socket-Mode") == "static":
            log.warning(
                "outbound session %s: Socket-Mode: static - the dialplan's socket application lacks "
                "'async'; each sendmsg blocks until its application ends and no events (not even DTMF) "
                "arrive meanwhile", uuid)
        self._channel = Channel._for_session(self, uuid, reply)
        return reply

    async def subscribe_channel(self, events: "bool | tuple[str, ...] | list[str]" = True,
                                linger: int | None = None) -> None:
        """Receive this call's events (and set ``linger <seconds>`` when given).

        We do not rely on ``myevents`` alone: its fixed set lacks
        CHANNEL_CALLSTATE, PLAYBACK_*, RECORD_*, CUSTOM and every event of
        other legs (ESL-PROTOCOL.md §1.8). Instead the socket filters on
        ``Unique-ID <uuid>`` (and ``Job-Owner-UUID <uuid>``, so the results of
        this socket's own bgapi calls still pass) and subscribes to the
        events wanted (``True``: ALL; a list gets the few events call control
        itself needs added: ANSWER, EXECUTE_COMPLETE, BRIDGE/UNBRIDGE, HANGUP*,
        DESTROY, BACKGROUND_JOB). Further channels placed from the
        session add their own ``Unique-ID`` filter. Without ``full`` control
        ``event`` is refused, so ``myevents`` is the fallback there.
        ``events=False`` subscribes nothing: the blocking verbs (``answer()``,
        ``playback()``, ``wait()``...) then refuse with ChannelError instead of
        waiting for events that never come; use ``block=False``.
        """
        uuid = self.uuid
        if uuid is None:
            raise ChannelError("subscribe_channel before connect")
        self._events_enabled = bool(events)
        if not self.full_control:  # event, linger... are refused without "full"
            if events:
                await self.myevents(format="plain")
            return
        if not events:
            if linger:
                await self.linger(int(linger))
            return
        self.job_filter = True  # Job-Owner-UUID already lets this socket's BACKGROUND_JOBs through
        self.uses_filters = True
        names: tuple[str, ...] = ()
        if isinstance(events, (list, tuple)):  # plus what blocking executes, hangup detection and bgapi rely on
            names = tuple(dict.fromkeys(n.upper() for n in (*events, *_CONTROL_EVENTS)))
        steps = [self.filter("Unique-ID", uuid), self.filter("Job-Owner-UUID", uuid),
                 self.subscribe(*names, format="plain")]
        if linger:
            steps.append(self.linger(int(linger)))
        # Pipelined: each step writes its command before awaiting, in this order, and
        # FreeSWITCH answers in order, so the set-up costs one round trip, not four.
        results = await asyncio.gather(*steps, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def ensure_channel_events(self, uuid: str) -> bool:
        """Another channel placed from this session: add its ``Unique-ID`` filter (the session filters)."""
        if uuid != self.uuid and self.uses_filters:
            return await self.ensure_filter("Unique-ID", uuid)
        return False

    # -- commands ------------------------------------------------------------------------------

    async def sendmsg(
        self,
        command: str,
        application: str | None = None,
        data: object = None,
        *,
        block: bool = False,
        lock: bool = False,
        timeout: float | None = None,
        uuid: str | None = None,
        headers: Mapping[str, object] | None = None,
    ) -> "Event | None":
        """Send a call command to this call (or to ``uuid``).

        ``command`` ``"execute"`` runs ``application`` with ``data`` (see
        :meth:`Channel.execute`: ``block=True`` waits for its completion,
        racing hangup and socket close); ``"hangup"`` hangs up with cause
        ``data`` (default NORMAL_CLEARING); other call commands (``unicast``,
        ``nomedia``, ``xferext``...) are sent with ``headers`` as given.
        """
        check_line(command, "call command")
        target = uuid or self.uuid
        if target is None:
            raise ChannelError("the session is not connected to a call yet")
        if command == "execute":
            if not application:
                raise ValueError("execute needs an application")
            channel = self._channel_for(target)
            return await channel.execute(application, data, block=block, lock=lock, timeout=timeout,
                                         headers=headers)
        hdrs: dict[str, str] = {"call-command": command}
        if command == "hangup":
            hdrs["hangup-cause"] = HangupCause.parse(str(data) if data is not None else "NORMAL_CLEARING").name
        if lock:
            hdrs["event-lock"] = "true"
        for name, value in (headers or {}).items():
            hdrs[check_line(name, "header name")] = check_line(str(value), "header value")
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        reply = await self.sendmsg_raw(None if target == self.uuid else target, hdrs, **kwargs)
        if command == "hangup" and block and self._events_enabled:
            try:
                await self._channel_for(target).wait(ChannelState.HANGUP, timeout=timeout or 10.0)
            except OriginateError:
                pass
        return reply

    def _channel_for(self, uuid: str) -> Channel:
        channel = self._channel
        if channel is not None and uuid == channel.uuid:
            return channel
        return Channel.attach(self, uuid)

    async def hangup(self, cause: "HangupCause | str | int" = "NORMAL_CLEARING") -> None:
        """Hang up this call (a shortcut for ``session.channel.hangup``)."""
        if self._channel is not None:
            await self._channel.hangup(cause)

    async def close_session(self, exit_timeout: float = 2.0) -> None:
        """End the socket cleanly: ``exit`` (FreeSWITCH answers ``+OK bye`` and closes), then close."""
        proto = self.protocol
        if proto is not None and proto.connected:
            try:
                await self.exit(timeout=exit_timeout)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        if proto is not None and not proto.closed:
            proto.close("session finished")

    def __repr__(self) -> str:
        return f"<Session {self.uuid} {'closed' if self.closed else 'open'}>"
