"""A genesis-style IVR on an outbound socket: a menu answered with ``onDTMF`` handlers.

FreeSWITCH hands the call to this app (dialplan ``socket 127.0.0.1:9000 async full``);
the app answers, plays the menu (the caller may barge in), waits up to 10 s for a
key, plays the chosen prompt and hangs up. Without a key it hangs up with
NO_USER_RESPONSE.

Run it against the fake FreeSWITCH (no real switch needed)::

    python examples/ivr.py          # the simulated caller presses 2
"""

from __future__ import annotations

import asyncio
import sys

import esl
from esl.exceptions import TimeoutError

MENU = "ivr/ivr-welcome_menu.wav"
PROMPTS = {"1": "ivr/sales.wav", "2": "ivr/support.wav"}


async def ivr(session: esl.Session) -> str:
    """The call flow; returns what happened (for the demo and the tests)."""
    channel = session.channel
    choice: list[str] = []

    @channel.onDTMF("1")
    def sales(digit: str) -> None:
        choice.append("sales")

    @channel.onDTMF("2")
    def support(digit: str) -> None:
        choice.append("support")

    @channel.onDTMF()  # any other key
    def invalid(digit: str) -> None:
        choice.append("invalid")

    await channel.answer()
    await channel.playback(MENU, block=False)  # barge-in: keep listening while the menu plays
    if not choice:
        try:
            await channel.wait("DTMF", timeout=10.0)
        except TimeoutError:
            await channel.hangup("NO_USER_RESPONSE")
            return "timeout"
    picked = choice[0]
    await channel.break_media()
    if picked == "invalid":
        await channel.playback("ivr/ivr-that_was_an_invalid_entry.wav")
    else:
        await channel.playback(PROMPTS["1" if picked == "sales" else "2"])
    await channel.hangup()
    return picked


async def demo(press: str | None = "2") -> list[str]:
    """Start a fake FreeSWITCH and this app, place one call into it, press ``press``."""
    from esl.testing import FakeFreeSWITCH

    outcomes: list[str] = []

    async def handler(session: esl.Session) -> None:
        outcomes.append(await ivr(session))

    async with FakeFreeSWITCH() as fake, esl.Outbound(handler, "127.0.0.1", 0) as app:
        fake.dialplan["ivr"] = [("socket", f"127.0.0.1:{app.port} async full")]
        call = await fake.call("ivr", caller_id_number="1000")
        if press is not None:
            while not call.answered:
                await asyncio.sleep(0.005)
            await call.send_dtmf(press)
        await call.wait_hangup(15)
        while app.sessions:
            await asyncio.sleep(0.005)
    return outcomes


if __name__ == "__main__":
    print(asyncio.run(demo(sys.argv[1] if len(sys.argv) > 1 else "2")))
