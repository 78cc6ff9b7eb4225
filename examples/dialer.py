"""An outbound dialer with Voximplant-style lifecycle hooks: answered, failed, hangup.

Each number is called with ``Channel.create`` on one inbound connection; what
happens next is written as hooks on the channel, so the flow reads like
``call.addEventListener(CallEvents.Connected, ...)``: when answered, play a
message and hang up; when failed, record the cause.

Run it against the fake FreeSWITCH::

    python examples/dialer.py
"""

from __future__ import annotations

import asyncio

import esl

MESSAGE = "ivr/ivr-this_is_a_reminder.wav"


async def dial(client: esl.Inbound, numbers: list[str], *, ring_timeout: float = 20) -> dict[str, str]:
    """Call every number at once; returns {number: "delivered" | "<cause>"}."""
    results: dict[str, str] = {}
    done: list[asyncio.Future[None]] = []
    loop = asyncio.get_running_loop()

    for number in numbers:
        finished: asyncio.Future[None] = loop.create_future()
        done.append(finished)
        channel = await esl.Channel.create(client, number, {"dialer_campaign": "reminders"},
                                           caller_id_number="5550100", timeout=ring_timeout)

        async def answered(ch: esl.Channel, event: esl.Event, number: str = number) -> None:
            await ch.playback(MESSAGE)
            results[number] = "delivered"
            await ch.hangup()

        def failed(ch: esl.Channel, cause: object, number: str = number) -> None:
            results[number] = str(cause)

        def hangup(ch: esl.Channel, cause: object, finished: asyncio.Future[None] = finished) -> None:
            if not finished.done():
                finished.set_result(None)

        channel.on("answered", answered)
        channel.on("failed", failed)
        channel.on("failed", hangup)
        channel.on("hangup", hangup)

    await asyncio.wait_for(asyncio.gather(*done), ring_timeout + 30)
    return results


async def demo() -> dict[str, str]:
    """Three numbers against a fake FreeSWITCH: one answers, one is busy, one never answers."""
    from esl.testing import Endpoint, FakeFreeSWITCH

    async with FakeFreeSWITCH() as fake:
        fake.endpoints["user/1000"] = Endpoint(answer_after=0.05)
        fake.endpoints["user/1001"] = Endpoint(fail="USER_BUSY")
        fake.endpoints["user/1002"] = Endpoint(answer_after=None, ring_timeout=0.2)
        async with esl.Inbound(fake.host, fake.port, "ClueCon") as client:
            return await dial(client, ["user/1000", "user/1001", "user/1002"])


if __name__ == "__main__":
    print(asyncio.run(demo()))
