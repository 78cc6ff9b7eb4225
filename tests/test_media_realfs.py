"""mod_audio_stream on a real FreeSWITCH (opt-in: ``ESL_FREESWITCH=host:port pytest -m realfs``).

The switch must run on this machine (its module connects back to our server on 127.0.0.1) with
mod_audio_stream loaded and the dialplan of ../shared/freeswitch (9001 endless tone, 9004 echo).
``ESL_PASSWORD`` overrides the password (ClueCon).
"""

from __future__ import annotations

import array
import asyncio
import math
import os
import socket
from typing import Any

import pytest

import esl
from esl.exceptions import ChannelError, TimeoutError
from esl.media import AudioStream, MediaServer

pytestmark = [
    pytest.mark.realfs,
    pytest.mark.skipif(not os.environ.get("ESL_FREESWITCH"), reason="set ESL_FREESWITCH=host:port"),
]

MediaChannel = esl.Channel


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


@pytest.fixture
async def client() -> Any:
    host, _, port = os.environ["ESL_FREESWITCH"].partition(":")
    async with esl.Inbound(host, int(port or 8021), os.environ.get("ESL_PASSWORD", "ClueCon")) as inbound:
        if (await inbound.api("module_exists mod_audio_stream")).strip() != "true":
            pytest.skip("mod_audio_stream is not loaded")
        yield inbound


async def _leg(client: Any, extension: str = "9001", app: str = "&park()") -> Any:
    ch = await MediaChannel.create(client, f"loopback/{extension}/default", app=app)
    await ch.wait(esl.ChannelState.EXECUTE, timeout=10)
    return ch


