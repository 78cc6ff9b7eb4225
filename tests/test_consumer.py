"""esl.Consumer and esl.filtrate against the fake FreeSWITCH."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import esl
from esl.core import Event
from esl.exceptions import ConnectionError
from esl.testing import FakeFreeSWITCH


async def eventually(predicate: Any, timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


def ev(**headers: str) -> Event:
    return Event.build([(k if k.startswith("variable_") else k.replace("_", "-"), v) for k, v in headers.items()])


async def test_consumer_subscribes_only_to_handled_events(freeswitch: FakeFreeSWITCH) -> None:
    app = esl.Consumer(freeswitch.host, freeswitch.port, "ClueCon")
    got: list[str] = []

    @app.handle("CHANNEL_ANSWER")
    async def answered(event: Any) -> None:
        got.append("answer:" + event.uuid)

    @app.handle("sofia::register")
    def registered(event: Any) -> None:
        got.append("register:" + event["from-user"])

    runner = asyncio.ensure_future(app.start())
    await app.wait_ready()
    conn = freeswitch.connections[-1]
    assert conn.commands[-1] == "event plain CHANNEL_ANSWER CUSTOM sofia::register"
    await freeswitch.fire(freeswitch.make_event("CHANNEL_HANGUP", {"Unique-ID": "x"}))
    await freeswitch.fire(freeswitch.make_event("CUSTOM", {"from-user": "1000"}, subclass="sofia::register"))
    await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": "u1"}))
    await eventually(lambda: len(got) == 2)
    assert got == ["register:1000", "answer:u1"]
    # the server filtered: the client never received the unhandled CHANNEL_HANGUP
    assert app.client.stats().events_received == 2
    await app.stop()
    await asyncio.wait_for(runner, 5)
    assert not app.client.connected


async def test_consumer_star_subscribes_all(freeswitch: FakeFreeSWITCH) -> None:
    app = esl.Consumer(freeswitch.host, freeswitch.port)
    app.handle("*")(lambda e: None)
    assert app.subscriptions() == ["ALL"]
    runner = asyncio.ensure_future(app.start())
    await app.wait_ready()
    assert freeswitch.connections[-1].commands[-1] == "event plain ALL"
    await app.stop()
    await asyncio.wait_for(runner, 5)


def test_consumer_subscription_names() -> None:
    app = esl.Consumer()
    app.handle("HEARTBEAT")(print)
    app.handle("CUSTOM")(print)
    app.handle("conference::maintenance")(print)
    assert app.subscriptions() == ["HEARTBEAT", "CUSTOM"]
    assert app.protocol is app.client


async def test_consumer_start_raises_when_connection_lost(freeswitch: FakeFreeSWITCH) -> None:
    app = esl.Consumer(freeswitch.host, freeswitch.port)
    app.handle("HEARTBEAT")(lambda e: None)
    runner = asyncio.ensure_future(app.start())
    await app.wait_ready()
    await freeswitch.drop_all()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(runner, 5)


async def test_consumer_wrong_password(freeswitch: FakeFreeSWITCH) -> None:
    app = esl.Consumer(freeswitch.host, freeswitch.port, "wrong")
    with pytest.raises(esl.exceptions.AuthenticationError):
        await app.start()


async def test_filtrate_sync_and_async() -> None:
    seen: list[str] = []

    @esl.filtrate("Caller-Destination-Number", "1000")
    def exact(event: Any) -> str:
        seen.append("exact")
        return "ran"

    @esl.filtrate("Caller-Destination-Number", r"^10\d\d$", regex=True)
    async def pattern(event: Any) -> None:
        seen.append("regex")

    @esl.filtrate("variable_sip_user")
    def present(event: Any) -> None:
        seen.append("present")

    assert exact(ev(Caller_Destination_Number="1000")) == "ran"
    assert exact(ev(Caller_Destination_Number="2000")) is None
    assert exact(ev(Other="1")) is None
    await pattern(ev(Caller_Destination_Number="1042"))
    await pattern(ev(Caller_Destination_Number="9042"))
    present(ev(variable_sip_user="bob"))
    present(ev(Other="x"))
    assert seen == ["exact", "regex", "present"]
    assert exact.__name__ == "exact"


async def test_filtrate_with_consumer_handlers(freeswitch: FakeFreeSWITCH) -> None:
    app = esl.Consumer(freeswitch.host, freeswitch.port)
    got: list[str] = []

    @app.handle("CHANNEL_ANSWER")
    @esl.filtrate("Unique-ID", "wanted")
    async def only_wanted(event: Any) -> None:
        got.append(event.uuid)

    runner = asyncio.ensure_future(app.start())
    await app.wait_ready()
    for uuid in ("other", "wanted", "other2"):
        await freeswitch.fire(freeswitch.make_event("CHANNEL_ANSWER", {"Unique-ID": uuid}))
    await eventually(lambda: app.client.stats().events_received == 3)
    await app.client.drain(5)
    assert got == ["wanted"]
    await app.stop()
    await asyncio.wait_for(runner, 5)
