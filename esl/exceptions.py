"""The typed errors raised by esl.

Every error the library raises on purpose derives from :class:`ESLError`, so
``except esl.exceptions.ESLError`` catches all of them. Names follow genesis
where genesis has one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from esl.core import Event

__all__ = [
    "ESLError",
    "ProtocolError",
    "ConnectionError",
    "AuthenticationError",
    "TimeoutError",
    "CommandError",
    "ChannelError",
    "OriginateError",
]


class ESLError(Exception):
    """Base class of every error raised by esl."""


class ProtocolError(ESLError):
    """The byte stream broke the Event Socket framing (bad or oversized frame), or an event is malformed.

    Raised by ``Parser.feed``, ``messages`` holds the messages completed in
    that same feed before the bad frame, in order (they are good: deliver them).
    """

    messages: list[Event] = []  # noqa: RUF012 - a class default, replaced per instance by the parser


class ConnectionError(ESLError, ConnectionAbortedError):  # noqa: A001 - genesis name
    """The connection to FreeSWITCH failed, was refused, or dropped.

    Every command, job and wait pending on a connection fails with this error
    when the connection goes away; ``reason`` says why when it is known.
    """

    def __init__(self, message: str = "connection lost", reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class AuthenticationError(ESLError):
    """FreeSWITCH refused the password (``-ERR invalid``)."""


class TimeoutError(ESLError, asyncio.TimeoutError):  # noqa: A001 - genesis name
    """FreeSWITCH did not answer within the allowed time."""


class CommandError(ESLError):
    """FreeSWITCH answered a command with ``-ERR`` or ``-USAGE``.

    ``reply`` is the full text FreeSWITCH sent.
    """

    def __init__(self, reply: str, command: str | None = None) -> None:
        super().__init__(reply.strip() if command is None else f"{command!r}: {reply.strip()}")
        self.reply = reply
        self.command = command


class ChannelError(ESLError):
    """A call-control action failed because the channel is gone or refused it."""

    def __init__(self, message: str, uuid: str | None = None, cause: str | None = None) -> None:
        super().__init__(message)
        self.uuid = uuid
        self.cause = cause


class OriginateError(ChannelError):
    """An originated call failed before it was answered; ``cause`` is the hangup cause."""
