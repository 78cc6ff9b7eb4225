"""The call-control verbs of a Channel: dialplan applications and ``uuid_*`` API commands.

On an outbound :class:`~esl.session.Session` the verbs that run dialplan
applications are ``sendmsg`` executes on the session's socket; on an
:class:`~esl.inbound.Inbound` connection they are ``sendmsg <uuid>``
executes, and the verbs FreeSWITCH offers as ``uuid_*`` API commands (kill,
bridge, transfer, variables, hold, break, broadcast...) use those. On an
outbound socket without ``full`` control, where ``api`` is refused, the
application equivalent is used where one exists.

A blocking execute sends a client-chosen ``Event-UUID`` and waits for the
``CHANNEL_EXECUTE_COMPLETE`` whose ``Application-UUID`` matches; the wait fails
with :class:`~esl.exceptions.ChannelError` when the channel hangs up first and
with :class:`~esl.exceptions.ConnectionError` when the socket closes first.
"""

from __future__ import annotations

import asyncio
import re
import uuid as _uuid_mod
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from esl.channel.state import ChannelCore
from esl.commands import check_line
from esl.escaping import app_arg, file_string, file_vars, setvar_value
from esl.exceptions import ChannelError, CommandError, OriginateError, TimeoutError
from esl.types import ChannelState, HangupCause

if TYPE_CHECKING:  # pragma: no cover
    from esl.core import Event

__all__ = ["CallControl"]

# Arguments longer than this (or holding a newline) go in the sendmsg body.
_MAX_HEADER_ARG = 1024


