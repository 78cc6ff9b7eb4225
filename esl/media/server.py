"""MediaServer: the websocket server mod_audio_stream streams calls' audio to.

Each connection becomes an :class:`~esl.media.AudioStream`, matched to its channel by esl's
metadata (the first text message) or the URL (``/<uuid>``, ``?uuid=``). Apps either give a
handler (run once per stream, like a websockets handler: the stream closes when it returns) or
ask for the stream of a call with :meth:`MediaServer.stream_for`.

    async with MediaServer() as media:
        await channel.start_audio_stream(media.url_for(channel.uuid), rate=16000)
        stream = await media.stream_for(channel.uuid, timeout=5)
        async for frame in stream:      # 640 bytes of 16 kHz PCM every 20 ms
            ...
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from esl.exceptions import ConnectionError, TimeoutError
from esl.media.protocol import is_canonical_uuid, parse_metadata
from esl.media.stream import AudioStream

__all__ = ["MediaServer", "ServerStats", "StreamHandler"]

log = logging.getLogger("esl.media")

#: ``async def handler(stream)``: runs once per stream; the stream closes when it returns
StreamHandler = Callable[[AudioStream], Awaitable[Any]]


class _MediaConnection(ServerConnection):
    """A websockets ServerConnection that hands each whole binary message straight to its
    AudioStream from the protocol callback: one task hop (and the message assembler) less per
    frame than reading them with ``recv()``. Text and fragmented messages take the usual path."""

    esl_media: MediaServer  # set on the per-server subclass
    esl_stream: AudioStream | None = None
    esl_fragmented = False

    def process_event(self, event: Any) -> None:
        if isinstance(event, Frame) and self.request is not None:
            opcode = event.opcode
            stream = self.esl_stream
            if stream is None:  # the first frame after the handshake: the stream starts here, so
                # no frame can pass another on its way (the handler may not have run yet)
                stream = self.esl_stream = self.esl_media._new_stream(self)
            if opcode is Opcode.BINARY and event.fin and not self.esl_fragmented:
                data = event.data
                stream._feed(data if type(data) is bytes else bytes(data))
                return
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                self.esl_fragmented = not event.fin
            elif opcode is Opcode.CONT and event.fin:
                self.esl_fragmented = False
        super().process_event(event)


@dataclass(frozen=True)
class ServerStats:
    """Counters of a MediaServer (a snapshot): streams ``accepted`` in all, ``active`` now,
    ``unmatched`` (no uuid found), and the frame/byte/drop totals of every stream, live or closed.
    """

    accepted: int
    active: int
    unmatched: int
    frames: int
    bytes: int
    dropped: int
    texts: int
    sent_audio: int
    waiters: int


class MediaServer:
    """An asyncio websocket server (on ``websockets``) for mod_audio_stream connections.

    ``handler``: optional ``async def handler(stream)``. ``max_frames``: frames buffered per
    stream before the oldest are dropped (250 = 5 s of 20 ms frames); ``max_texts`` likewise for
    text messages. ``expect_metadata``: the first text message of a stream is its metadata (what
    ``uuid_audio_stream ... start`` sends first); False: there is none, every text is a message.
    ``metadata_timeout``: how long a new stream waits for its metadata before it is handed to the
    app matched by its URL alone (frames are kept meanwhile); a later metadata still updates and
    matches it (the module may send frames first: seconds first under load on a real switch).
    ``rate``/``channels``: assumed when neither metadata nor URL says. ``max_message``: the
    largest websocket message accepted (bigger ones close the stream with 1009).
    ``ping_interval``: keepalive pings (None: none). ``handler_timeout``: how long a handler may
    run on after its stream closed before it is cancelled (so :meth:`close` always ends).
    ``backlog``: the listen queue. The module gives up on a websocket not open within 1 s
    (libwsc's connect timeout) with ``::error`` "Timeout", so a burst of starts must not wait
    for SYN retransmits behind a short queue (asyncio's default is 100).
    """

    def __init__(
        self,
        handler: StreamHandler | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_frames: int = 250,
        max_texts: int = 64,
        metadata_timeout: float = 1.0,
        expect_metadata: bool = True,
        rate: int = 16000,
        channels: int = 1,
        max_message: int = 1 << 20,
        ping_interval: float | None = 20.0,
        handler_timeout: float = 5.0,
        backlog: int = 2048,
    ) -> None:
        if max_frames < 1 or max_texts < 1:
            raise ValueError("max_frames and max_texts must be at least 1")
        self.handler = handler
        self.host = host
        self.port = port
        self.max_frames = max_frames
        self.max_texts = max_texts
        self.metadata_timeout = metadata_timeout
        self.expect_metadata = expect_metadata
        self.rate = rate
        self.channels = channels
        self.max_message = max_message
        self.ping_interval = ping_interval
        self.handler_timeout = handler_timeout
        self.backlog = backlog
        self._server: Server | None = None
        self._by_uuid: dict[str, AudioStream] = {}
        self._live: set[AudioStream] = set()
        self._registered: set[AudioStream] = set()
        self._waiters: dict[str, list[asyncio.Future[AudioStream]]] = {}
        self._closing = False
        self._accepted = 0
        self._unmatched = 0
        self._done = [0, 0, 0, 0, 0]  # frames, bytes, dropped, texts, sent_audio of closed streams

    def __repr__(self) -> str:
        return f"<MediaServer ws://{self.host}:{self.port} active={len(self._live)}>"

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> MediaServer:
        """Listen on (host, port); port 0 picks a free one, stored back in ``port``."""
        if self._server is not None:
            return self
        self._closing = False
        self._server = await serve(
            self._connection,
            self.host,
            self.port,
            max_size=self.max_message,
            compression=None,
            ping_interval=self.ping_interval,
            backlog=self.backlog,
            create_connection=type("MediaConnection", (_MediaConnection,), {"esl_media": self}),
        )
        sock = next(iter(self._server.sockets))
        self.host, self.port = sock.getsockname()[:2]
        return self

    async def close(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Stop listening, close every stream with ``code`` and fail every :meth:`stream_for`."""
        self._closing = True
        for waiters in list(self._waiters.values()):
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(ConnectionError("media server closed"))
        self._waiters.clear()
        server = self._server
        if server is None:
            return
        self._server = None
        server.close(close_connections=False)
        await asyncio.gather(*(s.close(code, reason) for s in list(self._live)), return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> MediaServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def serve_forever(self) -> None:
        """Run until cancelled (then close)."""
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.close()

    # -- what apps use -----------------------------------------------------------------------

    def url_for(self, uuid: str, *, rate: int | None = None, mix: str | None = None, secure: bool = False) -> str:
        """The URL to give ``uuid_audio_stream ... start`` for channel ``uuid``: the uuid as the
        path (``?uuid=`` for one not shaped like a uuid), so the stream is matched whatever the
        metadata, and ``rate``/``mix`` as a query, so a stream started without esl's metadata still
        knows its format."""
        params = [(k, str(v)) for k, v in (("rate", rate), ("mix", mix)) if v is not None]
        path = f"/{uuid}"
        if not is_canonical_uuid(uuid):
            path = "/"
            params.insert(0, ("uuid", uuid))
        query = urlencode(params, quote_via=quote)
        return f"{'wss' if secure else 'ws'}://{self.host}:{self.port}{path}{'?' + query if query else ''}"

    @property
    def url(self) -> str:
        """``ws://host:port`` of this server."""
        return f"ws://{self.host}:{self.port}"

    @property
    def streams(self) -> Mapping[str, AudioStream]:
        """The open streams by channel uuid (newest per uuid)."""
        return dict(self._by_uuid)

    @property
    def active(self) -> int:
        """How many streams are open."""
        return len(self._live)

    async def stream_for(self, uuid: str, timeout: float | None = 10.0) -> AudioStream:
        """The open stream of channel ``uuid``, waiting up to ``timeout`` s for it to connect.

        Raises :class:`~esl.exceptions.TimeoutError` if none came and
        :class:`~esl.exceptions.ConnectionError` if the server closes meanwhile.
        """
        stream = self._by_uuid.get(uuid)
        if stream is not None and not stream.closed:
            return stream
        if self._closing:
            raise ConnectionError("media server closed")
        fut: asyncio.Future[AudioStream] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(uuid, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"no audio stream for {uuid} within {timeout}s") from None
        finally:
            waiters = self._waiters.get(uuid)
            if waiters is not None:
                if fut in waiters:
                    waiters.remove(fut)
                if not waiters:
                    del self._waiters[uuid]

    @property
    def stats(self) -> ServerStats:
        """A snapshot of the server's counters."""
        frames, nbytes, dropped, texts, sent = self._done
        for s in self._live:
            frames += s.n_frames
            nbytes += s.n_bytes
            dropped += s.n_dropped
            texts += s.n_texts
            sent += s.n_sent_audio
        waiters = sum(len(w) for w in self._waiters.values())
        return ServerStats(self._accepted, len(self._live), self._unmatched, frames, nbytes, dropped,
                           texts, sent, waiters)

    # -- one connection ----------------------------------------------------------------------

    def _new_stream(self, ws: ServerConnection) -> AudioStream:
        path = ws.request.path if ws.request is not None else "/"
        info = parse_metadata(None, path)
        return AudioStream(
            ws, info,
            rate=info.rate or self.rate,
            channels=info.channels or self.channels,
            max_frames=self.max_frames,
            max_texts=self.max_texts,
        )  # fmt: skip

    async def _connection(self, ws: ServerConnection) -> None:
        path = ws.request.path if ws.request is not None else "/"
        stream = getattr(ws, "esl_stream", None) or self._new_stream(ws)
        if isinstance(ws, _MediaConnection):
            ws.esl_stream = stream
        self._accepted += 1
        self._live.add(stream)
        user: asyncio.Task[Any] | None = None
        # The module sends the metadata from its open callback while its media thread may already
        # send frames, and under load the metadata came seconds after the first frames on a real
        # switch: frames are buffered meanwhile, and a metadata later than metadata_timeout still
        # updates (and matches) the stream.
        reader = asyncio.ensure_future(self._read(ws, stream, path))
        try:
            if self.expect_metadata:
                await asyncio.wait({reader, stream._metadata_seen}, timeout=self.metadata_timeout,
                                   return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not stream.n_frames and stream.metadata_text is None:
                return  # closed before saying anything
            self._register(stream)
            if self.handler is not None:
                user = asyncio.ensure_future(self._run_handler(stream))
                await asyncio.wait({reader, user}, return_when=asyncio.FIRST_COMPLETED)
                if user.done() and not reader.done():
                    await ws.close(1011 if _failed(user) else 1000)
                await reader
                stream._set_closed(ws.protocol.close_code, ws.protocol.close_reason)
                await asyncio.wait({user}, timeout=self.handler_timeout)
                if not user.done():
                    log.warning("media handler for stream %s still running %.1fs after its stream closed; "
                                "cancelled", stream.uuid, self.handler_timeout)
            else:
                await reader
        finally:
            if not reader.done():
                reader.cancel()
            if user is not None:
                if not user.done():
                    user.cancel()
                elif not user.cancelled():
                    user.exception()  # retrieved (it was logged by _run_handler)
            stream._set_closed(ws.protocol.close_code, ws.protocol.close_reason)
            self._unregister(stream)

    async def _read(self, ws: ServerConnection, stream: AudioStream, path: str) -> None:
        feed = stream._feed
        metadata = self.expect_metadata
        try:
            async for message in ws:
                if metadata and isinstance(message, str):
                    metadata = False  # the first text message is the metadata
                    self._metadata(stream, message, path)
                    continue
                feed(message)
        except ConnectionClosed:
            pass
        stream._set_closed(ws.protocol.close_code, ws.protocol.close_reason)

    def _metadata(self, stream: AudioStream, text: str, path: str) -> None:
        info = parse_metadata(text, path)
        old = stream.uuid
        stream._set_info(info, info.rate or stream.rate, info.channels or stream.channels)
        if stream in self._registered and stream.uuid != old:  # a late metadata names the channel
            if old is not None and self._by_uuid.get(old) is stream:
                del self._by_uuid[old]
            if old is None:
                self._unmatched -= 1
            self._bind(stream)

    async def _run_handler(self, stream: AudioStream) -> None:
        assert self.handler is not None
        try:
            result = self.handler(stream)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("media handler failed for stream %s", stream.uuid)
            raise

    def _register(self, stream: AudioStream) -> None:
        self._registered.add(stream)
        self._bind(stream)

    def _bind(self, stream: AudioStream) -> None:
        uuid = stream.uuid
        if uuid is None:
            self._unmatched += 1
            return
        self._by_uuid[uuid] = stream
        for fut in self._waiters.pop(uuid, ()):
            if not fut.done():
                fut.set_result(stream)

    def _unregister(self, stream: AudioStream) -> None:
        self._live.discard(stream)
        self._registered.discard(stream)
        if stream.uuid is not None and self._by_uuid.get(stream.uuid) is stream:
            del self._by_uuid[stream.uuid]
        done = self._done
        done[0] += stream.n_frames
        done[1] += stream.n_bytes
        done[2] += stream.n_dropped
        done[3] += stream.n_texts
        done[4] += stream.n_sent_audio


def _failed(task: asyncio.Task[Any]) -> bool:
    return not task.cancelled() and task.exception() is not None
