"""Click-to-call from an inbound connection: call two phones and bridge them.

Both legs are placed with ``Channel.create`` (``bgapi originate`` with a UUID
chosen by the client, returning at once); once both answered they are joined with
``uuid_bridge``. A leg that fails raises OriginateError from its wait, with the
cause.

Run it against the fake FreeSWITCH::

    python examples/click_to_call.py
"""

from __future__ import annotations

import asyncio

import esl
from esl.exceptions import OriginateError


async def click_to_call(client: esl.Inbound, agent: str, customer: str) -> esl.Call:
    """Ring ``agent``; when answered ring ``customer``; bridge them. Returns the Call."""
    a = await esl.Channel.create(client, agent, {"ignore_early_media": "true"},
                                 caller_id_name="Click to call", timeout=30)
    await a.wait("CHANNEL_ANSWER", timeout=35)
    try:
        b = await esl.Channel.create(client, customer, caller_id_number="5551000", timeout=30)
        await b.wait("CHANNEL_ANSWER", timeout=35)
    except OriginateError as exc:
        await a.hangup(exc.cause or "NORMAL_CLEARING")
        raise
    await a.bridge(b)
    return a.call


async def demo() -> tuple[int, bool]:
    """Run against a fake FreeSWITCH; returns (legs in the call, peers agree)."""
    from esl.testing import Endpoint, FakeFreeSWITCH

    async with FakeFreeSWITCH() as fake:
        fake.endpoints["user/1000"] = Endpoint(answer_after=0.05)
        fake.endpoints["user/2000"] = Endpoint(answer_after=0.05)
        async with esl.Inbound(fake.host, fake.port, "ClueCon") as client:
            call = await click_to_call(client, "user/1000", "user/2000")
            agent, customer = call.first, call.last
            ok = call.get_peer(agent) is customer and agent.other_uuid == customer.uuid
            await agent.hangup()
            await customer.hangup()
            return len(call), ok


if __name__ == "__main__":
    print(asyncio.run(demo()))
