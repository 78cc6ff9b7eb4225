"""esl.Job: the future of one bgapi call, on its own (the wire side is in test_inbound.py)."""

from __future__ import annotations

import asyncio

import pytest

from esl import Job
from esl.core import Event
from esl.exceptions import CommandError, ConnectionError, TimeoutError


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
