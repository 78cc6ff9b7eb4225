"""mod_avmd (answering-machine beep detection) in the fake: the ``avmd_start``/``avmd_stop``
applications, the ``avmd`` api and the ``avmd::start``/``avmd::beep``/``avmd::stop`` CUSTOM events.

What the fake does is what mod_avmd.c does, as seen on a real FreeSWITCH 1.11 with the module:

* ``avmd_start [opt=val,...]`` listens on an outbound leg with media (``outbound_channel=1``
  by default) and on an inbound leg only with ``inbound_channel=1``; otherwise, or when
  already started, it logs an error and fires nothing. Started, it fires ``avmd::start``
  (``Start-time``, microseconds).
* A beep is "heard" ``Endpoint.beep_after`` seconds after the start on a leg placed to that
  endpoint (``None``: a human, never): ``avmd::beep`` with ``Beep-Status: DETECTED``,
  ``Frequency``, ``Amplitude``, ``Detection-time``... and the channel variables
  ``avmd_detect=TRUE``, ``avmd_total_time=[<ms>]``. Detection ends there (one beep).
* ``avmd_stop`` fires ``avmd::stop`` (``Beep-Status``, ``Total-time`` in µs); a second one
  logs an error only.
* Every event reaches the event socket twice, as mod_avmd fires a copy and queues the event
  to the session, which fires it again with the channel's data: first the bare event, then
  the same event (same ``Event-Sequence``) with the channel headers and variables.
* The api ``avmd <uuid> start`` starts a session that never detects anything (mod_avmd
  launches its detector threads only from the application); ``avmd <uuid> stop`` fires
  ``avmd::stop`` with ``Beep-Status: DETECTED``, a ``Stop-status`` error and a negative
  ``Total-time``, exactly as the real module does.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from esl.testing.events import build_plain

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.calls import FakeChannel
    from esl.testing.connection import FakeConnection
    from esl.testing.server import FakeFreeSWITCH

__all__ = ["install", "BEEP_FREQUENCY"]

#: The frequency (Hz) the fake reports for a detected beep.
BEEP_FREQUENCY = 1000.0
_OPTIONS = frozenset({
    "debug", "report_status", "fast_math", "require_continuous_streak", "sample_n_continuous_streak",
    "sample_n_to_skip", "require_continuous_streak_amp", "sample_n_continuous_streak_amp",
    "simplified_estimation", "inbound_channel", "outbound_channel", "detection_mode", "detectors_n",
    "detectors_lagged_n",
})
_SYNTAX = ("<uuid> < start | stop | set [inbound|outbound|default] | load [inbound|outbound] | reload "
           "| show >")


@dataclass
class _Session:
    start_us: int
    detects: bool
    beeped: bool = False
    task: Any = field(default=None, repr=False)


def _now_us() -> int:
    return int(time.time() * 1_000_000)


def _true(value: str) -> bool:
    return value.lower() in ("1", "true", "yes", "on", "enabled", "active", "allow")


def install(fake: FakeFreeSWITCH) -> None:
    """Register ``avmd_start``, ``avmd_stop`` (applications) and ``avmd`` (api) on ``fake``."""
    sessions: weakref.WeakKeyDictionary[FakeChannel, _Session] = weakref.WeakKeyDictionary()

    def log_error(ch: FakeChannel, text: str) -> None:
        fake.log(text + "\n", 3, file="mod_avmd.c", func="avmd_start_app", line=1460, uuid=ch.uuid)

    def fire(ch: FakeChannel, subclass: str, headers: list[tuple[str, str]]) -> None:
        head = fake.factory.standard("CUSTOM", ("mod_avmd.c", "avmd_fire_event", 700))
        head.insert(1, ("Event-Subclass", subclass))
        pairs = head + [("Unique-ID", ch.uuid), ("Call-command", "avmd"), *headers]
        known = {"event-name": "CUSTOM", "event-subclass": subclass, "unique-id": ch.uuid}
        bare = build_plain(pairs)
        ch.events_fired.append(bare)
        fake.fire_nowait(bare, known)
        # the session-queued copy (same Event-Sequence), fired by the session thread with the channel's data
        extra = ch.basic_data() + [(f"variable_{k}", v) for k, v in ch.variables.items()]
        fake.fire_nowait(build_plain(pairs + extra), known)

    def settings(arg: str) -> dict[str, str] | None:
        opts = {"inbound_channel": "0", "outbound_channel": "1"}
        for piece in filter(None, (p.strip() for p in arg.split(","))):
            key, sep, value = piece.partition("=")
            if not sep or not key or not value or key not in _OPTIONS:
                return None
            opts[key] = value
        return opts

    def listens(ch: FakeChannel, opts: dict[str, str]) -> str | None:
        """Why mod_avmd would not start on ``ch`` (None: it starts)."""
        if ch.direction == "outbound" and _true(opts["outbound_channel"]):
            return None if ch.media_up else f"Channel [{ch.name}] has no codec assigned yet. Please try again"
        if ch.direction == "inbound" and _true(opts["inbound_channel"]):
            return None
        return f"Can't set direction for channel [{ch.name}]"

    async def detect(ch: FakeChannel, s: _Session) -> None:
        endpoint = getattr(ch, "endpoint", None)
        after = getattr(endpoint, "beep_after", None)
        if after is None:
            return
        began = time.time()
        if not await ch.pause(float(after), breakable=False) or ch.down or sessions.get(ch) is not s:
            return
        s.beeped = True
        ms = int((time.time() - began) * 1000)
        ch.variables["avmd_total_time"] = f"[{ms}]"
        ch.variables["avmd_detect"] = "TRUE"
        fire(ch, "avmd::beep", [
            ("Beep-Status", "DETECTED"), ("Frequency", f"{BEEP_FREQUENCY:f}"), ("Frequency-variance", "0.000027"),
            ("Amplitude", "10370.192649"), ("Amplitude-variance", "9612.628918"), ("Detection-time", str(ms * 1000)),
            ("Detector-resolution", "1"), ("Detector-offset", "0"), ("Detector-index", "0"),
        ])

    def start(ch: FakeChannel, detects: bool) -> _Session:
        s = _Session(_now_us(), detects)
        sessions[ch] = s
        fire(ch, "avmd::start", [("Start-time", str(s.start_us))])
        if detects:
            s.task = fake.spawn(detect(ch, s))
        return s

    async def avmd_start(ch: FakeChannel, arg: str) -> str | None:
        if ch in sessions:
            log_error(ch, "Avmd already started!")
            return None
        opts = settings(arg)
        if opts is None:
            log_error(ch, "Failed to set dynamic parameters for avmd session. Parsing error, please check the "
                          "parameters passed to this APP.")
            return None
        why = listens(ch, opts)
        if why is not None:
            log_error(ch, why)
            return None
        start(ch, True)
        return None

    def stop(ch: FakeChannel, s: _Session) -> None:
        del sessions[ch]
        if s.task is not None and not s.task.done():
            s.task.cancel()

    async def avmd_stop(ch: FakeChannel, arg: str) -> str | None:
        s = sessions.get(ch)
        if s is None:
            log_error(ch, f"Stop failed - no avmd session running on this channel [{ch.name}]!")
            return None
        stop(ch, s)
        fire(ch, "avmd::stop", [("Beep-Status", "DETECTED" if s.beeped else "NOTDETECTED"),
                                ("Total-time", str(_now_us() - s.start_us))])
        return None

    def avmd_api(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if not parts:
            return f"-ERR, bad command!\n-USAGE: {_SYNTAX}\n\n"
        if len(parts) > 2:
            return f"-ERR, avmd takes [1] min and [2] max parameters!\n-USAGE: {_SYNTAX}\n\n"
        uuid, command = parts[0], (parts[1] if len(parts) > 1 else "")
        ch = fake.channels.get(uuid)
        if ch is None or ch.down:
            return f"-ERR, no FreeSWITCH session for uuid [{uuid}]!\n-USAGE: {_SYNTAX}\n\n"
        s = sessions.get(ch)
        if s is not None:
            if command.lower() == "stop":
                stop(ch, s)
                # mod_avmd's api passes beep status 0 (= BEEP_DETECTED) and no info, and never set stop_time
                fire(ch, "avmd::stop", [("Beep-Status", "DETECTED"),
                                        ("Stop-status", "ERROR (AVMD SESSION OBJECT NOT FOUND IN MEDIA BUG)"),
                                        ("Total-time", str(-s.start_us))])
                return f"+OK\n [{uuid}] [{ch.name}] stopped\n\n"
            return f"-ERR, avmd for FreeSWITCH session [{uuid}]\n already started\n\n"
        if command.lower() == "stop":
            return f"+ERR, avmd has not yet been started on\n [{uuid}] [{ch.name}]\n\n"
        why = listens(ch, {"inbound_channel": "0", "outbound_channel": "1"})
        if why is not None:
            if "codec" in why:
                return (f"-ERR, channel [{ch.name}] for FreeSWITCH session [{uuid}]\n has no read codec assigned "
                        "yet. Please try again.\n\n")
            return (f"-ERR, can't set direction for channel [{ch.name}]\n for FreeSWITCH session [{uuid}]. "
                    "Please check avmd configuration\n\n")
        if command.lower() != "start":
            return f"-ERR, did you mean\n api avmd {uuid} start ?\n-USAGE: {_SYNTAX}\n\n"
        start(ch, False)  # the api launches no detector threads: it never hears a beep
        return f"+OK\n [{uuid}] [{ch.name}] started!\n\n"

    fake.apps["avmd_start"] = avmd_start
    fake.apps["avmd_stop"] = avmd_stop
    fake.api["avmd"] = avmd_api
