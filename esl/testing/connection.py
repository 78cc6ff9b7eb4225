"""One ESL connection, server side: reading commands as FreeSWITCH's read_packet does and
answering them as parse_command does, byte for byte (ESL-PROTOCOL.md §1.2-1.11).

Replies use FreeSWITCH's exact texts; events are held back while a command is being
handled and flushed after its reply (so a bgapi reply always precedes its
BACKGROUND_JOB, and a blocking ``api`` delays events as it does in FreeSWITCH); one
``transport.write`` per message, so two messages never interleave.
"""

from __future__ import annotations

import asyncio
import re
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from esl.testing.events import (
    EVENT_NAMES,
    MYEVENTS,
    Subscription,
    build_plain,
    canonical_event_name,
    filter_accepts,
    header_value,
)

if TYPE_CHECKING:  # pragma: no cover
    from esl.core import Event
    from esl.testing.calls import FakeChannel
    from esl.testing.server import FakeFreeSWITCH

__all__ = ["GOODBYE", "LOG_LEVELS", "ApiHandler", "Command", "FakeConnection", "parse_commands"]

#: The body of the normal disconnect-notice (67 bytes).
GOODBYE = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"

#: switch_log_level_t names, by number.
LOG_LEVELS = ("CONSOLE", "ALERT", "CRIT", "ERR", "WARNING", "NOTICE", "INFO", "DEBUG")

ApiHandler = Callable[[str, "FakeConnection | None"], "str | Awaitable[str]"]

_HEADER_END = re.compile(rb"\n\r*\n")
_MAX_CONTENT_LENGTH = 16 * 1024 * 1024


def _log_level(token: str) -> int | None:
    """switch_log_str2level: a number 0-7 or a level name (any case); None when invalid."""
    if token.isdigit():
        n = int(token)
        return n if 0 <= n <= 7 else None
    up = token.upper()
    if up == "ERROR":
        up = "ERR"
    return LOG_LEVELS.index(up) if up in LOG_LEVELS else None


class Command:
    """One command as FreeSWITCH's read_packet sees it: the first line, the header lines, the body."""

    __slots__ = ("body", "headers", "line")

    def __init__(self, line: str, headers: list[tuple[str, str]], body: str | None) -> None:
        self.line = line
        self.headers = headers
        self.body = body

    def get(self, name: str, default: str | None = None) -> str | None:
        """A header value, looked up case-insensitively as switch_event_get_header does."""
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return default


def parse_commands(buf: bytearray) -> tuple[list[Command], bool]:
    """Take every complete command off the front of ``buf``.

    Leading CR/LF are skipped, the header block ends at two LF with CR ignored,
    a ``Content-Length`` header is read as a body. Returns the commands and
    whether the stream is broken (a bad Content-Length: FreeSWITCH drops the
    connection).
    """
    out: list[Command] = []
    while True:
        start = 0
        n = len(buf)
        while start < n and buf[start] in (10, 13):
            start += 1
        if start:
            del buf[:start]
        m = _HEADER_END.search(buf)
        if m is None:
            return out, False
        block = bytes(buf[: m.start()]).replace(b"\r", b"").decode("utf-8", "surrogateescape")
        lines = block.split("\n")
        headers: list[tuple[str, str]] = []
        length = None
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                continue
            value = value.lstrip(" ")
            headers.append((name, value))
            if name.lower() == "content-length":
                try:
                    length = int(value)
                except ValueError:
                    return out, True
        end = m.end()
        body = None
        if length is not None:
            if length < 0 or length > _MAX_CONTENT_LENGTH:
                return out, True
            if len(buf) < end + length:
                return out, False
            body = bytes(buf[end : end + length]).decode("utf-8", "surrogateescape")
            end += length
        del buf[:end]
        out.append(Command(lines[0], headers, body))


