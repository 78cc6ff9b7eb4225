"""``esl outbound run MODULE:APP --workers N``: the app on N processes (see :mod:`esl.workers`)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import click

from esl.cli._common import CLIError

__all__ = ["add_workers_option"]


def add_workers_option(run_cmd: click.Command) -> click.Command:
    """Give ``esl outbound run`` the options ``--workers N`` and ``--grace SECONDS``."""
    original: Callable[..., Any] = run_cmd.callback  # type: ignore[assignment]
    run_cmd.params += [
        click.Option(["--workers", "-w"], type=click.IntRange(1, 256), default=None,
                     help="Serve from N processes on the same port (restarted if they crash)."),
        click.Option(["--grace"], type=click.FloatRange(min=0), default=30.0, show_default=True,
                     help="With --workers: on SIGTERM, seconds live calls may go on before they are hung up."),
    ]  # fmt: skip

    @functools.wraps(original)
    def callback(*args: Any, workers: int | None = None, grace: float = 30.0, **kwargs: Any) -> Any:
        if workers is None:
            return original(*args, **kwargs)
        return _run_workers(kwargs["app"], kwargs.get("host"), kwargs.get("port"), kwargs.get("log_level", "info"),
                            workers, grace)

    run_cmd.callback = callback
    return run_cmd


def _run_workers(app: str, host: str | None, port: int | None, log_level: str, workers: int, grace: float) -> None:
    from esl.cli._common import clean_errors
    from esl.cli.apps import _logging, load_app

    @clean_errors
    def go() -> None:
        import esl
        from esl.workers import WorkerPool

        obj = load_app(app)
        _logging(log_level)
        if isinstance(obj, esl.Outbound):
            h, p = host or obj.host, port if port is not None else obj.port
        elif callable(obj) and not inspect.isclass(obj):
            h, p = host or "127.0.0.1", port or 9000
        else:
            raise CLIError(f"{app!r} is a {type(obj).__name__}, not an esl.Outbound or a handler function")

        def ready(pool: WorkerPool) -> None:
            how = "SO_REUSEPORT" if pool.reuse_port else "shared socket"
            click.echo(f"outbound app {app} listening on {pool.host}:{pool.port} with {pool.workers} workers "
                       f"({how}; pids {' '.join(map(str, pool.pids))}; Ctrl-C stops)", err=True)

        try:
            pool = WorkerPool(obj, h, p, workers, grace=grace, on_ready=ready)
            status = pool.run()
        except OSError as exc:
            raise CLIError(f"cannot listen on {h}:{p}: {exc.strerror or exc}") from None
        click.echo(f"outbound app {app} stopped ({pool.restarts} worker restarts)", err=True)
        if status:
            raise click.exceptions.Exit(status)

    go()
