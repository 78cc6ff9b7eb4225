"""A Voximplant-style voice-AI scenario: call a customer, let an AI listen, act on what it says.

The scenario (:func:`voice_ai_call`) places a call with custom data (JSON, kept on the channel
as the ``esl_data`` variable), handles Connected / Disconnected / Failed with ``channel.on``,
and once the customer answers streams the call's audio (mod_audio_stream) to an "AI service".
The service answers with JSON text (the module's ``mod_audio_stream::json`` event):
``{"intent": "agent"}`` bridges the customer to an agent, ``{"intent": "goodbye"}`` plays a
prompt and hangs up. Any audio the service sends back is played to the customer as it arrives
(``auto_play``). Every way the call ends is reported with its cause, and the call is
terminated as a whole (every leg hung up).

The AI service here is :class:`DtmfBot`, a small ``esl.media`` handler that hears DTMF tones in
the audio (Goertzel on the 16-bit PCM frames): "1" means agent, "2" goodbye. A real service
would run speech recognition on the same frames.

Run it against the fake FreeSWITCH (no switch needed)::

    python examples/voice_ai.py            # the customer presses 1: bridged to an agent
    python examples/voice_ai.py 2          # goodbye

or against a real FreeSWITCH with mod_audio_stream (``loopback/9004`` runs ``echo``, so tones
played to the call come back in its audio)::

    python examples/voice_ai.py 1 --freeswitch 127.0.0.1:8021
"""

from __future__ import annotations

import array
import asyncio
import collections
import json
import math
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import esl
from esl.channel.media import AudioStreamEvent
from esl.exceptions import ChannelError, ESLError
from esl.media import AudioStream, MediaServer, StreamClosed

DATA_VAR = "esl_data"  # the channel variable the custom data travels in
AGENT = "user/1001"
PROMPTS = {
    "goodbye": "ivr/ivr-thank_you_for_calling.wav",
    "no-input": "ivr/ivr-no_user_response.wav",
    "agent-unavailable": "ivr/ivr-all_circuits_busy.wav",
    "stream-error": "ivr/ivr-call_cannot_be_completed_as_dialed.wav",
}
#: the same as tones, for a switch without the sound files
TONE_PROMPTS = {status: "tone_stream://%(400,100,523,659);loops=2" for status in PROMPTS}
ANSWER_GRACE = 10.0  # seconds past the ring timeout before giving up on an answer or a failure

# -- DTMF in the audio -----------------------------------------------------------------------

LOW = (697, 770, 852, 941)
HIGH = (1209, 1336, 1477, 1633)
KEYS = "123A456B789C*0#D"  # KEYS[4 * low + high]


class DtmfDetector:
    """Finds DTMF digits in signed 16-bit little-endian PCM.

    The audio is cut into 25 ms blocks; in each, the Goertzel power of the eight DTMF
    frequencies is measured against the block's energy. A block holds a digit when one low and
    one high frequency carry most of the energy and stand out from the rest of their group. A
    digit is reported once it holds for two blocks in a row, and again only after a block
    without it.
    """

    def __init__(self, rate: int, channels: int = 1) -> None:
        self.rate = rate
        self.channels = channels
        self.block = rate // 40
        self.coeffs = [2 * math.cos(2 * math.pi * f / rate) for f in (*LOW, *HIGH)]
        self.pending: array.array[int] = array.array("h")
        self.last: str | None = None  # what the previous block held
        self.held: str | None = None  # the digit reported and still sounding

    def feed(self, pcm: bytes) -> list[str]:
        """The digits that start in ``pcm`` (a frame; the first channel if interleaved)."""
        samples = array.array("h")
        samples.frombytes(pcm[: len(pcm) & ~1])
        if sys.byteorder != "little":  # pragma: no cover
            samples.byteswap()
        self.pending.extend(samples[:: self.channels] if self.channels > 1 else samples)
        found: list[str] = []
        while len(self.pending) >= self.block:
            block = self.pending[: self.block]
            del self.pending[: self.block]
            digit = self.classify(block)
            if digit is not None and digit == self.last and digit != self.held:
                found.append(digit)
                self.held = digit
            elif digit is None:
                self.held = None
            self.last = digit
        return found

    def classify(self, block: array.array[int]) -> str | None:
        """The digit one block holds, or None."""
        n = len(block)
        energy = sum(float(x) * x for x in block)
        if energy < n * 100.0**2:  # quieter than about -50 dBFS: silence
            return None
        powers = []
        for coeff in self.coeffs:
            s1 = s2 = 0.0
            for x in block:
                s1, s2 = x + coeff * s1 - s2, s1
            powers.append((s1 * s1 + s2 * s2 - coeff * s1 * s2) / (energy * n / 2))
        low, high = powers[:4], powers[4:]
        lo, hi = low.index(max(low)), high.index(max(high))
        pl, ph = low[lo], high[hi]
        if pl < 0.15 or ph < 0.15 or pl + ph < 0.6 or not 0.125 < pl / ph < 8:
            return None  # not a tone pair (speech, another signal) or too much twist
        if any(p > pl / 4 for i, p in enumerate(low) if i != lo) or any(
            p > ph / 4 for i, p in enumerate(high) if i != hi
        ):
            return None
        return KEYS[4 * lo + hi]