class CallControl(ChannelCore):
    """The verbs; mixed into :class:`esl.channel.Channel`."""

    __slots__ = ()

    # -- commands ----------------------------------------------------------------

    def _own(self) -> bool:
        """True when this is the channel of the outbound socket it is driven from."""
        return self.connection.controlled_uuid == self.uuid

    async def execute(
        self,
        app: str,
        arg: object = None,
        *,
        block: bool = True,
        lock: bool = False,
        timeout: float | None = None,
        loops: int | None = None,
        headers: Mapping[str, object] | None = None,
        body: bool = False,
    ) -> "Event":
        """Run dialplan application ``app`` with ``arg`` on this channel (``sendmsg`` execute).

        ``block=True`` waits for the application's ``CHANNEL_EXECUTE_COMPLETE``
        (matched by a client-chosen ``Event-UUID``) and returns it; ``timeout``
        bounds that wait (``None``: until the app ends, the channel hangs up or
        the connection closes). ``block=False`` returns FreeSWITCH's ``+OK``
        reply (queued, not done). ``lock`` adds ``event-lock: true`` so later
        messages wait for this one. Long or multi-line arguments are sent as
        the body (``content-type: text/plain``).
        """
        self._check_alive()
        if block and not self.connection.receives_channel_events:
            raise ChannelError(f"{app} on channel {self.uuid}: block=True needs the channel's events, and this "
                               "connection receives none (Outbound(events=False)); use block=False", self.uuid)
        check_line(app, "application name")
        if not app or " " in app:
            raise ValueError(f"invalid application name {app!r}")
        hdrs: dict[str, str] = {"call-command": "execute", "execute-app-name": app}
        content: str | None = None
        if arg is not None:
            text = arg if isinstance(arg, str) else str(arg)
            if body or "\n" in text or "\r" in text or len(text) > _MAX_HEADER_ARG or text != text.strip():
                content = text  # the body is taken verbatim; a header loses edge spaces
            elif text:
                hdrs["execute-app-arg"] = text
        app_uuid = str(_uuid_mod.uuid4())
        hdrs["Event-UUID"] = app_uuid
        if lock:
            hdrs["event-lock"] = "true"
            locked = self._locked
            if locked is None:
                locked = self._locked = set()
            locked.add(app_uuid)
        if loops is not None:
            hdrs["loops"] = str(int(loops))
        for name, value in (headers or {}).items():
            hdrs[check_line(name, "header name")] = check_line(str(value), "header value")
        fut: asyncio.Future[Any] | None = None
        if block:
            fut = asyncio.get_running_loop().create_future()
            apps = self._apps
            if apps is None:
                apps = self._apps = {}
            apps[app_uuid] = fut  # registered before the command is written
        try:
            reply = await self.connection.sendmsg_raw(None if self._own() else self.uuid, hdrs, content)
            if fut is None:
                return reply
            try:
                return await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"{app} on channel {self.uuid} not complete after {timeout}s") from None
        except CommandError as exc:
            raise ChannelError(f"{app} refused on channel {self.uuid}: {exc.reply.strip()}", self.uuid) from exc
        finally:
            if fut is not None and self._apps:
                self._apps.pop(app_uuid, None)

    async def _api(self, command: str, timeout: float | None = None) -> str:
        kwargs: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            return await self.connection.api(command, **kwargs)
        except CommandError as exc:
            raise ChannelError(f"{command.split()[0]} failed on channel {self.uuid}: {exc.reply.strip()}",
                               self.uuid) from exc

    async def _until(self, target: "ChannelState | str", block: bool, timeout: float | None) -> "Event | None":
        if not block:
            return None
        return await self.wait(target, timeout=timeout if timeout is not None else 30.0)

    # -- call-control verbs ---------------------------------------------------------

    async def answer(self, *, block: bool = True, timeout: float | None = None) -> "Event":
        """Answer the call (``answer`` application)."""
        return await self.execute("answer", block=block, timeout=timeout)

    async def pre_answer(self, *, block: bool = True, timeout: float | None = None) -> "Event":
        """Open early media before answering (``pre_answer``)."""
        return await self.execute("pre_answer", block=block, timeout=timeout)

    async def ring_ready(self, *, block: bool = True, timeout: float | None = None) -> "Event":
        """Signal ringing to the caller (``ring_ready``)."""
        return await self.execute("ring_ready", block=block, timeout=timeout)

    async def park(self) -> Any:
        """Park the channel. Returns once FreeSWITCH accepted it (a park never "completes")."""
        self._check_alive()
        if self._own() or not self.connection.full_control:
            return await self.execute("park", block=False)
        return await self._api(f"uuid_park {self.uuid}")

    async def hangup(self, cause: "HangupCause | str | int" = "NORMAL_CLEARING", *, block: bool = True,
                     timeout: float | None = 10.0) -> "Event | None":
        """Hang up with ``cause`` (validated against :class:`~esl.types.HangupCause`).

        Blocking waits for the channel's CHANNEL_HANGUP. Hanging up a channel
        that is already gone does nothing and returns ``None``. Wherever
        ``api`` is allowed this is ``uuid_kill``, which takes effect at once:
        a ``sendmsg`` hangup would queue behind an event-locked application
        still running (an endless playback, hold music) and wait for it to end.
        On an outbound socket without ``full`` control only the queued
        ``sendmsg`` exists.
        """
        reason = HangupCause.parse(cause)
        if self.gone:
            return None
        if self._own() and not self.connection.full_control:
            await self.connection.sendmsg_raw(None, {"call-command": "hangup", "hangup-cause": reason.name})
        else:
            try:
                await self._api(f"uuid_kill {self.uuid} {reason.name}")
            except ChannelError as exc:
                if "no such channel" not in str(exc).lower():
                    raise
                return self._state_event  # it went away on its own meanwhile (a bridged peer hung up)
        if not block or self.gone or not self.connection.receives_channel_events:
            return self._state_event if self.gone else None
        try:
            return await self.wait(ChannelState.HANGUP, timeout=timeout)
        except OriginateError:
            return self._state_event

    async def playback(
        self,
        path: "str | Sequence[str]",
        *,
        block: bool = True,
        lock: bool | None = None,
        timeout: float | None = None,
        variables: Mapping[str, object] | None = None,
        start_sample: int | None = None,
        endless: bool = False,
        loops: int | None = None,
        terminators: str | None = None,
        leg: str | None = None,
    ) -> Any:
        """Play a file, tone stream or any FreeSWITCH playable (``playback``).

        ``path``: one playable, or several (a list: played in turn as one
        ``file_string://a!b`` file). ``variables``: parameters of each file
        (``{name=value,...}path``, escaped; e.g. ``{"volume": 2}``).
        ``start_sample``: start that many samples in (``path@@<n>``).
        ``endless``: repeat until :meth:`break_media` or hangup (the sendmsg
        ``loops: -1`` header, which ``uuid_break`` ends; FreeSWITCH's
        ``endless_playback`` ignores it; use ``block=False``; FreeSWITCH stops
        repeating what plays under half a second). ``loops``: play it that
        many times.
        ``terminators``: DTMF digits that stop it (``"#"``, ``"any"``,
        ``"none"``; sets ``playback_terminators`` first).
        ``leg``: play on ``"aleg"``, ``"bleg"`` (the bridged leg) or ``"both"``
        through ``uuid_broadcast`` (returns its reply; it does not block).

        ``lock`` (default: the same as ``block``) sends ``event-lock: true``:
        FreeSWITCH then holds every later message for the channel until the
        playback ends. A non-blocking playback (barge-in menus, hold music) is
        not locked by default, so what follows — DTMF handling, a hangup, the
        next prompt — is not stuck behind it; ``break_media()`` stops it.
        """
        paths = [path] if isinstance(path, str) else list(path)
        for p in paths:
            check_line(p, "playback path")
            if not p:
                raise ValueError("empty playback path")
        block_vars = file_vars(variables) if variables else ""
        if len(paths) == 1:
            text = block_vars + paths[0]
        else:
            text = file_string([block_vars + p for p in paths])
        if start_sample is not None:
            if int(start_sample) < 0:
                raise ValueError("start_sample is a sample count >= 0")
            text += f"@@{int(start_sample)}"
        if endless:
            if loops is not None:
                raise ValueError("give endless or loops, not both")
            loops = -1
        app = "playback"
        if terminators is not None:
            if not re.fullmatch(r"any|none|[0-9*#A-D]+", terminators):
                raise ValueError(f"invalid playback terminators {terminators!r}: 'any', 'none' or DTMF digits")
            await self.execute("set", f"playback_terminators={terminators}", block=False)
        arg = app_arg(text) if (variables or len(paths) > 1) else text
        if leg is not None:
            if leg not in ("aleg", "bleg", "both"):
                raise ValueError("leg must be 'aleg', 'bleg' or 'both'")
            if " " in arg or "\t" in arg:
                raise ValueError("a playback on a leg cannot carry spaces (uuid_broadcast splits on them)")
            self._check_alive()
            if endless or loops is not None:
                raise ValueError("a playback on a leg (uuid_broadcast) cannot repeat")
            if not self.connection.full_control:
                return await self.execute("broadcast", f"{app}::{arg} {leg}", block=block)
            return await self._api(f"uuid_broadcast {self.uuid} {app}::{arg} {leg}")
        return await self.execute(app, arg, block=block, lock=block if lock is None else lock,
                                  timeout=timeout, loops=loops, body=arg != text)

    async def say(self, text: str, module: str = "en", lang: str | None = None, kind: str = "NUMBER",
                  method: str = "pronounced", gender: str = "FEMININE", *, block: bool = True,
                  timeout: float | None = None) -> "Event":
        """Say ``text`` with a say module (``say <module>[:<lang>] <kind> <method> <gender> <text>``).

        ``text`` reaches the module literally (no ``${...}`` expansion, quotes kept).
        """
        check_line(text, "say text")
        for part in (module, kind, method, gender) + ((lang,) if lang else ()):
            check_line(part, "say argument")
            if not part or " " in part:
                raise ValueError(f"invalid say argument {part!r}")
        mod = f"{module}:{lang}" if lang else module
        # the text reaches the say module literally: no ${...} expansion, no quote/escape cleanup
        arg = app_arg(f"{mod} {kind} {method} {gender} {setvar_value(text)}")
        return await self.execute("say", arg, block=block, lock=block, timeout=timeout, body=True)

    async def speak(self, text: str, engine: str = "flite", voice: str = "kal", *, block: bool = True,
                    timeout: float | None = None) -> "Event":
        """Text-to-speech (``speak <engine>|<voice>|<text>``); ``text`` is spoken literally, ``${...}`` included."""
        check_line(engine, "speak engine")
        check_line(voice, "speak voice")
        if "|" in engine or "|" in voice:
            raise ValueError("engine and voice must not contain '|'")
        # app_arg: FreeSWITCH would expand ${...} in the text (${system(...)} included)
        return await self.execute("speak", app_arg(f"{engine}|{voice}|{text}"), block=block, lock=block,
                                  timeout=timeout, body=True)

    async def play_and_get_digits(
        self,
        tries: int,
        timeout: int,
        terminators: str,
        file: str,
        minimal: int = 0,
        maximum: int = 128,
        *,
        regexp: str | None = None,
        var_name: str | None = None,
        invalid_file: str | None = None,
        digit_timeout: int | None = None,
        transfer_on_failure: str | None = None,
        sendmsg_timeout: float | None = None,
    ) -> str:
        """Play ``file`` and collect digits; return them (``""`` when none matched).

        Arguments follow genesis and FreeSWITCH's ``play_and_get_digits``:
        ``timeout`` and ``digit_timeout`` are milliseconds. Empty optional
        fields are filled with neutral values, because FreeSWITCH splits the
        argument on spaces and an empty field would shift the others.
        """
        var = var_name or "esl_digits"
        fields = [
            str(int(minimal)), str(int(maximum)), str(int(tries)), str(int(timeout)), terminators or "none",
            file, invalid_file or "silence_stream://250", var, regexp or "\\d+",
            str(int(digit_timeout if digit_timeout is not None else timeout)),
        ]
        if transfer_on_failure:
            fields.append(transfer_on_failure)
        for f in fields:
            check_line(f, "play_and_get_digits field")
            if not f or " " in f:
                raise ValueError(f"invalid play_and_get_digits field {f!r}")
        event = await self.execute("play_and_get_digits", " ".join(fields), lock=True, timeout=sendmsg_timeout)
        if event.get("variable_read_result") == "failure":
            # switch_ivr_read() stores even too few digits in var_name and sets
            # read_result=failure; switch_play_and_get_digits() (switch_ivr_play_say.c)
            # then gives up without clearing var_name, so its value is no answer.
            return ""
        return _result_var(event, var)

    async def read_digits(self, minimal: int, maximum: int, file: str, *, timeout: int = 5000,
                          terminators: str = "#", var_name: str = "esl_read",
                          sendmsg_timeout: float | None = None) -> str:
        """Play ``file`` and read ``minimal``..``maximum`` digits (``read``); return them."""
        fields = [str(int(minimal)), str(int(maximum)), file, var_name, str(int(timeout)), terminators or "none"]
        for f in fields:
            check_line(f, "read field")
            if not f or " " in f:
                raise ValueError(f"invalid read field {f!r}")
        event = await self.execute("read", " ".join(fields), lock=True, timeout=sendmsg_timeout)
        if event.get("variable_read_result") == "failure":
            return ""  # too few digits: switch_ivr_read() still stores them in var_name
        return _result_var(event, var_name)

    async def echo(self, *, block: bool = False, timeout: float | None = None) -> "Event":
        """Echo the caller's audio back (``echo``; it runs until :meth:`break_media` or hangup)."""
        return await self.execute("echo", block=block, timeout=timeout)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    raise TypeError(f"a variable value must be str, int, float or bool, not {type(value).__name__}")


def _result_var(event: "Event", var: str) -> str:
    value = event.get(f"variable_{var}")
    if value is None or value == "_undef_":
        return ""
    return value
