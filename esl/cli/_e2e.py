"""The end-to-end benchmark clients, one per library, each run in its own process by ``esl bench``.

``python -m esl.cli._e2e CLIENT HOST PORT EVENTS MAX_SECONDS [FORMAT]`` (password in
``ESL_PASSWORD``) connects to a replay server, subscribes to ``event FORMAT ALL`` (default plain), handles events with one
catch-all handler that reads the event's Unique-ID (``esl-3h``: three headers, Unique-ID,
Channel-State and Caller-Caller-ID-Number: a realistic handler), and prints one JSON line
``{"client": ..., "events": n, "seconds": s}``, timed from the subscription command to the
last event handled. It stops after EVENTS events or MAX_SECONDS, whichever comes first; the
server sends exactly EVENTS events (greenswitch's reader does not let its handlers run while
data keeps coming, so an endless stream would never be handled). CLIENT is
``esl`` or ``esl-3h`` (the core picked by ``ESL_NO_EXTENSIONS`` as usual), ``genesis`` or ``greenswitch``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from esl.cli._common import quiet_logging

__all__ = ["describe_failure", "main"]


class _Counter:
    """Counts events, timestamps the first and the last, and says when to stop."""

    def __init__(self, target: int, max_seconds: float, on_done: Callable[[], Any]) -> None:
        self.target = target
        self.max_seconds = max_seconds
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.done = False
        self._on_done = on_done

    def start(self) -> None:
        """Start the clock (just before subscribing)."""
        self.first = time.perf_counter()

    def hit(self) -> None:
        if self.done:
            return
        self.count += 1
        if self.count >= self.target or not self.count & 1023 and time.perf_counter() - self.first > self.max_seconds:
            self.finish()

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self.last = time.perf_counter()
            self._on_done()

    def result(self, client: str, **extra: Any) -> dict[str, Any]:
        return {"client": client, "events": self.count, "seconds": max(self.last - self.first, 1e-9), **extra}


async def _run_esl(host: str, port: int, password: str, target: int, max_seconds: float,
                   fmt: str, three: bool = False) -> dict[str, Any]:
    import esl
    from esl.core import BACKEND

    finished = asyncio.Event()
    counter = _Counter(target, max_seconds, finished.set)

    def handler(event: Any) -> None:
        event.uuid  # the handler reads Unique-ID (a routing key: no header decode needed)
        counter.hit()

    def handler3(event: Any) -> None:  # a realistic handler: three headers
        event.uuid
        event.get("Channel-State")
        event.get("Caller-Caller-ID-Number")
        counter.hit()

    async with esl.Inbound(host, port, password, timeout=10.0) as client:
        client.on("*", handler3 if three else handler)
        counter.start()
        await client.subscribe("ALL", format=fmt)
        await asyncio.wait_for(finished.wait(), max_seconds + 20)
    return counter.result("esl", backend=BACKEND)


async def _run_genesis(host: str, port: int, password: str, target: int, max_seconds: float,
                       fmt: str) -> dict[str, Any]:
    with quiet_logging():
        from genesis import Inbound

        finished = asyncio.Event()
        counter = _Counter(target, max_seconds, finished.set)

        async def handler(event: Any) -> None:
            event.get("Unique-ID")
            counter.hit()

        async with Inbound(host, port, password, timeout=10) as client:
            client.on("*", handler)
            counter.start()
            await client.send(f"event {fmt} ALL")
            await asyncio.wait_for(finished.wait(), max_seconds + 20)
        return counter.result("genesis")


def _run_greenswitch(host: str, port: int, password: str, target: int, max_seconds: float,
                     fmt: str) -> dict[str, Any]:
    with quiet_logging():
        import gevent
        import greenswitch

        done = gevent.event.Event()
        counter = _Counter(target, max_seconds, done.set)

        def handler(event: Any) -> None:
            event.headers.get("Unique-ID")
            counter.hit()
            if counter.done:
                gevent.sleep(0)  # greenswitch's reader never yields while data flows: let the main greenlet run

        client = greenswitch.InboundESL(host=host, port=port, password=password)
        client.connect()
        client.register_handle("*", handler)
        counter.start()
        client.send(f"event {fmt} ALL")
        done.wait(max_seconds + 20)
        client._run = False  # stop without waiting for an exit reply behind the event flood
        client.sock.close()
        return counter.result("greenswitch")


def describe_failure(exc: BaseException, max_seconds: float) -> str:
    """One line saying why a client failed; never an exception name with nothing after it."""
    text = str(exc).strip()
    if text:
        return f"{type(exc).__name__}: {text}"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f"timed out: the stream was not handled within {max_seconds + 20:g} s"
    return f"{type(exc).__name__} (no message)"


def main(argv: list[str] | None = None) -> int:
    """Entry point: run one client and print its JSON result line."""
    args = sys.argv[1:] if argv is None else argv
    client, host, port, target, max_seconds = args[0], args[1], int(args[2]), int(args[3]), float(args[4])
    fmt = args[5] if len(args) > 5 else "plain"
    password = os.environ.get("ESL_PASSWORD", "ClueCon")
    try:
        if client in ("esl", "esl-3h"):
            result = asyncio.run(_run_esl(host, port, password, target, max_seconds, fmt, client == "esl-3h"))
        elif client == "genesis":
            result = asyncio.run(_run_genesis(host, port, password, target, max_seconds, fmt))
        elif client == "greenswitch":
            result = _run_greenswitch(host, port, password, target, max_seconds, fmt)
        else:
            raise ValueError(f"unknown client {client!r}")
    except Exception as exc:  # reported to the parent as data, never a traceback
        print(json.dumps({"client": client, "error": describe_failure(exc, max_seconds)}), flush=True)
        return 1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
