"""A raw inbound ESL client for the fake/real-switch tests: one command at a time, events kept
aside, replies returned as text (the api body, or the Reply-Text)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from esl.core import Parser


class Raw:
    """A raw inbound ESL client: one command at a time, events kept aside."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.parser = reader, writer, Parser()
        self.queue: list[Any] = []
        self.events: list[Any] = []

    @classmethod
    async def connect(cls, fake: Any, password: str = "ClueCon", subscribe: bool = True) -> Raw:
        c = cls(*await asyncio.open_connection(fake.host, fake.port))
        await c._next()
        assert (await c.cmd(f"auth {password}")) == "+OK accepted"
        if subscribe:
            assert (await c.cmd("event plain ALL")).startswith("+OK")
        return c

    async def _next(self) -> Any:
        while not self.queue:
            data = await asyncio.wait_for(self.reader.read(1 << 16), 3.0)
            if not data:
                raise EOFError
            self.queue.extend(self.parser.feed(data))
        return self.queue.pop(0)

    async def cmd(self, text: str, **headers: str) -> str:
        extra = "".join(f"\n{k}: {v}" for k, v in headers.items())
        self.writer.write(text.encode() + extra.encode() + b"\n\n")
        while True:
            m = await self._next()
            if m.is_event:
                self.events.append(m)
                continue
            return str(m.body if m.content_type == "api/response" else m["Reply-Text"])

    async def sendmsg(self, uuid: str, **headers: str) -> str:
        lines = "".join(f"{k.replace('_', '-')}: {v}\n" for k, v in headers.items())  # call_command -> call-command
        return await self.cmd(f"sendmsg {uuid}\n{lines.rstrip()}")

    async def collect(self, seconds: float) -> None:
        """Read events for ``seconds``."""
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() < end:
            if self.queue:
                m = self.queue.pop(0)
            else:
                try:
                    data = await asyncio.wait_for(self.reader.read(1 << 16), max(end - loop.time(), 0.001))
                except asyncio.TimeoutError:
                    return
                if not data:
                    return
                self.queue.extend(self.parser.feed(data))
                continue
            if m.is_event:
                self.events.append(m)

    def close(self) -> None:
        self.writer.close()


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)



async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll ``predicate`` until true (asyncio.TimeoutError after ``timeout``)."""

    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(poll(), timeout)
