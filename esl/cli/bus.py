"""The event bus on the command line: ``esl bridge URL`` and ``esl events --from URL``.

``esl bridge redis://host:6379/0 --host fs1`` publishes every event of one
FreeSWITCH (reconnecting as needed) to a Redis stream until SIGINT/SIGTERM,
printing its counters to stderr. ``esl events --from redis://...`` tails the
stream instead of a FreeSWITCH: by default in a consumer group of its own
(removed at exit), or as a member of ``--group``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from esl.cli._common import CLIError, clean_errors, connection_options, run, run_until_signal

__all__ = ["add_bus_source", "bridge_cmd"]


def _connect(url: str, stream: str, **options: Any) -> Any:
    try:
        from esl.bus import connect
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise CLIError(str(exc)) from None
    try:
        return connect(url, stream=stream, **options)
    except ImportError as exc:
        raise CLIError(str(exc)) from None
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _stats_line(st: Any, node: str, connected: bool) -> str:
    return (
        f"{time.strftime('%H:%M:%S')} {node} {'up' if connected else 'DOWN'}: published={st.published} "
        f"buffered={st.buffered}/{st.max_buffer} dropped={st.dropped} redis={'ok' if st.connected else 'DOWN'}"
    )


@click.command("bridge")
@click.argument("url")
@click.argument("names", nargs=-1)
@click.option("--stream", default="esl:events", show_default=True, help="Redis stream to append to.")
@click.option("--node", default=None, help="Node name stored with each event (default: HOST:PORT).")
@click.option("--maxlen", type=click.IntRange(0), default=1_000_000, show_default=True,
              help="Trim the stream to about this many entries (0: never trim).")
@click.option("--buffer", "max_buffer", type=click.IntRange(1), default=100_000, show_default=True,
              help="Events held while Redis is slow or down; beyond it events are dropped and counted.")
@click.option("--stats-interval", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds between counter lines on stderr (0: none).")
@click.option("--cluster", "cluster_nodes", multiple=True, metavar="[NAME=]HOST[:PORT]",
              help="Bridge several FreeSWITCH nodes (repeatable) instead of --host/--port; events are tagged NAME "
                   "(default HOST:PORT). --password applies to all.")
@connection_options
@clean_errors
def bridge_cmd(url: str, names: tuple[str, ...], stream: str, node: str | None, maxlen: int, max_buffer: int,
               stats_interval: float, cluster_nodes: tuple[str, ...], host: str, port: int, password: str,
               timeout: float) -> None:
    """Publish the events of FreeSWITCH (default: ALL; or NAMES) to the event bus at URL."""
    from esl import Cluster, Inbound

    bus = _connect(url, stream, maxlen=maxlen or None)
    if cluster_nodes:
        nodes = dict(_node_spec(spec, password, timeout) for spec in cluster_nodes)
        source: Any = Cluster(nodes, load_interval=None)
        name = ",".join(nodes)
    else:
        name = node or f"{host}:{port}"
        source = Inbound(host, port, password, timeout=timeout, reconnect=True)

    async def main() -> None:
        client = source
        pub = bus.publisher(max_buffer=max_buffer)
        await pub.start()
        pub.attach(client, node=name)
        try:
            await client.connect()
            await client.subscribe(*(names or ("ALL",)), format="plain")
            click.echo(f"bridging {name} -> {url} stream {stream!r}", err=True)

            stopping = asyncio.Event()

            async def report() -> None:
                # ends as soon as the signal arrives (run_until_signal would otherwise wait 5 s for it)
                while True:
                    try:
                        await asyncio.wait_for(stopping.wait(), stats_interval)
                        return
                    except asyncio.TimeoutError:
                        pass
                    up = bool(client.up()) if cluster_nodes else client.connected
                    click.echo(_stats_line(pub.stats(), name, up), err=True)

            async def stop() -> None:
                stopping.set()

            await run_until_signal(report() if stats_interval else None, stop)
        finally:
            await client.close()
            await pub.close()
            await bus.close()
            click.echo(_stats_line(pub.stats(), name, False), err=True)

    run(main())


def _node_spec(spec: str, password: str, timeout: float) -> tuple[str, Any]:
    from esl import Inbound

    label, sep, addr = spec.partition("=")
    if not sep:
        label, addr = "", spec
    host, colon, port_text = addr.rpartition(":")
    if not colon:
        host, port_text = addr, "8021"
    if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CLIError(f"--cluster expects [NAME=]HOST[:PORT], got {spec!r}")
    port = int(port_text)
    return label or f"{host}:{port}", Inbound(host, port, password, timeout=timeout, reconnect=True)


def add_bus_source(events_cmd: click.Command) -> click.Command:
    """Give ``esl events`` the options ``--from URL``, ``--stream``, ``--group`` (tail the bus)."""
    original: Callable[..., Any] = events_cmd.callback  # type: ignore[assignment]
    events_cmd.params += [
        click.Option(["--from", "source"], default=None, metavar="URL",
                     help="Read from the event bus at URL (redis://...) instead of FreeSWITCH."),
        click.Option(["--stream"], default="esl:events", show_default=True, help="With --from: the stream."),
        click.Option(["--group"], default=None,
                     help="With --from: join this consumer group (events are acknowledged, shared with its "
                          "other members); default: a group of its own that sees everything and is removed at exit."),
    ]  # fmt: skip

    @functools.wraps(original)
    def callback(*args: Any, source: str | None = None, stream: str = "esl:events", group: str | None = None,
                 **kwargs: Any) -> Any:
        if source is None:
            return original(*args, **kwargs)
        return _tail_bus(source, stream, group, kwargs.get("names") or (), bool(kwargs.get("as_json")),
                         kwargs.get("count"))

    events_cmd.callback = callback
    return events_cmd


@clean_errors
def _tail_bus(url: str, stream: str, group: str | None, names: tuple[str, ...], as_json: bool,
              count: int | None) -> None:
    from esl.cli.live import event_line

    bus = _connect(url, stream)
    color = sys.stdout.isatty() and not as_json
    own_group = group is None
    group_name = group or f"esl-events-{socket.gethostname()}-{os.getpid()}"
    seen = 0

    async def main() -> None:
        nonlocal seen
        sub = bus.events(group=group_name, consumer=f"{socket.gethostname()}-{os.getpid()}",
                         names=names or None, start="$")

        async def tail() -> None:
            nonlocal seen
            async with sub:
                async for ev in sub:
                    seen += 1
                    if as_json:
                        obj: dict[str, Any] = {"_node": ev.node, "_id": ev.id, **ev.event}
                        if ev.event.body is not None:
                            obj["_body"] = ev.event.body
                        click.echo(json.dumps(obj, ensure_ascii=False))
                    else:
                        click.echo(f"{ev.node:<12} {event_line(ev.event, color)}")
                    if count is not None and seen >= count:
                        return

        async def stop() -> None:
            await sub.close()

        try:
            await run_until_signal(tail(), stop)
        finally:
            if own_group:
                try:
                    await bus.client.xgroup_destroy(stream, group_name)
                except Exception:  # noqa: BLE001 - best effort: Redis may be down at exit
                    pass
            await bus.close()

    try:
        run(main())
    finally:
        click.echo(f"{seen} events", err=True)
