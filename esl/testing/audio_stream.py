"""``uuid_audio_stream`` in the fake: mod_audio_stream (amigniter, community edition) for real.

``uuid_audio_stream <uuid> start <ws-url> <mono|mixed|stereo> [<8k|16k|rate>] [metadata]``
opens a real websocket (the ``websockets`` client) to the URL, sends the metadata as the first
text message, then streams binary frames of signed 16-bit little-endian PCM at real-time pace
(one every 20 ms, or ``STREAM_BUFFER_SIZE`` ms): the channel's read side is a 440 Hz tone (and,
with ``streams_of(fake).inband_dtmf = True``, the tone pair of each DTMF digit the channel
receives, for the digit's duration, as from a phone that sends DTMF in-band); the write side
(``mixed``/``stereo``) is a 660 Hz tone (the read signal under ``echo``) and carries nothing on a
channel that writes no audio (parked, no bridge, no playing application), so those send no frames,
as on a real switch. ``pause``/``resume``/``send_text``/``stop [text]`` behave as the module does,
with its replies (``+OK Success``, ``-ERR Operation Failed``, ``-USAGE: ...``, and an empty reply
for ``send_text`` without text and for an unknown mix, as checked against the real module).

What the server sends back fires the module's CUSTOM events, each with the channel's headers and
a JSON body: ``mod_audio_stream::connect`` (after the metadata), ``::json`` (any text, verbatim),
``::play`` (a ``streamAudio`` message, written to ``$${temp_dir}/<uuid>_<n>.tmp.r16``...),
``::error`` (connect failed or the connection broke; the stream is detached) and
``::disconnect`` (only when the server closes). ``stop`` and hangup fire nothing and delete the
files. Arguments are split with a port of FreeSWITCH's ``switch_separate_string``
(:func:`separate_string`): quotes stripped, backslash escapes resolved.
"""

from __future__ import annotations

import array
import asyncio
import base64
import binascii
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from websockets.asyncio.client import ClientConnection

    from esl.testing.calls import FakeChannel
    from esl.testing.connection import FakeConnection
    from esl.testing.server import FakeFreeSWITCH

from esl.testing.dialstring import separate_string as _separate

__all__ = ["AudioStreams", "FakeAudioStream", "install", "separate_string", "streams_of"]

USAGE = (
    "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] [wss-url | path] "
    "[mono | mixed | stereo] [8000 | 16000] [metadata]\n"
)
OK = "+OK Success\n"
FAILED = "-ERR Operation Failed\n"
CALLING = ("mod_audio_stream.c", "responseHandler", 16)  # as the real module reports it
#: libwsc's connection_timeout (the module leaves it at 1 s): connect + handshake or ::error "Timeout"
CONNECT_TIMEOUT = 1.0

_HOST = re.compile(r"^wss?://[A-Za-z0-9.-]+(:[0-9]*)?(/.*)?$")
_RAW_EXT = {8000: ".r8", 16000: ".r16", 24000: ".r24", 32000: ".r32", 48000: ".r48", 64000: ".r64"}
_FILE_EXT = {"wav": ".wav", "mp3": ".mp3", "ogg": ".ogg", "pcmu": ".pcmu", "pcma": ".pcma"}
_DTMF = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip
#: applications during which a channel writes audio (what mixed/stereo need on the write side)
_WRITERS = frozenset({
    "echo", "delay_echo", "playback", "endless_playback", "speak", "say", "play_and_get_digits",
    "read", "conference", "bridge", "gentones", "tone_detect", "playback_terminators",
})  # fmt: skip
def separate_string(text: str, limit: int) -> list[str]:
    """switch_separate_string(buf, ' ', argv, limit): the fake's one port (esl.testing.dialstring)."""
    return _separate(text, " ", limit)


# -- the signal ------------------------------------------------------------------------------


def _tone_table(freq: int, rate: int, amplitude: int = 8000) -> array.array[int]:
    """One second of a sine (a whole number of periods, so it loops without a click)."""
    step = 2 * math.pi * freq / rate
    return array.array("h", (int(amplitude * math.sin(step * k)) for k in range(rate)))


