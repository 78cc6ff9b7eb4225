"""Channel verbs for mod_audio_stream: stream a call's audio to a websocket (``esl.media``) and back.

:class:`MediaVerbs` is a mixin for :class:`~esl.channel.Channel` (it uses the channel's
``uuid``, ``protocol``, ``_api``, ``_check_alive`` and ``on``). The verbs are the module's api
command, ``uuid_audio_stream <uuid> start|stop|pause|resume|send_text``; the module's CUSTOM
events (``mod_audio_stream::connect|disconnect|json|play|error``, each with the channel's
``Unique-ID``, so they reach the channel) become hooks (:meth:`MediaVerbs.on_audio_stream`) and
waits (:meth:`MediaVerbs.wait_audio_stream`); audio the server sends back (``streamAudio``) can be
played automatically (:meth:`MediaVerbs.auto_play_audio_stream`).

FreeSWITCH splits the command's arguments with ``switch_separate_string``: a space ends an
argument unless it is inside single quotes, quotes are then removed and backslash escapes
(``\\'`` ``\\"`` ``\\\\`` ``\\n`` ``\\r`` ``\\t`` ``\\s``) resolved. :func:`quote_text` writes any text
(newlines included; only NUL is refused) so that it arrives literally.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from esl.commands import check_line
from esl.exceptions import ChannelError, TimeoutError
from esl.media.protocol import EVENTS, MAX_METADATA, MAX_URL, MIXES, build_metadata
from esl.types import ChannelState

__all__ = ["AudioStreamEvent", "MediaVerbs", "check_stream_url", "quote_text", "rate_word"]

log = logging.getLogger("esl.channel")

_PREFIX = "mod_audio_stream::"
KINDS = ("connect", "disconnect", "json", "play", "error")
# what the module's validate_ws_uri accepts: ws(s)://host[:port][/path...], host of letters, digits, - and .
_URL = re.compile(r"^wss?://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[^\s'\\\"]*)?$")

Hook = Callable[[Any, "AudioStreamEvent"], Any]


def quote_text(text: str) -> str:
    """``text`` as one argument of a FreeSWITCH api command, arriving literally.

    Wrapped in single quotes; ``\\``, ``'``, CR, LF and TAB escaped the way
    ``switch_separate_string`` resolves them. NUL (C strings end there) and text that is not
    valid Unicode are refused with ValueError.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    if "\x00" in text:
        raise ValueError("text must not contain NUL")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("text is not valid Unicode (lone surrogate)") from None
    escaped = (
        text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )
    return f"'{escaped}'"


def check_stream_url(url: str) -> str:
    """``url`` if mod_audio_stream accepts it: ``ws://`` or ``wss://``, a host of letters, digits,
    ``-`` and ``.`` (no IPv6 literal, no user info), an optional numeric port, then an optional
    path (and query) without spaces, quotes or backslashes; ValueError otherwise."""
    if not isinstance(url, str):
        raise TypeError(f"url must be str, not {type(url).__name__}")
    check_line(url, "stream url")
    if "\x00" in url:
        raise ValueError("stream url must not contain NUL")
    if not _URL.match(url):
        raise ValueError(
            f"invalid stream url {url.split('?')[0][:80]!r}: mod_audio_stream takes ws://host[:port][/path] or wss://... "
            "(host: letters, digits, '-', '.'; no spaces, quotes or backslashes)"
        )
    if len(url.encode("utf-8", "surrogateescape")) > MAX_URL:
        raise ValueError(f"stream url longer than {MAX_URL} bytes")
    return url


def rate_word(rate: int | str) -> str:
    """The module's rate argument: ``8k``, ``16k`` or another multiple of 8000 (``24000``)."""
    if isinstance(rate, str):
        text = rate.strip().lower()
        if text in ("8k", "16k"):
            return text
        if not text.isdigit():
            raise ValueError(f"rate must be a multiple of 8000 (or '8k'/'16k'), not {rate!r}")
        rate = int(text)
    if isinstance(rate, bool) or not isinstance(rate, int) or rate <= 0 or rate % 8000:
        raise ValueError(f"rate must be a positive multiple of 8000, not {rate!r}")
    return {8000: "8k", 16000: "16k"}.get(rate, str(rate))


def _rate_int(word: str) -> int:
    return {"8k": 8000, "16k": 16000}.get(word) or int(word)


