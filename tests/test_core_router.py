"""Router: the UUID event filter (both cores)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest


def ev(core: Any, **headers: str) -> Any:
    pairs = [(k.replace("_", "-"), v) for k, v in headers.items()]
    return core.Event.build(pairs)


def test_routes_by_unique_id_and_job_uuid(core: Any) -> None:
    seen: dict[str, list[Any]] = {"a": [], "job": [], "default": []}
    router = core.Router(seen["default"].append)
    router.add("A", seen["a"].append)
    router.add("J", seen["job"].append)
    events = [
        ev(core, Event_Name="CHANNEL_STATE", Unique_ID="A"),
        ev(core, Event_Name="CHANNEL_STATE", Unique_ID="B"),
        ev(core, Event_Name="BACKGROUND_JOB", Job_UUID="J", Unique_ID="A"),
        ev(core, Event_Name="HEARTBEAT"),
        ev(core, Event_Name="API", Job_UUID="J"),  # Job-UUID only counts for BACKGROUND_JOB
    ]
    assert router.dispatch(events) == 2
    assert seen["a"] == [events[0]] and seen["job"] == [events[2]]
    assert seen["default"] == [events[1], events[3], events[4]]
    assert (router.matched, router.unmatched) == (2, 3)
    assert len(router) == 2 and "A" in router and "B" not in router
    assert router.get("A") is not None and router.get("B") is None
    assert router.lookup(events[0]) is router.get("A") and router.lookup(events[3]) is None


def test_queue_targets_and_default_setter(core: Any) -> None:
    q: asyncio.Queue[Any] = asyncio.Queue()
    router = core.Router()
    router.add("A", q)
    assert router.get("A") is q
    e = ev(core, Event_Name="DTMF", Unique_ID="A")
    assert router.route(e) is True and q.get_nowait() is e
    other: list[Any] = []
    assert router.default is None
    router.default = other.append
    assert router.route(ev(core, Event_Name="DTMF", Unique_ID="B")) is False and len(other) == 1
    router.default = None
    assert router.route(ev(core, Event_Name="DTMF", Unique_ID="B")) is False and len(other) == 1
    with pytest.raises(TypeError):
        router.add("C", 42)


def test_add_and_discard_while_dispatching(core: Any) -> None:
    router = core.Router()
    got: list[str] = []

    def first(event: Any) -> None:
        got.append("first:" + event.uuid)
        router.discard("A")
        router.add("B", lambda e: got.append("b:" + e.uuid))

    router.add("A", first)
    events = [ev(core, Event_Name="X", Unique_ID=u) for u in ("A", "A", "B", "A")]
    assert router.dispatch(events) == 2
    assert got == ["first:A", "b:B"]
    router.discard("nope")  # no error
    assert len(router) == 1


def test_channel_uuid_rekeys(core: Any) -> None:
    got: list[Any] = []
    router = core.Router()
    router.add("old", got.append)
    rename = ev(core, Event_Name="CHANNEL_UUID", Unique_ID="new", Old_Unique_ID="old")
    assert router.route(rename) is True
    assert "old" not in router and "new" in router and got == [rename]
    assert router.route(ev(core, Event_Name="CHANNEL_STATE", Unique_ID="new")) is True
    assert router.route(ev(core, Event_Name="CHANNEL_STATE", Unique_ID="old")) is False
    # lookup alone also follows the rename
    router.add("x", got.append)
    assert router.lookup(ev(core, Event_Name="CHANNEL_UUID", Unique_ID="y", Old_Unique_ID="x")) is not None
    assert "y" in router and "x" not in router


def test_ten_thousand_routes(core: Any) -> None:
    router = core.Router()
    keys = [str(uuid.uuid4()) for _ in range(10_000)]
    hits: list[Any] = []
    for k in keys:
        router.add(k, hits.append)
    events = [ev(core, Event_Name="CHANNEL_STATE", Unique_ID=keys[i * 97]) for i in range(50)]
    events += [ev(core, Event_Name="CHANNEL_STATE", Unique_ID=str(uuid.uuid4())) for _ in range(50)]
    assert router.dispatch(events) == 50 and len(hits) == 50
    for k in keys[:5000]:
        router.discard(k)
    assert len(router) == 5000


def test_router_accepts_other_core_events() -> None:
    import esl.core

    cores = esl.core.backends()
    for rname, rcore in cores.items():
        for ename, ecore in cores.items():
            got: list[Any] = []
            router = rcore.Router()
            router.add("A", got.append)
            assert router.route(ev(ecore, Event_Name="X", Unique_ID="A")) is True, (rname, ename)
            assert len(got) == 1
