"""The call-control api commands of the fake, with mod_commands' exact output texts:
originate, uuid_kill, uuid_answer, uuid_bridge, uuid_transfer, uuid_send_dtmf,
uuid_getvar, uuid_setvar, uuid_setvar_multi, uuid_exists, uuid_hold, uuid_break,
uuid_broadcast, uuid_record, uuid_audio, uuid_park, uuid_dump, sched_hangup, hupall.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from esl.testing.calls import normalize_cause

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.calls import FakeChannel
    from esl.testing.connection import ApiHandler, FakeConnection
    from esl.testing.server import FakeFreeSWITCH

__all__ = ["install"]

NO_CHANNEL = "-ERR No such channel!\n"


def install(fake: FakeFreeSWITCH) -> None:
    """Register the call-control api commands on ``fake.api``."""

    def find(uuid: str) -> FakeChannel | None:
        ch = fake.channels.get(uuid)
        return ch if ch is not None and not ch.down else None

    async def originate(arg: str, conn: FakeConnection | None) -> str:
        return await fake.calls.originate(arg, conn)

    def uuid_kill(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if not parts:
            return "-USAGE: <uuid> [cause]\n"
        ch = find(parts[0])
        if ch is None:
            return NO_CHANNEL
        ch.hangup(parts[1] if len(parts) > 1 else "NORMAL_CLEARING")
        return "+OK\n"

    def uuid_answer(arg: str, conn: FakeConnection | None) -> str:
        ch = find(arg.strip())
        if ch is None:
            return "-ERROR\n"
        return "+OK\n" if ch.answer() else "-ERROR\n"

    def uuid_bridge(arg: str, conn: FakeConnection | None) -> str:
        """``<uuid> <other_uuid> [<fallback_uuid>]``: switch_ivr_uuid_bridge; refused when
        neither leg has media (answered or early), a ringing peer is waited for."""
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <other_uuid>\n"
        for who in parts[1:3]:
            if fake.calls.uuid_bridge(parts[0], who):
                return f"+OK {who}\n"
        return "-ERR Invalid uuid\n"

    def uuid_transfer(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
        ch = find(parts[0])
        if ch is None:
            return NO_CHANNEL
        rest = parts[1:]
        legs = [ch]
        if rest[0] in ("-bleg", "-both"):
            flag = rest.pop(0)
            if not rest:
                return "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n"
            candidates = [ch.other_leg] if flag == "-bleg" else [ch, ch.other_leg]
            legs = [leg for leg in candidates if leg is not None]
            if not legs:
                return "-ERR\n"
        dest = rest[0]
        dialplan = rest[1] if len(rest) > 1 else "XML"
        context = rest[2] if len(rest) > 2 else "default"
        for leg in legs:
            leg.transfer(dest, dialplan, context)
            leg._unpark = True
            leg._wake_messages()
        return "+OK\n"

    async def uuid_send_dtmf(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <dtmf_data>\n"
        ch = find(parts[0])
        if ch is None:
            return "-ERR Cannot locate session!\n"
        digits = parts[1].split("@")[0]
        peer = ch.peer
        if peer is not None:
            for d in digits:
                if d in "0123456789*#ABCDabcd":
                    peer.receive_dtmf(d.upper(), 100, "UNKNOWN")
        return f"+OK {ch.uuid} sent DTMF {parts[1]}.\n"

    async def uuid_recv_dtmf(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <dtmf_data>\n"
        ch = find(parts[0])
        if ch is None:
            return "-ERR Cannot locate session!\n"
        await ch.send_dtmf(parts[1].split("@")[0])
        return f"+OK {ch.uuid} received DTMF {parts[1]}.\n"

    def uuid_getvar(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if not parts:
            return "-USAGE: <uuid> <var>\n"
        ch = find(parts[0])
        if ch is None:
            return NO_CHANNEL
        if len(parts) < 2:
            return "-ERR No variable name specified!\n"
        value = ch.variables.get(parts[1])
        return value if value is not None else "_undef_"

    def uuid_setvar(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split(" ", 2)
        if len(parts) < 2 or not parts[0]:
            return "-USAGE: <uuid> <var> [value]\n"
        ch = find(parts[0])
        if ch is None:
            return NO_CHANNEL
        name = parts[1]
        if not name:
            return "-ERR No variable specified\n"
        value = parts[2] if len(parts) > 2 else ""
        if value in ("", "undef"):
            ch.variables.pop(name, None)
        else:
            ch.variables[name] = value
        return "+OK\n"

    def uuid_setvar_multi(arg: str, conn: FakeConnection | None) -> str:
        uuid, _, rest = arg.partition(" ")
        if not uuid or not rest:
            return "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n"
        ch = find(uuid)
        if ch is None:
            return NO_CHANNEL
        pairs = [p for p in rest.split(";") if p]
        if not pairs:
            return "-ERR No variable specified\n"
        for pair in pairs:
            name, _, value = pair.partition("=")
            if value:
                ch.variables[name] = value
            else:
                ch.variables.pop(name, None)
        return "+OK\n"

    def uuid_exists(arg: str, conn: FakeConnection | None) -> str:
        return "true" if find(arg.strip()) is not None else "false"

    def uuid_hold(arg: str, conn: FakeConnection | None) -> str:
        from esl.testing.apps import set_hold

        parts = arg.split()
        if not parts:
            return "-USAGE: [off|toggle] <uuid> [<display>]\n"
        mode = "on"
        if parts[0] in ("off", "toggle"):
            mode = parts.pop(0)
        if not parts:
            return "-USAGE: [off|toggle] <uuid> [<display>]\n"
        ch = find(parts[0])
        if ch is None:
            return "-ERR Operation failed\n"
        on = mode == "on" or (mode == "toggle" and ch.call_state != "HELD")
        set_hold(ch, on)
        return "+OK Success\n"

    def uuid_break(arg: str, conn: FakeConnection | None) -> str:
        """``<uuid> [all] [both]``: ``all`` drops the queued sendmsg messages too, ``both`` does
        the same to the bridged leg; a running sendmsg execute is stopped (loops and all),
        else the current media is broken (CF_BREAK). Goes around the event lock."""
        uuid, _, flag = arg.partition(" ")
        if not uuid:
            return "-USAGE: <uuid> [all]\n"
        ch = find(uuid)
        if ch is None:
            return NO_CHANNEL
        legs = [ch]
        if "both" in flag and ch.other_leg is not None:
            legs.append(ch.other_leg)
        for leg in legs:
            if "all" in flag:
                leg.flush_messages()
            if not leg.stop_broadcast():
                leg.interrupt(only_breakable=True)
        return "+OK\n"

    def uuid_broadcast(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
        ch = find(parts[0])
        if ch is None:
            return "-ERR invalid uuid\n"
        path = parts[1]
        leg = parts[2] if len(parts) > 2 else "aleg"
        by_leg: dict[str, list[FakeChannel | None]] = {
            "aleg": [ch],
            "bleg": [ch.other_leg],
            "both": [ch, ch.other_leg],
            "holdb": [ch],
        }
        targets = by_leg.get(leg, [ch])
        from esl.testing.connection import Command

        app, sep, app_arg = path.partition("::")
        if not sep:
            app, app_arg = "playback", path
        app, bang, cause = app.partition("!")  # switch_ivr_broadcast: "app!cause::arg" hangs up after
        for target in targets:
            if target is None:
                continue
            target.queue_message(
                Command(
                    "sendmsg",
                    [
                        ("call-command", "execute"),
                        ("execute-app-name", app),
                        ("execute-app-arg", app_arg),
                        ("event-lock", "true"),
                    ],
                    None,
                )
            )
        if bang:
            ch.queue_message(Command("sendmsg", [("call-command", "execute"), ("execute-app-name", "hangup"),
                                                 ("execute-app-arg", cause or "normal_clearing"),
                                                 ("event-lock", "true")], None))
        return "+OK Message sent\n"

    def uuid_record(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if len(parts) < 3:
            return "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"
        ch = find(parts[0])
        if ch is None:
            return "-ERR Cannot locate session!\n"
        action, path = parts[1], parts[2]
        post = [("Record-File-Path", path)]
        recordings = ch.recordings
        if action == "start":
            recordings.add(path)
            ch.fire(
                "RECORD_START",
                extended=True,
                post=post,
                calling=("switch_ivr_async.c", "record_callback", 1240),
            )
            return "+OK Success\n"
        if action == "stop":
            stop = set(recordings) if path == "all" else ({path} & recordings)
            if not stop:
                return "-ERR Cannot stop record session!\n"
            for p in stop:
                recordings.discard(p)
                ch.fire(
                    "RECORD_STOP",
                    extended=True,
                    post=[("Record-File-Path", p)],
                    calling=("switch_ivr_async.c", "record_callback", 1331),
                )
            return "+OK Success\n"
        return "+OK Success\n"

    def uuid_audio(arg: str, conn: FakeConnection | None) -> str:
        """``<uuid> start read|write mute|level <n>`` or ``<uuid> stop`` (audio itself is not simulated)."""
        usage = "-USAGE: <uuid> [start [read|write] [mute|level <level>]|stop]\n"
        parts = arg.split(" ") if arg else []
        if len(parts) < 2:
            return usage
        if find(parts[0]) is None:
            return NO_CHANNEL
        if parts[1].lower() == "stop":
            return "+OK\n"
        if (parts[1].lower() != "start" or len(parts) < 5 or parts[2].lower() not in ("read", "write")
                or parts[3].lower() not in ("mute", "level")):
            return usage
        return "+OK\n"

    def uuid_park(arg: str, conn: FakeConnection | None) -> str:
        ch = find(arg.strip())
        if ch is None:
            return NO_CHANNEL
        if ch.current_app != "park":
            from esl.testing.connection import Command

            ch.interrupt(only_breakable=True)
            ch.queue_message(
                Command("sendmsg", [("call-command", "execute"), ("execute-app-name", "park")], None)
            )
        return "+OK\n"

    def uuid_dump(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        ch = find(parts[0]) if parts else None
        if ch is None:
            return "-ERR Cannot locate session!\n"
        pairs = ch.basic_data() + [(f"variable_{k}", v) for k, v in ch.variables.items()]
        if len(parts) > 1 and parts[1] == "json":
            import json

            return json.dumps(dict(pairs))
        from esl import _codec

        return "".join(f"{k}: {_codec.encode_value(v)}\n" for k, v in pairs)

    def sched_hangup(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if len(parts) < 2:
            return "-USAGE: [+]<time> <uuid> [<cause>]\n"
        ch = find(parts[1])
        if ch is None:
            return NO_CHANNEL
        when = parts[0].lstrip("+")
        try:
            secs = float(when)
        except ValueError:
            secs = 0.0
        cause = normalize_cause(parts[2] if len(parts) > 2 else "ALLOTTED_TIMEOUT")
        asyncio.get_running_loop().call_later(secs * fake.timings.scale, ch.hangup, cause)
        return "+OK\n"

    def hupall(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        cause = normalize_cause(parts[0] if parts else "MANAGER_REQUEST")
        var = parts[1] if len(parts) > 1 else None
        value = parts[2] if len(parts) > 2 else None
        for ch in list(fake.channels.values()):
            if var is None or ch.variables.get(var) == value:
                ch.hangup(cause)
        if var is not None:
            return f"+OK hangup all channels matching [{var}]=[{value}] with cause: {cause}\n"
        return f"+OK hangup all channels with cause {cause}\n"

    commands: dict[str, ApiHandler] = {
        "originate": originate,
        "uuid_kill": uuid_kill,
        "uuid_answer": uuid_answer,
        "uuid_bridge": uuid_bridge,
        "uuid_transfer": uuid_transfer,
        "uuid_send_dtmf": uuid_send_dtmf,
        "uuid_recv_dtmf": uuid_recv_dtmf,
        "uuid_getvar": uuid_getvar,
        "uuid_setvar": uuid_setvar,
        "uuid_setvar_multi": uuid_setvar_multi,
        "uuid_exists": uuid_exists,
        "uuid_hold": uuid_hold,
        "uuid_break": uuid_break,
        "uuid_broadcast": uuid_broadcast,
        "uuid_record": uuid_record,
        "uuid_audio": uuid_audio,
        "uuid_park": uuid_park,
        "uuid_dump": uuid_dump,
        "sched_hangup": sched_hangup,
        "hupall": hupall,
    }
    for name, fn in commands.items():
        fake.api[name] = fn
    from esl.testing import audio_stream  # uuid_audio_stream (mod_audio_stream)

    audio_stream.install(fake)
