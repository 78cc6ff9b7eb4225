"""esl.Job: the future of one bgapi call, on its own (the wire side is in test_inbound.py)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from esl import Job
from esl.core import Event
from esl.exceptions import CommandError, ConnectionError, TimeoutError

if TYPE_CHECKING:
    from esl.inbound import Inbound
    from esl.testing import FakeFreeSWITCH


def bg_event(job_uuid: str, body: str) -> Event:
    return Event.build(
        [("Event-Name", "BACKGROUND_JOB"), ("Job-UUID", job_uuid), ("Job-Command", "status")], body=body
    )


async def test_pending_state() -> None:
    job = Job("j1", "status")
    assert not job.done()
    assert job.result is None
    assert job.success is False
    assert job.exception() is None
    assert "pending" in repr(job)


async def test_result_ok() -> None:
    job = Job("j1", "status")
    seen: list[Job] = []
    job.add_done_callback(seen.append)
    job._resolve(bg_event("j1", "+OK fine\n"))
    assert job.done() and job.success
    assert job.result == "+OK fine\n"
    assert job.event["Job-UUID"] == "j1"
    assert await job == "+OK fine\n"
    assert await job.wait(0.1) == "+OK fine\n"
    await asyncio.sleep(0)
    assert seen == [job]
    assert "ok" in repr(job)


async def test_result_error_raises_command_error() -> None:
    job = Job("j2", "originate user/1 &park")
    job._resolve(bg_event("j2", "-ERR NO_ANSWER\n"))
    assert job.done() and not job.success
    with pytest.raises(CommandError) as info:
        await job
    assert "NO_ANSWER" in info.value.reply
    assert isinstance(job.exception(), CommandError)


async def test_wait_timeout_does_not_cancel() -> None:
    job = Job("j3", "status", timeout=0.01)
    with pytest.raises(TimeoutError):
        await job
    with pytest.raises(asyncio.TimeoutError):  # esl's TimeoutError is an asyncio.TimeoutError
        await job.wait(0.01)
    job._resolve(bg_event("j3", "+OK\n"))
    assert await job.wait(0.01) == "+OK\n"


async def test_failure_connection_error() -> None:
    job = Job("j4", "status")
    job._fail(ConnectionError("gone", "socket closed"))
    assert job.done()
    with pytest.raises(ConnectionError):
        await job
    assert "failed" in repr(job)


async def test_second_resolution_ignored() -> None:
    job = Job("j5", "status")
    job._resolve(bg_event("j5", "+OK one\n"))
    job._resolve(bg_event("j5", "+OK two\n"))
    job._fail(ConnectionError("late"))
    assert await job == "+OK one\n"


async def test_async_result_surface() -> None:
    """switchio's AsyncResult names: ready(), successful(), await get(timeout)."""
    job = Job("j2", "status")
    assert not job.ready() and not job.successful()
    with pytest.raises(TimeoutError):
        await job.get(0.01)
    assert not job.ready()  # timing out does not cancel
    job._resolve(bg_event("j2", "+OK fine\n"))
    assert job.ready() and job.successful()
    assert await job.get() == "+OK fine\n"
    failed = Job("j3", "originate user/1 &park")
    failed._resolve(bg_event("j3", "-ERR USER_BUSY\n"))
    assert failed.ready() and not failed.successful()
    with pytest.raises(CommandError):
        await failed.get(1)
    assert failed.session_uuid is None


async def test_session_uuid_of_an_originate() -> None:
    job = Job("j4", "originate {origination_uuid=abc}user/1000 &park()")
    assert job.session_uuid is None
    job._resolve(bg_event("j4", "+OK 9a3c1f7e-0000-4000-8000-000000000001\n"))
    assert job.session_uuid == "9a3c1f7e-0000-4000-8000-000000000001"
    other = Job("j5", "status")
    other._resolve(bg_event("j5", "+OK up\n"))
    assert other.session_uuid is None  # only an originate result names a session
    assert job.channel is None  # set by Channel.create only


async def test_job_links_to_the_channel_it_created(freeswitch: "FakeFreeSWITCH", esl_client: "Inbound") -> None:
    from esl.channel import Channel

    from esl.exceptions import OriginateError
    from esl.testing import Endpoint

    freeswitch.endpoints["user/slow"] = Endpoint(answer_after=0.3)
    freeswitch.endpoints["user/busy"] = Endpoint(answer_after=0.1, fail="USER_BUSY")
    ch = await Channel.create(esl_client, "user/slow", return_ring_ready=True)
    assert ch.job is not None and ch.job.channel is ch
    assert await ch.job.get(5) == f"+OK {ch.uuid}\n"  # back once it rings...
    assert ch.job.session_uuid == ch.uuid and ch.job.successful()
    assert not ch.answered
    await ch.wait("CHANNEL_ANSWER", timeout=5)  # ...and answered later
    sent = [c for conn in freeswitch.connections for c in conn.commands if c.startswith("bgapi originate")]
    assert "return_ring_ready=true" in sent[0]
    await ch.hangup()
    busy = await Channel.create(esl_client, "user/busy", return_ring_ready=True)
    assert busy.job is not None and (await busy.job.get(5)).startswith("+OK")
    with pytest.raises(OriginateError) as err:  # a failure after the ringing still reaches the channel
        await busy.wait("CHANNEL_ANSWER", timeout=5)
    assert err.value.cause == "USER_BUSY"