class _Signal:
    """The audio a fake channel hears (read) and says (write), frame by frame."""

    def __init__(self, channel: FakeChannel, rate: int, inband_dtmf: bool = False) -> None:
        self.channel = channel
        self.inband_dtmf = inband_dtmf
        self.rate = rate
        self.read_tone = _tone_table(440, rate)
        self.write_tone = _tone_table(660, rate)
        self.pos = 0
        self.digits: list[tuple[str, int]] = []  # (digit, samples left)
        self.seen: Any = None  # the newest DTMF event taken into account
        self._scan()

    def _scan(self) -> list[tuple[str, int]]:
        new: list[tuple[str, int]] = []
        fired = self.channel.events_fired
        for event in reversed(fired):
            if event is self.seen:
                break
            if event.name == "DTMF":
                digit = (event.get("DTMF-Digit") or "").upper()
                samples8k = int(event.get("DTMF-Duration") or "800")
                new.append((digit, max(1, samples8k * self.rate // 8000)))
        if fired:
            self.seen = fired[-1]
        new.reverse()
        return new

    def writes(self) -> bool:
        ch = self.channel
        return ch.other_leg is not None or (ch.current_app or "") in _WRITERS

    def echo(self) -> bool:
        return (self.channel.current_app or "") in ("echo", "delay_echo")

    def next(self, samples: int, channels: int, mixed: bool) -> bytes:
        """The next ``samples`` per channel; ``channels`` 2: read left, write right; ``mixed``: one sum."""
        new = self._scan()
        if self.inband_dtmf:
            self.digits.extend(new)
        rate = self.rate
        start = self.pos
        self.pos = (start + samples) % rate
        idx = [(start + k) % rate for k in range(samples)]
        read = [self.read_tone[k] for k in idx]
        t = 0
        while self.digits and t < samples:
            digit, left = self.digits[0]
            low, high = _DTMF.get(digit, (0, 0))
            take = min(left, samples - t)
            for k in range(t, t + take):
                x = (start + k) / rate
                read[k] = int(5000 * math.sin(2 * math.pi * low * x) + 5000 * math.sin(2 * math.pi * high * x))
            t += take
            if take == left:
                self.digits.pop(0)
            else:
                self.digits[0] = (digit, left - take)
        if channels == 1 and not mixed:
            return array.array("h", read).tobytes()
        write = read if self.echo() else [self.write_tone[k] for k in idx]
        if mixed:
            out = array.array("h", (max(-32768, min(32767, a + b)) for a, b in zip(read, write)))
        else:
            out = array.array("h", [0]) * (2 * samples)
            out[0::2] = array.array("h", read)
            out[1::2] = array.array("h", write)
        if sys.byteorder != "little":  # pragma: no cover
            out.byteswap()
        return out.tobytes()


# -- one stream ------------------------------------------------------------------------------


class FakeAudioStream:
    """The media bug of one channel: a websocket client streaming the channel's audio."""

    def __init__(
        self, owner: AudioStreams, channel: FakeChannel, url: str, mix: str, rate: int, metadata: str | None
    ) -> None:
        self.owner = owner
        self.channel = channel
        self.url = url
        self.mix = mix
        self.rate = rate
        self.channels = 2 if mix == "stereo" else 1
        self.metadata = metadata
        self.paused = False
        self.connected = False
        self.cleaned_up = False  # stop/hangup: no more events, nothing sent
        self.ws: ClientConnection | None = None
        self.files: list[str] = []
        self.frames_sent = 0
        self.bytes_sent = 0
        buf = channel.variables.get("STREAM_BUFFER_SIZE", "")
        packets = 1
        if buf.strip().lstrip("-").isdigit():
            size = int(buf)
            if size % 20 == 0 and size >= 20:
                packets = size // 20
        self.frame_ms = 20 * packets
        self.signal = _Signal(channel, rate, owner.inband_dtmf)
        self.task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<FakeAudioStream {self.channel.uuid} {self.url} {self.mix} {self.rate}>"

    # events

    def fire(self, subclass: str, body: str) -> None:
        """A CUSTOM event with the channel's headers (and variables) and ``body``."""
        if self.cleaned_up:
            return
        ch = self.channel
        pairs = ch.basic_data() + [(f"variable_{k}", v) for k, v in ch.variables.items()]
        fake = ch.fake
        event = fake.factory.make("CUSTOM", pairs, body, subclass, CALLING)
        ch.events_fired.append(event)
        fake.fire_nowait(event, {"event-name": "CUSTOM", "event-subclass": subclass, "unique-id": ch.uuid})

    def _error(self, code: int, message: str) -> None:
        body = json.dumps({"status": "error", "message": {"code": code, "error": message}}, separators=(",", ":"))
        self.fire("mod_audio_stream::error", body)
        self.cleanup(None)  # media_bug_close: the stream is gone, a later stop answers -ERR

    # life

    async def run(self) -> None:
        """Connect, send the metadata, then stream frames and read replies until closed."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

        parts = self.url.split("/", 3)
        origin = f"http://{parts[2]}" if len(parts) > 2 else None
        headers: list[tuple[str, str]] = []
        extra = self.channel.variables.get("STREAM_EXTRA_HEADERS")
        if extra:
            with contextlib.suppress(ValueError):
                obj = json.loads(extra)
                if isinstance(obj, dict):
                    headers = [(k, v) for k, v in obj.items() if isinstance(v, str)]
        try:
            ws = await connect(
                self.url, origin=origin, additional_headers=headers, compression=None,  # type: ignore[arg-type]
                open_timeout=CONNECT_TIMEOUT, ping_interval=None, user_agent_header=None, max_size=None,
            )  # fmt: skip
        except OSError as exc:
            if not self.cleaned_up:
                code = exc.errno or 0
                text = os.strerror(code) if code else str(exc)
                self._error(6, f"{text} (system error {code})" if code else text)
            return
        except (InvalidStatus, InvalidHandshake):
            if not self.cleaned_up:
                self._error(6, "WebSocket upgrade failed")
            return
        except asyncio.TimeoutError:
            if not self.cleaned_up:
                self._error(10, "Timeout")
            return
        self.ws = ws
        if self.cleaned_up:
            await ws.close(1000, "Normal closure")
            return
        self.connected = True
        if self.metadata:
            await ws.send(self.metadata)
        self.fire("mod_audio_stream::connect", '{"status":"connected"}')
        sender = asyncio.ensure_future(self._send_frames(ws))
        try:
            async for message in ws:
                if isinstance(message, str):
                    self._on_text(message)
        except ConnectionClosed:
            pass
        finally:
            sender.cancel()
            self.connected = False
        if self.cleaned_up:
            return
        rcvd = ws.protocol.close_rcvd
        if rcvd is not None:
            body = {"status": "disconnected", "message": {"code": rcvd.code, "reason": rcvd.reason}}
            self.fire("mod_audio_stream::disconnect", json.dumps(body, separators=(",", ":")))
        else:
            self._error(1, "Connection closed without WebSocket CLOSE (abnormal EOF)")

    async def _send_frames(self, ws: ClientConnection) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            await self._pace(ws)

    async def _pace(self, ws: ClientConnection) -> None:
        """Frames at real-time pace (absolute schedule; a late loop catches up a few frames)."""
        loop = asyncio.get_running_loop()
        period = self.frame_ms / 1000
        samples = self.rate * self.frame_ms // 1000
        mixed = self.mix == "mixed"
        two_sided = self.mix != "mono"
        due = loop.time() + period
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            now = loop.time()
            count = 0
            while due <= now and count < 5:  # late: catch up a little, as a media thread does
                due += period
                count += 1
            if due <= now:
                due = now + period
            for _ in range(count):
                if self.cleaned_up:
                    return
                if self.paused or self.channel.down:
                    self.signal.next(samples, 1, False)  # time goes on while paused
                    continue
                if two_sided and not self.signal.writes():
                    self.signal.next(samples, 1, False)
                    continue
                frame = self.signal.next(samples, self.channels, mixed)
                await ws.send(frame)
                self.frames_sent += 1
                self.bytes_sent += len(frame)

    def _on_text(self, text: str) -> None:
        play = self._stream_audio(text)
        if play is not None:
            self.fire("mod_audio_stream::play", play)
        else:
            self.fire("mod_audio_stream::json", text)

    def _stream_audio(self, text: str) -> str | None:
        """processMessage: a valid streamAudio message -> the file written and the ::play body."""
        try:
            root = json.loads(text)
        except ValueError:
            return None
        if not isinstance(root, dict) or root.get("type") != "streamAudio":
            return None
        data = root.get("data")
        if not isinstance(data, dict):
            return None
        kind = data.get("audioDataType")
        audio = data.pop("audioData", None)
        if not isinstance(audio, str):
            return None
        if kind == "raw":
            rate = data.get("sampleRate")
            ext = _RAW_EXT.get(rate) if isinstance(rate, int) and not isinstance(rate, bool) else None
        else:
            ext = _FILE_EXT.get(kind) if isinstance(kind, str) else None
        if ext is None:
            return None
        try:
            decoded = base64.b64decode(audio)
        except (binascii.Error, ValueError):
            return None
        path = os.path.join(self.owner.temp_dir, f"{self.channel.uuid}_{len(self.files)}.tmp{ext}")
        with open(path, "wb") as fh:
            fh.write(decoded)
        self.files.append(path)
        data["file"] = path
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)

    def cleanup(self, text: str | None) -> None:
        """stream_session_cleanup: delete the files, send ``text`` if connected, close; no events."""
        if not self._forget():
            return
        ws = self.ws
        if ws is not None and self.connected:
            self.owner.fake.spawn(self._close(ws, text))
        elif self.task is not None and not self.task.done() and ws is None:
            self.task.cancel()  # still connecting

    def _forget(self) -> bool:
        """Mark cleaned up (no more events or frames) and delete the files; False if it already was."""
        if self.cleaned_up:
            return False
        self.cleaned_up = True
        for path in self.files:
            with contextlib.suppress(OSError):
                os.remove(path)
        self.files.clear()
        with contextlib.suppress(ValueError):
            self.channel.on_hangup.remove(self.owner._hangup)
        self.owner.detach(self)
        return True

    async def _close(self, ws: ClientConnection, text: str | None) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            if text is not None:
                await ws.send(text)
            await ws.close(1000, "Normal closure")


# -- the api command -------------------------------------------------------------------------


class AudioStreams:
    """The attached streams of one fake (by channel uuid) and its ``uuid_audio_stream`` command."""

    def __init__(self, fake: FakeFreeSWITCH) -> None:
        self.fake = fake
        self.streams: dict[str, FakeAudioStream] = {}
        #: where returned audio is written ($${temp_dir})
        self.temp_dir: str = fake.global_vars.setdefault("temp_dir", tempfile.gettempdir())
        #: DTMF a channel receives is also heard in its audio (as from a phone sending DTMF in-band).
        #: Off by default, as on a real switch: DTMF arrives out of band (RFC 2833) and a stream
        #: carries no tones for it (checked on FreeSWITCH 1.11 with mod_audio_stream).
        self.inband_dtmf = False

    def detach(self, stream: FakeAudioStream) -> None:
        """Forget ``stream`` (stop, hangup, error)."""
        if self.streams.get(stream.channel.uuid) is stream:
            del self.streams[stream.channel.uuid]

    def _hangup(self, channel: FakeChannel) -> None:
        stream = self.streams.get(channel.uuid)
        if stream is not None:
            stream.cleanup(None)

    def api(self, arg: str, conn: FakeConnection | None) -> str:
        """``uuid_audio_stream`` as mod_audio_stream's stream_function answers it."""
        argv = separate_string(arg.strip(" \t\r\n"), 6)
        if len(argv) < 2 or (argv[1] == "start" and len(argv) < 4):
            return USAGE
        ch = self.fake.channels.get(argv[0])
        if ch is None or ch.down:
            return FAILED
        cmd = argv[1].lower()
        stream = self.streams.get(ch.uuid)
        if cmd == "stop":
            if stream is None:
                return FAILED
            stream.cleanup(argv[2] if len(argv) > 2 else None)
            return OK
        if cmd in ("pause", "resume"):
            if stream is None:
                return FAILED
            stream.paused = cmd == "pause"
            return OK
        if cmd == "send_text":
            if len(argv) < 3:
                return ""  # the module logs and answers nothing
            if stream is None:
                return FAILED
            if stream.connected and stream.ws is not None:
                self.fake.spawn(_send_quiet(stream.ws, argv[2]))
            return OK
        if cmd != "start":
            return FAILED
        url, mix = argv[2], argv[3]
        if mix not in ("mono", "mixed", "stereo"):
            return ""  # the module logs "invalid mix type" and answers nothing
        rate = 8000
        if len(argv) > 4:
            rate = {"16k": 16000, "8k": 8000}.get(argv[4], _atoi(argv[4]))
        if not _HOST.match(url) or rate <= 0 or rate % 8000:
            return FAILED
        if stream is not None:
            return FAILED  # "bug already attached"
        ch.pre_answer()
        if ch.down:
            return FAILED
        metadata = argv[5] if len(argv) > 5 else None
        stream = FakeAudioStream(self, ch, url, mix, rate, metadata)
        self.streams[ch.uuid] = stream
        ch.on_hangup.append(self._hangup)
        stream.task = self.fake.spawn(self._run(stream))
        return OK

    async def _run(self, stream: FakeAudioStream) -> None:
        try:
            await stream.run()
        except asyncio.CancelledError:
            stream._forget()  # the fake is stopping
            raise
        finally:
            ws = stream.ws
            if ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(1000, "Normal closure"), 2.0)


async def _send_quiet(ws: ClientConnection, text: str) -> None:
    from websockets.exceptions import ConnectionClosed

    with contextlib.suppress(ConnectionClosed):
        await ws.send(text)


def _atoi(text: str) -> int:
    m = re.match(r"\s*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


_REGISTRY: weakref.WeakKeyDictionary[FakeFreeSWITCH, AudioStreams] = weakref.WeakKeyDictionary()


def install(fake: FakeFreeSWITCH) -> AudioStreams:
    """Register ``uuid_audio_stream`` on ``fake.api``; returns the fake's stream registry."""
    streams = AudioStreams(fake)
    _REGISTRY[fake] = streams
    fake.api["uuid_audio_stream"] = streams.api
    return streams


def streams_of(fake: FakeFreeSWITCH) -> AudioStreams:
    """The ``uuid_audio_stream`` state of ``fake`` (attached streams, temp dir)."""
    streams = _REGISTRY.get(fake)
    if streams is None:
        streams = install(fake)
    return streams