def tone(freq: float, ms: int, rate: int, amplitude: int = 6000) -> bytes:
    """``ms`` of a sine as 16-bit little-endian mono PCM (the bot's spoken answer, here a chime)."""
    n = rate * ms // 1000
    samples = array.array("h", (int(amplitude * math.sin(2 * math.pi * freq * k / rate)) for k in range(n)))
    if sys.byteorder != "little":  # pragma: no cover
        samples.byteswap()
    return samples.tobytes()


# -- the "AI service" ------------------------------------------------------------------------


@dataclass
class BotRecord:
    """What the bot saw on one stream."""

    uuid: str | None
    data: Any  # the custom data the scenario put in the stream's metadata
    rate: int
    digits: list[str] = field(default_factory=list)
    intents: list[str] = field(default_factory=list)
    frames: int = 0


class DtmfBot:
    """The AI service of the example: an :class:`esl.media.MediaServer` handler.

    For each stream it listens for DTMF tones and answers with JSON text: ``INTENTS[digit]``
    as ``{"intent": ..., "digit": ..., "customer": ...}`` (``"unknown"`` for other keys).
    With ``speak`` it first sends audio back (a short chime standing in for synthesized
    speech), which FreeSWITCH hands to the scenario as a file to play. ``records`` keeps the
    newest ``history`` streams' records.
    """

    INTENTS: ClassVar[dict[str, str]] = {"1": "agent", "2": "goodbye"}

    def __init__(self, *, speak: bool = True, history: int = 1000) -> None:
        self.speak = speak
        self.records: collections.deque[BotRecord] = collections.deque(maxlen=history)

    def record_for(self, uuid: str) -> BotRecord | None:
        """The newest record of the call ``uuid``."""
        return next((r for r in reversed(self.records) if r.uuid == uuid), None)

    async def __call__(self, stream: AudioStream) -> None:
        record = BotRecord(stream.uuid, stream.data, stream.rate)
        self.records.append(record)
        detector = DtmfDetector(stream.rate, stream.channels)
        customer = stream.data.get("customer") if isinstance(stream.data, dict) else None
        try:
            async for frame in stream:
                record.frames += 1
                for digit in detector.feed(frame):
                    record.digits.append(digit)
                    intent = self.INTENTS.get(digit, "unknown")
                    record.intents.append(intent)
                    if self.speak and intent != "unknown":
                        await stream.send_audio(tone(880, 300, stream.rate), stream.rate)
                    await stream.send_json({"intent": intent, "digit": digit, "customer": customer})
        except StreamClosed:
            pass  # the call stopped streaming while we answered


# -- the scenario ----------------------------------------------------------------------------


@dataclass
class Report:
    """How one call went.

    ``status``: ``agent`` (bridged to an agent), ``goodbye``, ``no-input`` (the AI heard
    nothing useful in time), ``agent-unavailable``, ``stream-error``, ``failed`` (never
    answered), ``disconnected`` (the customer hung up first). ``cause``: the customer leg's
    hangup or failure cause. ``data``: the custom data as read back from the channel.
    ``steps``: what happened, in order.
    """

    destination: str
    uuid: str = ""
    status: str = "pending"
    cause: str | None = None
    intent: str | None = None
    data: Any = None
    agent_uuid: str | None = None
    agent_cause: str | None = None
    steps: list[str] = field(default_factory=list)


