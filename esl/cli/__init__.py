"""The ``esl`` command: talk to FreeSWITCH, record and replay captures, benchmark, run apps.

Run ``esl --help`` for the subcommands. Every failure a user can cause (unreadable capture,
wrong password, refused connection, bad MODULE:APP...) prints one ``esl: error:`` line on
stderr and exits non-zero; ``ESL_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import click

from esl.cli._common import OneLineErrors
from esl.cli.apps import consumer_group, outbound_group
from esl.cli.bench import bench_cmd
from esl.cli.bus import add_bus_source, bridge_cmd
from esl.cli.workers import add_workers_option
from esl.cli.live import api_cmd, events_cmd, record_cmd
from esl.cli.serve import fake_cmd, replay_cmd
from esl.cli.serve_http import serve_cmd
from esl.core import BACKEND

__all__ = ["main"]


@click.group(cls=OneLineErrors,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="esl", prog_name="esl", message=f"%(prog)s %(version)s (core: {BACKEND})")
def main() -> None:
    """esl: a fast, complete FreeSWITCH Event Socket library, and its tools.

    Connection options (--host/--port/--password) fall back to ESL_HOST, ESL_PORT and
    ESL_PASSWORD. With no capture given, replay and bench use the capture bundled in the package.
    """


for _cmd in (api_cmd, events_cmd, record_cmd, replay_cmd, bench_cmd, outbound_group, consumer_group, fake_cmd):
    main.add_command(_cmd)
main.add_command(serve_cmd)
main.add_command(bridge_cmd)
add_bus_source(events_cmd)
add_workers_option(outbound_group.commands["run"])
