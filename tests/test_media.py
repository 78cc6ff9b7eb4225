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
from esl.channel.media import AudioStreamEvent
from esl.exceptions import ChannelError, TimeoutError
from esl.media import AudioStream, MediaServer
from esl.testing import Endpoint, FakeFreeSWITCH
from esl.testing.audio_stream import streams_of

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


async def test_pause_resume_and_frame_pace(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    async with MediaServer() as media:
        ch = await call(freeswitch, esl_client)
        await ch.start_audio_stream(media.url, rate="8k")
        stream = await media.stream_for(ch.uuid, timeout=5)
        first = await stream.read(timeout=2)
        assert first is not None and len(first) == 320 and stream.rate == 8000
        await ch.pause_audio_stream()
        await asyncio.sleep(0.05)  # a frame may have been in flight
        before = stream.stats.frames
        while await _drain(stream):
            pass
        await asyncio.sleep(0.2)
        assert stream.stats.frames == before  # nothing while paused
        await ch.resume_audio_stream()
        again = await stream.read(timeout=2)
        assert again is not None and len(again) == 320
        t0 = asyncio.get_running_loop().time()
        n0 = stream.stats.frames
        await asyncio.sleep(0.5)
        rate = (stream.stats.frames - n0) / (asyncio.get_running_loop().time() - t0)
        assert 25 < rate < 75  # about 50 frames a second (real-time pace; loose: shared CI cores)
        await ch.stop_audio_stream()
        await stream.wait_closed(timeout=5)


async def _drain(stream: AudioStream) -> bool:
    try:
        return await stream.read(timeout=0.01) is not None
    except TimeoutError:
        return False


async def test_refused_url_fires_error_and_detaches(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    ch = await call(freeswitch, esl_client)
    error = asyncio.ensure_future(ch.wait_audio_stream("error"))
    assert (await ch.start_audio_stream(f"ws://127.0.0.1:{port}/x")).startswith("+OK")  # connects later
    ev = await error
    assert ev.data["status"] == "error" and ev.code == 6
    assert ev.reason is not None and "refused" in ev.reason.lower() and "111" in ev.reason
    with pytest.raises(ChannelError, match="Operation Failed"):
        await ch.stop_audio_stream()  # the error detached the stream
    assert ch.uuid not in streams_of(freeswitch).streams
    with pytest.raises(ChannelError, match="refused"):
        await ch.start_audio_stream(f"ws://127.0.0.1:{port}/x", connect_timeout=5)
    assert ch.uuid not in streams_of(freeswitch).streams


async def test_server_close_fires_disconnect_and_stream_stays(freeswitch: FakeFreeSWITCH,
                                                             esl_client: esl.Inbound) -> None:
    async with MediaServer(metadata_timeout=0.1) as media:
        ch = await call(freeswitch, esl_client)
        await ch.start_audio_stream(media.url_for(ch.uuid), metadata="")
        stream = await media.stream_for(ch.uuid, timeout=5)
        assert stream.metadata_text is None and stream.uuid == ch.uuid  # matched by the URL path
        gone = asyncio.ensure_future(ch.wait_audio_stream("disconnect"))
        await stream.close(1000, "bot done")
        ev = await gone
        assert ev.data == {"status": "disconnected", "message": {"code": 1000, "reason": "bot done"}}
        assert ev.code == 1000 and ev.reason == "bot done"
        assert (await ch.stop_audio_stream()).startswith("+OK")  # still attached after a server close
        with pytest.raises(ChannelError):
            await ch.stop_audio_stream()


async def test_hangup_closes_stream_silently_and_deletes_files(freeswitch: FakeFreeSWITCH,
                                                              esl_client: esl.Inbound) -> None:
    async with MediaServer() as media:
        ch = await call(freeswitch, esl_client)
        seen: list[str] = []
        ch.on_audio_stream("*", lambda channel, ev: seen.append(ev.kind))
        await ch.start_audio_stream(media.url)
        stream = await media.stream_for(ch.uuid, timeout=5)
        play = asyncio.ensure_future(ch.wait_audio_stream("play"))
        await stream.send_audio(b"\x01\x00" * 800, 8000)
        path = (await play).file
        assert path and path.endswith(".r8") and os.path.exists(path)
        await ch.hangup()
        await stream.wait_closed(timeout=5)
        assert stream.close_code == 1000
        assert not os.path.exists(path)
        await asyncio.sleep(0.05)
        assert seen == ["connect", "play"]
        assert streams_of(freeswitch).streams == {}


async def test_stereo_and_mixed_need_audio_both_ways(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    async with MediaServer() as media:
        parked = await call(freeswitch, esl_client)
        await parked.start_audio_stream(media.url, "stereo", 16000)
        quiet = await media.stream_for(parked.uuid, timeout=5)
        assert quiet.channels == 2
        await asyncio.sleep(0.3)
        assert quiet.stats.frames == 0  # parked: the channel writes nothing, stereo sends nothing

        echo = await call(freeswitch, esl_client, app="&echo()")
        await echo.start_audio_stream(media.url, "stereo", 16000)
        stereo = await media.stream_for(echo.uuid, timeout=5)
        frames = [await stereo.read(timeout=2) for _ in range(5)]
        assert all(f is not None and len(f) == 1280 for f in frames)
        pcm = b"".join(f for f in frames if f)
        assert power(pcm, 440, 16000, 2, 0) > 0.8 and power(pcm, 440, 16000, 2, 1) > 0.8  # echo: both sides
        await echo.stop_audio_stream()

        await echo.start_audio_stream(media.url, "mixed", 8000)
        await stereo.wait_closed(timeout=5)
        mixed = await media.stream_for(echo.uuid, timeout=5)
        frame = await mixed.read(timeout=2)
        assert frame is not None and len(frame) == 320 and mixed.channels == 1
        await parked.hangup()
        await echo.hangup()


async def test_buffer_size_variable_makes_longer_frames(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    async with MediaServer() as media:
        ch = await call(freeswitch, esl_client)
        await ch.setvar("STREAM_BUFFER_SIZE", "100")
        await ch.setvar("STREAM_EXTRA_HEADERS", '{"X-Tenant": "acme", "X-N": 1}')
        await ch.start_audio_stream(media.url, rate=16000)
        stream = await media.stream_for(ch.uuid, timeout=5)
        frame = await stream.read(timeout=2)
        assert frame is not None and len(frame) == 3200  # 100 ms
        assert stream.headers.get("X-Tenant") == "acme" and "X-N" not in stream.headers  # strings only
        await ch.hangup()


async def _dtmf_power(fake: FakeFreeSWITCH, client: esl.Inbound, media: MediaServer) -> float:
    ch = await call(fake, client)
    await ch.start_audio_stream(media.url, rate=8000)
    stream = await media.stream_for(ch.uuid, timeout=5)
    await stream.read(timeout=2)
    await fake.channels[ch.uuid].send_dtmf("5", duration=200)
    best = 0.0
    for _ in range(20):
        frame = await stream.read(timeout=2)
        assert frame is not None
        best = max(best, min(power(frame, 770, 8000), power(frame, 1336, 8000)))
    await ch.hangup()
    return best


async def test_dtmf_is_in_the_audio_only_when_sent_inband(freeswitch: FakeFreeSWITCH,
                                                         esl_client: esl.Inbound) -> None:
    async with MediaServer() as media:
        assert await _dtmf_power(freeswitch, esl_client, media) < 0.01  # out of band, as on a real switch
        streams_of(freeswitch).inband_dtmf = True  # a phone that sends DTMF in-band
        assert await _dtmf_power(freeswitch, esl_client, media) > 0.3  # the 770 + 1336 Hz pair of "5"


async def test_module_replies(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    async with MediaServer(metadata_timeout=0.1) as media:
        ch = await call(freeswitch, esl_client)
        api = esl_client.api
        assert (await api(f"uuid_audio_stream {ch.uuid}", check=False)).startswith("-USAGE")
        assert (await api(f"uuid_audio_stream {ch.uuid} start {media.url}", check=False)).startswith("-USAGE")
        assert await api(f"uuid_audio_stream {ch.uuid} start {media.url} quad 16k", check=False) == ""
        for bad in ("http://127.0.0.1/x mono 16k", f"{media.url} mono 12000", f"{media.url} mono abc"):
            assert await api(f"uuid_audio_stream {ch.uuid} start {bad}", check=False) == "-ERR Operation Failed\n"
        assert await api("uuid_audio_stream nosuch start ws://h/x mono", check=False) == "-ERR Operation Failed\n"
        for verb in ("pause", "resume", "stop", "send_text x"):
            assert await api(f"uuid_audio_stream {ch.uuid} {verb}", check=False) == "-ERR Operation Failed\n"
        assert await api(f"uuid_audio_stream {ch.uuid} send_text", check=False) == ""
        # no rate: 8 kHz; no metadata: the first message is audio, the stream matched by the URL
        assert await api(f"uuid_audio_stream {ch.uuid} start {media.url_for(ch.uuid, rate=8000)} mono", check=False) == (
            "+OK Success\n"
        )
        stream = await media.stream_for(ch.uuid, timeout=5)
        frame = await stream.read(timeout=2)
        assert frame is not None and len(frame) == 320 and stream.metadata_text is None
        assert (stream.rate, stream.channels, stream.frame_size) == (8000, 1, 320)
        assert await api(f"uuid_audio_stream {ch.uuid} start {media.url} mono 16k", check=False) == (
            "-ERR Operation Failed\n"  # a stream is already attached
        )
        await ch.hangup()


async def test_start_pre_answers(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    freeswitch.endpoints["user/slow"] = Endpoint(answer_after=None)
    async with MediaServer() as media:
        ch = await MediaChannel.create(esl_client, "user/slow")
        for _ in range(500):
            if ch.uuid in freeswitch.channels:
                break
            await asyncio.sleep(0.01)
        assert not ch.answered
        await ch.start_audio_stream(media.url)
        await ch.wait("CHANNEL_PROGRESS_MEDIA", timeout=5)
        stream = await media.stream_for(ch.uuid, timeout=5)
        assert await stream.read(timeout=2)
        await ch.hangup()
