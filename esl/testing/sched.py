"""The fake's task scheduler (``sched_api``, ``sched_del``, ``sched_broadcast``, ``sched_hangup``,
``sched_cancel``) and the smaller call-control applications and api commands that go with the
Channel verbs: ``broadcast``, ``set_mute``, ``set_audio_level``, ``hold``-free ``intercept``,
``respond``, ``deflect``/``uuid_deflect``, ``uuid_media``, ``record_session_mask``/``_unmask``/
``_pause``/``_resume``.

As FreeSWITCH's ``switch_scheduler``: every task has a numeric id (from 1, counting up) and a
group; ``sched_hangup``/``sched_broadcast`` put their task in the channel's group (its uuid),
``sched_api`` in the group named on its line; ``sched_del <id|group>`` answers
``+OK Deleted: <n>``. A task runs once at its time (``+<secs>`` scaled by ``Timings.scale``)
and leaves the table; so does a cancelled one.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from esl.testing.calls import normalize_cause

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.calls import FakeChannel
    from esl.testing.connection import FakeConnection
    from esl.testing.server import FakeFreeSWITCH

__all__ = ["Scheduler", "install"]


class Scheduler:
    """Scheduled tasks of one fake switch: id -> (group, timer)."""

    def __init__(self, fake: FakeFreeSWITCH) -> None:
        self.fake = fake
        self.last_id = 0
        self.tasks: dict[int, tuple[str, asyncio.TimerHandle]] = {}

    def add(self, when: str, group: str, *, api: str) -> int:
        """Schedule the api line ``api`` (``name arg``) ``when`` (``+<secs>`` or an epoch); its id."""
        self.last_id += 1
        task_id = self.last_id
        secs = _seconds(when)
        loop = asyncio.get_running_loop()
        handle = loop.call_later(secs * self.fake.timings.scale, self._run, task_id, api)
        self.tasks[task_id] = (group, handle)
        return task_id

    def _run(self, task_id: int, line: str) -> None:
        if self.tasks.pop(task_id, None) is None:
            return
        name, _, arg = line.partition(" ")
        self.fake.spawn(self.fake.execute_api(name, arg))

    def delete(self, what: str) -> int:
        """``sched_del``: a task id (digits) or every task of a group; how many were removed."""
        if what.isdigit():
            ids = [int(what)] if int(what) in self.tasks else []
        else:
            ids = [i for i, (group, _) in self.tasks.items() if group == what]
        for i in ids:
            _, handle = self.tasks.pop(i)
            handle.cancel()
        return len(ids)


def _seconds(when: str) -> float:
    import time

    try:
        if when.startswith(("+", "@")):
            return max(0.0, float(when[1:]))
        return max(0.0, float(when) - time.time())
    except ValueError:
        return 0.0


def install(fake: FakeFreeSWITCH) -> None:
    """Register the scheduler's api commands and applications, and the small control verbs."""
    sched = Scheduler(fake)
    fake.scheduler = sched  # type: ignore[attr-defined]

    def find(uuid: str) -> FakeChannel | None:
        ch = fake.channels.get(uuid)
        return ch if ch is not None and not ch.down else None

    def sched_api(arg: str, conn: FakeConnection | None) -> str:
        when, _, rest = arg.partition(" ")
        group, _, command = rest.partition(" ")
        if not when or not group or not command:
            return "-ERR Invalid syntax. USAGE: [+@]<time> <group_name> <command_string>[&]\n"
        return f"+OK Added: {sched.add(when, group, api=command.rstrip('&'))}\n"

    def sched_del(arg: str, conn: FakeConnection | None) -> str:
        if not arg:
            return "-ERR Invalid syntax\n"
        return f"+OK Deleted: {sched.delete(arg)}\n"

    def sched_broadcast(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if len(parts) < 3:
            return "-USAGE: [[+]<time>|@time] <uuid> <path> [aleg|bleg|both]\n"
        leg = parts[3] if len(parts) > 3 and parts[3].lower() in ("aleg", "bleg", "both") else "aleg"
        sched.add(parts[0], parts[1], api=f"uuid_broadcast {parts[1]} {parts[2]} {leg}")
        return "+OK Message scheduled\n"

    def sched_hangup(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if not parts:
            return "-USAGE: [+]<time> <uuid> [<cause>]\n"
        ch = find(parts[1]) if len(parts) > 1 else None
        if ch is None:
            return "-ERR No such channel!\n"
        cause = normalize_cause(parts[2] if len(parts) > 2 else "ALLOTTED_TIMEOUT")
        if _seconds(parts[0]) == 0 and parts[0].startswith("+"):
            ch.hangup(cause)
        else:
            sched.add(parts[0], ch.uuid, api=f"uuid_kill {ch.uuid} {cause}")
        return "+OK\n"

    def uuid_deflect(arg: str, conn: FakeConnection | None) -> str:
        uuid, _, uri = arg.partition(" ")
        if not uuid or not uri:
            return "-USAGE: <uuid> <uri>\n"
        ch = find(uuid)
        if ch is None:
            return f"-ERR No such channel {uuid}!\n"
        ch.variables["sip_refer_to"] = uri
        return "+OK:\n"

    def uuid_media(arg: str, conn: FakeConnection | None) -> str:
        parts = arg.split()
        if not parts:
            return "-USAGE: [off] <uuid>\n"
        off = parts[0].lower() == "off"
        ch = find(parts[1] if off and len(parts) > 1 else parts[0])
        if ch is None:
            return "-ERR Operation failed\n"
        if off:
            ch.variables["bypass_media"] = "true"
        else:
            ch.variables.pop("bypass_media", None)
        return "+OK Success\n"

    for name, fn in (("sched_api", sched_api), ("sched_del", sched_del), ("sched_broadcast", sched_broadcast),
                     ("sched_hangup", sched_hangup), ("uuid_deflect", uuid_deflect), ("uuid_media", uuid_media)):
        fake.api[name] = fn

    # -- applications --------------------------------------------------------------------------

    async def broadcast_app(ch: FakeChannel, arg: str) -> str | None:
        path, _, leg = arg.partition(" ")
        # mod_dptools broadcast: both legs unless the argument names one
        out = await fake.execute_api("uuid_broadcast", f"{ch.uuid} {path} {leg.strip() or 'both'}")
        return "BROADCAST_SENT" if out.startswith("+OK") else None

    async def sched_broadcast_app(ch: FakeChannel, arg: str) -> str | None:
        parts = arg.split()
        if len(parts) < 2:
            return None
        leg = parts[2] if len(parts) > 2 and parts[2] in ("aleg", "bleg", "both") else "aleg"
        task_id = sched.add(parts[0], ch.uuid, api=f"uuid_broadcast {ch.uuid} {parts[1]} {leg}")
        ch.variables["last_sched_id"] = str(task_id)
        return None

    async def sched_hangup_app(ch: FakeChannel, arg: str) -> str | None:
        parts = arg.split()
        if not parts:
            return None
        cause = normalize_cause(parts[1] if len(parts) > 1 else "ALLOTTED_TIMEOUT")
        if _seconds(parts[0]) == 0:
            ch.hangup(cause)
        else:
            sched.add(parts[0], ch.uuid, api=f"uuid_kill {ch.uuid} {cause}")
        return None

    async def sched_cancel_app(ch: FakeChannel, arg: str) -> str | None:
        sched.delete(arg.strip() or ch.uuid)
        return None

    async def set_level(ch: FakeChannel, arg: str) -> str | None:
        return None  # audio is not simulated; FreeSWITCH answers nothing either

    async def intercept(ch: FakeChannel, arg: str) -> str | None:
        parts = arg.split()
        target = parts[-1] if parts else ""
        if target and find(target) is not None:
            fake.calls.uuid_bridge(ch.uuid, target)
        return None

    async def respond(ch: FakeChannel, arg: str) -> str | None:
        fake.log(f"Responding with {arg}\n", 7, file="mod_sofia.c", func="sofia_receive_message", line=2384,
                 uuid=ch.uuid)
        return None

    async def deflect(ch: FakeChannel, arg: str) -> str | None:
        ch.variables["sip_refer_to"] = arg
        return None

    async def record_flag(ch: FakeChannel, arg: str) -> str | None:
        return None  # a flag on the recording's media bug; nothing visible on the socket

    apps = {
        "broadcast": broadcast_app, "sched_broadcast": sched_broadcast_app, "sched_hangup": sched_hangup_app,
        "sched_cancel": sched_cancel_app, "set_mute": set_level, "set_audio_level": set_level,
        "intercept": intercept, "respond": respond, "deflect": deflect,
        "record_session_mask": record_flag, "record_session_unmask": record_flag,
        "record_session_pause": record_flag, "record_session_resume": record_flag,
    }
    fake.apps.update(apps)
