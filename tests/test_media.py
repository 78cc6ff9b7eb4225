"""mod_audio_stream end to end without a switch: a call in the fake FreeSWITCH streams its audio
(``uuid_audio_stream``, real websocket client) to a real ``esl.media.MediaServer``; the app reads
frames, answers with text and audio, and sees the module's events on the Channel."""

from __future__ import annotations

import array
import asyncio
import math
import os
from typing import Any

import pytest

import esl
from esl.channel_media import AudioStreamEvent, MediaVerbs
from esl.exceptions import ChannelError, TimeoutError
from esl.media import AudioStream, MediaServer
from esl.testing import Endpoint, FakeFreeSWITCH
from esl.testing.audio_stream import streams_of

# Channel gains MediaVerbs when the lead folds esl/channel_media.py into esl/channel/
MediaChannel: Any = (
    esl.Channel if issubclass(esl.Channel, MediaVerbs) else type("MediaChannel", (esl.Channel, MediaVerbs), {"__slots__": ()})
)


def power(pcm: bytes, freq: float, rate: int, channels: int = 1, channel: int = 0) -> float:
    """Goertzel: the relative power of ``freq`` in one channel of s16le ``pcm`` (0..1)."""
    samples = array.array("h", pcm)[channel::channels]
    n = len(samples)
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    energy = sum(float(x) * x for x in samples) or 1.0
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (energy * n / 2)


async def call(fake: FakeFreeSWITCH, client: esl.Inbound, app: str = "&park()") -> Any:
    fake.endpoints["user/1000"] = Endpoint()
    ch = await MediaChannel.create(client, "user/1000", app=app)
    await ch.wait(esl.ChannelState.EXECUTE, timeout=5)
    return ch


async def test_stream_frames_text_audio_and_events(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    async with MediaServer() as media:
        ch = await call(freeswitch, esl_client)
        seen: list[AudioStreamEvent] = []
        ch.on_audio_stream("*", lambda channel, ev: seen.append(ev))
        connected = asyncio.ensure_future(ch.wait_audio_stream("connect"))
        reply = await ch.start_audio_stream(media.url, "mono", 16000, {"campaign": "spring", "n": 1})
        assert reply.startswith("+OK Success")
        stream = await media.stream_for(ch.uuid, timeout=5)
        assert isinstance(stream, AudioStream)
        assert (stream.uuid, stream.rate, stream.channels, stream.mix) == (ch.uuid, 16000, 1, "mono")
        assert stream.data == {"campaign": "spring", "n": 1}
        ev = await connected
        assert ev.data == {"status": "connected"} and ev.event.get("Unique-ID") == ch.uuid
        assert ev.event.get("Event-Calling-File") == "mod_audio_stream.c"

        frames = [await stream.read(timeout=2) for _ in range(10)]
        assert all(f is not None and len(f) == 640 for f in frames)
        pcm = b"".join(f for f in frames if f)
        assert power(pcm, 440, 16000) > 0.8  # the fake's channel hears a 440 Hz tone

        json_ev = asyncio.ensure_future(ch.wait_audio_stream("json"))
        await stream.send_json({"type": "transcript", "text": "hello there"})
        got = await json_ev
        assert got.body == '{"type":"transcript","text":"hello there"}'

        play_ev = asyncio.ensure_future(ch.wait_audio_stream("play"))
        await stream.send_audio(pcm[:3200])
        played = await play_ev
        assert played.data["audioDataType"] == "raw" and played.data["sampleRate"] == 16000
        assert played.file and played.file.endswith(".tmp.r16") and ch.uuid in played.file
        with open(played.file, "rb") as fh:
            assert fh.read() == pcm[:3200]

        text = asyncio.ensure_future(stream.next_text(timeout=5))
        await ch.send_audio_stream_text({"event": "caller said", "words": "two words, 'quoted'"})
        assert await text == '{"event":"caller said","words":"two words, \'quoted\'"}'

        await ch.stop_audio_stream("bye now")
        assert await stream.next_text(timeout=5) == "bye now"
        await stream.wait_closed(timeout=5)
        assert stream.close_code == 1000
        assert not os.path.exists(played.file)  # stop deletes the returned audio
        with pytest.raises(ChannelError, match="Operation Failed"):
            await ch.stop_audio_stream()  # a second stop
        await asyncio.sleep(0.05)
        assert [e.kind for e in seen] == ["connect", "json", "play"]  # stop fires nothing
        assert media.streams == {} and media.stats.active == 0
        await ch.hangup()
    assert not freeswitch.errors
