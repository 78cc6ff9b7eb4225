"""The ``socket`` application: the fake dials an Outbound ESL app, as mod_event_socket's
socket_function does.

``socket host[:port][|host2...] [async] [full]``: connect (failover hosts in
order, default port 8084), then serve the session's commands on that
connection (see FakeConnection: the first command must be ``connect``, whose
reply is the CHANNEL_DATA dump; without ``full`` only the session commands
work). In async mode the channel is parked and sendmsg messages are queued and
run by the park loop; in static mode they run inline, before their reply. When
the app closes the socket the call hangs up, unless it sent ``resume`` (or set
``socket_resume=true``), in which case the dialplan continues.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from esl.testing.connection import FakeConnection

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.calls import FakeChannel

__all__ = ["parse_socket_data", "socket_app"]

DEFAULT_PORT = 8084


def parse_socket_data(arg: str) -> tuple[list[tuple[str, int]], bool, bool]:
    """``"127.0.0.1:9000|10.0.0.2 async full"`` -> ([("127.0.0.1", 9000), ("10.0.0.2", 8084)], True, True)."""
    words = arg.split()
    if not words:
        return [], False, False
    hosts = []
    for spec in words[0].split("|"):
        spec = spec.split("/", 1)[0]
        host, sep, port = spec.rpartition(":")
        if not sep or not port.isdigit():
            host, port = spec, str(DEFAULT_PORT)
        hosts.append((host.strip("[]"), int(port)))
    flags = {w.lower() for w in words[1:]}
    return hosts, "async" in flags, "full" in flags


async def socket_app(ch: FakeChannel, arg: str) -> str | None:
    """Connect to the app, hand it the session, and run until the socket or the call ends."""
    fake = ch.fake
    hosts, async_mode, full = parse_socket_data(arg)
    loop = asyncio.get_running_loop()
    conn: FakeConnection | None = None
    for host, port in hosts:
        ch.variables["socket_host"] = host
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(
                    lambda: FakeConnection(fake, session=ch, async_mode=async_mode, full=full), host, port
                ),
                fake.timings.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError):
            fake.log(
                f"Socket Error! [{host}:{port}]\n",
                3,
                file="mod_event_socket.c",
                func="socket_function",
                line=499,
                uuid=ch.uuid,
            )
            continue
        conn = proto
        break
    if conn is None:
        return None
    ch.socket_conn = conn
    ch._listener_attached(conn)
    if async_mode:
        # park once the app has sent `connect` and one more command (typically its subscription),
        # so what it subscribes to right after connecting sees the park, as in the capture
        while conn.handled < 2 and not conn.closed.done() and not ch.down:
            conn.progress.clear()
            waits: list[asyncio.Future[Any]] = [
                asyncio.ensure_future(conn.progress.wait()),
                asyncio.ensure_future(ch.pause(1e9, breakable=False)),
            ]
            await asyncio.wait([conn.closed, *waits], return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
        if not ch.down and not conn.closed.done():
            await ch.park()
        await ch.run_pending_messages()
    else:
        # static: the listener runs in the session thread; sendmsg runs inline in the connection
        gone: asyncio.Future[Any] = asyncio.ensure_future(ch.pause(1e9, breakable=False))
        await asyncio.wait([conn.closed, gone], return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
    ch.socket_conn = None
    resume = conn.resume or ch.variables.get("socket_resume", "").lower() == "true"
    if not ch.down and not resume and ch.transfer_to is None and ch._uuid_bridge is None:
        if not conn.closed.done():
            # the channel left the park (transfer / uuid_park elsewhere): the listener stays
            return None
        ch.hangup("NORMAL_CLEARING")
    return None