def encode_data(data: Any) -> str:
    """``data`` as compact JSON for a channel variable; ``$`` written ``\\u0024`` (still the same
    JSON) because FreeSWITCH would expand ``${...}`` in an originate value."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).replace("$", "\\u0024")


async def terminate(call: esl.Call, cause: str = "NORMAL_CLEARING") -> None:
    """Voximplant's ``terminate``: hang up every leg of the call still up."""
    hangup = getattr(call, "hangup", None)  # Call.hangup() (branch verbs), once merged
    if hangup is not None:
        await hangup(cause)
        return
    for leg in call:
        await leg.hangup(cause)


async def voice_ai_call(
    conn: esl.Inbound,
    destination: str,
    data: Any,
    ai_url: str,
    *,
    agent: str = AGENT,
    ring_timeout: float = 30.0,
    listen_timeout: float = 20.0,
    talk_timeout: float | None = None,
    rate: int = 8000,
    prompts: Mapping[str, str] = PROMPTS,
) -> Report:
    """Call ``destination`` with ``data``, stream it to the AI at ``ai_url``, act on its answer.

    ``listen_timeout``: how long the AI may take to answer after the call is connected
    (then the customer hears a prompt and is hung up with NO_USER_RESPONSE).
    A stream that fails or that the AI closes before answering ends the call
    (``stream-error``). ``talk_timeout``: the longest customer-agent talk (None: until one
    hangs up).
    ``prompts``: what the customer hears before the call ends, by report status.
    """
    report = Report(destination)
    inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()  # hooks -> the flow below
    channel = await esl.Channel.create(conn, destination, {DATA_VAR: encode_data(data)}, timeout=ring_timeout)
    report.uuid = channel.uuid

    def post(kind: str) -> Callable[[Any, Any], None]:
        return lambda leg, info: inbox.put_nowait((kind, info))

    # Voximplant's CallEvents.Connected / Disconnected / Failed, and the AI's answers
    channel.on("answered", post("connected"))
    channel.on("hangup", post("disconnected"))
    channel.on("failed", post("failed"))
    channel.on_audio_stream("json", post("ai"))
    channel.on_audio_stream("error", post("stream-error"))
    channel.on_audio_stream("disconnect", post("stream-error"))  # the AI closed the websocket
    channel.on_audio_stream("play", post("ai-audio"))  # auto_play plays it; noted in the report
    if channel.answered:  # answered before the hooks were in place
        inbox.put_nowait(("connected", None))

    loop = asyncio.get_running_loop()
    deadline: float | None = loop.time() + ring_timeout + ANSWER_GRACE
    phase = "dialing"
    agent_leg: esl.Channel | None = None
    streaming = False

    async def finish(status: str, cause: str = "NORMAL_CLEARING") -> None:
        """Say the status's prompt (if any), then end the whole call."""
        nonlocal phase, deadline
        if report.status == "pending":
            report.status = status
        phase, deadline = "ending", loop.time() + ANSWER_GRACE
        prompt = prompts.get(status)
        if prompt is not None and not channel.gone:
            try:
                await channel.playback(prompt)
            except ESLError as exc:  # the customer left meanwhile: still terminate
                report.steps.append(f"prompt not played: {exc}")
        await stop_stream(status)
        await terminate(channel.call, cause)

    async def stop_stream(reason: str) -> None:
        nonlocal streaming
        if streaming and not channel.gone:
            streaming = False
            try:
                await channel.stop_audio_stream(reason)  # the AI gets the reason as a last message
            except ChannelError as exc:  # already detached (an error, the call gone)
                report.steps.append(f"stream stop: {exc}")

    try:
        while True:
            try:
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                kind, info = await asyncio.wait_for(inbox.get(), timeout)
            except asyncio.TimeoutError:
                kind, info = "timeout", phase
            report.steps.append(kind)

            if kind == "failed":  # never answered: nothing to clean up
                report.status, report.cause = "failed", str(info)
                return report
            if kind == "disconnected":
                report.cause = str(info)
                if report.status == "pending":
                    report.status = "disconnected"
                break
            if kind == "connected" and phase == "dialing":
                phase, deadline = "listening", loop.time() + listen_timeout
                raw = channel.get(DATA_VAR)
                try:
                    report.data = json.loads(raw) if raw else None
                except ValueError:
                    report.data = raw
                try:
                    await channel.start_audio_stream(ai_url, "mono", rate, metadata=data, auto_play=True,
                                                     connect_timeout=5.0)
                    streaming = True
                except ESLError as exc:
                    report.steps.append(f"stream: {exc}")
                    await finish("stream-error", "NORMAL_TEMPORARY_FAILURE")
            elif kind == "stream-error" and phase == "listening":
                ev: AudioStreamEvent = info
                streaming = ev.kind == "disconnect"  # an error detaches the stream, a close does not
                report.steps.append(f"stream {ev.kind} {ev.code}: {ev.reason}")
                await finish("stream-error", "NORMAL_TEMPORARY_FAILURE")
            elif kind == "ai" and phase == "listening":
                answer: AudioStreamEvent = info
                intent = answer.data.get("intent") if isinstance(answer.data, dict) else None
                if intent == "agent":
                    report.intent = intent
                    phase, deadline = "calling-agent", loop.time() + ring_timeout + ANSWER_GRACE
                    await stop_stream("transferring to an agent")
                    agent_leg = await esl.Channel.create(conn, agent, {DATA_VAR: encode_data(data)},
                                                         timeout=ring_timeout)
                    report.agent_uuid = agent_leg.uuid
                    channel.call.add(agent_leg)  # one call: terminate() ends both legs
                    agent_leg.on("answered", post("agent-connected"))
                    agent_leg.on("failed", post("agent-failed"))
                    agent_leg.on("hangup", post("agent-disconnected"))
                    if agent_leg.answered:
                        inbox.put_nowait(("agent-connected", None))
                elif intent == "goodbye":
                    report.intent = intent
                    await finish("goodbye")
                else:  # not understood: keep listening
                    await channel.send_audio_stream_text({"prompt": "say again"})
            elif kind == "agent-connected" and phase == "calling-agent" and agent_leg is not None:
                try:
                    await channel.bridge(agent_leg)
                except ESLError as exc:  # a leg left meanwhile: its hangup event follows
                    report.steps.append(f"bridge: {exc}")
                    if not channel.gone:
                        await finish("agent-unavailable", "NORMAL_TEMPORARY_FAILURE")
                    continue
                report.status = "agent"
                phase = "talking"
                deadline = None if talk_timeout is None else loop.time() + talk_timeout
            elif kind == "agent-failed":
                report.agent_cause = str(info)
                await finish("agent-unavailable", "NORMAL_TEMPORARY_FAILURE")
            elif kind == "agent-disconnected":
                report.agent_cause = str(info)
                await terminate(channel.call)  # the agent ended the talk
                phase, deadline = "ending", loop.time() + ANSWER_GRACE
            elif kind == "timeout":
                if info == "listening":
                    await finish("no-input", "NO_USER_RESPONSE")
                elif info == "talking":
                    await finish("agent", "ALLOTTED_TIMEOUT")
                elif info == "ending":  # the hangup never came back
                    report.steps.append("no hangup event")
                    break
                else:  # no answer and no failure in time
                    await finish("failed", "NO_ANSWER")
    finally:
        # whatever happened (an error, a cancel): no stream and no leg is left behind
        await stop_stream("call ended")
        if not channel.call.done:
            await terminate(channel.call)
        if agent_leg is not None and report.agent_cause is None and agent_leg.gone:
            report.agent_cause = str(agent_leg.hangup_cause)
    return report


