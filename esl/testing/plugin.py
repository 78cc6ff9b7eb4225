"""pytest plugin (entry point ``esl``, loaded by pytest wherever esl is installed): the
``freeswitch`` and ``esl_client`` fixtures.

``freeswitch`` is a started :class:`~esl.testing.FakeFreeSWITCH` on an ephemeral loopback
port, stopped after the test. ``esl_client`` is an authenticated ``esl.Inbound`` connected to
it. Both are pytest-asyncio fixtures on the test's own event loop, so they work in
pytest-asyncio's default strict mode with no configuration; the one line a test needs there
is ``@pytest.mark.asyncio`` (or ``pytestmark = pytest.mark.asyncio`` once per module, or
``asyncio_mode = "auto"`` in the project's pytest configuration)::

    import pytest
    import esl

    @pytest.mark.asyncio
    async def test_status(esl_client: esl.Inbound) -> None:
        assert (await esl_client.api("status")).startswith("UP")

See :mod:`esl.testing.helpers` to place calls into an Outbound app.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from esl.testing.server import FakeFreeSWITCH

if TYPE_CHECKING:  # pragma: no cover
    from esl.inbound import Inbound

__all__ = ["esl_client", "freeswitch"]

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - exercised only where pytest-asyncio is absent
    pytest_asyncio = None  # type: ignore[assignment]


def _missing(*args: Any, **kwargs: Any) -> Any:  # pragma: no cover
    pytest.fail("the esl fixtures are async and need pytest-asyncio: pip install pytest-asyncio "
                "(or pip install 'esl[testing]')", pytrace=False)


if pytest_asyncio is not None:

    @pytest_asyncio.fixture(loop_scope="function")
    async def freeswitch() -> AsyncIterator[FakeFreeSWITCH]:
        """A running FakeFreeSWITCH on 127.0.0.1 (password ``ClueCon``), stopped after the test."""
        fake = FakeFreeSWITCH()
        await fake.start()
        try:
            yield fake
        finally:
            await fake.stop()

    @pytest_asyncio.fixture(loop_scope="function")
    async def esl_client(freeswitch: FakeFreeSWITCH) -> AsyncIterator[Inbound]:
        """An authenticated ``esl.Inbound`` connected to the ``freeswitch`` fixture, closed after the test."""
        from esl.inbound import Inbound

        client = Inbound(freeswitch.host, freeswitch.port, freeswitch.password)
        async with client:
            yield client

else:  # pragma: no cover
    freeswitch = pytest.fixture(_missing, name="freeswitch")
    esl_client = pytest.fixture(_missing, name="esl_client")
