"""``esl outbound run MODULE:APP`` and ``esl consumer run MODULE:APP``: run a user's app object."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
import os
import sys
from typing import Any

import click

from esl.cli._common import CLIError, clean_errors, run, run_until_signal
from esl.cli.serve_http import log_json_option, metrics_option, setup_logs, start_metrics


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


def _logging(level: str, log_json: bool = False, secrets: tuple[str | None, ...] = ()) -> None:
    """Log to stderr, so handler errors and warnings (e.g. a dialplan without ``async full``) show."""
    if log_json or secrets:
        setup_logs(level, log_json, secrets)
        return
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


LOG_LEVEL = click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
                         default="info", show_default=True, help="What the app's logging shows on stderr.")


async def _run_consumer(app: Any, label: str, metrics: Any = None) -> None:
    """Start the consumer, say so once it is connected and subscribed, run until a signal."""
    task = asyncio.ensure_future(app.start())
    ready = asyncio.ensure_future(app.wait_ready(None))
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # raises why it could not start (refused, wrong password...)
        return
    click.echo(f"{label} running (Ctrl-C stops)", err=True)
    exporter = await start_metrics(metrics, app.protocol) if metrics else None
    try:
        await run_until_signal(task, app.stop)
    finally:
        if exporter is not None:
            await exporter.stop()
    click.echo(f"{label} stopped", err=True)


@click.group("outbound")
def outbound_group() -> None:
    """Outbound-socket apps (FreeSWITCH connects to you: dialplan 'socket host:port async full')."""


@outbound_group.command("run")
@click.argument("app")
@click.option("--host", "-H", default=None, help="Address to listen on (default: the app's own, else 127.0.0.1).")
@click.option("--port", "-P", type=click.IntRange(1, 65535), default=None,
              help="Port to listen on (default: the app's own, else 9000).")
@LOG_LEVEL
@log_json_option
@metrics_option
@clean_errors
def outbound_run(app: str, host: str | None, port: int | None, log_level: str, log_json: bool = False,
                 metrics: Any = None) -> None:
    """Run APP (MODULE:APP): an esl.Outbound object, or a handler coroutine function(session).

    Stops cleanly on SIGINT/SIGTERM.
    """
    import esl

    Outbound = getattr(esl, "Outbound", None)
    if Outbound is None:
        raise CLIError("this build of esl has no Outbound server yet")
    obj = load_app(app)
    _logging(log_level, log_json)
    if isinstance(obj, Outbound):
        server = obj
        if host is not None:
            server.host = host
        if port is not None:
            if getattr(server, "serving", False):
                raise CLIError(f"{app!r} is already listening; --port cannot move it")
            server.port = port
    elif callable(obj) and not inspect.isclass(obj):
        server = Outbound(obj, host or "127.0.0.1", port or 9000)
    else:
        raise CLIError(f"{app!r} is a {type(obj).__name__}, not an esl.Outbound or a handler function")
    _serve_outbound(server, app, metrics)


def _serve_outbound(server: Any, app: str, metrics: Any = None) -> None:
    async def main() -> None:
        try:
            await server.start(block=False)
        except OSError as exc:
            raise CLIError(f"cannot listen on {server.host}:{server.port}: {exc.strerror or exc}") from None
        where = f"{server.host}:{server.port}"
        click.echo(f"outbound app {app} listening on {where} (Ctrl-C stops)", err=True)
        exporter = await start_metrics(metrics, server) if metrics else None
        try:
            await run_until_signal(server.start(block=True), server.stop)
        finally:
            if exporter is not None:
                await exporter.stop()
        click.echo(f"outbound app {app} stopped", err=True)

    run(main())


@click.group("consumer")
def consumer_group() -> None:
    """Consumer apps (an inbound connection that handles the events it subscribes to)."""


@consumer_group.command("run")
@click.argument("app")
@LOG_LEVEL
@log_json_option
@metrics_option
@clean_errors
def consumer_run(app: str, log_level: str, log_json: bool = False, metrics: Any = None) -> None:
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
    _logging(log_level, log_json, (getattr(obj.protocol, "password", None),))
    run(_run_consumer(obj, f"consumer {app}", metrics))
