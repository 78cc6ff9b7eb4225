"""What every ``esl`` subcommand shares: connection options, clean errors, running coroutines."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import click

__all__ = [
    "CLIError", "OneLineErrors", "UsageLine", "clean_errors", "connection_options", "describe",
    "is_tty", "quiet_logging", "refused_message", "run", "run_until_signal", "stderr_console",
]

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8021
DEFAULT_PASSWORD = "ClueCon"


class CLIError(click.ClickException):
    """A failure the user can act on: printed as one ``esl: error: ...`` line, exit status 1."""

    def format_message(self) -> str:
        return self.message

    def show(self, file: Any = None) -> None:
        click.echo(f"esl: error: {self.format_message()}", err=True)


@contextlib.contextmanager
def quiet_logging() -> Iterator[None]:
    """Silence all logging for a timed run (peer libraries log per event); the previous level is restored after.

    ``logging.disable`` is process-wide, so it must never outlive the measurement.
    """
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def _refused(exc: BaseException) -> bool:
    """True when ``exc`` or an exception it was raised from is a refused TCP connection."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or (
            isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def refused_message(where: str) -> str:
    """What a refused connection to ``where`` (host:port) says."""
    return f"connection refused by {where} (is FreeSWITCH running, with mod_event_socket listening there?)"


def describe(exc: BaseException) -> str:
    """One readable line for an exception raised while talking to FreeSWITCH or reading a file."""
    from esl import exceptions as ex

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if _refused(exc):
        match = re.search(r"connect to (\S+?):? ", text)
        return refused_message(match.group(1)) if match else "connection refused"
    if isinstance(exc, ex.AuthenticationError):
        return f"authentication failed: {text or 'FreeSWITCH refused the password'}"
    if isinstance(exc, ex.TimeoutError) or isinstance(exc, asyncio.TimeoutError):
        return f"timed out: {text}" if text else "timed out waiting for FreeSWITCH"
    if isinstance(exc, ex.ConnectionError):
        return f"connection failed: {text}" if text else "connection failed"
    if isinstance(exc, ex.CommandError):
        return text or "FreeSWITCH answered -ERR"
    if isinstance(exc, ex.ProtocolError):
        return f"protocol error: {text}"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused: {text}" if text else "connection refused"
    if isinstance(exc, FileNotFoundError):
        return f"no such file: {exc.filename}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename}"
    if isinstance(exc, OSError):
        return f"{exc.strerror or text or type(exc).__name__}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def clean_errors(func: F) -> F:
    """Turn any exception escaping a command into one ``esl: error:`` line and exit status 1.

    ``ESL_DEBUG=1`` lets the traceback through instead, for bug reports.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise click.exceptions.Exit(130) from None
        except Exception as exc:
            if os.environ.get("ESL_DEBUG"):
                raise
            raise CLIError(describe(exc)) from None

    return wrapper  # type: ignore[return-value]


def connection_options(func: F) -> F:
    """``--host/--port/--password/--timeout`` with ESL_HOST/ESL_PORT/ESL_PASSWORD fallbacks."""
    func = click.option(
        "--timeout",
        type=float,
        default=5.0,
        show_default=True,
        help="Seconds to wait for FreeSWITCH on connect and on each command.",
    )(func)
    func = click.option(
        "--password",
        "-p",
        envvar="ESL_PASSWORD",
        default=DEFAULT_PASSWORD,
        show_default=False,
        show_envvar=True,
        help="Event socket password (default: FreeSWITCH's default). Never printed.",
    )(func)
    func = click.option(
        "--port",
        "-P",
        envvar="ESL_PORT",
        type=click.IntRange(1, 65535),
        default=DEFAULT_PORT,
        show_default=True,
        show_envvar=True,
        help="Event socket port.",
    )(func)
    func = click.option(
        "--host",
        "-H",
        envvar="ESL_HOST",
        default=DEFAULT_HOST,
        show_default=True,
        show_envvar=True,
        help="FreeSWITCH host.",
    )(func)
    return func


class UsageLine(click.UsageError):
    """A usage error (unknown option, missing argument...) shown as one ``esl: error:`` line."""

    def __init__(self, error: click.UsageError) -> None:
        super().__init__(error.format_message(), error.ctx)

    def show(self, file: Any = None) -> None:
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        message = self.format_message().rstrip(".")
        click.echo(f"esl: error: {message}{hint}", err=True)


class OneLineErrors(click.Group):
    """A click group whose usage errors, its own and its subcommands', print one line.

    The plain help a group shows when run without a subcommand is left as it is.
    """

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            raise _one_line(exc) from None


def _one_line(exc: click.UsageError) -> click.UsageError:
    if isinstance(exc, UsageLine) or type(exc).__name__ == "NoArgsIsHelpError":
        return exc
    return UsageLine(exc)


T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    """Run ``coro`` on a fresh event loop; Ctrl-C cancels it cleanly."""
    return asyncio.run(coro)  # type: ignore[arg-type]


async def run_until_signal(main: Awaitable[Any] | None, on_signal: Callable[[], Awaitable[Any]]) -> None:
    """Run ``main`` until it ends or SIGINT/SIGTERM arrives, then await ``on_signal()`` once
    and give ``main`` 5 seconds to finish. ``main=None`` waits for the signal alone.

    Used by long-running servers (outbound, consumer, fake, replay) for a clean shutdown.
    """
    if main is None:
        main = asyncio.Event().wait()
        forever = True
    else:
        forever = False
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - non-POSIX
            pass
    task = asyncio.ensure_future(main)
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
            return
        await on_signal()
        if forever:
            task.cancel()
            return
        try:
            await asyncio.wait_for(task, 5.0)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            task.cancel()
    finally:
        waiter.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)


def stderr_console() -> Any:
    """A rich console on stderr (progress, tables meant for people, never for pipes)."""
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def is_tty() -> bool:
    """True when stdout is a terminal."""
    return sys.stdout.isatty()
