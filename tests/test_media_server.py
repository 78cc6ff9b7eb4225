"""esl.media.MediaServer with a plain websockets client in mod_audio_stream's place: matching,
the handler API, bounded buffers under a slow consumer, stream_for waits, shutdown."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from esl.exceptions import ConnectionError, TimeoutError
from esl.media import AudioStream, MediaServer, StreamClosed, build_metadata, parse_metadata

UUID = "0f8e2a64-1c1e-4c39-9d0b-7d0b1b6a1f00"


async def _until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def test_metadata_matches_and_frames_flow_in_order() -> None:
    async with MediaServer() as media:
        async with connect(media.url + "/any/path?x=1", compression=None) as ws:
            await ws.send(build_metadata(UUID, "stereo", 8000, {"k": [1, 2]}))
            for i in range(20):
                await ws.send(bytes([i]) * 640)
            stream = await media.stream_for(UUID, timeout=5)
            assert (stream.rate, stream.channels, stream.mix, stream.data) == (8000, 2, "stereo", {"k": [1, 2]})
            assert stream.path == "/any/path?x=1" and stream.frame_size == 640
            got = [(await stream.read(timeout=2) or b"\xff")[0] for _ in range(20)]
            assert got == list(range(20))
            assert media.streams == {UUID: stream}
        await stream.wait_closed(timeout=5)
        assert await stream.read() is None  # closed and drained
        assert stream.stats.frames == 20 and stream.stats.bytes == 12800 and stream.stats.dropped == 0
    assert media.streams == {} and media.stats.accepted == 1 and media.stats.frames == 20


async def test_slow_consumer_drops_oldest_and_counts() -> None:
    async with MediaServer(max_frames=8, max_texts=2) as media:
        async with connect(media.url_for(UUID)) as ws:
            await ws.send(build_metadata(UUID, "mono", 8000))
            for i in range(100):
                await ws.send(i.to_bytes(2, "little") * 160)
            for i in range(5):
                await ws.send(f"t{i}")
            stream = await media.stream_for(UUID, timeout=5)
            await _until(lambda: stream.stats.frames == 100 and stream.stats.texts == 5)
            stats = stream.stats
            assert stats.buffered == 8 and stats.dropped == 92 and stats.texts_dropped == 3
            kept = [int.from_bytes((await stream.read(timeout=1) or b"")[:2], "little") for _ in range(8)]
            assert kept == list(range(92, 100))  # the newest survive
            assert [await stream.next_text(timeout=1) for _ in range(2)] == ["t3", "t4"]
        assert media.stats.dropped == 92


async def test_handler_api_and_talking_back() -> None:
    seen: list[AudioStream] = []

    async def handler(stream: AudioStream) -> None:
        seen.append(stream)
        async for frame in stream:
            await stream.send_json({"echo": len(frame)})
            if len(frame) == 4:
                await stream.send_audio(b"\x00\x01" * 4)
                return  # returning closes the stream

    async with MediaServer(handler, metadata_timeout=0.1) as media:
        async with connect(media.url_for(UUID, rate=16000)) as ws:
            await ws.send(b"\x00" * 640)
            assert json.loads(await ws.recv()) == {"echo": 640}
            await ws.send(b"\x00" * 4)
            assert json.loads(await ws.recv()) == {"echo": 4}
            audio = json.loads(await ws.recv())
            assert audio["type"] == "streamAudio"
            assert audio["data"]["audioDataType"] == "raw" and audio["data"]["sampleRate"] == 16000
            assert base64.b64decode(audio["data"]["audioData"]) == b"\x00\x01" * 4
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.protocol.close_code == 1000
        assert seen and seen[0].uuid == UUID and seen[0].metadata_text is None
        assert seen[0].stats.sent_texts == 2 and seen[0].stats.sent_audio == 1
        with pytest.raises(StreamClosed):
            await seen[0].send_text("late")


async def test_failing_handler_closes_with_1011() -> None:
    async def handler(stream: AudioStream) -> None:
        raise RuntimeError("boom")

    async with MediaServer(handler, metadata_timeout=0.1) as media, connect(media.url_for(UUID)) as ws:
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.protocol.close_code == 1011


async def test_stream_for_timeout_and_waiters_are_removed() -> None:
    async with MediaServer(metadata_timeout=0.1) as media:
        with pytest.raises(TimeoutError):
            await media.stream_for("nobody", timeout=0.05)
        assert media.stats.waiters == 0
        waits = [asyncio.ensure_future(media.stream_for(UUID, timeout=5)) for _ in range(3)]
        await asyncio.sleep(0)
        assert media.stats.waiters == 3
        async with connect(media.url_for(UUID)):
            streams = await asyncio.gather(*waits)
            assert streams[0] is streams[1] is streams[2]
        assert media.stats.waiters == 0
        pending = asyncio.ensure_future(media.stream_for("late", timeout=5))
        await asyncio.sleep(0)
    with pytest.raises(ConnectionError):
        await pending  # the server closed
    with pytest.raises(ConnectionError):
        await media.stream_for("x", timeout=1)


async def test_no_metadata_first_frame_is_kept_and_unmatched_streams_count() -> None:
    async with MediaServer(metadata_timeout=0.05) as media:
        async with connect(media.url + "/") as ws:  # no uuid anywhere
            await asyncio.sleep(0.15)
            await ws.send(b"\x01" * 320)
            await _until(lambda: media.stats.frames >= 1)
            assert media.stats.unmatched == 1 and media.streams == {}
        async with connect(media.url_for(UUID)) as ws:
            await ws.send(b"\x02" * 320)  # first message binary: audio, not metadata
            stream = await media.stream_for(UUID, timeout=5)
            assert await stream.read(timeout=1) == b"\x02" * 320 and stream.metadata is None


async def test_close_ends_every_stream_with_going_away() -> None:
    media = await MediaServer(metadata_timeout=0.1).start()
    async with connect(media.url_for(UUID)) as ws:
        stream = await media.stream_for(UUID, timeout=5)
        await media.close()
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.protocol.close_code == 1001
    assert stream.closed and media.stats.active == 0


async def test_oversized_message_closes_that_stream_only() -> None:
    async with (
        MediaServer(max_message=1000, metadata_timeout=0.1) as media,
        connect(media.url_for(UUID)) as big,
        connect(media.url_for("other-uuid-1")) as small,
    ):
        await big.send(b"\x00" * 2000)
        with pytest.raises(ConnectionClosed):
            await big.recv()
        assert big.protocol.close_code == 1009
        await small.send(b"\x00" * 320)
        other = await media.stream_for("other-uuid-1", timeout=5)
        assert await other.read(timeout=2) == b"\x00" * 320


async def test_newest_stream_of_a_uuid_wins_and_old_one_does_not_remove_it() -> None:
    async with MediaServer(metadata_timeout=0.1) as media:
        async with connect(media.url_for(UUID)) as first:
            one = await media.stream_for(UUID, timeout=5)
            async with connect(media.url_for(UUID)):
                await _until(lambda: media.streams.get(UUID) not in (None, one))
                two = media.streams[UUID]
                assert media.stats.active == 2
                await first.close()
                await one.wait_closed(timeout=5)
                assert media.streams[UUID] is two
            await two.wait_closed(timeout=5)
        assert media.streams == {}


def test_parse_metadata_fallbacks() -> None:
    info = parse_metadata('{"hello": 1}', f"/calls/{UUID}?rate=24000&mix=mixed")
    assert (info.uuid, info.rate, info.mix, info.channels, info.data) == (UUID, 24000, "mixed", 1, {"hello": 1})
    info = parse_metadata("not json", "/?uuid=abc&rate=16k")
    assert (info.uuid, info.rate, info.metadata) == ("abc", 16000, None)
    info = parse_metadata(None, "/short")
    assert info.uuid is None and info.rate is None
    assert parse_metadata('{"uuid": "u-1234567", "rate": 12345}').rate is None  # not a multiple of 8000


def test_send_audio_validates() -> None:
    from esl.media import stream_audio_message

    with pytest.raises(ValueError):
        stream_audio_message(b"\x00\x00", 11025)
    with pytest.raises(ValueError):
        stream_audio_message(b"\x00", 8000)
    with pytest.raises(ValueError):
        stream_audio_message(b"", 8000, "flac")
    with pytest.raises(TypeError):
        stream_audio_message("text", 8000)  # type: ignore[arg-type]
    msg = json.loads(stream_audio_message(b"RIFF....", audio_type="wav"))
    assert msg["data"] == {"audioDataType": "wav", "audioData": base64.b64encode(b"RIFF....").decode()}


async def test_a_handler_that_ignores_the_close_is_cancelled() -> None:
    cancelled = asyncio.Event()

    async def stubborn(stream: AudioStream) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            cancelled.set()

    media = await MediaServer(stubborn, metadata_timeout=0.05, handler_timeout=0.1).start()
    async with connect(media.url_for(UUID)):
        await media.stream_for(UUID, timeout=5)
    await asyncio.wait_for(media.close(), 5)
    assert cancelled.is_set() and media.stats.active == 0


async def test_url_for_canonical_and_other_ids() -> None:
    from esl.channel.media import check_stream_url

    async with MediaServer(metadata_timeout=0.1) as media:
        assert media.url_for(UUID) == f"{media.url}/{UUID}"
        odd = "my call/1 é"
        url = media.url_for(odd, rate=8000, mix="mono")
        assert check_stream_url(url) == url  # the module takes it
        assert parse_metadata(None, url.split(str(media.port), 1)[1]).uuid == odd
        async with connect(url) as ws:
            await ws.send(b"\x00" * 320)
            stream = await media.stream_for(odd, timeout=5)
            assert (stream.rate, stream.mix) == (8000, "mono")
    assert parse_metadata(None, "/websocket").uuid is None  # a word is not taken for a uuid


async def test_metadata_after_a_first_frame_is_still_the_metadata() -> None:
    # the real module sometimes sends a frame before its open callback sends the metadata (1 in 40)
    async with MediaServer() as media, connect(media.url + "/x") as ws:
        await ws.send(b"\x07" * 640)
        await ws.send(build_metadata(UUID, "mono", 16000, "late"))
        await ws.send(b"\x08" * 640)
        stream = await media.stream_for(UUID, timeout=5)
        assert stream.data == "late" and stream.metadata_text is not None
        assert [await stream.read(timeout=1) for _ in range(2)] == [b"\x07" * 640, b"\x08" * 640]
        assert stream.stats.texts == 0  # the metadata is not a text message of the stream


async def test_without_metadata_the_stream_is_handed_over_after_metadata_timeout() -> None:
    async with MediaServer(metadata_timeout=0.05) as media, connect(media.url_for(UUID)) as ws:
        for _ in range(3):
            await ws.send(b"\x01" * 640)
        stream = await media.stream_for(UUID, timeout=5)
        assert stream.metadata_text is None
        assert not await stream.wait_metadata(timeout=0.01)
        await _until(lambda: stream.stats.frames == 3)


async def test_a_late_metadata_still_matches_the_stream() -> None:
    # under load the real module sent the metadata seconds after its first frames
    async with MediaServer(metadata_timeout=0.05) as media, connect(media.url + "/x") as ws:
        await ws.send(b"\x01" * 640)
        await _until(lambda: media.stats.unmatched == 1)  # handed over unmatched
        waiting = asyncio.ensure_future(media.stream_for(UUID, timeout=5))
        await asyncio.sleep(0.05)
        await ws.send(build_metadata(UUID, "stereo", 8000, {"late": True}))
        stream = await waiting
        assert stream.data == {"late": True} and (stream.rate, stream.channels) == (8000, 2)
        assert await stream.wait_metadata(timeout=1)
        assert media.stats.unmatched == 0 and stream.stats.texts == 0
        assert await stream.read(timeout=1) == b"\x01" * 640


async def test_expect_metadata_false_delivers_every_text() -> None:
    async with MediaServer(expect_metadata=False) as media, connect(media.url_for(UUID)) as ws:
        await ws.send('{"uuid": "not-metadata"}')
        stream = await media.stream_for(UUID, timeout=1)
        assert await stream.next_text(timeout=1) == '{"uuid": "not-metadata"}'
        assert stream.uuid == UUID and stream.metadata_text is None
