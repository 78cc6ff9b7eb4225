"""``esl serve MODULE:APP``: an esl.serve.App's scenarios over HTTP; and the options every
long-running command shares for production (``--metrics-port``, ``--log-json``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from esl.cli._common import CLIError, clean_errors, run, run_until_signal

F = TypeVar("F", bound=Callable[..., Any])


def _metrics_address(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    if not port.isdigit() or not 0 <= int(port) <= 65535 or (sep and not host):
        raise click.BadParameter(f"expected PORT or HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def metrics_option(func: F) -> F:
    """``--metrics-port [HOST:]PORT``: serve Prometheus metrics of the command's connections."""
    return click.option(
        "--metrics-port", "metrics", metavar="[HOST:]PORT", envvar="ESL_METRICS_PORT", show_envvar=True,
        callback=_metrics_address, default=None,
        help="Serve Prometheus metrics on http://HOST:PORT/metrics (HOST defaults to 127.0.0.1).",
    )(func)


def log_json_option(func: F) -> F:
    """``--log-json``: log JSON lines (call uuid as a field, secrets redacted) instead of text."""
    return click.option("--log-json", is_flag=True, envvar="ESL_LOG_JSON", show_envvar=True,
                        help="Log one JSON object per line (uuid/call_id fields; passwords and tokens masked).")(func)


def setup_logs(level: str, log_json: bool, secrets: Iterable[str | None] = ()) -> None:
    """Log to stderr at ``level``, as text or JSON lines, with ``secrets`` masked."""
    from esl.serve.logs import setup_logging

    setup_logging(level, json=log_json, secrets=[s for s in secrets if s])


async def start_metrics(address: tuple[str, int] | None, *objects: Any) -> Any:
    """Start the metrics endpoint for ``objects`` when ``--metrics-port`` was given; returns it or None."""
    if address is None:
        return None
    try:
        from esl.serve.metrics import start_metrics_server
    except ImportError as exc:  # pragma: no cover - the serve extra is missing
        raise CLIError(f"--metrics-port needs the serve extra (pip install 'esl[serve]'): {exc}") from None
    host, port = address
    try:
        server = await start_metrics_server(port, *objects, host=host)
    except OSError as exc:
        raise CLIError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"metrics on http://{host}:{server.port}/metrics", err=True)
    return server


@click.command("serve")
@click.argument("app")
@click.option("--listen", "-l", default="127.0.0.1:8080", show_default=True, metavar="HOST:PORT",
              help="Address of the HTTP API (a non-loopback address needs a token).")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="File whose first line is the bearer token (default: $ESL_SERVE_TOKEN).")
@click.option("--host", "-H", envvar="ESL_HOST", show_envvar=True, default=None,
              help="FreeSWITCH host (default: the app's own).")
@click.option("--port", "-P", envvar="ESL_PORT", show_envvar=True, type=click.IntRange(1, 65535), default=None,
              help="Event socket port (default: the app's own).")
@click.option("--password", "-p", envvar="ESL_PASSWORD", show_envvar=True, default=None,
              help="Event socket password (default: the app's own). Never printed.")
@click.option("--max-concurrent", type=click.IntRange(1), default=None,
              help="Live scenario calls at most (429 beyond; default: the app's own).")
@click.option("--destinations", metavar="REGEX", default=None,
              help="Only allow destinations matching REGEX (e.g. 'sofia/gateway/out/\\d+').")
@metrics_option
@log_json_option
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
              show_default=True, help="What the app's logging shows on stderr.")
@clean_errors
def serve_cmd(app: str, listen: str, token_file: str | None, host: str | None, port: int | None,
              password: str | None, max_concurrent: int | None, destinations: str | None,
              metrics: tuple[str, int] | None, log_json: bool, log_level: str) -> None:
    """Serve the scenarios of APP (MODULE:APP, an esl.serve.App) over HTTP.

    POST /scenarios/NAME places a call and runs the scenario with the JSON body's data;
    GET/DELETE /calls/ID, GET /calls/ID/events (server-sent events), /healthz, /readyz.
    Requests need 'Authorization: Bearer TOKEN' (--token-file or $ESL_SERVE_TOKEN); without
    a token the server only listens on loopback. Stops cleanly on SIGINT/SIGTERM.
    """
    try:
        import esl.serve
    except ImportError as exc:
        raise CLIError(f"esl serve needs the serve extra (pip install 'esl[serve]'): {exc}") from None
    from esl.cli.apps import load_app

    obj = load_app(app)
    if not isinstance(obj, esl.serve.App):
        raise CLIError(f"{app!r} is a {type(obj).__name__}, not an esl.serve.App")
    if not obj.scenarios:
        raise CLIError(f"{app!r} has no scenarios (register one with @app.scenario(\"name\"))")
    bind_host, sep, bind_port = listen.rpartition(":")
    if not sep or not bind_host or not bind_port.isdigit() or int(bind_port) > 65535:
        raise CLIError(f"--listen expects HOST:PORT, got {listen!r}")
    try:
        token = esl.serve.load_token(token_file)
    except (OSError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if obj.connection is None:
        obj.host = host or obj.host
        obj.port = port or obj.port
        obj._password = password or obj._password
    elif host or port or password:
        raise CLIError(f"{app!r} has its own connection; --host/--port/--password cannot change it")
    if max_concurrent is not None:
        obj.max_concurrent = max_concurrent
    setup_logs(log_level, log_json, [obj._password, token])
    try:
        server = esl.serve.Server(obj, bind_host.strip("[]"), int(bind_port), token=token,
                                  destinations=destinations)
    except ValueError as exc:
        raise CLIError(str(exc)) from None

    async def main() -> None:
        await obj.start()  # connect to FreeSWITCH first: its errors are described as such
        try:
            await server.start()
        except OSError as exc:
            await obj.stop(0)
            raise CLIError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
        metrics_server = await start_metrics(metrics, (app, obj))
        click.echo(f"esl serve {app}: scenarios {', '.join(sorted(obj.scenarios))} on "
                   f"http://{server.host}:{server.port} (auth {'on' if token else 'off: loopback only'})",
                   err=True)
        try:
            await run_until_signal(None, server.stop)
        finally:
            await server.stop()
            if metrics_server is not None:
                await metrics_server.stop()
        click.echo(f"esl serve {app} stopped", err=True)

    run(main())


__all__ = ["log_json_option", "metrics_option", "serve_cmd", "setup_logs", "start_metrics"]
