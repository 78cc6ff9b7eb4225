"""``esl outbound run MODULE:APP`` and ``esl consumer run MODULE:APP``: run a user's app object."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

import click

from esl.cli._common import CLIError, clean_errors, run, run_until_signal


def load_app(spec: str) -> Any:
    """The object named by ``MODULE:APP`` (``APP`` may be dotted); the current directory is importable."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise CLIError(f"expected MODULE:APP (e.g. myapp:app), got {spec!r}")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise CLIError(f"cannot import {module_name!r}: no module named {exc.name!r}") from None
        raise CLIError(f"error while importing {module_name!r}: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise CLIError(f"error while importing {module_name!r}: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CLIError(f"module {module_name!r} has no attribute {attr!r}") from None
    return obj


def _serve(app: Any, label: str, starting: str) -> None:
    async def main() -> None:
        click.echo(starting, err=True)
        started = app.start()
        await run_until_signal(started, app.stop)
        click.echo(f"{label} stopped", err=True)

    run(main())


@click.group("outbound")
def outbound_group() -> None:
    """Outbound-socket apps (FreeSWITCH connects to you: dialplan 'socket host:port async full')."""


@outbound_group.command("run")
@click.argument("app")
@click.option("--host", "-H", default=None, help="Address to listen on (default: the app's own, else 127.0.0.1).")
@click.option("--port", "-P", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on (default: the app's own, else 9000).")
@clean_errors
def outbound_run(app: str, host: str | None, port: int | None) -> None:
    """Run APP (MODULE:APP): an esl.Outbound object, or a handler coroutine function(session).

    Stops cleanly on SIGINT/SIGTERM.
    """
    import esl

    Outbound = getattr(esl, "Outbound", None)
    if Outbound is None:
        raise CLIError("this build of esl has no Outbound server yet")
    obj = load_app(app)
    if isinstance(obj, Outbound):
        server = obj
        if host is not None:
            server.host = host
        if port is not None:
            if getattr(server, "serving", False):
                raise CLIError(f"{app!r} is already listening; --port cannot move it")
            try:
                server.port = port
            except AttributeError:  # Outbound.port is read-only: the configured port lives in _port
                server._port = port
    elif callable(obj) and not inspect.isclass(obj):
        server = Outbound(obj, host or "127.0.0.1", port or 9000)
    else:
        raise CLIError(f"{app!r} is a {type(obj).__name__}, not an esl.Outbound or a handler function")
    where = f"{getattr(server, 'host', host)}:{getattr(server, 'port', port)}"
    _serve_outbound(server, app, where)


def _serve_outbound(server: Any, app: str, where: str) -> None:
    async def main() -> None:
        try:
            task = server.start(block=True)
        except TypeError:  # an Outbound whose start() takes no block argument
            task = server.start()
        click.echo(f"outbound app {app} listening on {where} (Ctrl-C stops)", err=True)
        await run_until_signal(task, server.stop)
        click.echo(f"outbound app {app} stopped", err=True)

    run(main())


@click.group("consumer")
def consumer_group() -> None:
    """Consumer apps (an inbound connection that handles the events it subscribes to)."""


@consumer_group.command("run")
@click.argument("app")
@clean_errors
def consumer_run(app: str) -> None:
    """Run APP (MODULE:APP), an esl.Consumer with its @app.handle(...) handlers.

    The Consumer's own host, port and password are used. Stops cleanly on SIGINT/SIGTERM.
    """
    import esl

    Consumer = getattr(esl, "Consumer", None)
    if Consumer is None:
        raise CLIError("this build of esl has no Consumer yet")
    obj = load_app(app)
    if not isinstance(obj, Consumer):
        raise CLIError(f"{app!r} is a {type(obj).__name__}, not an esl.Consumer")
    _serve(obj, f"consumer {app}", f"consumer {app} running (Ctrl-C stops)")