class FakeConnection(asyncio.Protocol):
    """The server side of one ESL connection: an inbound client, or an outbound
    session the fake opened towards an app.

    Public state for tests: ``commands`` (every command line, auth masked),
    ``format``, ``subscriptions``, ``filters``, ``authenticated``, ``session``
    (the controlled FakeChannel, if any), ``linger`` (None, seconds, or -1),
    ``closed`` (a future done when the socket is gone).
    """

    def __init__(
        self,
        fake: FakeFreeSWITCH,
        *,
        session: FakeChannel | None = None,
        async_mode: bool = True,
        full: bool = True,
    ) -> None:
        self.fake = fake
        self.commands: list[str] = []
        self.format = "plain"
        self.subscriptions = Subscription()
        self.filters: list[tuple[str, str]] = []
        self.authenticated = session is not None
        self.outbound = session is not None
        self.session: FakeChannel | None = session
        self.async_mode = async_mode
        self.full = full if session is not None else True
        self.myevents = False
        self.linger: float | None = None
        self.divert = False
        self.resume = False
        self.log_level: int | None = None
        self.allowed_api: set[str] | None = None
        self.allowed_events: set[str] | None = None
        self.allow_log = True
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buf = bytearray()
        self._queue: list[Command] = []
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._busy = False
        self._pending: list[bytes] = []
        self._stalled_out: list[bytes] = []
        self._stalled = False
        self._closing = False
        self._first = True
        self._close_when_idle = False
        #: commands handled so far, and an event set after each one (for the socket app)
        self.handled = 0
        self.progress = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        kind = f"outbound {self.session.uuid}" if self.outbound and self.session else "inbound"
        return f"<FakeConnection {kind} peer={self.peer} authenticated={self.authenticated}>"

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.fake.connections.append(self)
        self._worker = asyncio.get_running_loop().create_task(self._run())
        if self.fake._stalled:
            self.set_stalled(True)
        if not self.outbound:
            self.write(b"Content-Type: auth/request\n\n")
        # FreeSWITCH waits 25 s for the first command (auth, or connect on an outbound socket).
        if self.fake.auth_timeout is not None:
            self._timer = asyncio.get_running_loop().call_later(self.fake.auth_timeout, self._first_timeout)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        commands, broken = parse_commands(self._buf)
        if commands:
            self._queue.extend(commands)
            self._wake.set()
        if broken:
            self.abort()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self in self.fake.connections:
            self.fake.connections.remove(self)
        self.fake._reindex(self)
        if not self.closed.done():
            self.closed.set_result(None)
        if self._worker is not None:
            self._worker.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self.session is not None:
            self.session._listener_gone(self)

    # -- output --------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        """True while the socket is up and not being closed."""
        return self.transport is not None and not self._closing and not self.closed.done()

    def write(self, data: bytes) -> None:
        """Write one whole message (held while stalled, dropped once closed)."""
        if self.transport is None or self.closed.done() or self.transport.is_closing():
            return
        if self._stalled:
            self._stalled_out.append(data)
        else:
            self.transport.write(data)

    def reply(self, text: str) -> None:
        """A normal command/reply."""
        self.write(
            b"Content-Type: command/reply\nReply-Text: %s\n\n" % text.encode("utf-8", "surrogateescape")
        )

    def deliver(self, data: bytes) -> None:
        """An event or log message: held while a command is being handled, as FreeSWITCH does."""
        if self._closing:
            return
        if self._busy:
            self._pending.append(data)
        else:
            self.write(data)

    def deliver_many(self, messages: list[bytes]) -> None:
        """Several whole messages at once (one write), held like :meth:`deliver`."""
        if self._closing or not messages:
            return
        if self._busy:
            self._pending.extend(messages)
        else:
            self.write(b"".join(messages))

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, []
        for data in pending:
            self.write(data)

    def set_stalled(self, stalled: bool) -> None:
        """Stop (True) or resume (False) reading commands and writing anything."""
        self._stalled = stalled
        if self.transport is None or self.transport.is_closing():
            return
        if stalled:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()
            out, self._stalled_out = self._stalled_out, []
            if out:
                self.transport.write(b"".join(out))

    def disconnect_notice(self, message: str = GOODBYE) -> bytes:
        """The text/disconnect-notice bytes FreeSWITCH's send_disconnect writes for this listener."""
        body = message.encode()
        if self.session is not None:
            head = (
                "Content-Type: text/disconnect-notice\nControlled-Session-UUID: %s\n"
                "Content-Disposition: disconnect\nContent-Length: %d\n\n" % (self.session.uuid, len(body))
            )
        else:
            head = "Content-Type: text/disconnect-notice\nContent-Length: %d\n\n" % len(body)
        return head.encode() + body

    async def close(self, notice: bool = True, message: str = GOODBYE) -> None:
        """Send the disconnect-notice (unless ``notice`` is False), then close the socket."""
        self._close_now(notice, message)
        await asyncio.shield(self.closed)

    def _close_now(self, notice: bool = True, message: str = GOODBYE) -> None:
        if self.transport is None or self._closing:
            return
        self._closing = True
        if self._stalled:
            # the notice is queued behind whatever was held back; close after the flush on resume
            self._stalled_out.append(self.disconnect_notice(message) if notice else b"")
            self._stalled = False
            data = b"".join(self._stalled_out)
            self._stalled_out = []
            self.transport.resume_reading()
            self.transport.write(data)
        elif notice:
            self.transport.write(self.disconnect_notice(message))
        self.transport.close()

    def session_gone(self) -> None:
        """The controlled channel went down (no linger) or the linger time is over: send the
        disconnect-notice and close, once the command being handled (if any) has replied."""
        if self._busy:
            self._close_when_idle = True
        else:
            self._close_now(True)

    def abort(self) -> None:
        """Drop the TCP connection at once, without any notice."""
        self._closing = True
        if self.transport is not None:
            self.transport.abort()

    def _first_timeout(self) -> None:
        if self._first and not self._closing:
            self._close_now(True)

    # -- delivery rules ---------------------------------------------------------

    def accepts(self, event: Event, known: Mapping[str, str | None] | None = None) -> bool:
        """Whether mod_event_socket's event_handler would queue ``event`` to this listener.

        ``known`` may give some headers up front (lowercase names: ``event-name``,
        ``event-subclass``, ``unique-id``) so they need not be read from the event."""
        if not self.authenticated or self._closing:
            return False
        if known is not None and "event-name" in known:
            name = known["event-name"]
            subclass = known.get("event-subclass")
        else:
            name, subclass = event.name, event.subclass
        if not self.subscriptions.wants(name, subclass):
            return False
        if self.filters and not filter_accepts(self.filters, event, known):
            return False
        if self.myevents:
            uid = header_value(event, "Unique-ID", known)
            send = uid is not None and (self.session is None or uid == self.session.uuid)
            if (
                not send
                and self.session is not None
                and name == "BACKGROUND_JOB"
                and event.get("Job-Owner-UUID") == self.session.uuid
            ):
                send = True
            return send
        return True

    def index_keys(self) -> list[tuple[str, str]] | None:
        """The (header, value) pairs, lowercased, of which an event must carry at least one
        to reach this listener, or None when any event may (used to index the bus, so that
        thousands of single-call listeners cost nothing per unrelated event)."""
        if self.myevents and self.session is not None:
            u = self.session.uuid.lower()
            return [("unique-id", u), ("job-owner-uuid", u)]
        if not self.filters:
            return None
        keys = []
        for header, raw in self.filters:
            i, pos = 0, True
            while i < len(raw) and raw[i] in "+- ":
                if raw[i] != " ":
                    pos = raw[i] == "+"
                i += 1
            if not pos:
                continue
            if raw[:1] == "/":
                return None
            keys.append((header.lower(), raw[i:].lower()))
        return keys

    # -- command loop ----------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                while not self._queue:
                    self._wake.clear()
                    await self._wake.wait()
                cmd = self._queue.pop(0)
                self._busy = True
                try:
                    keep = await self._dispatch(cmd)
                except Exception as exc:  # a bug in a handler must not kill the connection silently
                    self.reply(f"-ERR {exc}")
                    keep = True
                finally:
                    self._busy = False
                    self.fake._reindex(self)
                self._flush_pending()
                self.handled += 1
                self.progress.set()
                if not keep or self._close_when_idle:
                    self._close_now(True)
                    return
                # let background jobs and the call simulation run between two commands
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            pass

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by this connection (cancelled when it closes)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _dispatch(self, cmd: Command) -> bool:
        """Handle one command the way parse_command does; False means close the connection."""
        line = cmd.line.strip("\r")
        low = line.lower()
        self.commands.append(
            "auth ******"
            if low.startswith("auth ")
            else ("userauth " + line[9:].split(":", 1)[0] + ":******")
            if low.startswith("userauth ")
            else line
        )
        if ("unload" in low or "reload" in low) and "mod_event_socket" in low:
            line = (
                "api bgapi unload mod_event_socket"
                if "unload" in low
                else "api bgapi reload mod_event_socket"
            )
            low = line
        first, self._first = self._first, False
        if first and self._timer is not None:
            self._timer.cancel()

        if self.outbound and first:
            # Only the first command runs on an outbound socket, and its reply is never written.
            if low.startswith(("exit", "...")):
                return False
            if low.startswith("connect"):
                self.write(self.session.connect_reply(self))  # type: ignore[union-attr]
            else:
                await self._dispatch_authed(cmd, line, low, silent=True)
            return True

        if low.startswith(("exit", "...")):
            self.reply("+OK bye")
            return False

        if not self.authenticated:
            if low.startswith("auth "):
                if line[5:] == self.fake.password:
                    self.authenticated = True
                    self.reply("+OK accepted")
                    return True
                self.reply("-ERR invalid")
                return False
            if low.startswith("userauth "):
                return self._userauth(line[9:])
            self.reply("-ERR command not found")
            return True
        return await self._dispatch_authed(cmd, line, low)

    def _userauth(self, spec: str) -> bool:
        user, _, rest = spec.partition("@")
        domain, _, password = rest.partition(":")
        if ":" in user:
            user, password = user.split(":", 1)
        entry = self.fake.users.get(f"{user}@{domain}")
        if isinstance(entry, str):
            entry = {"password": entry}
        if not entry or entry.get("password") != password:
            self.reply("-ERR invalid")
            return False
        self.authenticated = True
        events = entry.get("events", "all")
        api = entry.get("api", "all")
        allow_log = entry.get("log", True)
        if events != "all":
            self.allowed_events = {canonical_event_name(t) or t for t in re.split(r"[ ,]", events) if t}
        if api != "all":
            self.allowed_api = {t for t in re.split(r"[ ,]", api) if t}
        self.allow_log = bool(allow_log)
        text = (
            f"Content-Type: command/reply\nReply-Text: +OK accepted\nAllowed-Events: {events}\n"
            f"Allowed-API: {api}\nAllowed-LOG: {'true' if allow_log else 'false'}\n\n"
        )
        self.write(text.encode()[: 512 + len("Content-Type: command/reply\n")])
        return True

    def _api_allowed(self, name: str, arg: str | None) -> bool:
        """auth_api_command: bgapi/sched_api/eval/expand/xml_wrap wrappers checked recursively."""
        if self.allowed_api is None:
            return True
        if name not in self.allowed_api:
            return False
        if name in ("bgapi", "sched_api", "eval", "expand", "xml_wrap") and arg:
            inner = arg
            if name == "sched_api":
                parts = arg.split(" ", 2)
                inner = parts[2] if len(parts) > 2 else ""
                if parts and parts[0] and not parts[0].startswith("+") and len(parts) > 1:
                    inner = " ".join(parts[1:])
            sub, _, subarg = inner.partition(" ")
            return self._api_allowed(sub, subarg or None) if sub else True
        return True

    async def _dispatch_authed(self, cmd: Command, line: str, low: str, silent: bool = False) -> bool:
        reply = self.reply if not silent else (lambda text: None)
        session = self.session

        if low.startswith("filter "):
            self._filter(line[7:], reply)
            return True

        if session is not None and low.startswith("resume"):
            self.resume = True
            session.variables["socket_resume"] = "true"
            reply("+OK")
            return True

        if session is not None or low.startswith("myevents "):
            if low.startswith("connect"):
                if not silent:
                    self.write(session.connect_reply(self))  # type: ignore[union-attr]
                return True
            if low.startswith("getvar"):
                _, sep, name = line.partition(" ")
                value = "" if not sep or session is None else str(session.variables.get(name, ""))
                reply(value[:511] if value else "-ERR command not found")
                return True
            if low.startswith("myevents"):
                return self._myevents(line, low, reply)

        if low.startswith("divert_events"):
            if session is None:
                reply("-ERR not controlling a session.")
                return True
            value = line[13:].strip(" ")
            if not value:
                reply("-ERR missing value.")
            elif value.lower() == "on":
                self.divert = True
                reply("+OK events diverted")
            else:
                self.divert = False
                reply("+OK events not diverted")
            return True

        if low.startswith("sendmsg"):
            await self._sendmsg(cmd, line, reply)
            return True

        if self.outbound and not self.full:
            reply("-ERR command not found")
            return True

        if low.startswith("sendevent"):
            await self._sendevent(cmd, line, reply)
        elif low.startswith("api "):
            await self._api(cmd, line[4:], silent)
        elif low.startswith("bgapi "):
            self._bgapi(cmd, line[6:], reply, silent)
        elif low.startswith("log"):
            self._log(line[3:], reply)
        elif low.startswith("linger"):
            if session is None:
                reply("-ERR not controlling a session")
            else:
                arg = line[6:]
                if arg[:1] == " " and arg[1:]:
                    try:
                        m = re.match(r"\s*-?\d*", arg[1:])
                        secs = int(m.group(0) or 0) if m else 0
                    except ValueError:
                        secs = 0
                    self.linger = secs
                    reply(f"+OK will linger {secs} seconds" if secs != -1 else "+OK will linger")
                else:
                    self.linger = -1
                    reply("+OK will linger")
        elif low.startswith("nolinger"):
            if session is None:
                reply("-ERR not controlling a session")
            else:
                self.linger = None
                reply("+OK will not linger")
        elif low.startswith("nolog"):
            self._pending = [p for p in self._pending if not p.startswith(b"Content-Type: log/data")]
            if self.log_level is not None:
                self.log_level = None
                reply("+OK no longer logging")
            else:
                reply("-ERR not loging")
        elif low.startswith("event"):
            self._event(line, reply)
        elif low.startswith("nixevent"):
            self._nixevent(line, reply)
        elif low.startswith("noevents"):
            self._pending = [p for p in self._pending if not p.startswith(b"Content-Length")]
            if self.subscriptions.enabled:
                self.subscriptions.clear()
                self.myevents = False
                reply("+OK no longer listening for events")
            else:
                reply("-ERR not listening for events")
        else:
            reply("-ERR command not found")
        return True

    # -- individual commands -------------------------------------------------------

    def _filter(self, spec: str, reply: Callable[[str], None]) -> None:
        spec = spec.lstrip(" ")
        name, sep, value = spec.partition(" ")
        val: str | None = value if sep else None
        if name.lower() == "delete" and val is not None:
            name, sep, rest = val.partition(" ")
            val = rest if sep else None
            if name.lower() == "all":
                self.filters.clear()
            elif val is None:
                self.filters = [f for f in self.filters if f[0].lower() != name.lower()]
            else:
                self.filters = [f for f in self.filters if not (f[0].lower() == name.lower() and f[1] == val)]
            reply(f"+OK filter deleted. [{name}][{val if val is not None else ''}]")
        elif val is not None:
            if name.lower() == "add":
                name, sep, rest = val.partition(" ")
                val = rest if sep else None
            if val is not None:
                self.filters.append((name, val))
            reply(f"+OK filter added. [{name}]=[{val if val is not None else '(null)'}]")
        else:
            reply("-ERR invalid syntax")

    def _myevents(self, line: str, low: str, reply: Callable[[str], None]) -> bool:
        if self.myevents:
            reply("-ERR aready enabled.")
            return True
        if self.session is None:
            arg = line[9:].strip("\r")
            uuid, sep, _fmt = arg.partition(" ")
            channel = self.fake.channels.get(uuid)
            if channel is None and sep:
                reply("-ERR invalid uuid")
                return True
            if channel is not None:
                self.session = channel
                channel._listener_attached(self)
            self.async_mode = True
        self.subscriptions.names |= MYEVENTS
        self.subscriptions.enabled = True
        self.myevents = True
        if "xml" in line or "XML" in line:
            self.format = "xml"
        if "json" in line or "JSON" in line:
            self.format = "json"
        reply("+OK Events Enabled")
        return True

    def _event(self, line: str, reply: Callable[[str], None]) -> None:
        tokens = line.split(" ")[1:] if " " in line else []
        custom = False
        keys = 0
        for i, token in enumerate(tokens):
            if i == 0 and token.lower() in ("plain", "json", "xml"):
                self.format = token.lower()
                continue
            if custom:
                if self.allowed_events is not None and token not in self.allowed_events:
                    reply("-ERR permission denied")
                    return
                self.subscriptions.custom.add(token)
                continue
            name = canonical_event_name(token)
            if name is None:
                continue
            if (
                self.allowed_events is not None
                and name not in self.allowed_events
                and "ALL" not in self.allowed_events
            ):
                reply("-ERR permission denied")
                return
            keys += 1
            self.subscriptions.names.add(name)
            if name == "CUSTOM":
                custom = True
        if not keys:
            reply("-ERR no keywords supplied")
            return
        self.subscriptions.enabled = True
        reply(f"+OK event listener enabled {self.format}")

    def _nixevent(self, line: str, reply: Callable[[str], None]) -> None:
        tokens = line.split(" ")[1:] if " " in line else []
        custom = False
        keys = 0
        subs = self.subscriptions
        for token in tokens:
            if custom:
                subs.custom.discard(token)
                continue
            name = canonical_event_name(token)
            if name is None:
                continue
            keys += 1
            if name == "CUSTOM":
                custom = True
            elif name == "ALL":
                subs.names.clear()
            else:
                if "ALL" in subs.names:
                    subs.names = {n for n in EVENT_NAMES if n != "ALL"}
                subs.names.discard(name)
        if not keys:
            reply("-ERR no keywords supplied")
            return
        subs.enabled = True
        reply("+OK events nixed")

    def _log(self, arg: str, reply: Callable[[str], None]) -> None:
        if not self.allow_log:
            reply("-ERR permission denied")
            return
        level_s = arg.lstrip(" ").split(" ", 1)[0]
        level = 7 if not level_s else _log_level(level_s)
        if level is None:
            reply("-ERR invalid log level")
            return
        self.log_level = level
        reply(f"+OK log level {level_s} [{level}]")

    async def _sendmsg(self, cmd: Command, line: str, reply: Callable[[str], None]) -> None:
        uuid = line[7:].strip(" ") or cmd.get("session-id") or ""
        session = self.session
        if uuid and session is not None and uuid == session.uuid:
            uuid = ""
        target: FakeChannel | None
        if not uuid and session is not None:
            target = session
        else:
            target = self.fake.channels.get(uuid) if uuid else None
            if target is None:
                reply(f"-ERR invalid session id [{uuid if uuid else '(null)'}]")
                return
        inline = (
            target is session
            and not self.async_mode
            and (cmd.get("async") or "").lower()
            not in ("true", "yes", "on", "1", "enabled", "active", "allow")
        )
        if inline:
            # static outbound socket: the listener runs in the session thread, so the application
            # runs before the reply is written (and the events it fires are delivered after it)
            await target.run_message(cmd)
            reply("+OK")
            return
        target.queue_message(cmd)
        reply("+OK")

    async def _sendevent(self, cmd: Command, line: str, reply: Callable[[str], None]) -> None:
        ename = line[9:].lstrip(" \t")
        name = canonical_event_name(ename) if ename else None
        if name is None:
            name = "COMMAND"
        event_uuid = str(uuidlib.uuid4())
        subclass = cmd.get("Event-Subclass") if name == "CUSTOM" else None
        pairs: list[tuple[str, str]] = []
        if subclass is not None:
            pairs.append(("Event-Subclass", subclass))
        pairs.append(("Command", line))
        pairs.extend(
            h for h in cmd.headers if not (subclass is not None and h[0].lower() == "event-subclass")
        )
        pairs.append(("Event-UUID", event_uuid))
        pairs.extend(self.fake.factory.standard(name, ("mod_event_socket.c", "parse_command", 2283)))
        event = build_plain(pairs, cmd.body)
        self.fake.received_events.append(event)
        uid = cmd.get("unique-id")
        channel = self.fake.channels.get(uid) if uid else None
        reply(f"+OK {event_uuid}")
        if channel is not None and cmd.get("call-command"):
            # queued to the session, which runs it like a sendmsg
            channel.queue_message(cmd)
        else:
            await self.fake.fire(event)

    async def _api(self, cmd: Command, text: str, silent: bool) -> None:
        console = (cmd.get("console_execute") or "").lower() in ("true", "yes", "on", "1")
        name, _, arg = text.partition(" ")
        if not self._api_allowed(name, arg or None):
            if not silent:
                self.reply("-ERR permission denied")
            return
        if console:
            out = await self.fake.console_execute(text, self)
        else:
            out = await self.fake.execute_api(name, arg or None, self)
        if not out:
            out = "-ERR no reply\n"
        body = out.encode("utf-8", "surrogateescape")
        if not silent:
            self.write(b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body))

    def _bgapi(self, cmd: Command, text: str, reply: Callable[[str], None], silent: bool) -> None:
        name, _, arg = text.partition(" ")
        if not self._api_allowed(name, arg or None):
            reply("-ERR permission denied")
            return
        job = cmd.get("job-uuid") or str(uuidlib.uuid4())
        if not silent:
            self.write(
                b"Content-Type: command/reply\nReply-Text: +OK Job-UUID: %s\nJob-UUID: %s\n\n"
                % (job.encode(), job.encode())
            )
        owner = self.session.uuid if self.session is not None else None
        # the job outlives the connection, as FreeSWITCH's job thread does
        self.fake.spawn(self.fake.run_job(job, name, arg or None, owner, self))
