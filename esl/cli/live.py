"""Subcommands that talk to a running FreeSWITCH: ``esl api``, ``esl events``, ``esl record``."""

from __future__ import annotations

import asyncio
import datetime
import json
import signal
import sys
import time
from typing import Any

import click

from esl.cli import capture as captures
from esl.cli._common import CLIError, clean_errors, connection_options, run
from esl.cli.serve_http import metrics_option, start_metrics

FORMATS = click.Choice(["plain", "json", "xml"])

#: Headers shown, when present, after the name and UUID of an event line.
KEY_HEADERS = (
    "Event-Subclass",
    "Channel-State",
    "Channel-Call-State",
    "Answer-State",
    "Channel-Name",
    "Caller-Caller-ID-Number",
    "Caller-Destination-Number",
    "Application",
    "Application-Data",
    "DTMF-Digit",
    "Hangup-Cause",
    "Job-UUID",
    "Job-Command",
    "API-Command",
    "Task-Desc",
)


def _install_stop(stop: asyncio.Event) -> list[signal.Signals]:
    """Make SIGINT/SIGTERM set ``stop`` (a clean stop instead of KeyboardInterrupt)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - non-POSIX
            pass
    return installed


def _remove_stop(installed: list[signal.Signals]) -> None:
    loop = asyncio.get_running_loop()
    for sig in installed:
        loop.remove_signal_handler(sig)


def _inbound(host: str, port: int, password: str, timeout: float) -> Any:
    try:
        from esl import Inbound
    except ImportError:
        raise CLIError("this build of esl has no Inbound client yet") from None
    return Inbound(host, port, password, timeout=timeout)


# -- esl api ------------------------------------------------------------------------------------


@click.command("api")
@click.argument("command", nargs=-1, required=True)
@connection_options
@clean_errors
def api_cmd(command: tuple[str, ...], host: str, port: int, password: str, timeout: float) -> None:
    """Run an api COMMAND and print its output, like fs_cli -x (exit status 1 on -ERR)."""
    text = " ".join(command)
    if "\n" in text or "\r" in text:
        raise CLIError("the command must be one line")

    async def main() -> str:
        async with _inbound(host, port, password, timeout) as client:
            return str(await client.api(text, check=False))

    body = run(main())
    click.echo(body, nl=not body.endswith("\n"))
    if body.startswith(("-ERR", "-USAGE")):
        sys.exit(1)


# -- esl events -----------------------------------------------------------------------------------


def event_time(event: Any) -> str:
    """HH:MM:SS.mmm local time of an event (from Event-Date-Timestamp, in microseconds)."""
    stamp = event.get("Event-Date-Timestamp")
    try:
        when = datetime.datetime.fromtimestamp(int(stamp) / 1e6)
    except (TypeError, ValueError, OverflowError, OSError):
        when = datetime.datetime.now()
    return when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"


def event_line(event: Any, color: bool = False) -> str:
    """One readable line: time, name, UUID and the key headers present."""
    name = event.name or event.content_type
    uuid = event.uuid or event.job_uuid or "-"
    extras = []
    for key in KEY_HEADERS:
        value = event.get(key)
        if value and not (key == "Job-UUID" and value == uuid):
            extras.append(f"{key}={value}")
        if len(extras) == 4:
            break
    if color:
        name = click.style(f"{name:<24}", fg="cyan", bold=True)
    else:
        name = f"{name:<24}"
    return f"{event_time(event)} {name} {uuid:<36} {' '.join(extras)}".rstrip()


def event_json(event: Any) -> str:
    """An event as one JSON object: its headers, and ``_body`` when it has one."""
    obj: dict[str, Any] = dict(event)
    if event.body is not None:
        obj["_body"] = event.body
    return json.dumps(obj, ensure_ascii=False)


@click.command("events")
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=FORMATS, default="plain", show_default=True,
              help="Format FreeSWITCH sends the events in (the output is the same).")
@click.option("--filter", "filters", type=(str, str), multiple=True, metavar="HEADER VALUE",
              help="Server-side filter (repeatable): only events whose HEADER equals VALUE.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines instead of readable lines.")
@click.option("--count", "-n", type=click.IntRange(1), default=None, help="Stop after N events.")
@connection_options
@metrics_option
@clean_errors
def events_cmd(names: tuple[str, ...], fmt: str, filters: tuple[tuple[str, str], ...], as_json: bool,
               count: int | None, host: str, port: int, password: str, timeout: float,
               metrics: Any = None) -> None:
    """Tail events (default: ALL), one line each; Ctrl-C stops with a count.

    NAMES are event names (CHANNEL_ANSWER, DTMF...) or CUSTOM subclasses (CUSTOM sofia::register).
    """
    color = sys.stdout.isatty() and not as_json
    seen = 0
    subscribed = False

    async def main() -> None:
        nonlocal seen, subscribed
        stop = asyncio.Event()
        installed = _install_stop(stop)
        try:
            async with _inbound(host, port, password, timeout) as client:

                def show(event: Any) -> None:
                    nonlocal seen
                    if stop.is_set():
                        return
                    seen += 1
                    click.echo(event_json(event) if as_json else event_line(event, color))
                    if count is not None and seen >= count:
                        stop.set()

                client.on("*", show)
                exporter = await start_metrics(metrics, client) if metrics else None
                if exporter is not None:
                    stop_hooks.append(exporter.stop)
                for header, value in filters:
                    await client.filter(header, value)
                await client.subscribe(*(names or ("ALL",)), format=fmt)
                subscribed = True
                closed = asyncio.ensure_future(_closed(client))
                waiter = asyncio.ensure_future(stop.wait())
                try:
                    await asyncio.wait({closed, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    closed.cancel()
                    waiter.cancel()
                if not stop.is_set():
                    raise CLIError(f"connection closed by FreeSWITCH after {seen} events")
        finally:
            _remove_stop(installed)
            for hook in stop_hooks:
                await hook()

    stop_hooks: list[Any] = []
    try:
        run(main())
    finally:
        if subscribed:
            click.echo(f"{seen} events", err=True)


async def _closed(client: Any) -> None:
    """Wait until the client's connection ends."""
    done = asyncio.get_running_loop().create_future()

    def cb(exc: BaseException | None = None) -> None:
        if not done.done():
            done.set_result(None)

    add = getattr(client, "add_close_callback", None)
    if add is not None:
        add(cb)
    while not done.done():
        if getattr(client, "closed", False) or getattr(client, "connected", True) is False:
            break
        await asyncio.wait({done}, timeout=0.25)


