"""Forward an outbound-socket call to another phone: the session places a new leg and bridges.

The call FreeSWITCH hands over (``session.channel``) is forwarded with
``Channel.create(session, ...)`` (the originate runs on the session's own socket)
and ``channel.bridge(other)``. If the forward target fails, the caller hears why
and is hung up with the same cause.

Run it against the fake FreeSWITCH::

    python examples/forward.py
"""

from __future__ import annotations

import asyncio

import esl
from esl.exceptions import ChannelError, OriginateError

TARGET = "user/1001"


async def forward(session: esl.Session, target: str = TARGET) -> str:
    """Bridge the caller to ``target``; returns "bridged" or the failure cause."""
    caller = session.channel
    await caller.answer()
    await caller.playback("ivr/ivr-please_hold_while_we_connect.wav", block=False)
    context = caller.context  # the CHANNEL_DATA of the session's connect
    number = context.get("Caller-Caller-ID-Number") if context is not None else None
    other = await esl.Channel.create(session, target, timeout=20, caller_id_number=number)
    try:
        await other.wait("CHANNEL_ANSWER", timeout=25)
    except OriginateError as exc:
        await caller.hangup(exc.cause or "NORMAL_TEMPORARY_FAILURE")
        return str(exc.cause)
    await caller.bridge(other)
    try:  # stay until one side hangs up
        await caller.wait(esl.ChannelState.HANGUP, timeout=None)
    except ChannelError:
        pass
    await other.hangup()
    return "bridged"


async def demo(target: str = TARGET) -> list[str]:
    """Run against a fake FreeSWITCH: one call in, forwarded; the callee hangs up first."""
    from esl.testing import Endpoint, FakeFreeSWITCH

    outcomes: list[str] = []

    async def handler(session: esl.Session) -> None:
        outcomes.append(await forward(session, target))

    async with FakeFreeSWITCH() as fake, esl.Outbound(handler, "127.0.0.1", 0) as app:
        fake.endpoints["user/1001"] = Endpoint(answer_after=0.05)
        fake.dialplan["support"] = [("socket", f"127.0.0.1:{app.port} async full")]
        call = await fake.call("support", caller_id_number="1000")
        if target == TARGET:
            while not any(ch.uuid != call.uuid and ch.answered for ch in fake.channels.values()):
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.05)
            await call.hangup("NORMAL_CLEARING")
        await call.wait_hangup(10)
        while app.sessions:
            await asyncio.sleep(0.005)
    return outcomes


if __name__ == "__main__":
    print(asyncio.run(demo()))
