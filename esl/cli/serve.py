"""``esl replay`` and ``esl fake``: the fake FreeSWITCH of ``esl.testing`` as a standalone server."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import Any

import click

from esl.cli import capture as captures
from esl.cli._common import CLIError, clean_errors, run, run_until_signal

__all__ = ["ReplayServer", "fake_cmd", "replay_cmd"]

#: Bytes queued in a client's socket before the replay waits for it to read (TCP backpressure).
HIGH_WATER = 4 * 1024 * 1024
#: Target size of one write when replaying as fast as possible.
CHUNK = 256 * 1024


class ReplayServer:
    """A FakeFreeSWITCH that replays a capture to every client that subscribes to events.

    A client that subscribes to ``ALL`` in the capture's own format with no filter gets the
    capture's event bytes unchanged, written in large chunks with backpressure (the fast path
    benchmarks need); any other client gets them through ``FakeFreeSWITCH.replay``, which
    re-serializes each event in the client's format and honours its subscriptions and filters.
    ``loops=0`` replays until the client goes away.
    """

    def __init__(
        self,
        capture: captures.Capture,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        password: str = "ClueCon",
        loops: int = 1,
        rate: float | None = None,
        on_client: Callable[[str], Any] | None = None,
    ) -> None:
        from esl.testing import FakeFreeSWITCH

        self.capture = capture
        self.loops = loops
        self.rate = rate
        self.fake = FakeFreeSWITCH(host, port, password)
        self.sent = 0
        self._on_client = on_client
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._events = capture.event_bytes()
        self._chunks = self._split(self._events, rate)

    @staticmethod
    def _split(data: bytes, rate: float | None) -> list[tuple[bytes, int]]:
        """Whole events grouped into writes of about CHUNK bytes (one event per write when paced)."""
        from esl.core import Parser

        chunks: list[tuple[bytes, int]] = []
        parts: list[bytes] = []
        size = 0
        for ev in Parser().feed(data):
            parts.append(ev.raw)
            size += len(ev.raw)
            if rate or size >= CHUNK:
                chunks.append((b"".join(parts), len(parts)))
                parts, size = [], 0
        if parts:
            chunks.append((b"".join(parts), len(parts)))
        return chunks

    @property
    def host(self) -> str:
        return str(self.fake.host)

    @property
    def port(self) -> int:
        return int(self.fake.port)

    async def start(self) -> ReplayServer:
        """Listen, and watch for clients that subscribe."""
        await self.fake.start()
        self._watch = asyncio.ensure_future(self._watch_clients())
        return self

    async def stop(self) -> None:
        """Stop replaying and close every connection with its disconnect-notice."""
        if self._watch is not None:
            self._watch.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.fake.stop()

    async def __aenter__(self) -> ReplayServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _watch_clients(self) -> None:
        while True:
            for conn in list(self.fake.connections):
                if conn in self._seen or not conn.authenticated or not conn.subscriptions.enabled:
                    continue
                self._seen.add(conn)
                task = asyncio.ensure_future(self._serve(conn))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0.005)

    def _fast(self, conn: Any) -> bool:
        return conn.format == self.capture.format and "ALL" in conn.subscriptions.names and not conn.filters

    async def _serve(self, conn: Any) -> None:
        fast = self._fast(conn)
        if self._on_client is not None:
            subs = " ".join(sorted(conn.subscriptions.names | conn.subscriptions.custom))
            how = "original bytes" if fast else f"re-framed as {conn.format}"
            self._on_client(f"client {conn.peer[0]}:{conn.peer[1]} subscribed to {conn.format} {subs} ({how})")
        try:
            if fast:
                await self._blast(conn)
            else:
                loops = self.loops if self.loops > 0 else 1_000_000_000
                self.sent += await self.fake.replay(self._events, loops=loops, rate=self.rate, conn=conn)
        except asyncio.CancelledError:
            pass

    async def _blast(self, conn: Any) -> None:
        transport = conn.transport
        start = time.perf_counter()
        sent = 0
        done = 0
        while self.loops <= 0 or done < self.loops:
            for data, count in self._chunks:
                while transport.get_write_buffer_size() > HIGH_WATER and conn.is_open:
                    await asyncio.sleep(0.0005)
                if not conn.is_open:
                    return
                conn.deliver(data)
                sent += count
                self.sent += count
                if self.rate:
                    delay = start + sent / self.rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif sent % 2048 < count:
                    await asyncio.sleep(0)
            done += 1


@click.command("replay")
@click.argument("capture", type=click.Path(dir_okay=False), required=False)
@click.option("--host", "-H", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", "-P", type=click.IntRange(0, 65535), default=8021, show_default=True,
              help="Port to listen on (0 picks a free one).")
@click.option("--password", "-p", envvar="ESL_PASSWORD", default="ClueCon", show_default=False,
              show_envvar=True, help="Password clients must send (default: FreeSWITCH's).")
@click.option("--loops", type=click.IntRange(0), default=1, show_default=True,
              help="Times to replay the capture to each client (0: until it disconnects).")
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Events per second (default: as fast as the client reads).")
@clean_errors
def replay_cmd(capture: str | None, host: str, port: int, password: str, loops: int, rate: float | None) -> None:
    """Serve CAPTURE as a fake FreeSWITCH (default: the bundled capture).

    Clients authenticate, get command replies from the fake of esl.testing, and once they
    subscribe to events receive the capture's events: byte for byte when they subscribe to
    ALL in the capture's format, otherwise re-serialized in their format through their
    subscriptions and filters. Ctrl-C stops the server.
    """
    cap = captures.load(capture)

    def note(text: str) -> None:
        click.echo(text, err=True)

    async def main() -> None:
        server = ReplayServer(cap, host=host, port=port, password=password, loops=loops, rate=rate, on_client=note)
        try:
            await server.start()
        except OSError as exc:
            raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        click.echo(
            f"replaying {cap.path} ({cap.events:,} {cap.format} events) on {server.host}:{server.port}",
            err=True,
        )
        click.echo(f"listening on {server.host}:{server.port}", nl=True)
        try:
            await run_until_signal(None, server.stop)
        finally:
            await server.stop()
        click.echo(f"{server.sent:,} events sent", err=True)

    run(main())


def _parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


@click.command("fake")
@click.option("--host", "-H", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", "-P", type=click.IntRange(0, 65535), default=8021, show_default=True,
              help="Port to listen on (0 picks a free one).")
@click.option("--password", "-p", envvar="ESL_PASSWORD", default="ClueCon", show_default=False,
              show_envvar=True, help="Password clients must send (default: FreeSWITCH's).")
@click.option("--outbound", "outbound", metavar="HOST:PORT", default=None,
              help="Hand incoming calls to the outbound-socket app at HOST:PORT (dialplan 'socket ... async full').")
@click.option("--extension", default="9000", show_default=True,
              help="Dialplan extension that runs the socket app (with --outbound).")
@click.option("--calls", type=click.IntRange(0), default=0, show_default=True,
              help="Place this many incoming calls to the extension (with --outbound), then keep serving.")
@click.option("--interval", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Seconds between the calls placed with --calls.")
@clean_errors
def fake_cmd(host: str, port: int, password: str, outbound: str | None, extension: str, calls: int,
             interval: float) -> None:
    """Run the fake FreeSWITCH of esl.testing as a standalone server to develop against.

    It answers auth, api/bgapi (status, originate, uuid_* ...), event subscriptions and
    filters, sendevent and sendmsg like FreeSWITCH, and simulates calls. With --outbound,
    the extension (default 9000) hands calls to your Outbound app; originate with
    '&socket(...)' or 'originate user/1000 9000' does too. Ctrl-C stops it.
    """
    target = _parse_hostport(outbound) if outbound else None

    async def main() -> None:
        from esl.testing import FakeFreeSWITCH

        fake = FakeFreeSWITCH(host, port, password)
        if target is not None:
            dialplan = getattr(fake, "dialplan", None)
            if dialplan is None:
                raise CLIError("this build of esl.testing has no call simulation (no dialplan)")
            dialplan[extension] = [("socket", f"{target[0]}:{target[1]} async full")]
        try:
            await fake.start()
        except OSError as exc:
            raise CLIError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        click.echo(f"fake FreeSWITCH listening on {fake.host}:{fake.port}", err=True)
        if target is not None:
            click.echo(f"extension {extension} -> socket {target[0]}:{target[1]} async full", err=True)

        async def place_calls() -> None:
            for i in range(calls):
                ch = await fake.call(extension, caller_id_number=str(1000 + i))
                click.echo(f"call {i + 1}/{calls}: {ch.uuid}", err=True)
                if i + 1 < calls:
                    await asyncio.sleep(interval)

        caller = asyncio.ensure_future(place_calls()) if calls and target else None
        try:
            await run_until_signal(None, fake.stop)
        finally:
            if caller is not None:
                caller.cancel()
            await fake.stop()
        click.echo("fake FreeSWITCH stopped", err=True)

    run(main())
