"""A switchio-style outbound campaign with answering-machine detection (mod_avmd).

Numbers are dialled at a steady rate (``rate`` calls per second, at most
``max_active`` at once) with ``Channel.create`` on one inbound connection.
When a call is answered, avmd listens for the beep of a voicemail greeting:

* beep heard within ``listen`` seconds: a machine — leave the message after
  the beep and hang up;
* no beep: a human — call an agent and bridge the two; ``Call.hangup()``
  ends both legs when the talk time is over;
* not answered: the hangup cause (USER_BUSY, NO_ANSWER...).

Run it against the fake FreeSWITCH (its endpoints play machines and humans)::

    python examples/amd_dialer.py

Against a real switch, mod_avmd must be loaded (``module_exists mod_avmd``)
and the numbers reachable from the connection's default profile.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field

import esl
from esl.exceptions import ChannelError, OriginateError, TimeoutError

MESSAGE = "ivr/ivr-this_is_a_reminder.wav"


@dataclass
class Campaign:
    """What to dial and how; ``run`` fills ``outcomes`` (number -> outcome)."""

    numbers: list[str]
    agent: str = "user/agent"
    rate: float = 20.0  # calls placed per second
    max_active: int = 50
    listen: float = 3.0  # seconds avmd listens for a beep after answer
    talk: float = 0.2  # seconds an agent talks with a human
    ring_timeout: float = 20.0
    outcomes: dict[str, str] = field(default_factory=dict)

    async def run(self, client: esl.Inbound) -> dict[str, str]:
        """Dial every number at ``rate``; returns the outcomes once every call has ended."""
        active = asyncio.Semaphore(self.max_active)
        calls: list[asyncio.Task[None]] = []
        for number in self.numbers:
            await active.acquire()
            calls.append(asyncio.create_task(self._call(client, number, active)))
            await asyncio.sleep(1 / self.rate)
        await asyncio.gather(*calls)
        return self.outcomes

    async def _call(self, client: esl.Inbound, number: str, active: asyncio.Semaphore) -> None:
        try:
            self.outcomes[number] = await self._dial(client, number)
        except (ChannelError, TimeoutError, esl.exceptions.ConnectionError) as exc:
            self.outcomes[number] = f"error: {exc}"
        finally:
            active.release()

    async def _dial(self, client: esl.Inbound, number: str) -> str:
        channel = await esl.Channel.create(client, number, {"campaign": "reminders"},
                                           caller_id_number="5550100", timeout=self.ring_timeout)
        try:
            await channel.wait("CHANNEL_ANSWER", timeout=self.ring_timeout + 5)
        except OriginateError as exc:
            return str(exc.cause)  # USER_BUSY, NO_ANSWER, ...
        beeps: list[esl.Event] = []
        channel.on("avmd::beep", beeps.append)  # the hook sees the beep's Frequency, Detection-time...
        await channel.avmd_start()
        try:
            await channel.wait("avmd::beep", timeout=self.listen)
        except TimeoutError:
            await channel.avmd_stop()
            return await self._to_agent(client, channel)
        await channel.avmd_stop()
        await channel.playback(MESSAGE)  # the greeting is over: leave the message
        await channel.hangup()
        return "machine"

    async def _to_agent(self, client: esl.Inbound, customer: esl.Channel) -> str:
        agent = await esl.Channel.create(client, self.agent, caller_id_number="5550100", timeout=10)
        try:
            await agent.wait("CHANNEL_ANSWER", timeout=15)
        except OriginateError as exc:
            await customer.hangup("NORMAL_TEMPORARY_FAILURE")
            return f"human, no agent ({exc.cause})"
        await customer.bridge(agent)
        await asyncio.sleep(self.talk)  # the conversation
        await customer.call.hangup()  # every leg of the call at once
        return "human"


async def demo(n: int = 12) -> dict[str, str]:
    """A campaign of ``n`` numbers against a fake switch: machines, humans, busy and unanswered lines."""
    from esl.testing import Endpoint, FakeFreeSWITCH

    async with FakeFreeSWITCH() as fake:
        numbers = [f"user/{2000 + i}" for i in range(n)]
        for i, number in enumerate(numbers):
            kind = i % 4
            if kind == 0:
                fake.endpoints[number] = Endpoint(answer_after=0.01, beep_after=0.05)  # voicemail
            elif kind == 1:
                fake.endpoints[number] = Endpoint(answer_after=0.01)  # a person
            elif kind == 2:
                fake.endpoints[number] = Endpoint(answer_after=0.01, fail="USER_BUSY")
            else:
                fake.endpoints[number] = Endpoint(answer_after=None, ring_timeout=0.05)  # never answers
        fake.endpoints["user/agent"] = Endpoint(answer_after=0.01)
        async with esl.Inbound(fake.host, fake.port) as client:
            campaign = Campaign(numbers, listen=0.3, ring_timeout=5)
            return await campaign.run(client)


if __name__ == "__main__":
    outcomes = asyncio.run(demo())
    for number, outcome in outcomes.items():
        print(f"{number:12} {outcome}")
    print(dict(collections.Counter(outcomes.values())))
