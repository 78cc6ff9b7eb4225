"""FakeFreeSWITCH: an in-process FreeSWITCH for tests, speaking the Event Socket protocol
byte for byte.

This module is the listener, the global event bus (subscriptions, filters and
formats per listener, indexed so thousands of single-call listeners stay cheap),
the api registry and bgapi jobs. One connection is ``connection.py``; the call
side (channels, dialplan, originate, outbound sockets) is ``calls.py``,
``originate.py``, ``apps.py``, ``callapi.py`` and ``outbound.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid as uuidlib
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any

from esl.core import Event
from esl.testing import avmd, builtins, callapi, sched
from esl.testing.apps import APPS, AppHandler
from esl.testing.calls import Endpoint, FakeChannel, Timings
from esl.testing.connection import (
    GOODBYE,
    LOG_LEVELS,
    ApiHandler,
    Command,
    FakeConnection,
    parse_commands,
)
from esl.testing.events import EventFactory, header_value
from esl.testing.originate import CallEngine
from esl.testing.sqldb import CoreDB

__all__ = [
    "GOODBYE",
    "LOG_LEVELS",
    "ApiHandler",
    "Command",
    "FakeConnection",
    "FakeFreeSWITCH",
    "parse_commands",
]


class FakeFreeSWITCH:
    """A FreeSWITCH for tests: mod_event_socket on a loopback port, an event bus,
    an api registry and (see ``calls.py``) simulated channels.

    ``async with FakeFreeSWITCH() as fake:`` starts it on an ephemeral port
    (``fake.host``, ``fake.port``). ``users`` maps ``"user@domain"`` to a password
    (or a dict with ``password``, ``events``, ``api``, ``log``) for ``userauth``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        password: str = "ClueCon",
        *,
        users: Mapping[str, Any] | None = None,
        hostname: str = "fake",
        switchname: str | None = None,
        core_uuid: str | None = None,
        auth_timeout: float | None = 25.0,
        timings: Timings | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.password = password
        self.users: dict[str, Any] = dict(users or {})
        self.hostname = hostname
        #: FreeSWITCH-Switchname (``switchname`` api; the ``hostname`` column of show channels)
        self.switchname = switchname or hostname
        self.core_uuid = core_uuid or str(uuidlib.uuid4())
        self.auth_timeout = auth_timeout
        self.factory = EventFactory(self.core_uuid, hostname, switchname=self.switchname)
        #: the channels / calls tables behind ``show channels`` and ``show calls``
        self.coredb = CoreDB(self.switchname)
        self.connections: list[FakeConnection] = []
        self.received_events: list[Event] = []
        self.fired_events: int = 0
        self.api: dict[str, ApiHandler] = {}
        self.global_vars: dict[str, str] = {
            "hostname": hostname, "local_ip_v4": "127.0.0.1", "domain": "127.0.0.1",
            "switch_serial": "fake", "core_uuid": self.core_uuid,
        }  # fmt: skip
        self.started_at = time.time()
        self.sessions_since_startup = 0
        self._server: asyncio.AbstractServer | None = None
        self._stalled = False
        self._bus_all: dict[FakeConnection, None] = {}
        self._bus_index: dict[tuple[str, str], dict[FakeConnection, None]] = {}
        self._bus_headers: dict[str, int] = {}
        self._bus_keys: dict[FakeConnection, Any] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: exceptions raised by the fake's own background tasks (a test can assert it stays empty)
        self.errors: list[BaseException] = []
        builtins.install(self)

        # the call side
        #: durations of simulated media, ringing, linger... (see Timings)
        self.timings: Timings = timings or Timings()
        #: live channels by uuid
        self.channels: dict[str, FakeChannel] = {}
        #: extension -> [(app, arg), ...] run by incoming calls and originate to an extension
        self.dialplan: dict[str, list[Any]] = {}
        #: dial string (or prefix, optionally ending in ``*``) -> Endpoint for originate / bridge
        self.endpoints: dict[str, Endpoint] = {}
        #: application name -> ``async def app(channel, arg) -> response | None``
        self.apps: dict[str, AppHandler] = dict(APPS)
        self.calls = CallEngine(self)
        callapi.install(self)
        sched.install(self)
        avmd.install(self)

    def __repr__(self) -> str:
        return f"<FakeFreeSWITCH {self.host}:{self.port} connections={len(self.connections)}>"

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> FakeFreeSWITCH:
        """Listen on (host, port); port 0 picks an ephemeral one, stored back in ``port``."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: FakeConnection(self), self.host, self.port)
        sock = self._server.sockets[0]
        self.host, self.port = sock.getsockname()[:2]
        return self

    async def stop(self) -> None:
        """Stop listening, close every connection with its disconnect-notice, cancel the calls."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn._close_now(True)
        for task in list(self._tasks):
            task.cancel()
        waits = [c.closed for c in list(self.connections)]
        if waits:
            await asyncio.wait(waits, timeout=1.0)
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=1.0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeFreeSWITCH:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by the fake (cancelled by ``stop``); errors are kept on the task."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors.append(task.exception())  # type: ignore[arg-type]

    # -- calls -------------------------------------------------------------------------

    async def call(
        self,
        destination: str,
        *,
        caller_id_number: str = "1000",
        caller_id_name: str = "",
        variables: Mapping[str, str] | None = None,
        context: str = "default",
        uuid: str | None = None,
        channel_name: str | None = None,
    ) -> FakeChannel:
        """An incoming call to ``destination`` that runs ``dialplan[destination]`` (e.g. a
        ``socket`` app handing it to an Outbound app); returns its FakeChannel at once."""
        ch = FakeChannel(
            self,
            uuid=uuid,
            name=channel_name or f"sofia/internal/{caller_id_number}@127.0.0.1",
            direction="inbound",
            destination=destination,
            caller_id_name=caller_id_name or caller_id_number,
            caller_id_number=caller_id_number,
            context=context,
            variables=dict(variables or {}),
        )
        ch.variables.setdefault("call_uuid", ch.uuid)
        ch.start(ch.run_incoming())
        await asyncio.sleep(0)
        return ch

    async def originate(self, args: str) -> str:
        """Run ``originate <args>`` as the api command does (for tests placing calls directly)."""
        return await self.execute_api("originate", args)

    # -- connections -----------------------------------------------------------------

    def stall(self, stalled: bool = True) -> None:
        """Stop (True) or resume (False) reading commands and writing on every connection."""
        self._stalled = stalled
        for conn in list(self.connections):
            conn.set_stalled(stalled)

    async def drop_all(self) -> None:
        """Abort every connection (no notice)."""
        conns = list(self.connections)
        for conn in conns:
            conn.abort()
        if conns:
            await asyncio.wait([c.closed for c in conns], timeout=1.0)

    async def wait_for_connection(self, count: int = 1, timeout: float = 5.0) -> FakeConnection:
        """Wait until ``count`` connections are live; returns the newest."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.connections) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise asyncio.TimeoutError(f"{len(self.connections)} connections, wanted {count}")
            await asyncio.sleep(0.002)
        return self.connections[-1]

    # -- events ----------------------------------------------------------------------

    def make_event(
        self,
        name: str,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        body: str | bytes | None = None,
        subclass: str | None = None,
        *,
        calling: tuple[str, str, int] | None = None,
    ) -> Event:
        """An event with the standard headers (Core-UUID, FreeSWITCH-Hostname...,
        Event-Date-*, Event-Calling-*, a global Event-Sequence), then ``headers``."""
        return self.factory.make(name, headers, body, subclass, calling)

    async def fire(self, event: Event) -> int:
        """Deliver ``event`` on the global bus; returns how many connections got it."""
        return self.fire_nowait(event)

    def _reindex(self, conn: FakeConnection) -> None:
        """Update the bus index for ``conn`` after its subscriptions, filters or state changed."""
        old = self._bus_keys.pop(conn, False)
        if old is None:
            self._bus_all.pop(conn, None)
        elif old is not False:
            for key in old:
                bucket = self._bus_index.get(key)
                if bucket is not None:
                    bucket.pop(conn, None)
                    if not bucket:
                        del self._bus_index[key]
                self._bus_headers[key[0]] -= 1
                if not self._bus_headers[key[0]]:
                    del self._bus_headers[key[0]]
        if conn.closed.done() or not conn.authenticated or not conn.subscriptions.enabled:
            return
        keys = conn.index_keys()
        self._bus_keys[conn] = keys
        if keys is None:
            self._bus_all[conn] = None
            return
        for key in keys:
            self._bus_index.setdefault(key, {})[conn] = None
            self._bus_headers[key[0]] = self._bus_headers.get(key[0], 0) + 1

    def _candidates(
        self, event: Event, known: Mapping[str, str | None] | None = None
    ) -> list[FakeConnection]:
        """The listeners that may want ``event``: every unindexed one, plus the indexed ones
        whose (header, value) keys the event carries."""
        cands = list(self._bus_all)
        if self._bus_headers:
            extra: dict[FakeConnection, None] = {}
            for header in self._bus_headers:
                if (
                    header == "job-owner-uuid"
                    and header_value(event, "Event-Name", known) != "BACKGROUND_JOB"
                ):
                    continue
                value = header_value(event, header, known)
                if value is not None:
                    bucket = self._bus_index.get((header, value.lower()))
                    if bucket:
                        extra.update(bucket)
            if extra:
                cands.extend(extra)
        return cands

    def fire_nowait(self, event: Event, known: Mapping[str, str | None] | None = None) -> int:
        """:meth:`fire` without awaiting (for the call simulation's synchronous steps).

        ``known``: headers the caller knows the event has (lowercase names -> value, None for
        absent), so the bus need not read them back from the event."""
        self.fired_events += 1
        frames: dict[str, bytes] = {}
        count = 0
        for conn in self._candidates(event, known):
            if not conn.accepts(event, known):
                continue
            fmt = conn.format
            data = frames.get(fmt)
            if data is None:
                data = (
                    event.raw
                    if event.format == fmt and event.raw.startswith(b"Content-Length")
                    else event.frame(fmt)
                )
                frames[fmt] = data
            conn.deliver(data)
            count += 1
        return count

    async def fire_raw(self, conn: FakeConnection | None, data: bytes) -> None:
        """Write ``data`` as-is to one connection, or to every authenticated one."""
        targets = [conn] if conn is not None else [c for c in self.connections if c.authenticated]
        for target in targets:
            target.deliver(data)

    async def replay(
        self, capture: Any, *, loops: int = 1, rate: float | None = None, conn: FakeConnection | None = None
    ) -> int:
        """Re-send the events of a capture (path or bytes); see :func:`esl.testing.capture.replay`."""
        from esl.testing.capture import replay

        return await replay(self, capture, loops=loops, rate=rate, conn=conn)

    def log(
        self,
        text: str,
        level: int = 7,
        *,
        file: str = "esl_testing.c",
        func: str = "fake_log",
        line: int = 1,
        uuid: str | None = None,
    ) -> int:
        """Send a log line to every connection that ran ``log`` at ``level`` or above; returns the count."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        data = f"{uuid + ' ' if uuid else ''}{stamp}.000000 [{LOG_LEVELS[level]}] {file}:{line} {text}"
        if not data.endswith("\n"):
            data += "\n"
        body = data.encode("utf-8", "surrogateescape")
        head = (
            f"Content-Type: log/data\nContent-Length: {len(body)}\nLog-Level: {level}\n"
            f"Text-Channel: {3 if uuid else 0}\nLog-File: {file}\nLog-Func: {func}\nLog-Line: {line}\n"
            f"User-Data: {uuid or ''}\n\n"
        ).encode()
        count = 0
        for conn in self.connections:
            if conn.log_level is not None and level <= conn.log_level and conn.authenticated:
                conn.deliver(head + body)
                count += 1
        return count

    # -- api ---------------------------------------------------------------------------

    async def execute_api(self, name: str, arg: str | None, conn: FakeConnection | None = None) -> str:
        """Run api command ``name`` as mod_event_socket's api_exec does: the handler's output, or
        ``-ERR <name> Command not found!\n`` when there is no such command."""
        found, out = await self.call_api(name, arg, conn)
        return out if found else f"-ERR {name} Command not found!\n"

    async def call_api(self, name: str, arg: str | None, conn: FakeConnection | None = None) -> tuple[bool, str]:
        """switch_api_execute: command and argument stripped of surrounding whitespace, the
        handler run (``INVALID COMMAND!\n`` and False when unknown), then the API event."""
        cmd = name.strip(" \t\r\n")
        arg = (arg or "").strip(" \t\r\n")
        handler = self.api.get(cmd) or self.api.get(cmd.lower())
        found = handler is not None
        out = "INVALID COMMAND!\n"
        if handler is not None:
            try:
                result = handler(arg, conn)
                if inspect.isawaitable(result):
                    result = await result
                out = "" if result is None else str(result)
            except Exception as exc:
                out = f"-ERR {exc}\n"
        headers = []
        if cmd:
            headers.append(("API-Command", cmd))
        if arg:
            headers.append(("API-Command-Argument", arg))
        self.fire_nowait(
            self.make_event("API", headers, calling=("switch_loadable_module.c", "switch_api_execute", 3140))
        )
        return found, out

    async def console_execute(self, line: str, conn: FakeConnection | None = None) -> str:
        """switch_console_execute (``api`` with ``console_execute: true``, as fs_cli sends):
        ``;;``-separated commands, each split at its first space; the outputs concatenated, or
        ``-ERR <line> Command not found!\n`` when the last one is unknown."""
        out: list[str] = []
        found = False
        for part in line.lstrip(" ").split(";;"):
            part = part.split("\r", 1)[0].split("\n", 1)[0]
            name, sep, arg = part.partition(" ")
            found, text = await self.call_api(name, arg if sep else None, conn)
            out.append(text)
        if not found:
            return f"-ERR {line} Command not found!\n"
        return "".join(out)

    async def run_job(
        self, job_uuid: str, name: str, arg: str | None, owner: str | None, conn: FakeConnection | None
    ) -> None:
        """A bgapi job: run the command, then fire BACKGROUND_JOB with its output as the body."""
        out = await self.execute_api(name, arg, conn)
        headers = [("Job-UUID", job_uuid)]
        if owner:
            headers.append(("Job-Owner-UUID", owner))
        headers.append(("Job-Command", name))
        if arg:
            headers.append(("Job-Command-Arg", arg))
        event = self.make_event(
            "BACKGROUND_JOB",
            headers,
            out or "Command returned no output!",
            calling=("mod_event_socket.c", "api_exec", 1580),
        )
        self.fire_nowait(event)
