"""esl.media: receive calls' audio from FreeSWITCH's mod_audio_stream and talk back.

:class:`MediaServer` is an asyncio websocket server (on the ``websockets`` library) that
mod_audio_stream connects to (``Channel.start_audio_stream(url, ...)``); each connection is an
:class:`AudioStream`: an async iterator of PCM frames matched to its channel, with
``send_text``/``send_json``/``send_audio`` back. :mod:`esl.media.protocol` holds the message
formats and needs no websocket library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from esl.media.protocol import EVENTS, StreamInfo, build_metadata, parse_metadata, stream_audio_message

if TYPE_CHECKING:  # pragma: no cover
    from esl.media.server import MediaServer, ServerStats, StreamHandler
    from esl.media.stream import AudioStream, StreamClosed, StreamStats

__all__ = [
    "EVENTS",
    "AudioStream",
    "MediaServer",
    "ServerStats",
    "StreamClosed",
    "StreamHandler",
    "StreamInfo",
    "StreamStats",
    "build_metadata",
    "parse_metadata",
    "stream_audio_message",
]

_LAZY = {
    "MediaServer": "esl.media.server", "ServerStats": "esl.media.server",
    "StreamHandler": "esl.media.server", "AudioStream": "esl.media.stream",
    "StreamClosed": "esl.media.stream", "StreamStats": "esl.media.stream",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    """Import the websocket-backed classes on first use (``esl.media.protocol`` needs none)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'esl.media' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
