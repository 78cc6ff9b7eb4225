"""examples/voice_ai.py end to end against the fake FreeSWITCH and a real esl.media server:
both intents, a failed call, an unavailable agent, no answer from the AI, and the bot's DTMF
detector on its own."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "voice_ai.py"
DATA = {"customer": "Ann", "order": 4711, "note": "pays in ${currency}"}


@pytest.fixture(scope="module")
def voice_ai() -> ModuleType:
    spec = importlib.util.spec_from_file_location("esl_example_voice_ai", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_intent_agent_bridges_then_terminates(voice_ai: ModuleType) -> None:
    report, bot = await voice_ai.demo("1")
    assert report.status == "agent" and report.intent == "agent"
    assert report.data == DATA  # the custom data reached the channel as a variable, literally
    assert report.steps[:3] == ["connected", "ai-audio", "ai"]
    assert report.steps[-3:] == ["agent-connected", "agent-disconnected", "disconnected"]
    assert report.agent_uuid and report.agent_cause == "NORMAL_CLEARING"  # the agent hung up
    assert report.cause == "NORMAL_CLEARING"  # then the customer leg was terminated
    assert bot is not None and bot.data == DATA and bot.rate == 8000  # the data reached the AI too
    assert bot.digits == ["1"] and bot.intents == ["agent"]


async def test_intent_goodbye_plays_and_hangs_up(voice_ai: ModuleType) -> None:
    report, bot = await voice_ai.demo("2")
    assert (report.status, report.intent, report.cause) == ("goodbye", "goodbye", "NORMAL_CLEARING")
    assert report.steps == ["connected", "ai-audio", "ai", "disconnected"]
    assert report.agent_uuid is None
    assert bot is not None and bot.digits == ["2"] and bot.intents == ["goodbye"]


async def test_failed_call(voice_ai: ModuleType) -> None:
    report, bot = await voice_ai.demo(fail="USER_BUSY")
    assert (report.status, report.cause, report.steps) == ("failed", "USER_BUSY", ["failed"])
    assert bot is None  # nothing was streamed


async def test_agent_unavailable(voice_ai: ModuleType) -> None:
    report, _ = await voice_ai.demo("1", agent_fail="CALL_REJECTED")
    assert (report.status, report.agent_cause) == ("agent-unavailable", "CALL_REJECTED")
    assert report.cause == "NORMAL_TEMPORARY_FAILURE" and report.steps[-1] == "disconnected"


async def test_no_answer_from_the_ai(voice_ai: ModuleType) -> None:
    report, bot = await voice_ai.demo("9", listen_timeout=0.5)  # a key the bot has no intent for
    assert (report.status, report.cause, report.intent) == ("no-input", "NO_USER_RESPONSE", None)
    assert report.steps == ["connected", "ai", "timeout", "disconnected"]
    assert bot is not None and bot.intents == ["unknown"]


def _pcm(rate: int, ms: int, *freqs: float, amplitude: int = 5000) -> bytes:
    import array

    n = rate * ms // 1000
    return array.array("h", (int(sum(amplitude * math.sin(2 * math.pi * f * k / rate) for f in freqs))
                             for k in range(n))).tobytes()


@pytest.mark.parametrize("rate", [8000, 16000])
def test_detector_finds_every_key_once(voice_ai: ModuleType, rate: int) -> None:
    for key in voice_ai.KEYS:
        low = voice_ai.LOW[voice_ai.KEYS.index(key) // 4]
        high = voice_ai.HIGH[voice_ai.KEYS.index(key) % 4]
        det = voice_ai.DtmfDetector(rate)
        audio = _pcm(rate, 100, low, high) + _pcm(rate, 60) + _pcm(rate, 100, low, high)
        frame = rate // 50 * 2
        found = [d for i in range(0, len(audio), frame) for d in det.feed(audio[i : i + frame])]
        assert found == [key, key], key  # once per press, again after the pause


def test_detector_ignores_other_sounds(voice_ai: ModuleType) -> None:
    det = voice_ai.DtmfDetector(8000)
    assert det.feed(_pcm(8000, 500, 440)) == []  # the fake's call audio
    assert det.feed(_pcm(8000, 500, 697)) == []  # one tone of a pair
    assert det.feed(_pcm(8000, 500, 350, 440)) == []  # dial tone
    assert det.feed(_pcm(8000, 500)) == []  # silence
    assert det.feed(_pcm(8000, 20, 697, 1209)) == []  # too short to count


@pytest.mark.realfs
@pytest.mark.skipif(not __import__("os").environ.get("ESL_FREESWITCH"), reason="set ESL_FREESWITCH=host:port")
@pytest.mark.parametrize("key,status", [("1", "agent"), ("2", "goodbye")])
async def test_real_switch(voice_ai: ModuleType, key: str, status: str) -> None:
    """On a real FreeSWITCH with mod_audio_stream (on this machine): the key's tone pair is played
    into a loopback/9004 (echo) call, comes back in its audio and reaches the bot."""
    import os

    report, bot = await voice_ai.real_switch(os.environ["ESL_FREESWITCH"], key)
    assert report.status == status and report.intent == status
    assert report.data == {"customer": "Ann", "order": 4711}
    assert bot is not None and bot.digits == [key] and "ai-audio" in report.steps
    assert report.steps[-1] == "disconnected"


async def test_ai_closes_the_stream(voice_ai: ModuleType, freeswitch: Any, esl_client: Any) -> None:
    from esl.media import MediaServer
    from esl.testing import Endpoint
    from esl.testing.audio_stream import streams_of

    async def broken_ai(stream: Any) -> None:
        await stream.read(timeout=5)
        await stream.close(1011, "model crashed")

    freeswitch.endpoints["user/1000"] = Endpoint(answer_after=0.05)
    async with MediaServer(broken_ai) as media:
        report = await voice_ai.voice_ai_call(esl_client, "user/1000", DATA, media.url)
    assert (report.status, report.cause) == ("stream-error", "NORMAL_TEMPORARY_FAILURE")
    assert report.steps == ["connected", "stream-error", "stream disconnect 1011: model crashed", "disconnected"]
    assert streams_of(freeswitch).streams == {} and not freeswitch.channels  # nothing left behind
    assert await _no_channels_owned(esl_client)


async def test_ai_unreachable(voice_ai: ModuleType, freeswitch: Any, esl_client: Any) -> None:
    import socket

    from esl.testing import Endpoint

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    freeswitch.endpoints["user/1000"] = Endpoint(answer_after=0.05)
    report = await voice_ai.voice_ai_call(esl_client, "user/1000", DATA, f"ws://127.0.0.1:{port}/ai")
    assert (report.status, report.cause) == ("stream-error", "NORMAL_TEMPORARY_FAILURE")
    assert report.steps[0] == "connected" and "refused" in report.steps[1]
    assert report.steps[-1] == "disconnected" and not freeswitch.channels
    assert await _no_channels_owned(esl_client)


async def _no_channels_owned(client: Any) -> bool:
    """The connection's ownership table lets go of the call's channels (after CHANNEL_DESTROY)."""
    import asyncio

    from esl.channel import channels_of

    for _ in range(200):
        if not channels_of(client):
            return True
        await asyncio.sleep(0.01)
    return False
