"""pytest plugin (entry point ``esl``): the ``freeswitch`` and ``esl_client`` fixtures.

``freeswitch`` is a started :class:`~esl.testing.FakeFreeSWITCH` on an ephemeral
loopback port, stopped after the test. ``esl_client`` is an authenticated
``esl.Inbound`` connected to it (imported lazily, so the plugin loads even
where the client is not available).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

try:
    import pytest_asyncio

    _fixture = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - without pytest-asyncio the async fixtures cannot run
    _fixture = pytest.fixture  # type: ignore[assignment]

from esl.testing.server import FakeFreeSWITCH


@_fixture
async def freeswitch() -> AsyncIterator[FakeFreeSWITCH]:
    """A running FakeFreeSWITCH (password ``ClueCon``), stopped after the test."""
    fake = FakeFreeSWITCH()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@_fixture
async def esl_client(freeswitch: FakeFreeSWITCH) -> AsyncIterator[Any]:
    """An authenticated ``esl.Inbound`` connected to the ``freeswitch`` fixture."""
    try:
        from esl.inbound import Inbound
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"esl.Inbound is not available: {exc}")
    client = Inbound(freeswitch.host, freeswitch.port, freeswitch.password)
    async with client:
        yield client