# -- the demo --------------------------------------------------------------------------------


async def press_when_streaming(
    media: MediaServer, bot: DtmfBot, press: Callable[[str], Awaitable[None]], timeout: float = 10.0
) -> str:
    """Wait until a call streams to the bot and it heard some audio, then ``press(uuid)``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        for uuid in list(media.streams):
            record = bot.record_for(uuid)
            if record is not None and record.frames > 2:
                await press(uuid)
                return uuid
        await asyncio.sleep(0.01)
    raise TimeoutError("no call streamed to the bot")


async def demo(
    press: str | None = "1",
    *,
    fail: str | None = None,
    agent_fail: str | None = None,
    listen_timeout: float = 10.0,
) -> tuple[Report, BotRecord | None]:
    """Run the scenario against a fake FreeSWITCH and the bot: the customer (``user/1000``)
    presses ``press`` as in-band DTMF; ``fail`` makes the customer's phone reject the call
    with that cause, ``agent_fail`` the agent's. Returns the report and the bot's record."""
    from esl.testing import Endpoint, FakeFreeSWITCH
    from esl.testing.audio_stream import streams_of

    bot = DtmfBot()
    data = {"customer": "Ann", "order": 4711, "note": "pays in ${currency}"}
    async with FakeFreeSWITCH() as fake, MediaServer(bot) as media:
        fake.endpoints["user/1000"] = Endpoint(answer_after=0.05, fail=fail)
        fake.endpoints[AGENT] = Endpoint(answer_after=0.05, fail=agent_fail)
        streams_of(fake).inband_dtmf = True  # the phone sends its keys as tones in the audio

        async def customer_presses(uuid: str) -> None:
            assert press is not None
            await fake.channels[uuid].send_dtmf(press, duration=200)

        async def agent_hangs_up() -> None:
            """The agent talks a moment once bridged, then hangs up (done here: the fake's
            Endpoint(hangup_after=) timer does not survive a uuid_bridge)."""
            while True:
                bridged = [ch for ch in fake.channels.values() if ch.other_leg is not None and not ch.down]
                agent = next((ch for ch in bridged if ch.name.startswith("sofia/internal/1001@")), None)
                if agent is not None:
                    await asyncio.sleep(0.2)
                    agent.hangup("NORMAL_CLEARING")
                    return
                await asyncio.sleep(0.01)

        async with esl.Inbound(fake.host, fake.port, "ClueCon") as conn:
            flow = asyncio.ensure_future(
                voice_ai_call(conn, "user/1000", data, media.url, listen_timeout=listen_timeout)
            )
            if press is not None and fail is None:
                waiting = asyncio.ensure_future(press_when_streaming(media, bot, customer_presses))
                await asyncio.wait([flow, waiting], return_when=asyncio.FIRST_COMPLETED)
                waiting.cancel()
                error = waiting.exception() if waiting.done() and not waiting.cancelled() else None
                if error is not None:  # never streamed: the flow cleans up, then the error is raised
                    flow.cancel()
                    await asyncio.gather(flow, return_exceptions=True)
                    raise error
            agent = asyncio.ensure_future(agent_hangs_up())
            try:
                report = await flow
            finally:
                agent.cancel()
    return report, bot.record_for(report.uuid)


async def real_switch(address: str, press: str) -> tuple[Report, BotRecord | None]:
    """The same against a real FreeSWITCH with mod_audio_stream (must run on this machine: the
    module connects back to 127.0.0.1). The customer and the agent are ``loopback/9004`` (echo):
    the key is played into the call as its DTMF tone pair, and the echo puts it in the audio."""
    low, high = LOW[KEYS.index(press) // 4], HIGH[KEYS.index(press) % 4]
    host, _, port = address.partition(":")
    bot = DtmfBot()
    data = {"customer": "Ann", "order": 4711}
    async with MediaServer(bot) as media, esl.Inbound(host, int(port or 8021), "ClueCon") as conn:

        async def customer_presses(uuid: str) -> None:
            await conn.api(f"uuid_broadcast {uuid} tone_stream://%(300,100,{low},{high}) aleg")

        flow = asyncio.ensure_future(
            voice_ai_call(conn, "loopback/9004/default", data, media.url, agent="loopback/9004/default",
                          talk_timeout=2.0, prompts=TONE_PROMPTS)
        )
        waiting = asyncio.ensure_future(press_when_streaming(media, bot, customer_presses))
        await asyncio.wait([flow, waiting], return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        report = await flow
    return report, bot.record_for(report.uuid)


if __name__ == "__main__":
    args = sys.argv[1:]
    key = args[0] if args and not args[0].startswith("-") else "1"
    if "--freeswitch" in args:
        print(asyncio.run(real_switch(args[args.index("--freeswitch") + 1], key)))
    else:
        print(asyncio.run(demo(key)))