@dataclass(frozen=True)
class AudioStreamEvent:
    """One ``mod_audio_stream::<kind>`` event of a channel.

    ``kind``: connect, disconnect, json, play or error. ``body``: the event body as sent;
    ``data``: it parsed as JSON (None when it is not JSON: ``json`` carries the server's text
    verbatim, whatever it is). ``event``: the Event itself (channel headers included).
    """

    kind: str
    body: str
    data: Any
    event: Any

    @property
    def file(self) -> str | None:
        """``play``: the file the module wrote the returned audio to."""
        if isinstance(self.data, dict) and isinstance(self.data.get("file"), str):
            return str(self.data["file"])
        return None

    @property
    def code(self) -> int | None:
        """``error``/``disconnect``: the error code or the websocket close code."""
        message = self.data.get("message") if isinstance(self.data, dict) else None
        code = message.get("code") if isinstance(message, dict) else None
        return code if isinstance(code, int) else None

    @property
    def reason(self) -> str | None:
        """``error``: the error text; ``disconnect``: the close reason."""
        message = self.data.get("message") if isinstance(self.data, dict) else None
        if not isinstance(message, dict):
            return None
        value = message.get("error", message.get("reason"))
        return value if isinstance(value, str) else None


class _MediaState:
    """Per-channel hooks, waits and auto-play of the audio stream (kept beside the channel)."""

    __slots__ = ("auto_play", "dispatcher", "hooks", "waiters")

    def __init__(self) -> None:
        self.hooks: dict[str, list[Hook]] = {}
        self.waiters: list[tuple[str, asyncio.Future[AudioStreamEvent]]] = []
        self.auto_play: str | None = None  # the leg to play returned audio to, None: off
        self.dispatcher: Callable[[Any], None] | None = None


_STATES: weakref.WeakKeyDictionary[Any, _MediaState] = weakref.WeakKeyDictionary()


def _event_of(event: Any) -> AudioStreamEvent | None:
    subclass = event.subclass or ""
    if not subclass.startswith(_PREFIX):
        return None
    kind = subclass[len(_PREFIX):]
    body = event.body or ""
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    return AudioStreamEvent(kind, body, data, event)


