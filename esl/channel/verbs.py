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
import uuid as _uuid_mod
from typing import TYPE_CHECKING, Any, Mapping

from esl.channel.state import ChannelCore
from esl.commands import check_line
from esl.escaping import (
    app_arg,
    check_variable_name,
    multiset_app_arg,
    set_app_arg,
    setvar_multi_arg,
    setvar_value,
)
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

    async def playback(self, path: str, *, block: bool = True, lock: bool | None = None,
                       timeout: float | None = None) -> "Event":
        """Play a file, tone stream or any FreeSWITCH playable (``playback``).

        ``lock`` (default: the same as ``block``) sends ``event-lock: true``:
        FreeSWITCH then holds every later message for the channel until the
        playback ends. A non-blocking playback (barge-in menus, hold music) is
        not locked by default, so what follows — DTMF handling, a hangup, the
        next prompt — is not stuck behind it; ``break_media()`` stops it.
        """
        check_line(path, "playback path")
        return await self.execute("playback", path, block=block, lock=block if lock is None else lock,
                                  timeout=timeout)

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

    async def bridge(self, other: "CallControl | str | object", *, block: bool = True,
                     timeout: float | None = None) -> "Event | None":
        """Bridge this leg with ``other``.

        ``other`` a Channel or Session (two existing legs): ``uuid_bridge``; with
        ``block`` it waits (``timeout``, default 30 s) for this leg's
        CHANNEL_BRIDGE. ``other`` a dial string: the ``bridge`` application,
        which (blocking) returns when the bridge ends (``timeout``: no limit by
        default; hangup and socket close still end the wait).
        """
        self._check_alive()
        if isinstance(other, str):
            check_line(other, "bridge dial string")
            return await self.execute("bridge", other, block=block, timeout=timeout)
        peer: object = getattr(other, "channel", other) if not isinstance(other, ChannelCore) else other
        if not isinstance(peer, CallControl):
            raise TypeError(f"cannot bridge to {other!r}")
        if peer is self:
            raise ValueError("cannot bridge a channel to itself")
        peer._check_alive()
        self.call.add(peer)  # type: ignore[arg-type]  # peer is a Channel: the only CallControl there is
        await self._api(f"uuid_bridge {self.uuid} {peer.uuid}")
        return await self._until("CHANNEL_BRIDGE", block and self.other_uuid != peer.uuid,
                                 30.0 if timeout is None else timeout)

    async def transfer(self, extension: str, dialplan: str = "XML", context: str = "default", *,
                       block: bool = True, timeout: float | None = None) -> Any:
        """Send the channel to ``extension`` in ``dialplan``/``context``."""
        for part in (extension, dialplan, context):
            check_line(part, "transfer argument")
            if not part or " " in part:
                raise ValueError(f"invalid transfer argument {part!r}")
        self._check_alive()
        if self._own() or not self.connection.full_control:
            return await self.execute("transfer", f"{extension} {dialplan} {context}", block=block,
                                      timeout=timeout)
        return await self._api(f"uuid_transfer {self.uuid} {extension} {dialplan} {context}")

    async def record(self, path: str, time_limit: int | None = None) -> Any:
        """Start recording the call to ``path`` in the background (until :meth:`stop_record` or hangup)."""
        check_line(path, "record path")
        if not path or " " in path:
            raise ValueError(f"invalid record path {path!r}")
        self._check_alive()
        if self._own() or not self.connection.full_control:
            # the application takes its limit as "+<seconds>" (a bare second word would be its variables)
            return await self.execute("record_session", path if time_limit is None else f"{path} +{int(time_limit)}")
        limit = "" if time_limit is None else f" {int(time_limit)}"
        return await self._api(f"uuid_record {self.uuid} start {path}{limit}")

    async def stop_record(self, path: str = "all") -> Any:
        """Stop a recording started with :meth:`record` (``"all"``: every one)."""
        check_line(path, "record path")
        if not path or " " in path:
            raise ValueError(f"invalid record path {path!r}")
        self._check_alive()
        if self._own() or not self.connection.full_control:
            return await self.execute("stop_record_session", path)
        return await self._api(f"uuid_record {self.uuid} stop {path}")

    async def send_dtmf(self, digits: str, *, block: bool = True) -> Any:
        """Send DTMF ``digits`` (``0-9*#A-D``, ``w``/``W`` pauses, ``@<ms>`` duration) to the channel."""
        check_line(digits, "DTMF digits")
        if not digits or " " in digits:
            raise ValueError(f"invalid DTMF digits {digits!r}")
        self._check_alive()
        if self._own() or not self.connection.full_control:
            return await self.execute("send_dtmf", digits, block=block)
        return await self._api(f"uuid_send_dtmf {self.uuid} {digits}")

    async def setvar(self, name: str, value: object) -> Any:
        """Set channel variable ``name`` to exactly ``value`` (quotes, backslashes, edge spaces kept).

        ``uuid_setvar`` (or the ``set`` application where ``api`` is refused),
        with the value escaped as FreeSWITCH parses it (:mod:`esl.escaping`).
        ``ValueError`` for a name FreeSWITCH would not store as given, CR/LF/NUL,
        an empty value (use :meth:`unsetvar`) or a value starting ``ARRAY::``.
        """
        check_variable_name(name)
        text = value if isinstance(value, str) else _text(value)
        self._check_alive()
        result: Any
        if not self.connection.full_control:
            result = await self.execute("set", set_app_arg(name, text), body=True)
        else:
            result = await self._api(f"uuid_setvar {self.uuid} {name} {setvar_value(text)}")
        self._set_local({name: text})
        return result

    async def setvars(self, variables: Mapping[str, object]) -> Any:
        """Set several channel variables at once, each to exactly its value (``uuid_setvar_multi``).

        Same rules as :meth:`setvar`; ``${`` in a value is refused here
        (``uuid_setvar_multi`` drops such values); at most 64 variables.
        """
        if not variables:
            return None
        texts = {name: (value if isinstance(value, str) else _text(value)) for name, value in variables.items()}
        self._check_alive()
        result: Any
        if not self.connection.full_control:
            result = await self.execute("multiset", multiset_app_arg(texts), body=True)
        else:
            result = await self._api(f"uuid_setvar_multi {self.uuid} {setvar_multi_arg(texts)}")
        self._set_local(texts)
        return result

    async def getvar(self, name: str) -> str | None:
        """The value of channel variable ``name``, or ``None`` when unset."""
        check_variable_name(name)
        self._check_alive()
        if not self.connection.full_control:
            reply = await self.connection.send(f"getvar {name}")
            text = reply.get("Reply-Text", "")
            return None if text.startswith("-ERR") or text == "_undef_" else text
        text = await self._api(f"uuid_getvar {self.uuid} {name}")
        text = text.rstrip("\n")
        return None if text in ("_undef_", "") else text

    async def unsetvar(self, name: str) -> Any:
        """Unset channel variable ``name``."""
        check_variable_name(name)
        self._check_alive()
        result: Any
        if not self.connection.full_control:
            result = await self.execute("unset", name)
        else:
            result = await self._api(f"uuid_setvar {self.uuid} {name}")
        self._set_local({name: None})
        return result

    async def mute(self, direction: str = "read") -> str:
        """Mute the channel's audio in ``direction`` (``"read"``: what the caller says, or ``"write"``)."""
        if direction not in ("read", "write"):
            raise ValueError("direction must be 'read' or 'write'")
        self._check_alive()
        return await self._api(f"uuid_audio {self.uuid} start {direction} mute 1")

    async def unmute(self, direction: str = "read") -> str:
        """Undo :meth:`mute`."""
        if direction not in ("read", "write"):
            raise ValueError("direction must be 'read' or 'write'")
        self._check_alive()
        return await self._api(f"uuid_audio {self.uuid} start {direction} mute 0")

    async def hold(self) -> str:
        """Put the call on hold (``uuid_hold``)."""
        self._check_alive()
        return await self._api(f"uuid_hold {self.uuid}")

    async def unhold(self) -> str:
        """Take the call off hold (``uuid_hold off``)."""
        self._check_alive()
        return await self._api(f"uuid_hold off {self.uuid}")

    async def echo(self, *, block: bool = False, timeout: float | None = None) -> "Event":
        """Echo the caller's audio back (``echo``; it runs until :meth:`break_media` or hangup)."""
        return await self.execute("echo", block=block, timeout=timeout)

    async def sched_hangup(self, seconds: float, cause: "HangupCause | str | int" = "ALLOTTED_TIMEOUT") -> Any:
        """Hang up after ``seconds`` with ``cause``."""
        reason = HangupCause.parse(cause)
        secs = max(0, int(round(seconds)))
        self._check_alive()
        if not self.connection.full_control:
            return await self.execute("sched_hangup", f"+{secs} {reason.name}")
        return await self._api(f"sched_hangup +{secs} {self.uuid} {reason.name}")

    async def broadcast(self, path: str, leg: str = "aleg") -> str:
        """Play ``path`` to ``leg`` (``aleg``, ``bleg`` or ``both``) without stopping the current app."""
        if leg not in ("aleg", "bleg", "both"):
            raise ValueError("leg must be 'aleg', 'bleg' or 'both'")
        if not path or " " in path:
            raise ValueError(f"invalid path {path!r}")
        self._check_alive()
        return await self._api(f"uuid_broadcast {self.uuid} {check_line(path, 'path')} {leg}")

    async def break_media(self, all: bool = False) -> Any:  # noqa: A002 - FreeSWITCH's word
        """Stop the playback (``all``: and everything queued) running on the channel."""
        self._check_alive()
        if not self.connection.full_control:
            # mod_dptools break_function flushes the queued messages only when its
            # argument is present and *not* "all" (the reverse of uuid_break), so
            # "break all" would leave them queued; any other word flushes.
            return await self.execute("break", "flush" if all else None, block=False)
        return await self._api(f"uuid_break {self.uuid}{' all' if all else ''}")


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
