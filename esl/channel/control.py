"""Call-control verbs beyond media and answer/hangup: bridge, transfer, DTMF, hold, mute, scheduling,
broadcast, SIP responses, media bypass and answering-machine detection (mod_avmd).

Each verb uses FreeSWITCH's ``uuid_*`` api command where ``api`` is allowed
(an Inbound connection, an outbound socket with ``full`` control), and the
dialplan application with the same effect on the socket's own channel
otherwise (an outbound socket without ``full``, where ``api`` is refused).
Where no application exists, the verb raises
:class:`~esl.exceptions.ChannelError` saying it needs ``full`` control.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any, Mapping

from esl.channel.dialstring import sip_dial_string
from esl.channel.state import ChannelCore
from esl.channel.variables import Variables
from esl.channel.verbs import CallControl
from esl.commands import check_line
from esl.escaping import app_arg, dial_string_leg_vars
from esl.exceptions import ChannelError
from esl.types import HangupCause

if TYPE_CHECKING:  # pragma: no cover
    from esl.core import Event

__all__ = ["AVMD_EVENTS", "AVMD_OPTIONS", "Control"]

#: The CUSTOM events of mod_avmd; each carries the channel's ``Unique-ID`` (``channel.on("avmd::beep", fn)``).
AVMD_EVENTS = ("avmd::start", "avmd::beep", "avmd::stop")
#: The options ``avmd_start`` accepts (mod_avmd ``avmd_parse_cmd_data_one_entry``).
AVMD_OPTIONS = frozenset({
    "debug", "report_status", "fast_math", "require_continuous_streak", "sample_n_continuous_streak",
    "sample_n_to_skip", "require_continuous_streak_amp", "sample_n_continuous_streak_amp",
    "simplified_estimation", "inbound_channel", "outbound_channel", "detection_mode", "detectors_n",
    "detectors_lagged_n",
})
_LEGS = ("aleg", "bleg", "both")
_DTMF = re.compile(r"[0-9*#A-Da-dwW]+")
_WORD = re.compile(r"[A-Za-z0-9_.:@+-]+")


def _word(text: str, what: str) -> str:
    check_line(text, what)
    if not text or " " in text:
        raise ValueError(f"invalid {what} {text!r}")
    return text


def _delay(seconds: float) -> str:
    if seconds < 0:
        raise ValueError(f"a delay cannot be negative ({seconds})")
    return f"+{max(0, int(round(seconds)))}"


def _task_id(reply: str) -> int | None:
    m = re.search(r"(?:Added|Deleted):\s*(\d+)", reply)
    return int(m.group(1)) if m else None


def _dtmf_text(digits: str, duration: int | None) -> str:
    check_line(digits, "DTMF digits")
    tones, at, ms_text = (digits or "").partition("@")
    if not _DTMF.fullmatch(tones) or (at and (not ms_text.isdigit() or duration is not None)):
        raise ValueError(f"invalid DTMF digits {digits!r}: 0-9 * # A-D, w/W for pauses (an @<ms> suffix, "
                         "or duration=)")
    if duration is None:
        return digits
    ms = int(duration)
    if ms <= 0:
        raise ValueError("a DTMF duration is a positive number of milliseconds")
    return f"{digits}@{ms}"


class Control(Variables):
    """The verbs of this module; mixed into :class:`esl.channel.Channel`."""

    __slots__ = ()

    def _no_api(self, verb: str) -> ChannelError:
        return ChannelError(f"{verb} on channel {self.uuid} needs `full` control: this outbound socket may not "
                            "run api commands and FreeSWITCH has no application for it", self.uuid)

    def _app_only(self) -> bool:
        """True where the application must be used: ``api`` is refused on this socket."""
        if self.connection.full_control:
            return False
        if not self._own():
            raise ChannelError(f"channel {self.uuid} is not this socket's channel and the socket has no `full` "
                               "control", self.uuid)
        return True

    # -- bridging and transfer ---------------------------------------------------------------

    async def bridge(self, other: "CallControl | str | object | None" = None, *, block: bool = True,
                     timeout: float | None = None, profile: str | None = None, gateway: str | None = None,
                     proxy: str | None = None, params: Mapping[str, object] | None = None) -> "Event | None":
        """Bridge this leg with ``other``.

        * ``other`` a Channel or Session (two existing legs): ``uuid_bridge``
          (``intercept <uuid>`` on an outbound socket without ``full``); with
          ``block`` it waits (``timeout``, default 30 s) for CHANNEL_BRIDGE.
        * ``other`` a dial string (``"sofia/internal/1000@host"``,
          ``"user/1000"``, legs joined with ``,`` or ``|``): the ``bridge``
          application, which (blocking) returns when the bridge ends.
        * switchio style: ``other`` a destination (``user@host``, or ``None``
          for this leg's ``sip_req_uri``) with ``profile=`` (``sofia/<profile>/...``)
          or ``gateway=``, optional ``proxy=`` (``;fs_path=sip:<proxy>``) and
          ``params=`` (variables of the new leg, escaped); see
          :func:`esl.channel.dialstring.sip_dial_string`. ``params=`` with a
          whole dial string (``"user/1000"``) puts ``[vars]`` in front of it.
        """
        self._check_alive()
        if params and profile is None and gateway is None and proxy is None and isinstance(other, str) \
                and "/" in other:
            # a whole dial string plus variables for its leg(s): [vars] in front of it
            check_line(other, "bridge dial string")
            dial = dial_string_leg_vars(params, api=False) + other
            return await self.execute("bridge", app_arg(dial), block=block, timeout=timeout, body=True)
        if profile is not None or gateway is not None or proxy is not None or params:
            if not (other is None or isinstance(other, str)):
                raise TypeError("profile=/gateway=/proxy=/params= build a dial string: other must be a destination")
            dest = other if other is not None else self.get("sip_req_uri")
            if not dest:
                raise ValueError(f"channel {self.uuid} has no sip_req_uri: give the destination")
            if profile is None and gateway is None:
                profile = self.get("sofia_profile_name")
                if not profile:
                    raise ValueError(f"channel {self.uuid} has no sofia_profile_name: give profile= or gateway=")
            dial = sip_dial_string(dest, profile=profile, gateway=gateway, proxy=proxy, params=params, api=False)
            return await self.execute("bridge", app_arg(dial), block=block, timeout=timeout, body=True)
        if isinstance(other, str):
            check_line(other, "bridge dial string")
            return await self.execute("bridge", other, block=block, timeout=timeout)
        if other is None:
            raise TypeError("bridge() needs a Channel, a Session, a dial string or a destination with profile=")
        peer: object = getattr(other, "channel", other) if not isinstance(other, ChannelCore) else other
        if not isinstance(peer, CallControl):
            raise TypeError(f"cannot bridge to {other!r}")
        if peer is self:
            raise ValueError("cannot bridge a channel to itself")
        peer._check_alive()
        self.call.add(peer)  # type: ignore[arg-type]  # peer is a Channel: the only CallControl there is
        if self._app_only():
            # intercept <uuid> bridges this channel with that one (switch_ivr_intercept_session)
            await self.execute("intercept", peer.uuid, block=False)
        else:
            await self._api(f"uuid_bridge {self.uuid} {peer.uuid}")
        return await self._until("CHANNEL_BRIDGE", block and self.other_uuid != peer.uuid,
                                 30.0 if timeout is None else timeout)

    async def transfer(self, extension: str, dialplan: str = "XML", context: str = "default", *,
                       leg: str = "aleg", block: bool = True, timeout: float | None = None) -> Any:
        """Send the channel to ``extension`` in ``dialplan``/``context``.

        ``leg``: ``"aleg"`` (this channel), ``"bleg"`` (the leg bridged to it)
        or ``"both"`` — ``uuid_transfer <uuid> -bleg|-both``, or the
        ``transfer`` application's same flags.
        """
        for part in (extension, dialplan, context):
            _word(part, "transfer argument")
        if leg not in _LEGS:
            raise ValueError("leg must be 'aleg', 'bleg' or 'both'")
        flag = "" if leg == "aleg" else f"-{leg} "
        self._check_alive()
        if self._own() or not self.connection.full_control:
            return await self.execute("transfer", f"{flag}{extension} {dialplan} {context}", block=block,
                                      timeout=timeout)
        return await self._api(f"uuid_transfer {self.uuid} {flag}{extension} {dialplan} {context}")

    async def deflect(self, uri: str) -> Any:
        """Redirect the call elsewhere (SIP REFER) to ``uri`` (``sip:1000@host``): ``uuid_deflect`` / ``deflect``."""
        _word(uri, "deflect uri")
        self._check_alive()
        if self._app_only():
            return await self.execute("deflect", app_arg(uri), block=False)
        return await self._api(f"uuid_deflect {self.uuid} {uri}")

    async def respond(self, code: int | str, reason: str | None = None, *, block: bool = True) -> Any:
        """Answer the caller's INVITE with a SIP response (``respond 486 Busy Here``): ``respond`` application.

        ``code``: a SIP status (100-699); ``reason``: the reason phrase (literal).
        """
        status = int(code)
        if not 100 <= status <= 699:
            raise ValueError(f"invalid SIP status {code!r}")
        text = str(status) if reason is None else f"{status} {check_line(reason, 'reason phrase')}"
        self._check_alive()
        return await self.execute("respond", app_arg(text), block=block, body=True)

    async def bypass_media(self, on: bool = True) -> str:
        """Take FreeSWITCH out of the media path of this bridged call (``uuid_media off``), or back in.

        Needs ``api`` (``full`` control on an outbound socket); to bypass from
        the start set ``bypass_media=true`` before bridging instead.
        """
        self._check_alive()
        if not self.connection.full_control:
            raise self._no_api("bypass_media")
        return await self._api(f"uuid_media off {self.uuid}" if on else f"uuid_media {self.uuid}")

    # -- DTMF ------------------------------------------------------------------------------------

    async def send_dtmf(self, digits: str, *, duration: int | None = None, block: bool = True) -> Any:
        """Send DTMF ``digits`` (``0-9*#A-D``, ``w``/``W`` half/one second pauses) to the channel.

        ``duration``: milliseconds per tone (FreeSWITCH's ``<digits>@<ms>``, which
        ``digits`` may also end with).
        ``uuid_send_dtmf``, or the ``send_dtmf`` application.
        """
        text = _dtmf_text(digits, duration)
        self._check_alive()
        if self._own() or not self.connection.full_control:
            return await self.execute("send_dtmf", text, block=block)
        return await self._api(f"uuid_send_dtmf {self.uuid} {text}")

    async def sched_dtmf(self, delay: float, digits: str, *, duration: int | None = None) -> int | None:
        """Send ``digits`` in ``delay`` seconds; returns the scheduler's task id (for :meth:`sched_del`).

        ``sched_api +<delay> <uuid> uuid_send_dtmf <uuid> <digits>`` (the task
        is in this channel's group, so ``sched_del()`` clears it); without
        ``api``, the ``sched_broadcast`` application running ``send_dtmf``.
        """
        text = _dtmf_text(digits, duration)
        when = _delay(delay)
        self._check_alive()
        if self._app_only():
            return await self._sched_app(f"{when} send_dtmf::{text} aleg")
        reply = await self._api(f"sched_api {when} {self.uuid} uuid_send_dtmf {self.uuid} {text}")
        return _task_id(reply)

    # -- scheduling ------------------------------------------------------------------------------

    async def _sched_app(self, arg: str) -> int | None:
        """Run the ``sched_broadcast`` application and read the task id it leaves in ``last_sched_id``."""
        await self.execute("sched_broadcast", arg)
        value = await self.getvar("last_sched_id")
        return int(value) if value and value.isdigit() else None

    async def sched_hangup(self, seconds: float, cause: "HangupCause | str | int" = "NORMAL_CLEARING") -> Any:
        """Hang up after ``seconds`` with ``cause`` (NORMAL_CLEARING by default, as switchio).

        ``sched_hangup +<secs> <uuid> <cause>`` (or the application); ``0`` hangs
        up at once. The task is in this channel's group: :meth:`sched_del` clears it.
        """
        reason = HangupCause.parse(cause)
        secs = _delay(seconds)
        self._check_alive()
        if not self.connection.full_control:
            return await self.execute("sched_hangup", f"{secs} {reason.name}")
        return await self._api(f"sched_hangup {secs} {self.uuid} {reason.name}")

    async def sched_del(self, task: int | None = None) -> int | None:
        """Cancel scheduled tasks: ``task`` (an id from :meth:`sched_dtmf`/:meth:`broadcast`) or, by
        default, every task of this channel (its group: sched_hangup, sched_broadcast, sched_dtmf...).

        Returns how many were deleted (``sched_del``); ``None`` without ``api``,
        where the ``sched_cancel`` application reports nothing.
        """
        target = self.uuid if task is None else str(int(task))
        if task is not None and int(task) <= 0:
            raise ValueError("a task id is a positive integer")
        self._check_alive()
        if self._app_only():
            await self.execute("sched_cancel", target)
            return None
        return _task_id(await self._api(f"sched_del {target}"))

    # -- broadcast and break -----------------------------------------------------------------------

    async def broadcast(self, path: str, leg: str = "aleg", *, delay: float | None = None,
                        hangup_cause: "HangupCause | str | int | None" = None) -> Any:
        """Play ``path`` on ``leg`` (``aleg``, ``bleg`` or ``both``) alongside whatever runs now.

        ``path``: a file or ``app::arg`` (any application). ``hangup_cause``:
        hang up with it once that is done (``app!CAUSE::arg``). ``delay``:
        seconds from now (``sched_broadcast``; returns the task id where
        FreeSWITCH gives one). ``uuid_broadcast`` / ``sched_broadcast`` api, or
        the ``broadcast`` / ``sched_broadcast`` applications without ``api``.
        """
        if leg not in _LEGS:
            raise ValueError("leg must be 'aleg', 'bleg' or 'both'")
        _word(path, "path")
        if hangup_cause is not None:
            cause = HangupCause.parse(hangup_cause).name
            app, sep, arg = path.partition("::")
            if not sep or not _WORD.fullmatch(app):
                app, arg = "playback", path
            path = f"{app}!{cause}::{arg}"
        self._check_alive()
        app_only = self._app_only()
        if delay is None:
            if app_only:
                return await self.execute("broadcast", f"{path} {leg}")
            return await self._api(f"uuid_broadcast {self.uuid} {path} {leg}")
        when = _delay(delay)
        if app_only:
            return await self._sched_app(f"{when} {path} {leg}")
        return await self._api(f"sched_broadcast {when} {self.uuid} {path} {leg}")

    async def break_media(self, all: bool = False) -> Any:  # noqa: A002 - FreeSWITCH's word
        """Stop the playback (``all``: and everything queued) running on the channel."""
        self._check_alive()
        if not self.connection.full_control:
            # mod_dptools break_function flushes the queued messages only when its
            # argument is present and *not* "all" (the reverse of uuid_break), so
            # "break all" would leave them queued; any other word flushes.
            return await self.execute("break", "flush" if all else None, block=False)
        return await self._api(f"uuid_break {self.uuid}{' all' if all else ''}")

    # -- hold and audio ---------------------------------------------------------------------------

    async def hold(self, display: str | None = None) -> Any:
        """Put the call on hold (``uuid_hold``; the ``hold`` application without ``api``).

        ``display``: text for the phone's display, where the endpoint shows one.
        """
        arg = None if display is None else _word(display, "hold display")
        self._check_alive()
        if self._app_only():
            return await self.execute("hold", arg, block=False)
        return await self._api(f"uuid_hold {self.uuid}" + (f" {arg}" if arg else ""))

    async def unhold(self) -> Any:
        """Take the call off hold (``uuid_hold off``; the ``unhold`` application without ``api``)."""
        self._check_alive()
        if self._app_only():
            return await self.execute("unhold", block=False)
        return await self._api(f"uuid_hold off {self.uuid}")

    async def mute(self, direction: str = "read", level: int = 1) -> Any:
        """Mute the channel's audio in ``direction`` (``"read"``: what the caller says, or ``"write"``).

        ``level``: 1 for silence, higher for comfort noise at that level
        (``uuid_audio <uuid> start <dir> mute <level>``, or ``set_mute``).
        """
        return await self._audio(direction, "mute", int(level))

    async def unmute(self, direction: str = "read") -> Any:
        """Undo :meth:`mute`."""
        return await self._audio(direction, "mute", 0)

    async def set_audio_level(self, direction: str = "read", level: int = 0) -> Any:
        """Change the volume in ``direction`` by ``level`` steps (-4..4; 0 restores it).

        ``uuid_audio <uuid> start <dir> level <level>``, or ``set_audio_level``.
        """
        level = int(level)
        if not -4 <= level <= 4:
            raise ValueError("level must be between -4 and 4")
        return await self._audio(direction, "level", level)

    async def _audio(self, direction: str, what: str, level: int) -> Any:
        if direction not in ("read", "write"):
            raise ValueError("direction must be 'read' or 'write'")
        self._check_alive()
        if self._app_only():
            return await self.execute("set_mute" if what == "mute" else "set_audio_level", f"{direction} {level}",
                                      block=False)
        return await self._api(f"uuid_audio {self.uuid} start {direction} {what} {level}")

    # -- answering machine detection (mod_avmd) -------------------------------------------------------

    async def avmd_start(self, *, check: bool = True, timeout: float | None = None,
                         **options: "bool | int") -> "Event":
        """Start beep detection (mod_avmd's ``avmd_start`` application) on this channel.

        Its events reach the channel's hooks: ``channel.on("avmd::beep", fn)``
        / ``await channel.wait("avmd::beep")`` get the beep (``Beep-Status:
        DETECTED``, ``Frequency``, ``Detection-time``...), ``avmd::start`` and
        ``avmd::stop`` (``Beep-Status``, ``Total-time`` in µs) frame the
        session. They are subscribed here (CUSTOM subclasses) where the socket
        may subscribe (not on an outbound socket without ``full``). FreeSWITCH
        fires each one twice (a bare copy, then one with the channel's data,
        same ``Event-Sequence``); the channel passes the first on and drops the second.

        ``options``: mod_avmd's settings for this session (:data:`AVMD_OPTIONS`),
        e.g. ``inbound_channel=True`` — avmd listens on outbound legs only unless
        told otherwise, and needs the leg's media up (answered or early media).
        mod_avmd refuses silently (a log line); with ``check`` (default) a
        start that fired no ``avmd::start`` raises :class:`~esl.exceptions.ChannelError`.
        Returns the ``avmd::start`` event (the execute's completion where the
        events cannot arrive). (The ``avmd <uuid> start`` api is not used:
        mod_avmd starts no detector from it.)
        """
        parts = []
        for name, value in options.items():
            if name not in AVMD_OPTIONS:
                raise ValueError(f"unknown avmd option {name!r} (known: {', '.join(sorted(AVMD_OPTIONS))})")
            if isinstance(value, bool):
                parts.append(f"{name}={1 if value else 0}")
            elif isinstance(value, int) and value >= 0:
                parts.append(f"{name}={value}")
            else:
                raise ValueError(f"avmd option {name} takes a bool or a non-negative int, not {value!r}")
        return await self._avmd("avmd_start", ",".join(parts) or None, "avmd::start", check, timeout)

    async def avmd_stop(self, *, check: bool = False, timeout: float | None = None) -> "Event":
        """Stop beep detection (``avmd_stop``); returns the ``avmd::stop`` event (``Beep-Status``:
        ``DETECTED``/``NOTDETECTED``, ``Total-time``) where the events arrive, else the execute's
        completion. ``check``: raise :class:`~esl.exceptions.ChannelError` when no detection ran.
        """
        return await self._avmd("avmd_stop", None, "avmd::stop", check, timeout)

    async def _avmd(self, app: str, arg: str | None, subclass: str, check: bool, timeout: float | None) -> "Event":
        """Run ``app`` and return the ``subclass`` event it fires (fired before the app completes)."""
        self._check_alive()
        fired: "asyncio.Future[Any] | None" = None
        if await self._avmd_events():
            fired = self._expect(subclass)  # resolved by the reader, before the app's completion
        try:
            done = await self.execute(app, arg, timeout=timeout)
        finally:
            if fired is not None:
                self._unexpect(fired)
        if fired is None:
            return done
        if not fired.done() or fired.cancelled() or fired.exception() is not None or fired.result() is None:
            if check:
                raise ChannelError(f"{app} on channel {self.uuid}: mod_avmd fired no {subclass} (it listens on "
                                   "outbound legs with media unless inbound_channel=True, runs once at a time; "
                                   "see the FreeSWITCH log)", self.uuid)
            return done
        result: Event = fired.result()
        return result

    async def _avmd_events(self) -> bool:
        """Subscribe the avmd events where the socket may; True when they will arrive."""
        conn = self.connection
        if not conn.full_control or not conn.receives_channel_events:
            return False  # an outbound socket without full gets only myevents: no CUSTOM events
        ensure = getattr(conn, "ensure_custom_events", None)
        if ensure is None:
            return False
        await ensure(AVMD_EVENTS)
        return True
