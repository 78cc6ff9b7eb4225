"""What mod_audio_stream and an ``esl.media`` server say to each other, without any I/O.

The module (github.com/amigniter/mod_audio_stream) opens a websocket to the URL given to
``uuid_audio_stream <uuid> start <url> <mono|mixed|stereo> <rate> [metadata]``, sends the
metadata as the first text message (nothing when there is none), then one binary message of
signed 16-bit little-endian PCM per 20 ms (longer with ``STREAM_BUFFER_SIZE``). The server may
answer with text: any text becomes a ``mod_audio_stream::json`` event, and a
``{"type": "streamAudio", ...}`` message is written to a file and announced by
``mod_audio_stream::play``.

esl's own metadata (built by :func:`build_metadata`, sent by ``Channel.start_audio_stream``) is
one JSON object: ``{"uuid": <channel uuid>, "mix": ..., "rate": ..., "channels": ..., "data":
<the caller's own metadata>}``; :func:`parse_metadata` reads it back, and
:func:`uuid_from_path` reads a uuid from the URL (``ws://host/stream/<uuid>`` or ``?uuid=``)
(a canonical uuid as a path segment) for streams started with other metadata.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "AUDIO_TYPES",
    "EVENTS",
    "EVENT_CONNECT",
    "EVENT_DISCONNECT",
    "EVENT_ERROR",
    "EVENT_JSON",
    "EVENT_PLAY",
    "MAX_METADATA",
    "MAX_URL",
    "MIXES",
    "RAW_RATES",
    "StreamInfo",
    "build_metadata",
    "channels_of",
    "frame_bytes",
    "is_canonical_uuid",
    "parse_metadata",
    "stream_audio_message",
    "uuid_from_path",
]

EVENT_CONNECT = "mod_audio_stream::connect"
EVENT_DISCONNECT = "mod_audio_stream::disconnect"
EVENT_ERROR = "mod_audio_stream::error"
EVENT_JSON = "mod_audio_stream::json"
EVENT_PLAY = "mod_audio_stream::play"
#: every CUSTOM subclass the module fires
EVENTS = (EVENT_CONNECT, EVENT_DISCONNECT, EVENT_ERROR, EVENT_JSON, EVENT_PLAY)

#: ``mono``: what the channel hears (its read side); ``mixed``: both sides mixed into one;
#: ``stereo``: read side left, write side right (interleaved)
MIXES = ("mono", "mixed", "stereo")
#: sample rates the module accepts for ``"audioDataType": "raw"`` audio sent back
RAW_RATES = (8000, 16000, 24000, 32000, 48000, 64000)
#: ``audioDataType`` values the module turns into a file (``raw`` needs a ``sampleRate``)
AUDIO_TYPES = ("raw", "wav", "mp3", "ogg", "pcmu", "pcma")
#: the module copies the metadata into an 8192-byte buffer (with its terminating NUL)
MAX_METADATA = 8191
#: and the URL into a 4096-byte one
MAX_URL = 4095

_UUID_SEGMENT = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def channels_of(mix: str) -> int:
    """Interleaved channels in the frames of a ``mix`` (2 for ``stereo``, else 1)."""
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {', '.join(MIXES)}, not {mix!r}")
    return 2 if mix == "stereo" else 1


def frame_bytes(rate: int, channels: int = 1, ms: int = 20) -> int:
    """Bytes in one frame of ``ms`` milliseconds (16-bit samples): 640 for 16 kHz mono 20 ms."""
    return rate * ms // 1000 * 2 * channels


def build_metadata(uuid: str, mix: str, rate: int, data: Any = None) -> str:
    """esl's metadata for a stream of channel ``uuid``: one compact JSON object (see module doc).

    ``data`` (anything JSON can encode) is the caller's own metadata, passed under ``"data"``.
    """
    obj: dict[str, Any] = {"uuid": uuid, "mix": mix, "rate": rate, "channels": channels_of(mix)}
    if data is not None:
        obj["data"] = data
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class StreamInfo:
    """What the first text message and the URL say about a stream.

    ``uuid`` is None when neither names the channel. ``metadata`` is the parsed JSON of the
    first text (None when it was not JSON), ``data`` its ``"data"`` member for esl's own
    metadata (else the whole parsed metadata).
    """

    uuid: str | None
    rate: int | None
    channels: int | None
    mix: str | None
    metadata_text: str | None
    metadata: Any
    data: Any


def uuid_from_path(path: str) -> str | None:
    """The channel uuid a URL path names: a ``uuid=`` query parameter, else the last path segment
    shaped like a uuid (8-4-4-4-12 hex digits; other ids go in the query)."""
    parts = urlsplit(path)
    query = parse_qs(parts.query)
    for key in ("uuid", "call_uuid", "channel"):
        values = query.get(key)
        if values and values[0]:
            return values[0]
    for segment in reversed([unquote(s) for s in parts.path.split("/") if s]):
        if _UUID_SEGMENT.match(segment):
            return segment
    return None


def is_canonical_uuid(text: str) -> bool:
    """True for an 8-4-4-4-12 hex uuid (what FreeSWITCH makes unless ``origination_uuid`` says else)."""
    return bool(_UUID_SEGMENT.match(text))


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text.endswith("k") and text[:-1].isdigit():
            return int(text[:-1]) * 1000
        if text.isdigit():
            return int(text)
    return None


def parse_metadata(text: str | None, path: str = "/") -> StreamInfo:
    """Read esl's metadata (or any JSON object with ``uuid``/``rate``/``mix``/``channels``), falling
    back to the URL (``?uuid=&rate=&mix=`` or a uuid as the last path segment)."""
    parsed: Any = None
    if text is not None:
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
    fields: Mapping[str, Any] = parsed if isinstance(parsed, dict) else {}
    query = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items() if v}
    uuid = fields.get("uuid")
    if not isinstance(uuid, str) or not uuid:
        uuid = uuid_from_path(path)
    mix = fields.get("mix", query.get("mix"))
    if mix not in MIXES:
        mix = None
    rate = _int(fields.get("rate", fields.get("sampleRate", query.get("rate"))))
    if rate is not None and (rate <= 0 or rate % 8000):
        rate = None
    channels = _int(fields.get("channels", query.get("channels")))
    if channels not in (1, 2):
        channels = channels_of(mix) if mix is not None else None
    data = fields["data"] if "data" in fields and "uuid" in fields else parsed
    return StreamInfo(uuid, rate, channels, mix, text, parsed, data)


def stream_audio_message(audio: bytes, rate: int | None = None, audio_type: str = "raw") -> str:
    """The ``streamAudio`` text message the module turns into a file and a ``::play`` event.

    ``audio`` is raw signed 16-bit little-endian mono PCM at ``rate`` (one of :data:`RAW_RATES`)
    for ``audio_type="raw"``, else the bytes of a wav/mp3/ogg file or of G.711 (pcmu/pcma).
    """
    if not isinstance(audio, (bytes, bytearray, memoryview)):
        raise TypeError(f"audio must be bytes, not {type(audio).__name__}")
    if audio_type not in AUDIO_TYPES:
        raise ValueError(f"audio_type must be one of {', '.join(AUDIO_TYPES)}, not {audio_type!r}")
    data: dict[str, Any] = {"audioDataType": audio_type}
    if audio_type == "raw":
        if rate not in RAW_RATES:
            raise ValueError(f"raw audio needs a sample rate in {RAW_RATES}, not {rate!r}")
        if len(audio) % 2:
            raise ValueError("raw audio must be whole 16-bit samples (an even number of bytes)")
    if rate is not None:
        data["sampleRate"] = rate
    data["audioData"] = base64.b64encode(bytes(audio)).decode("ascii")
    return json.dumps({"type": "streamAudio", "data": data}, separators=(",", ":"))