# -- esl record -------------------------------------------------------------------------------------


class _Recorder:
    """Reads the raw stream of one event subscription and writes whole messages to a capture file.

    The file gets exactly what the client received after its auth reply, as in the shared
    captures: the subscription reply, the messages, then, after ``exit``, its reply and the
    disconnect notice. Events arriving between the stop and the ``exit`` reply are left out,
    so ``--events N`` records exactly N events.
    """

    def __init__(self) -> None:
        from esl.core import Parser

        self.out: captures.CaptureWriter = None  # type: ignore[assignment]  # opened once authenticated
        self.parser = Parser()
        self.events = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._pending: list[Any] = []

    async def connect(self, host: str, port: int, password: str, timeout: float) -> None:
        try:
            self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except asyncio.TimeoutError:
            raise CLIError(f"timed out connecting to {host}:{port}") from None
        except OSError as exc:
            raise CLIError(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None
        first = await self.message(timeout)
        if first.content_type == "text/rude-rejection":
            raise CLIError(f"{host}:{port} rejected the connection: {(first.body or '').strip()}")
        if first.content_type != "auth/request":
            raise CLIError(f"{host}:{port} did not ask for authentication (got {first.content_type!r})")
        self.send(f"auth {password}")
        reply = await self.message(timeout)
        text = reply.get("Reply-Text", "")
        if not text.startswith("+OK"):
            raise CLIError(f"authentication failed: {text or reply.content_type}")

    def send(self, line: str) -> None:
        assert self.writer is not None
        self.writer.write(line.encode() + b"\n\n")

    async def message(self, timeout: float) -> Any:
        """The next message (for the handshake)."""
        while not self._pending:
            data = await self._read(timeout)
            if not data:
                raise CLIError("FreeSWITCH closed the connection")
            self._pending.extend(self.parser.feed(data))
        return self._pending.pop(0)

    async def _read(self, timeout: float | None) -> bytes:
        assert self.reader is not None
        try:
            if timeout is None:
                return await self.reader.read(262144)
            return await asyncio.wait_for(self.reader.read(262144), timeout)
        except asyncio.TimeoutError:
            raise CLIError("timed out waiting for FreeSWITCH") from None
        except OSError as exc:
            raise CLIError(f"connection lost: {exc.strerror or exc}") from None

    async def record(self, command: str, timeout: float, max_events: int | None, stop: asyncio.Event,
                     tick: Any) -> str:
        """Subscribe with ``command`` and record until ``stop``, N events or the end of the connection."""
        self.send(command)
        pending, self._pending = self._pending, []
        reply_seen = False
        ended = "stopped"
        for m in pending:  # anything after the auth reply (normally nothing)
            self.out.write(m.raw)
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                reader = asyncio.ensure_future(self._read(None))
                await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if not reader.done():
                    reader.cancel()
                    break
                data = reader.result()
                if not data:
                    ended = "closed"
                    break
                for m in self.parser.feed(data):
                    if m.is_event:
                        if max_events is not None and self.events >= max_events:
                            continue
                        self.events += 1
                    elif not reply_seen and m.content_type == "command/reply":
                        reply_seen = True
                        text = m.get("Reply-Text", "")
                        if not text.startswith("+OK"):
                            raise CLIError(f"FreeSWITCH refused {command!r}: {text}")
                    elif m.content_type == "text/disconnect-notice" and m.get("Content-Disposition") != "linger":
                        ended = "closed"
                    self.out.write(m.raw)
                tick(self.events, self.out.written)
                if max_events is not None and self.events >= max_events:
                    ended = "count"
                    break
                if ended == "closed":
                    break
        finally:
            stopper.cancel()
        if ended != "closed":
            await self._finish(timeout)
        return ended

    async def _finish(self, timeout: float) -> None:
        """Send ``exit`` and keep its reply and the disconnect notice (not the events before them)."""
        try:
            self.send("exit")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                data = await self._read(max(0.01, deadline - time.monotonic()))
                if not data:
                    break
                for m in self.parser.feed(data):
                    if not m.is_event:
                        self.out.write(m.raw)
        except CLIError:
            pass

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@click.command("record")
@click.argument("out", type=click.Path(dir_okay=False, writable=True))
@click.argument("names", nargs=-1)
@click.option("--format", "fmt", type=FORMATS, default="plain", show_default=True,
              help="Format to subscribe (and record) in.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
              help="Stop after S seconds.")
@click.option("--events", "max_events", type=click.IntRange(1), default=None, metavar="N",
              help="Stop after N events.")
@connection_options
@clean_errors
def record_cmd(out: str, names: tuple[str, ...], fmt: str, duration: float | None, max_events: int | None,
               host: str, port: int, password: str, timeout: float) -> None:
    """Record the raw bytes of an event subscription (default: ALL) to OUT, a capture file.

    OUT gets exactly what the client receives after its auth reply, the format of the
    bundled and shared captures (xz-compressed when OUT ends in .xz), so recordings replay
    with 'esl replay' and measure with 'esl bench'. Ctrl-C stops cleanly.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    command = f"event {fmt} {' '.join(names) if names else 'ALL'}"
    err = Console(stderr=True, highlight=False)
    result: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        installed = _install_stop(stop)
        timer = asyncio.get_running_loop().call_later(duration, stop.set) if duration else None
        rec = _Recorder()
        try:
            await rec.connect(host, port, password, timeout)
            rec.out = captures.CaptureWriter(out)
            columns: list[Any] = [SpinnerColumn(), TextColumn("recording {task.description}")]
            if max_events is not None:
                columns.append(BarColumn())
            columns += [TextColumn("{task.completed:,.0f} events, {task.fields[mb]:.1f} MB"), TimeElapsedColumn()]
            with Progress(*columns, console=err, disable=not err.is_terminal, transient=False) as prog:
                task = prog.add_task(out, total=max_events, mb=0.0)
                result["ended"] = await rec.record(
                    command, timeout, max_events, stop,
                    lambda n, size: prog.update(task, completed=n, mb=size / 1e6),
                )
        finally:
            if timer is not None:
                timer.cancel()
            _remove_stop(installed)
            rec.close()
            if rec.out is not None:
                rec.out.close()
                result["events"] = rec.events
                result["bytes"] = rec.out.written

    try:
        run(main())
    finally:
        if "events" in result:
            click.echo(f"{result['events']:,} events, {result['bytes']:,} bytes written to {out}", err=True)
    if result.get("ended") == "closed":
        click.echo("FreeSWITCH closed the connection", err=True)
