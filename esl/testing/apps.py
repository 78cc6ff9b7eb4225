"""Dialplan / sendmsg applications of the fake (mod_dptools as seen on the wire).

Each application is ``async def app(channel, arg) -> str | None``: it fires the
events the real one fires and returns its Application-Response (None gives
``_none_``). ``fake.apps`` starts as a copy of :data:`APPS`; tests may add or
replace entries. An unknown application executes, completes with ``_none_``
and sends a warning log line.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.calls import FakeChannel

__all__ = ["APPS", "AppHandler", "run_app"]

AppHandler = Callable[["FakeChannel", str], Awaitable["str | None"]]


async def run_app(ch: FakeChannel, app: str, arg: str) -> str | None:
    """Run ``app`` on ``ch`` (from ``ch.fake.apps``)."""
    handler = ch.fake.apps.get(app)
    if handler is None:
        ch.fake.log(
            f"Invalid Application {app}\n",
            4,
            file="switch_core_session.c",
            func="switch_core_session_execute_application_get_flags",
            line=2797,
            uuid=ch.uuid,
        )
        return None
    return await handler(ch, arg)


_LOOPS = re.compile(r"[;&]loops=(-?\d+)")


def media_length(ch: FakeChannel, path: str) -> float:
    """How long ``path`` plays, in simulated seconds: ``Timings.media[path]``, else ``math.inf``
    for what never ends by itself (a ``tone_stream`` with ``loops=-1``, ``local_stream://``
    music on hold, ``silence_stream://-1``), else ``Timings.playback``."""
    t = ch.timings
    if path in t.media:
        return t.media[path]
    low = path.strip().lower()
    if low.startswith("local_stream://"):
        return math.inf
    if low.startswith("silence_stream://"):
        ms = low[17:].split(",", 1)[0]
        if ms.lstrip("-").isdigit():
            return math.inf if int(ms) < 0 else int(ms) / 1000 * t.scale
    m = _LOOPS.search(low)
    if m is not None and int(m.group(1)) < 0:
        return math.inf
    return t.playback


async def answer(ch: FakeChannel, arg: str) -> str | None:
    ch.answer()
    return None


async def pre_answer(ch: FakeChannel, arg: str) -> str | None:
    ch.pre_answer()
    return None


async def ring_ready(ch: FakeChannel, arg: str) -> str | None:
    ch.ring_ready()
    return None


async def park(ch: FakeChannel, arg: str) -> str | None:
    await ch.park()
    return None


async def hangup(ch: FakeChannel, arg: str) -> str | None:
    ch.hangup(arg.strip() or "NORMAL_CLEARING")
    return None


async def playback(ch: FakeChannel, arg: str) -> str | None:
    """PLAYBACK_START, the file's length (cut by hangup or uuid_break), PLAYBACK_STOP."""
    path = arg.strip()
    post = []
    if "://" in path:
        post.append(("Playback-File-Type", path.split("://", 1)[0]))
    post.append(("Playback-File-Path", path))
    ch.fire(
        "PLAYBACK_START",
        extended=True,
        post=post,
        calling=("switch_ivr_play_say.c", "switch_ivr_play_file", 1555),
    )
    start = time.monotonic()
    done = await ch.pause(media_length(ch, path), parse=True)
    ms = int((time.monotonic() - start) * 1000)
    ch.variables["playback_seconds"] = str(ms // 1000)
    ch.variables["playback_ms"] = str(ms)
    ch.variables["playback_samples"] = str(ms * 8)
    # cut short by hangup still says "done" (as FreeSWITCH reports it); "break" is uuid_break / break
    status = "done" if done or ch.down else "break"
    ch.fire(
        "PLAYBACK_STOP",
        extended=True,
        post=post + [("Playback-Status", status)],
        calling=("switch_ivr_play_say.c", "switch_ivr_play_file", 2051),
    )
    return "FILE PLAYED"


async def speak(ch: FakeChannel, arg: str) -> str | None:
    await ch.pause(ch.timings.playback, parse=True)
    return None


async def say(ch: FakeChannel, arg: str) -> str | None:
    await ch.pause(ch.timings.playback, parse=True)
    return None


async def sleep(ch: FakeChannel, arg: str) -> str | None:
    try:
        ms = int(arg.strip() or 0)
    except ValueError:
        ms = 0
    await ch.pause(ms / 1000 * ch.timings.scale, parse=True)
    return None


def _assign(ch: FakeChannel, text: str) -> None:
    name, sep, value = text.partition("=")
    name = name.strip()
    if not name:
        return
    if sep and value != "":
        ch.variables[name] = value
    else:
        ch.variables.pop(name, None)


async def set_(ch: FakeChannel, arg: str) -> str | None:
    _assign(ch, arg)
    return None


async def multiset(ch: FakeChannel, arg: str) -> str | None:
    delim = " "
    if arg.startswith("^^"):
        delim, arg = arg[2], arg[3:]
    for part in arg.split(delim):
        if part:
            _assign(ch, part)
    return None


async def unset(ch: FakeChannel, arg: str) -> str | None:
    ch.variables.pop(arg.strip(), None)
    return None


async def export(ch: FakeChannel, arg: str) -> str | None:
    name = arg.partition("=")[0].strip()
    _assign(ch, arg.replace("nolocal:", "", 1) if arg.startswith("nolocal:") else arg)
    exported = ch.variables.get("export_vars", "")
    names = [n for n in exported.split(",") if n]
    if name and name not in names:
        names.append(name)
    ch.variables["export_vars"] = ",".join(names)
    if ch.other_leg is not None:
        _assign(ch.other_leg, arg)
    return None


async def bridge(ch: FakeChannel, arg: str) -> str | None:
    """Dial the B leg(s) (``,`` together, ``|`` in turn); once one answers, CHANNEL_BRIDGE,
    then wait until either side hangs up. The A leg's queue is parsed meanwhile."""
    inherit = {}
    for name in (ch.variables.get("export_vars") or "").split(","):
        if name and name in ch.variables:
            inherit[name] = ch.variables[name]
    try:
        timeout = int(ch.variables.get("call_timeout") or 60)
    except ValueError:
        timeout = 60
    task = ch.fake.spawn(
        ch.fake.calls.dial(
            arg, cid_name=ch.caller_id_name, cid_num=ch.caller_id_number, timeout=timeout, other=ch,
            inherit=inherit,
        )
    )
    await ch.pause(math.inf, breakable=False, parse=True, until=task)
    if ch.down or not task.done():
        task.cancel()
        await asyncio.wait([task])
        return None
    result = task.result()
    if isinstance(result, str):
        ch.variables["originate_disposition"] = result
        ch.variables["last_bridge_hangup_cause"] = result
        return None
    b = result
    b.variables["call_uuid"] = ch.variables.get("call_uuid", ch.uuid)
    ch.answer()
    ch.variables["originate_disposition"] = "SUCCESS"
    ch.fake.calls.bridge(ch, b)
    ch._bridge_waiter = asyncio.get_running_loop().create_future()
    # bridged: messages still run nested (uuid_broadcast / sendmsg to a bridged leg)
    await ch.pause(math.inf, breakable=False, parse=True, until=ch._bridge_waiter)
    ch._bridge_waiter = None
    if ch._uuid_bridge is not None:
        return None  # taken away by uuid_bridge
    if not ch.down and (ch.variables.get("hangup_after_bridge", "true").lower() == "true"):
        ch.hangup(ch.variables.get("bridge_hangup_cause", "NORMAL_CLEARING"))
    return None


async def play_and_get_digits(ch: FakeChannel, arg: str) -> str | None:
    """min max tries timeout terminators file invalid_file var_name regexp [digit_timeout]:
    play, collect, validate, retry; sets ``var_name`` and returns the digits."""
    parts = arg.split(" ")
    parts += [""] * (10 - len(parts))
    try:
        min_d, max_d, tries, timeout = int(parts[0]), int(parts[1]), int(parts[2]), int(parts[3])
    except ValueError:
        ch.fake.log(
            "Usage: play_and_get_digits <min> <max> <tries> <timeout> <terminators> <file> ...",
            3,
            uuid=ch.uuid,
        )
        return None
    terminators, file, invalid, var = parts[4], parts[5], parts[6], parts[7] or "pagd_input"
    regexp = parts[8]
    digit_timeout = int(parts[9]) if parts[9].isdigit() else timeout
    scale = ch.timings.scale
    for _ in range(max(tries, 1)):
        if ch.down:
            break
        if file:
            await playback(ch, file)
        digits, _term = await ch.collect_digits(
            max_d,
            terminators if terminators != "none" else "",
            timeout / 1000 * scale,
            digit_timeout / 1000 * scale,
        )
        # like switch_ivr_read(): the variable is cleared, then holds whatever was
        # typed (even too few digits), and read_result says success/timeout/failure
        ch.variables.pop(var, None)
        if digits:
            ch.variables[var] = digits
        too_small = bool(min_d) and len(digits) < min_d
        ch.variables["read_result"] = "failure" if too_small else ("success" if digits or _term else "timeout")
        valid = not too_small and (not regexp or re.fullmatch(regexp, digits) is not None)
        if digits and valid:
            ch.variables[var + "_terminator"] = _term
            return digits
        if digits and not too_small:  # regexp mismatch: switch_play_and_get_digits() unsets var
            ch.variables.pop(var, None)
            ch.variables[var + "_invalid"] = digits
        if invalid and not ch.down:
            await playback(ch, invalid)
    # switch_play_and_get_digits() does not clear var after the last failed try:
    # too few digits on that try stay in it (with read_result=failure)
    return None


async def read(ch: FakeChannel, arg: str) -> str | None:
    """min max file var_name timeout terminators: one try."""
    parts = arg.split(" ") + [""] * 6
    try:
        min_d, max_d = int(parts[0]), int(parts[1])
        timeout = int(parts[4] or 5000)
    except ValueError:
        return None
    file, var, terminators = parts[2], parts[3] or "read_result", parts[5] or "#"
    if file:
        await playback(ch, file)
    digits, term = await ch.collect_digits(max_d, terminators, timeout / 1000 * ch.timings.scale)
    ok = len(digits) >= min_d
    # switch_ivr_read(): var holds whatever was typed, even too few digits (then read_result=failure)
    ch.variables.pop(var, None)
    if digits:
        ch.variables[var] = digits
    ch.variables["read_result"] = ("success" if digits or term else "timeout") if ok else "failure"
    ch.variables["read_terminator_used"] = term
    return digits if ok else None


async def send_dtmf(ch: FakeChannel, arg: str) -> str | None:
    """Send digits to the far end: DTMF events on the peer leg (bridged or loopback)."""
    digits = arg.split("@")[0].strip()
    peer = ch.peer
    if peer is not None:
        for d in digits:
            if d in "0123456789*#ABCDabcd":
                peer.receive_dtmf(d.upper(), 100, "UNKNOWN")
    return None


async def record(ch: FakeChannel, arg: str) -> str | None:
    parts = arg.split(" ")
    path = parts[0]
    try:
        limit = int(parts[1]) * ch.timings.scale if len(parts) > 1 and parts[1] else ch.timings.record
    except ValueError:
        limit = ch.timings.record
    post = [("Record-File-Path", path)]
    ch.fire("RECORD_START", extended=True, post=post, calling=("switch_ivr_async.c", "record_callback", 1240))
    start = time.monotonic()
    await ch.pause(limit, parse=True)
    ms = int((time.monotonic() - start) * 1000)
    ch.variables["record_seconds"] = str(ms // 1000)
    ch.variables["record_ms"] = str(ms)
    ch.fire(
        "RECORD_STOP",
        extended=True,
        post=post + [("Record-Completion-Cause", "success-maxtime")],
        calling=("switch_ivr_async.c", "record_callback", 1331),
    )
    return None


def _record_stop(ch: FakeChannel, path: str) -> None:
    ch.recordings.discard(path)
    ch.fire(
        "RECORD_STOP",
        extended=True,
        post=[("Record-File-Path", path)],
        calling=("switch_ivr_async.c", "record_callback", 1331),
    )


async def record_session(ch: FakeChannel, arg: str) -> str | None:
    """``<path> [+<limit secs>] [{vars}]``: a background recording (media bug) that returns at once.

    RECORD_START now; RECORD_STOP on ``stop_record_session`` or after the limit.
    """
    parts = arg.split(" ")
    path = parts[0]
    if not path:
        return None
    limit = 0.0
    if len(parts) > 1 and parts[1].startswith("+"):
        digits = re.match(r"\d*", parts[1][1:])
        limit = int(digits.group() or 0) if digits else 0  # atoi
    ch.recordings.add(path)
    ch.fire("RECORD_START", extended=True, post=[("Record-File-Path", path)],
            calling=("switch_ivr_async.c", "record_callback", 1240))
    if limit > 0:

        async def stop_later() -> None:
            await asyncio.sleep(limit * ch.timings.scale)
            if path in ch.recordings and not ch.down:
                _record_stop(ch, path)

        ch.fake.spawn(stop_later())
    return None


async def stop_record_session(ch: FakeChannel, arg: str) -> str | None:
    """``<path>|all``: stop background recordings of ``record_session`` (RECORD_STOP each)."""
    path = arg.strip()
    for p in sorted(ch.recordings) if path == "all" else [path] if path in ch.recordings else []:
        _record_stop(ch, p)
    return None


async def echo(ch: FakeChannel, arg: str) -> str | None:
    await ch.pause(math.inf, parse=True)
    return None


async def transfer(ch: FakeChannel, arg: str) -> str | None:
    """``[-bleg|-both] <exten> [<dialplan>] [<context>]`` (mod_dptools transfer_function)."""
    parts = arg.split()
    flag = parts.pop(0).lower() if parts and parts[0].lower() in ("-bleg", "-both") else ""
    if parts:
        where = (parts[0], parts[1] if len(parts) > 1 else "XML", parts[2] if len(parts) > 2 else "default")
        peer = ch.other_leg
        if flag and peer is not None and not peer.down:
            peer.transfer(*where)
            peer._unpark = True
            peer._wake_messages()
        if flag != "-bleg":
            ch.transfer(*where)
    return None


async def hold(ch: FakeChannel, arg: str) -> str | None:
    set_hold(ch, True)
    return None


async def unhold(ch: FakeChannel, arg: str) -> str | None:
    set_hold(ch, False)
    return None


def set_hold(ch: FakeChannel, on: bool) -> None:
    """CHANNEL_HOLD / CHANNEL_UNHOLD and call state HELD / ACTIVE."""
    if on and ch.call_state != "HELD":
        ch.fire(
            "CHANNEL_HOLD", extended=True, calling=("switch_channel.c", "switch_channel_set_flag_value", 1318)
        )
        ch.set_call_state("HELD")
    elif not on and ch.call_state == "HELD":
        ch.fire(
            "CHANNEL_UNHOLD", extended=True, calling=("switch_channel.c", "switch_channel_clear_flag", 1506)
        )
        ch.set_call_state("ACTIVE")


async def break_(ch: FakeChannel, arg: str) -> str | None:
    """mod_dptools break_function: flush the queue only when ``arg`` is set and not "all";
    stop the running sendmsg execute (it runs as one itself when sent by sendmsg, so the
    media loop it ran inside is broken), else CF_BREAK."""
    flush = bool(arg) and arg.lower() != "all"
    ch.variables["esl_fake_break_flushed"] = "true" if flush else "false"  # a record for tests
    if flush:
        ch.flush_messages()
    if not ch.stop_broadcast():
        ch.interrupt(only_breakable=True)
    return None


async def conference(ch: FakeChannel, arg: str) -> str | None:
    """Join a conference: CUSTOM conference::maintenance add-member / del-member around the stay."""
    name = arg.split("@")[0].split("+")[0].strip() or "default"
    confs = ch.fake.__dict__.setdefault("conferences", {})
    members = confs.setdefault(name, [])
    member_id = str(len(members) + 1)
    members.append(ch.uuid)
    ch.answer()
    common = [("Conference-Name", name), ("Conference-Size", str(len(members))), ("Member-ID", member_id)]
    ch.fire(
        "CUSTOM",
        extended=False,
        subclass="conference::maintenance",
        post=common + [("Action", "add-member")],
        calling=("conference_member.c", "conference_member_add", 813),
    )
    await ch.pause(math.inf, parse=True)
    members.remove(ch.uuid)
    ch.fire(
        "CUSTOM",
        subclass="conference::maintenance",
        post=[
            ("Conference-Name", name),
            ("Conference-Size", str(len(members))),
            ("Member-ID", member_id),
            ("Action", "del-member"),
        ],
        calling=("conference_member.c", "conference_member_del", 1200),
    )
    return None


async def log(ch: FakeChannel, arg: str) -> str | None:
    from esl.testing.connection import _log_level

    level_s, _, text = arg.partition(" ")
    level = _log_level(level_s)
    if level is None:
        level, text = 7, arg
    ch.fake.log(text, level, file="mod_dptools.c", func="log_function", line=1720, uuid=ch.uuid)
    return None


async def info(ch: FakeChannel, arg: str) -> str | None:
    return None


async def socket(ch: FakeChannel, arg: str) -> str | None:
    from esl.testing.outbound import socket_app

    return await socket_app(ch, arg)


APPS: dict[str, AppHandler] = {
    "answer": answer,
    "pre_answer": pre_answer,
    "ring_ready": ring_ready,
    "park": park,
    "hangup": hangup,
    "playback": playback,
    "endless_playback": echo,
    "speak": speak,
    "say": say,
    "sleep": sleep,
    "set": set_,
    "multiset": multiset,
    "unset": unset,
    "export": export,
    "bridge": bridge,
    "play_and_get_digits": play_and_get_digits,
    "read": read,
    "send_dtmf": send_dtmf,
    "record": record,
    "record_session": record_session,
    "stop_record_session": stop_record_session,
    "echo": echo,
    "transfer": transfer,
    "hold": hold,
    "soft_hold": hold,
    "unhold": unhold,
    "break": break_,
    "conference": conference,
    "log": log,
    "info": info,
    "socket": socket,
}