async def _frames(stream: AudioStream, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        frame = await stream.read(timeout=3)
        assert frame is not None
        out.append(frame)
    return out


async def test_real_stream_text_audio_events(client: Any) -> None:
    async with MediaServer() as media:
        ch = await _leg(client)
        try:
            kinds: list[str] = []
            ch.on_audio_stream("*", lambda channel, ev: kinds.append(ev.kind))
            meta = {"campaign": "it's \"spring\"", "lines": "a\nb", "path": "C:\\x"}
            assert (await ch.start_audio_stream(media.url, "mono", 16000, meta, connect_timeout=5)).startswith("+OK")
            stream = await media.stream_for(ch.uuid, timeout=5)
            assert stream.data == meta and (stream.rate, stream.channels) == (16000, 1)
            assert "Origin" in stream.headers or "origin" in stream.headers

            frames = await _frames(stream, 50)
            assert {len(f) for f in frames} == {640}
            tone = max((power(b"".join(frames), f, 16000), f) for f in (350, 400, 425, 440, 480, 1000))
            assert tone[0] > 0.3, tone

            for text in ("one", "two words", "it's 'quoted'", 'back\\slash \\n', "line1\nline2", "\ttab "):
                await ch.send_audio_stream_text(text)
                assert await stream.next_text(timeout=5) == text

            json_ev = asyncio.ensure_future(ch.wait_audio_stream("json"))
            await stream.send_json({"type": "bot", "say": "hi"})
            assert (await json_ev).body == '{"type":"bot","say":"hi"}'

            ch.auto_play_audio_stream(True)
            play_ev = asyncio.ensure_future(ch.wait_audio_stream("play"))
            stopped = asyncio.ensure_future(ch.wait("PLAYBACK_STOP", timeout=10))
            await stream.send_audio(b"".join(frames[:25]))  # 0.5 s back
            played = await play_ev
            assert played.data["sampleRate"] == 16000 and played.file and played.file.endswith(".r16")
            stop_event = await stopped
            assert stop_event.get("Playback-Status") == "done"
            assert stop_event.get("Playback-File-Path") == played.file

            await ch.pause_audio_stream()
            await asyncio.sleep(0.1)
            while stream.stats.buffered:
                await stream.read()
            before = stream.stats.frames
            await asyncio.sleep(0.4)
            assert stream.stats.frames == before
            await ch.resume_audio_stream()
            await _frames(stream, 3)

            await ch.stop_audio_stream("bye 'now'")
            assert await stream.next_text(timeout=5) == "bye 'now'"
            await stream.wait_closed(timeout=5)
            assert stream.close_code == 1000
            assert not os.path.exists(played.file)
            with pytest.raises(ChannelError):
                await ch.stop_audio_stream()
            await asyncio.sleep(0.2)
            assert kinds == ["connect", "json", "play"]
        finally:
            await ch.hangup()


async def test_real_disconnect_error_and_hangup(client: Any) -> None:
    async with MediaServer() as media:
        ch = await _leg(client)
        try:
            await ch.start_audio_stream(media.url_for(ch.uuid), metadata="", connect_timeout=5)
            stream = await media.stream_for(ch.uuid, timeout=5)
            assert stream.metadata_text is None
            gone = asyncio.ensure_future(ch.wait_audio_stream("disconnect"))
            await stream.close(1000, "bot done")
            ev = await gone
            assert ev.code == 1000 and ev.reason == "bot done"
            assert (await ch.stop_audio_stream()).startswith("+OK")

            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            sock.close()
            with pytest.raises(ChannelError, match="refused"):
                await ch.start_audio_stream(f"ws://127.0.0.1:{port}/x", connect_timeout=5)
            with pytest.raises(ChannelError):
                await ch.stop_audio_stream()  # detached by the error

            await ch.start_audio_stream(media.url, connect_timeout=5)
            stream = await media.stream_for(ch.uuid, timeout=5)
            await _frames(stream, 2)
            late = asyncio.ensure_future(ch.wait_audio_stream("*", timeout=1))
            await ch.hangup()
            await stream.wait_closed(timeout=5)
            with pytest.raises((ChannelError, TimeoutError)):
                await late  # hangup fires no disconnect
        finally:
            await ch.hangup()


async def test_real_stereo_needs_both_sides(client: Any) -> None:
    async with MediaServer() as media:
        parked = await _leg(client)  # A leg parked: hears the tone, writes nothing
        echo = await _leg(client, app="&echo()")  # A leg echoes the tone: audio both ways
        try:
            await parked.start_audio_stream(media.url, "stereo", 16000, connect_timeout=5)
            quiet = await media.stream_for(parked.uuid, timeout=5)
            await asyncio.sleep(0.5)
            assert quiet.stats.frames == 0
            await echo.start_audio_stream(media.url, "stereo", 16000, connect_timeout=5)
            stereo = await media.stream_for(echo.uuid, timeout=5)
            frames = await _frames(stereo, 10)
            assert {len(f) for f in frames} == {1280}
            await echo.stop_audio_stream()
            await echo.start_audio_stream(media.url, "mixed", 8000, connect_timeout=5)
            await stereo.wait_closed(timeout=5)
            mixed = await media.stream_for(echo.uuid, timeout=5)
            assert {len(f) for f in await _frames(mixed, 5)} == {320}
        finally:
            await parked.hangup()
            await echo.hangup()


async def test_real_dtmf_is_not_in_the_audio(client: Any) -> None:
    async with MediaServer() as media:
        ch = await _leg(client)
        try:
            digits: list[str] = []
            ch.on("DTMF", lambda ev: digits.append(ev.get("DTMF-Digit")))
            await ch.start_audio_stream(media.url, rate=8000, connect_timeout=5)
            stream = await media.stream_for(ch.uuid, timeout=5)
            await client.api(f"uuid_recv_dtmf {ch.uuid} 5@500")
            frames = await _frames(stream, 40)
            assert max(min(power(f, 770, 8000), power(f, 1336, 8000)) for f in frames) < 0.01
            assert digits == ["5"]  # the channel got the digit, out of band
        finally:
            await ch.hangup()


async def test_real_buffer_size_variable(client: Any) -> None:
    async with MediaServer() as media:
        ch = await _leg(client)
        try:
            await ch.setvar("STREAM_BUFFER_SIZE", "100")
            await ch.setvar("STREAM_EXTRA_HEADERS", '{"X-Tenant": "acme", "X-N": 1}')
            await ch.start_audio_stream(media.url, rate=16000, connect_timeout=5)
            stream = await media.stream_for(ch.uuid, timeout=5)
            assert {len(f) for f in await _frames(stream, 3)} == {3200}  # 100 ms frames
            assert stream.headers.get("X-Tenant") == "acme" and "X-N" not in stream.headers  # strings only
        finally:
            await ch.hangup()


REPLY_CASES = [
    "", "start", "start ws://127.0.0.1:1/x", "start http://127.0.0.1/x mono 16k", "start {url} quad 16k",
    "start {url} mono 12000", "start {url} mono abc", "pause", "resume", "stop", "send_text", "send_text x",
    "graceful-shutdown", "bogus", "start {url} mono", "start {url} mono 16k", "send_text", "pause", "pause",
    "resume", "graceful-shutdown", "stop", "stop",
]


async def _scenario(client: Any, media: MediaServer, dial: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The module's replies to REPLY_CASES, then the events of connect/json/play/disconnect/error."""
    ch = await MediaChannel.create(client, dial)
    await ch.wait(esl.ChannelState.EXECUTE, timeout=10)
    try:
        replies = []
        for case in REPLY_CASES:
            line = f"uuid_audio_stream {ch.uuid} {case.replace('{url}', media.url)}".rstrip()
            replies.append(await client.api(line, check=False))
            await asyncio.sleep(0.02)
        replies.append(await client.api("uuid_audio_stream no-such-uuid stop", check=False))
        events: list[tuple[str, str]] = []
        ch.on_audio_stream("*", lambda channel, ev: events.append(
            (ev.kind, ev.body.replace(ev.file or "\0", "FILE"))))
        await ch.start_audio_stream(media.url, connect_timeout=5)
        stream = await media.stream_for(ch.uuid, timeout=5)
        await stream.send_text("plain text, not JSON")
        await stream.send_audio(b"\x00\x01" * 160, 8000)
        await stream.send_text('{"type":"streamAudio","data":{"audioDataType":"raw","sampleRate":11025,"audioData":"AA"}}')
        gone = asyncio.ensure_future(ch.wait_audio_stream("disconnect"))
        await asyncio.sleep(0.2)
        await stream.close(4000, "custom reason")
        await gone
        await ch.stop_audio_stream()
        with pytest.raises(ChannelError):
            await ch.start_audio_stream("ws://127.0.0.1:1/x", connect_timeout=5)
        return replies, events
    finally:
        await ch.hangup()


async def test_fake_answers_and_fires_like_the_real_module(client: Any) -> None:
    from esl.testing import Endpoint, FakeFreeSWITCH

    async with MediaServer() as media:
        real = await _scenario(client, media, "loopback/9001/default")
        async with FakeFreeSWITCH() as fake:
            fake.endpoints["user/1"] = Endpoint()
            async with esl.Inbound(fake.host, fake.port, "ClueCon") as fake_client:
                faked = await _scenario(fake_client, media, "user/1")
    assert faked[0] == real[0]
    assert faked[1] == real[1]
    assert [kind for kind, _ in real[1]] == ["connect", "json", "play", "json", "disconnect", "error"]