class MediaVerbs:
    """mod_audio_stream verbs, hooks and waits of a Channel (a mixin: see the module doc)."""

    __slots__ = ()

    if TYPE_CHECKING:  # provided by Channel
        uuid: str
        protocol: Any

        async def _api(self, command: str, timeout: float | None = None) -> str: ...

        def _check_alive(self) -> None: ...

        def on(self, name: str, handler: Callable[..., Any] | None = None) -> Any: ...

        async def wait(self, target: ChannelState | str, timeout: float | None = 30.0) -> Any: ...

    # -- commands ------------------------------------------------------------------------------

    def _media_command_allowed(self) -> None:
        if not getattr(self.protocol, "full_control", True):
            raise ChannelError(
                f"uuid_audio_stream needs the api: use an outbound socket with 'full' control or an inbound "
                f"connection (channel {self.uuid})",
                self.uuid,
            )

    async def _audio_stream(self, args: str) -> str:
        self._check_alive()
        self._media_command_allowed()
        return await self._api(f"uuid_audio_stream {self.uuid} {args}")

    async def start_audio_stream(
        self,
        url: str,
        mix: str = "mono",
        rate: int | str = 16000,
        metadata: Any = None,
        *,
        auto_play: bool | None = None,
        events: bool = True,
        connect_timeout: float | None = None,
    ) -> str:
        """Stream the call's audio to the websocket at ``url`` (``uuid_audio_stream ... start``).

        ``mix``: ``mono`` (what the caller says: the channel's read side), ``mixed`` (both sides
        in one) or ``stereo`` (read left, write right); mixed/stereo send nothing until both
        sides carry audio. ``rate``: 8000, 16000 or another multiple of 8000 (frames are 20 ms of
        16-bit PCM: 640 bytes for 16 kHz mono). ``metadata``: None sends esl's metadata (a JSON
        object with this channel's uuid, mix, rate and channels, which :class:`esl.media.MediaServer`
        matches the stream by); a ``str`` is sent as it is ("" sends none); anything else is
        sent inside esl's metadata as its ``"data"``. It arrives as the first text message.
        The channel is pre-answered if needed. ``events``: subscribe this connection to the
        module's events first. ``auto_play``: turn :meth:`auto_play_audio_stream` on (True) or
        off (False). ``connect_timeout``: also wait that long for the websocket to connect
        (``::connect``), raising ChannelError on ``::error`` and TimeoutError when neither came
        (None: return once FreeSWITCH took the command; the module connects in the background).
        Returns ``+OK Success``; ChannelError when FreeSWITCH refuses (a stream already
        attached, the channel gone, the module not loaded).
        """
        check_stream_url(url)
        if mix not in MIXES:
            raise ValueError(f"mix must be one of {', '.join(MIXES)}, not {mix!r}")
        word = rate_word(rate)
        if metadata is None:
            text = build_metadata(self.uuid, mix, _rate_int(word))
        elif isinstance(metadata, str):
            text = metadata
        else:
            text = build_metadata(self.uuid, mix, _rate_int(word), metadata)
        if len(text.encode("utf-8", "surrogatepass")) > MAX_METADATA:
            raise ValueError(f"metadata longer than {MAX_METADATA} bytes (the module's buffer)")
        args = f"start {url} {mix} {word}"
        if text:
            args += " " + quote_text(text)
        self._check_alive()
        self._media_command_allowed()
        if events:
            await self.ensure_audio_stream_events()
        if auto_play is not None:
            self.auto_play_audio_stream(auto_play)
        if connect_timeout is None:
            return await self._audio_stream(args)
        futs = self._media_expect(("connect", "error"))  # before the command: the event may follow at once
        try:
            reply = await self._audio_stream(args)
            ev = await self._media_wait(futs, connect_timeout)
        finally:
            self._media_forget(futs)
        if ev.kind == "error":
            raise ChannelError(
                f"audio stream of channel {self.uuid} failed to connect: {ev.reason} (code {ev.code})", self.uuid
            )
        return reply

    def _media_expect(self, kinds: tuple[str, ...]) -> list[asyncio.Future[AudioStreamEvent]]:
        """Futures resolved by the next event of each of ``kinds`` (drop them with _media_forget)."""
        state = self._media_state()
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[AudioStreamEvent]] = [loop.create_future() for _ in kinds]
        state.waiters += list(zip(kinds, futs))
        return futs

    def _media_forget(self, futs: list[asyncio.Future[AudioStreamEvent]]) -> None:
        state = _STATES.get(self)
        if state is not None:
            state.waiters = [w for w in state.waiters if w[1] not in futs]
        for fut in futs:
            fut.cancel()

    async def _media_wait(self, futs: list[asyncio.Future[AudioStreamEvent]], timeout: float | None) -> AudioStreamEvent:
        """The first of ``futs`` to resolve; the channel's own wait for its hangup guards it, so a
        hangup fails it with ChannelError and a lost connection with ConnectionError."""
        guard = asyncio.ensure_future(self.wait(ChannelState.HANGUP, timeout=None))
        try:
            done, _ = await asyncio.wait([*futs, guard], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for fut in futs:
                if fut in done:
                    return fut.result()
            if guard in done:
                exc = guard.exception()
                raise exc if exc is not None else ChannelError(f"channel {self.uuid} hung up", self.uuid)
            raise TimeoutError(f"channel {self.uuid}: no mod_audio_stream event within {timeout}s")
        finally:
            guard.cancel()

    async def stop_audio_stream(self, text: str | None = None) -> str:
        """Stop streaming (``stop [text]``): ``text`` is sent as a last text message, then the
        websocket closes (1000). No event follows; files of returned audio are deleted, so play
        them first. ChannelError if no stream is attached."""
        return await self._audio_stream("stop" if text is None else f"stop {quote_text(text)}")

    async def pause_audio_stream(self) -> str:
        """Stop sending frames until :meth:`resume_audio_stream` (the websocket stays open)."""
        return await self._audio_stream("pause")

    async def resume_audio_stream(self) -> str:
        """Send frames again after :meth:`pause_audio_stream`."""
        return await self._audio_stream("resume")

    async def send_audio_stream_text(self, text: Any) -> str:
        """Send a text message to the websocket (``send_text``); anything but a ``str`` is sent
        as compact JSON. The module drops it silently while the websocket is not yet connected."""
        if not isinstance(text, str):
            text = json.dumps(text, separators=(",", ":"), ensure_ascii=False)
        return await self._audio_stream(f"send_text {quote_text(text)}")

    async def ensure_audio_stream_events(self) -> None:
        """Subscribe this connection to the module's CUSTOM events (once; not with ``ALL``)."""
        protocol = self.protocol
        if "ALL" in (getattr(protocol, "subscriptions", None) or ()):
            return
        custom = getattr(protocol, "custom_subscriptions", None)
        if custom is None:
            custom = getattr(getattr(protocol, "protocol", None), "custom_subscriptions", None) or ()
        missing = [name for name in EVENTS if name not in custom]
        if missing:
            fmt = getattr(protocol, "event_format", None) or "plain"
            await protocol.subscribe(*missing, format=fmt)

    # -- events --------------------------------------------------------------------------------

    def _media_state(self) -> _MediaState:
        state = _STATES.get(self)
        if state is None:
            state = _STATES[self] = _MediaState()
            ref = weakref.ref(self)

            def dispatch(event: Any) -> None:
                channel = ref()
                if channel is not None:
                    channel._media_event(event)

            state.dispatcher = dispatch
            self.on("CUSTOM", dispatch)
        return state

    def _media_event(self, event: Any) -> None:
        ev = _event_of(event)
        state = _STATES.get(self)
        if ev is None or state is None:
            return
        if state.waiters:
            keep = []
            for kind, fut in state.waiters:
                if fut.done():
                    continue
                if kind in (ev.kind, "*"):
                    fut.set_result(ev)
                else:
                    keep.append((kind, fut))
            state.waiters = keep
        for hook in [*state.hooks.get(ev.kind, ()), *state.hooks.get("*", ())]:
            self._run_hook(hook, ev)
        if ev.kind == "play" and state.auto_play is not None and ev.file:
            self._run_hook(_play_hook(state.auto_play), ev)

    def _run_hook(self, hook: Hook, ev: AudioStreamEvent) -> None:
        call = getattr(self, "_call", None)
        if call is not None:
            call(hook, self, ev)  # Channel._call: logs errors, runs coroutines as tasks
        else:  # pragma: no cover - outside Channel
            hook(self, ev)

    def on_audio_stream(self, kind: str, handler: Hook | None = None) -> Any:
        """Run ``handler(channel, ev)`` (an :class:`AudioStreamEvent`) on each
        ``mod_audio_stream::<kind>`` event of this channel; ``kind`` is connect, disconnect,
        json, play, error or ``*``. Decorator or direct call; async handlers run as tasks."""
        if kind not in KINDS and kind != "*":
            raise ValueError(f"kind must be one of {', '.join(KINDS)} or '*', not {kind!r}")

        def register(fn: Hook) -> Hook:
            self._media_state().hooks.setdefault(kind, []).append(fn)
            return fn

        return register if handler is None else register(handler)

    def remove_audio_stream_hook(self, kind: str, handler: Hook) -> None:
        """Unregister a handler added with :meth:`on_audio_stream`."""
        state = _STATES.get(self)
        if state is not None and handler in state.hooks.get(kind, ()):
            state.hooks[kind].remove(handler)

    async def wait_audio_stream(self, kind: str = "*", timeout: float | None = 10.0) -> AudioStreamEvent:
        """The next ``mod_audio_stream::<kind>`` event of this channel (``*``: any).

        :class:`~esl.exceptions.TimeoutError` after ``timeout`` s; ChannelError if the channel
        hangs up first. Subscribe first (:meth:`start_audio_stream` does).
        """
        if kind not in KINDS and kind != "*":
            raise ValueError(f"kind must be one of {', '.join(KINDS)} or '*', not {kind!r}")
        self._check_alive()
        futs = self._media_expect((kind,))
        try:
            return await self._media_wait(futs, timeout)
        finally:
            self._media_forget(futs)

    def auto_play_audio_stream(self, enabled: bool = True, leg: str = "aleg") -> None:
        """Play each file of returned audio (``::play``) with ``uuid_broadcast <uuid> <file> <leg>``
        as it arrives (``leg``: aleg, bleg or both); ``enabled=False`` turns it off."""
        if leg not in ("aleg", "bleg", "both"):
            raise ValueError("leg must be 'aleg', 'bleg' or 'both'")
        self._media_state().auto_play = leg if enabled else None

    async def play_audio_stream_file(self, ev: AudioStreamEvent | str, leg: str = "aleg") -> str:
        """Play the file of a ``::play`` event (or a path) to the call: ``uuid_broadcast``."""
        path = ev if isinstance(ev, str) else ev.file
        if not path or any(c.isspace() for c in path) or "'" in path or "\\" in path:
            raise ValueError(f"cannot broadcast {path!r}")
        if leg not in ("aleg", "bleg", "both"):
            raise ValueError("leg must be 'aleg', 'bleg' or 'both'")
        self._check_alive()
        self._media_command_allowed()
        return await self._api(f"uuid_broadcast {self.uuid} {check_line(path, 'path')} {leg}")


def _play_hook(leg: str) -> Hook:
    async def play(channel: Any, ev: AudioStreamEvent) -> None:
        try:
            await channel.play_audio_stream_file(ev, leg)
        except (ChannelError, ValueError) as exc:
            log.warning("auto play of %s on channel %s failed: %s", ev.file, channel.uuid, exc)

    return play
