"""``ESLProtocol``: one Event Socket on the wire, and nothing else.

Bytes from the socket go straight into the core's :class:`~esl.core.Parser`
(``data_received``; no ``StreamReader``). What comes out is handled in one
pass, in stream order:

* ``command/reply`` and ``api/response`` resolve the oldest pending command
  (a FIFO: commands may be pipelined, FreeSWITCH answers in order), so a reply
  is never queued behind events;
* every event goes to the connection that owns this socket
  (:class:`esl.connection.Connection`), which hands it to its owners and then
  to flow-controlled user delivery; an event whose decoding fails is dropped,
  counted and logged there — it never escapes into asyncio;
* ``text/disconnect-notice`` ends the connection (every pending command fails
  at once with :class:`esl.exceptions.ConnectionError`), except its
  ``Content-Disposition: linger`` form, which the connection is told about.

The FIFO stays honest: a reply whose kind cannot belong to the oldest command
(an ``api/response`` where a ``command/reply`` is due, a bgapi reply carrying
another ``Job-UUID``) proves a reply was lost, and the socket is closed with a
clear ConnectionError. After a command times out, the connection sends a
probe (``api echo <nonce>``, :meth:`ESLProtocol.probe`): when its answer comes
back, the commands before it that never got a reply fail with
:class:`~esl.exceptions.ProtocolError` and the FIFO is aligned again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import uuid as _uuid
from typing import TYPE_CHECKING, Any, Callable, Protocol

from esl.core import DEFAULT_MAX_SIZE, Parser
from esl.exceptions import ConnectionError, ProtocolError, TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from esl.core import Event

__all__ = ["ESLProtocol", "WireOwner"]

log = logging.getLogger("esl.protocol")


class WireOwner(Protocol):
    """What an :class:`ESLProtocol` tells the connection that owns it."""

    def _wire_event(self, event: "Event") -> None: ...

    def _wire_bad_event(self, event: "Event", exc: BaseException) -> None: ...

    def _wire_message(self, message: "Event") -> None: ...

    def _wire_linger(self, notice: "Event") -> None: ...

    def _wire_made(self, protocol: "ESLProtocol") -> None: ...

    def _wire_lost(self, protocol: "ESLProtocol", exc: ConnectionError) -> None: ...


class _Slot:
    """One command waiting for its reply."""

    __slots__ = ("future", "api", "tag")

    def __init__(self, future: asyncio.Future[Any], api: bool, tag: str | None) -> None:
        self.future = future
        self.api = api  # expects api/response (else command/reply)
        self.tag = tag  # bgapi: its Job-UUID; probe: its nonce


class ESLProtocol(asyncio.Protocol):
    """One socket: the parser, the reply FIFO, reading paused or not, and how the socket ended."""

    def __init__(
        self,
        owner: WireOwner,
        *,
        max_size: int = DEFAULT_MAX_SIZE,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._owner: WireOwner | None = owner
        self._on_event: Callable[[Event], None] = owner._wire_event
        self._loop = loop
        self._parser = Parser(max_size)
        self._pending: collections.deque[_Slot] = collections.deque()
        self._probes: set[str] = set()
        self.transport: asyncio.Transport | None = None
        self._want_pause = False
        self._reading_paused = False
        self._closed = False
        self.close_exc: ConnectionError | None = None
        self._close_reason: str | None = None
        #: True when the client ended the connection (close, exit): no reconnect follows
        self.by_client = False
        self._auth_request: asyncio.Future[Event] | None = None
        self._closed_future: asyncio.Future[None] | None = None
        #: True once FreeSWITCH sent the linger notice (the channel is gone, the socket stays)
        self.lingering = False
        #: loop time of the last bytes read (for keepalive checks)
        self.last_received = 0.0
        #: replies that came with no command waiting (logged)
        self.unexpected_replies = 0
        #: commands whose reply was proven lost by a probe
        self.lost_replies = 0

    # -- asyncio.Protocol -------------------------------------------------------------

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.last_received = self._get_loop().time()
        if self._want_pause:
            self._update_reading()
        owner = self._owner
        if owner is not None:
            owner._wire_made(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self.last_received = self._loop.time()  # type: ignore[union-attr]
        failure: ProtocolError | None = None
        try:
            messages = self._parser.feed(data)
        except ProtocolError as exc:
            failure = exc
            messages = list(getattr(exc, "messages", None) or ())  # completed before the bad frame
        on_event = self._on_event
        for msg in messages:
            if msg.is_event:
                try:
                    on_event(msg)
                except Exception as exc:  # a malformed event (or an owner bug) costs that event only
                    owner = self._owner
                    if owner is not None:
                        owner._wire_bad_event(msg, exc)
            else:
                self._message(msg)
                if self._closed:
                    return
        if failure is not None:
            # after a framing error the stream has no trustworthy frame boundary left to resume from
            log.error("Event Socket framing error, closing: %s", failure)
            self._fail(f"protocol error: {failure}")

    def eof_received(self) -> bool | None:
        if self._close_reason is None:
            self._close_reason = "FreeSWITCH closed the connection"
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        # asyncio's selector transport keeps its own bound read callback (a reference cycle that
        # only the cycle collector would free, with the socket in it); it is never used again
        if self.transport is not None and hasattr(self.transport, "_read_ready_cb"):
            self.transport._read_ready_cb = None
        reason = self._close_reason
        if reason is None:
            reason = f"connection lost: {exc}" if exc is not None else "connection closed by FreeSWITCH"
        self.transport = None
        self._shutdown(ConnectionError(reason, reason))

    # -- messages that are not events -------------------------------------------------

    def _message(self, msg: "Event") -> None:
        ctype = msg.content_type
        if ctype == "command/reply" or ctype == "api/response":
            self._reply(msg, ctype == "api/response")
        elif ctype == "auth/request":
            auth = self._auth_request
            if auth is None:
                auth = self._auth_request = self._get_loop().create_future()
            if not auth.done():
                auth.set_result(msg)
        elif ctype == "text/disconnect-notice":
            owner = self._owner
            if owner is not None:
                owner._wire_message(msg)
            if msg.get("Content-Disposition") == "linger":
                self.lingering = True
                if self._owner is not None:
                    self._owner._wire_linger(msg)
                return
            text = (msg.body or "").strip() or "disconnect notice"
            self._close_reason = f"FreeSWITCH disconnected: {text}"
            self._shutdown(ConnectionError(self._close_reason, text))
            if self.transport is not None:
                self.transport.close()
        elif ctype == "text/rude-rejection":
            text = (msg.body or "").strip() or "rejected"
            self._fail(f"FreeSWITCH rejected the connection: {text}", text)
        else:
            owner = self._owner
            if owner is not None:
                owner._wire_message(msg)

    def _reply(self, msg: "Event", is_api: bool) -> None:
        pending = self._pending
        if self._probes and is_api and self._probe_answered(msg):
            return
        if not pending:
            self.unexpected_replies += 1
            log.warning("reply with no command waiting for it: %r", msg)
            return
        slot = pending[0]
        if slot.api != is_api:
            # FreeSWITCH refuses a command (api included) with a command/reply "-ERR ..."
            refused = not is_api and msg.get("Reply-Text", "").startswith("-ERR")
            if not refused:
                self._fail("the reply stream is out of step with the commands (a reply was lost); "
                           f"got {msg.content_type} where {'api/response' if slot.api else 'command/reply'} "
                           "was due")
                return
        elif slot.tag is not None and not is_api:
            job = msg.get("Job-UUID")
            if job is not None and job != slot.tag:
                self._fail(f"the reply stream is out of step with the commands: a reply for job {job} "
                           f"came where job {slot.tag} was due")
                return
        pending.popleft()
        if not slot.future.done():
            slot.future.set_result(msg)
        if not pending and self._want_pause:
            self._update_reading()

    def _probe_answered(self, msg: "Event") -> bool:
        nonce = (msg.body or "").strip()
        if nonce not in self._probes:
            return False
        self._probes.discard(nonce)
        pending = self._pending
        at = next((i for i, s in enumerate(pending) if s.tag == nonce and s.api), None)
        if at is None:
            return False
        for _ in range(at):  # their replies never came: the FIFO skips them
            slot = pending.popleft()
            self.lost_replies += 1
            if not slot.future.done():
                slot.future.set_exception(ProtocolError("FreeSWITCH's reply to this command was lost"))
        slot = pending.popleft()
        if not slot.future.done():
            slot.future.set_result(msg)
        if at:
            log.warning("%d command replies were lost; the reply FIFO is aligned again", at)
        if not pending and self._want_pause:
            self._update_reading()
        return True

    # -- commands ------------------------------------------------------------------------

    def write(self, data: bytes, *, api: bool = False, tag: str | None = None) -> asyncio.Future[Any]:
        """Write pre-built command bytes; the future of its reply (FIFO order).

        ``api`` says the reply is an ``api/response``; ``tag`` is the Job-UUID of a bgapi.
        ``ConnectionError`` at once when the socket is closed.
        """
        transport = self.transport
        if transport is None or self._closed:
            err = self.close_exc
            if err is not None:
                raise ConnectionError(str(err), err.reason)
            raise ConnectionError("not connected", "not connected")
        fut = self._get_loop().create_future()
        self._pending.append(_Slot(fut, api, tag))
        transport.write(data)
        if self._reading_paused:
            self._update_reading()
        return fut

    def probe(self) -> asyncio.Future[Any] | None:
        """Send ``api echo <nonce>`` to find out whether replies were lost (None if one is in flight)."""
        if self._probes or self._closed or self.transport is None:
            return None
        nonce = f"esl-probe-{_uuid.uuid4().hex}"
        fut = self.write(f"api echo {nonce}\n\n".encode(), api=True, tag=nonce)
        self._probes.add(nonce)
        return fut

    @property
    def pending_commands(self) -> int:
        """Commands written whose reply has not arrived yet."""
        return len(self._pending)

    async def wait_auth_request(self, timeout: float | None) -> "Event":
        """Wait for FreeSWITCH's ``auth/request`` greeting (inbound connections)."""
        if self._auth_request is None:
            self._auth_request = self._get_loop().create_future()
        if self._closed and not self._auth_request.done():
            err = self.close_exc or ConnectionError("not connected", "not connected")
            raise ConnectionError(str(err), err.reason)
        try:
            return await asyncio.wait_for(asyncio.shield(self._auth_request), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no auth/request from FreeSWITCH within {timeout}s") from None

    # -- reading paused or not -------------------------------------------------------------

    def set_paused(self, want: bool) -> None:
        """Ask for reading to pause (flow control); it still resumes while a reply is awaited."""
        self._want_pause = want
        self._update_reading()

    @property
    def paused(self) -> bool:
        """True while reading from the socket is paused."""
        return self._reading_paused

    def _update_reading(self) -> None:
        transport = self.transport
        if transport is None or self._closed:
            return
        pause = self._want_pause and not self._pending
        if pause and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not pause and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    # -- closing -----------------------------------------------------------------------------

    def _fail(self, reason: str, short: str | None = None) -> None:
        """Close on a failure the client did not ask for (a reconnect may follow)."""
        self._close_reason = reason
        transport = self.transport
        self._shutdown(ConnectionError(reason, short or reason))
        if transport is not None:
            transport.abort()

    def _shutdown(self, err: ConnectionError) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_exc = err
        pending, self._pending = self._pending, collections.deque()
        for slot in pending:
            if not slot.future.done():
                slot.future.set_exception(ConnectionError(str(err), err.reason))
        auth = self._auth_request
        if auth is not None and not auth.done():
            auth.set_exception(ConnectionError(str(err), err.reason))
            auth.exception()
        owner, self._owner = self._owner, None
        self._on_event = _closed_event
        if owner is not None:
            try:
                owner._wire_lost(self, err)
            except Exception:  # pragma: no cover - never let teardown raise into asyncio
                log.exception("connection teardown failed")
        if self._closed_future is not None and not self._closed_future.done():
            self._closed_future.set_result(None)

    def close(self, reason: str = "closed by the client") -> None:
        """Close the socket now (writes already buffered still go out); pending commands fail."""
        self.by_client = True
        if self._close_reason is None:
            self._close_reason = reason
        transport = self.transport
        self._shutdown(ConnectionError(reason, reason))
        if transport is not None:
            transport.close()

    def abort(self, reason: str = "aborted by the client", *, by_client: bool = True) -> None:
        """Drop the socket without flushing; ``by_client=False`` marks a failure (reconnect may follow)."""
        self.by_client = by_client
        if self._close_reason is None:
            self._close_reason = reason
        transport = self.transport
        self._shutdown(ConnectionError(reason, reason))
        if transport is not None:
            transport.abort()

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the socket is closed (by either side)."""
        if self._closed:
            return
        if self._closed_future is None:
            self._closed_future = self._get_loop().create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._closed_future), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"connection still open after {timeout}s") from None

    @property
    def closed(self) -> bool:
        """True once the socket has ended."""
        return self._closed

    @property
    def connected(self) -> bool:
        """True while the socket is open and not shutting down."""
        return self.transport is not None and not self._closed

    @property
    def close_reason(self) -> str | None:
        """Why the socket ended (the disconnect-notice text, the socket error...)."""
        return None if self.close_exc is None else self.close_exc.reason

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("open" if self.transport is not None else "new")
        return f"<ESLProtocol {state} pending={len(self._pending)}>"


def _closed_event(_event: "Event") -> None:
    """The event sink of a socket that has ended: late events go nowhere."""
