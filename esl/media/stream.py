"""AudioStream: one mod_audio_stream websocket as the app sees it.

Frames arrive on the server's reader (never blocked by the app) into a bounded buffer: when the
app falls behind, the oldest frames are dropped and counted, so a slow consumer costs audio, not
memory. Text messages from FreeSWITCH (``uuid_audio_stream ... send_text`` and the text of
``stop <text>``) go to a second bounded buffer.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from esl.exceptions import ConnectionError, TimeoutError
from esl.media.protocol import StreamInfo, frame_bytes, stream_audio_message

if TYPE_CHECKING:  # pragma: no cover
    from websockets.asyncio.server import ServerConnection

__all__ = ["AudioStream", "StreamClosed", "StreamStats"]

T = TypeVar("T")


class _Buffer(Generic[T]):
    """A bounded FIFO that drops (and counts) its oldest item when full, with one reader."""

    __slots__ = ("dropped", "items", "waiter")

    def __init__(self, size: int) -> None:
        self.items: collections.deque[T] = collections.deque(maxlen=max(1, size))
        self.waiter: asyncio.Future[None] | None = None
        self.dropped = 0

    def put(self, item: T) -> None:
        items = self.items
        if len(items) == items.maxlen:
            self.dropped += 1
        items.append(item)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class StreamClosed(ConnectionError):
    """The websocket of an :class:`AudioStream` is closed (by FreeSWITCH, the app or the server)."""


@dataclass(frozen=True)
class StreamStats:
    """Counters of one stream (a snapshot).

    ``frames``/``bytes``: binary messages received; ``dropped``: frames thrown away because the
    buffer was full (the app read too slowly); ``texts``/``texts_dropped`` the same for text
    messages; ``sent_texts``/``sent_audio``/``sent_bytes``: what the app sent back;
    ``buffered``: frames waiting now; ``duration``: seconds since the connection opened.
    """

    frames: int
    bytes: int
    dropped: int
    texts: int
    texts_dropped: int
    sent_texts: int
    sent_audio: int
    sent_bytes: int
    buffered: int
    duration: float


class AudioStream:
    """One call's audio stream: an async iterator of PCM frames plus a way to talk back.

    ``async for frame in stream`` yields each binary message (``bytes`` of signed 16-bit
    little-endian PCM, ``channels`` interleaved, at ``rate`` Hz) until the websocket closes and
    the buffer is drained. ``uuid`` is the channel's (from the metadata or the URL; None when
    neither named it), ``metadata_text`` the first text message as sent, ``metadata`` its parsed
    JSON, ``data`` the app's own part of esl's metadata. ``path`` is the request path with its
    query, ``headers`` the handshake headers.

    Made by :class:`~esl.media.MediaServer`; not constructed by apps.
    """

    def __init__(
        self,
        ws: ServerConnection,
        info: StreamInfo,
        *,
        rate: int,
        channels: int,
        max_frames: int,
        max_texts: int,
    ) -> None:
        self._ws = ws
        self.uuid: str | None = info.uuid
        self.info = info
        self.metadata_text: str | None = info.metadata_text
        self.metadata: Any = info.metadata
        self.data: Any = info.data
        self.mix: str | None = info.mix
        self.rate: int = rate
        self.channels: int = channels
        request = ws.request
        self.path: str = request.path if request is not None else "/"
        self.headers: Mapping[str, str] = dict(request.headers.raw_items()) if request is not None else {}
        self.remote_address: Any = ws.remote_address
        self.started = time.monotonic()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._frames: _Buffer[bytes] = _Buffer(max_frames)
        self._texts: _Buffer[str] = _Buffer(max_texts)
        self._closed = False
        self._closed_fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._metadata_seen: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.n_frames = 0
        self.n_bytes = 0
        self.n_texts = 0
        self.n_sent_texts = 0
        self.n_sent_audio = 0
        self.n_sent_bytes = 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<AudioStream uuid={self.uuid} {self.rate}Hz/{self.channels}ch {state} frames={self.n_frames}>"

    # -- facts ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the websocket closed (frames may still be buffered)."""
        return self._closed

    @property
    def frame_size(self) -> int:
        """Bytes of a 20 ms frame at this rate and channel count (640 for 16 kHz mono)."""
        return frame_bytes(self.rate, self.channels)

    @property
    def stats(self) -> StreamStats:
        """A snapshot of this stream's counters."""
        return StreamStats(
            self.n_frames, self.n_bytes, self._frames.dropped, self.n_texts, self._texts.dropped,
            self.n_sent_texts, self.n_sent_audio, self.n_sent_bytes, len(self._frames.items),
            time.monotonic() - self.started,
        )  # fmt: skip

    # -- fed by the server's reader ------------------------------------------------------

    def _set_info(self, info: StreamInfo, rate: int, channels: int) -> None:
        """The metadata arrived: what it says replaces what the URL said."""
        if info.uuid is not None:
            self.uuid = info.uuid
        self.info = info
        self.metadata_text = info.metadata_text
        self.metadata = info.metadata
        self.data = info.data
        self.mix = info.mix or self.mix
        self.rate = rate
        self.channels = channels
        if not self._metadata_seen.done():
            self._metadata_seen.set_result(None)

    def _feed(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.n_texts += 1
            self._texts.put(message)
            return
        self.n_frames += 1
        self.n_bytes += len(message)
        self._frames.put(message)

    @property
    def n_dropped(self) -> int:
        """Frames dropped so far because the app read too slowly."""
        return self._frames.dropped

    def _set_closed(self, code: int | None, reason: str | None) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_code = code
        self.close_reason = reason
        self._frames.wake()
        self._texts.wake()
        if not self._closed_fut.done():
            self._closed_fut.set_result(None)

    # -- reading ---------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        frame = await self._next(self._frames, None)
        if frame is None:
            raise StopAsyncIteration
        return frame

    async def read(self, timeout: float | None = None) -> bytes | None:
        """The next frame; None once the stream closed and the buffer is empty.

        Raises :class:`~esl.exceptions.TimeoutError` when no frame came within ``timeout`` s.
        """
        return await self._next(self._frames, timeout)

    async def next_text(self, timeout: float | None = None) -> str | None:
        """The next text message from FreeSWITCH (``send_text`` or ``stop <text>``); None once the
        stream closed with none left; :class:`~esl.exceptions.TimeoutError` after ``timeout`` s."""
        return await self._next(self._texts, timeout)

    async def texts(self) -> AsyncIterator[str]:
        """Every text message until the stream closes."""
        while True:
            text = await self.next_text()
            if text is None:
                return
            yield text

    async def _next(self, buf: _Buffer[T], timeout: float | None) -> T | None:
        while True:
            if buf.items:
                return buf.items.popleft()
            if self._closed:
                return None
            if buf.waiter is not None:
                raise RuntimeError("another task is already reading this stream")
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            buf.waiter = waiter
            try:
                if timeout is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"audio stream {self.uuid}: nothing within {timeout}s") from None
            finally:
                buf.waiter = None

    async def wait_metadata(self, timeout: float | None = None) -> bool:
        """Until the metadata arrived (True); False after ``timeout`` s or once the stream closed
        without one. (The server hands a stream over without it after ``metadata_timeout``.)"""
        if not self._metadata_seen.done() and not self._closed:
            waits = {asyncio.ensure_future(asyncio.shield(self._metadata_seen)),
                     asyncio.ensure_future(asyncio.shield(self._closed_fut))}
            _, pending = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for fut in pending:
                fut.cancel()
        return self._metadata_seen.done()

    async def wait_closed(self, timeout: float | None = None) -> None:
        """Until the websocket is closed."""
        try:
            await asyncio.wait_for(asyncio.shield(self._closed_fut), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"audio stream {self.uuid} still open after {timeout}s") from None

    # -- talking back ----------------------------------------------------------------------

    async def _send(self, message: str) -> None:
        if self._closed:
            raise StreamClosed(f"audio stream {self.uuid} is closed", self.close_reason)
        from websockets.exceptions import ConnectionClosed

        try:
            await self._ws.send(message)
        except ConnectionClosed as exc:
            raise StreamClosed(f"audio stream {self.uuid} is closed", str(exc)) from None

    async def send_text(self, text: str) -> None:
        """Send a text message: FreeSWITCH fires ``mod_audio_stream::json`` with it as the body."""
        if not isinstance(text, str):
            raise TypeError(f"text must be str, not {type(text).__name__}")
        await self._send(text)
        self.n_sent_texts += 1
        self.n_sent_bytes += len(text)

    async def send_json(self, obj: Any) -> None:
        """Send ``obj`` as compact JSON text (see :meth:`send_text`)."""
        await self.send_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))

    async def send_audio(self, audio: bytes, rate: int | None = None, *, audio_type: str = "raw") -> None:
        """Send audio back as the ``streamAudio`` message: FreeSWITCH writes it to a file and
        fires ``mod_audio_stream::play`` with the path (the app plays it, e.g.
        ``Channel.auto_play_audio_stream``).

        ``audio`` is mono 16-bit little-endian PCM at ``rate`` (default: the stream's rate) for
        ``audio_type="raw"``, or a wav/mp3/ogg file's bytes, or G.711 (``pcmu``/``pcma``).
        """
        if rate is None and audio_type == "raw":
            rate = self.rate
        message = stream_audio_message(audio, rate, audio_type)
        await self._send(message)
        self.n_sent_audio += 1
        self.n_sent_bytes += len(message)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the websocket (FreeSWITCH then fires ``mod_audio_stream::disconnect``)."""
        if self._closed:
            return
        await self._ws.close(code, reason)
