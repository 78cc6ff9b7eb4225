"""The api commands every FakeFreeSWITCH has, with FreeSWITCH's output texts
(mod_commands, mod_db): status, version, uptime, echo, eval, expand, create_uuid,
global_getvar / global_setvar, md5, show (``sqldb.py``: channels / calls / bridged_calls,
count, like, as json|xml|delim), hostname, switchname, module_exists, reloadxml, db,
hash, bgapi. The call-control ones (originate, uuid_*,
sched_hangup, hupall) are in ``callapi.py``.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid as uuidlib
from typing import TYPE_CHECKING

from esl.testing import sqldb

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.connection import ApiHandler, FakeConnection
    from esl.testing.server import FakeFreeSWITCH

__all__ = ["expand", "install"]

VERSION = "1.10.12-release+git~20261122T000000Z~fake~64bit (fake 64bit)"

_VAR = re.compile(r"\$\$?\{([^{}]*)\}")


def expand(fake: FakeFreeSWITCH, text: str, variables: dict[str, str] | None = None) -> str:
    """Expand ``${var}``, ``$${global}`` and ``${strftime(fmt)}`` as switch_channel_expand_variables
    does for the cases tests need; unknown variables expand to the empty string."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("strftime(") and name.endswith(")"):
            return time.strftime(name[9:-1] or "%Y-%m-%d %H:%M:%S")
        if m.group(0).startswith("$$"):
            return fake.global_vars.get(name, "")
        if variables is not None and name in variables:
            return str(variables[name])
        return fake.global_vars.get(name, "")

    prev = None
    while prev != text and "${" in text:
        prev, text = text, _VAR.sub(sub, text)
    return text


def install(fake: FakeFreeSWITCH) -> None:
    """Register the built-in api commands on ``fake.api`` (tests may replace any of them)."""

    def status(arg: str, conn: FakeConnection | None) -> str:
        up = time.time() - fake.started_at
        ms = int(up * 1000)
        secs, ms = divmod(ms, 1000)
        mins, secs = divmod(secs, 60)
        hours, mins = divmod(mins, 60)
        days, hours = divmod(hours, 24)
        live = len(getattr(fake, "channels", {}))
        return (
            f"UP 0 years, {days} days, {hours} hours, {mins} minutes, {secs} seconds, {ms} milliseconds, "
            f"0 microseconds\nFreeSWITCH (Version {VERSION.split(' ')[0]}  64bit) is ready\n"
            f"{fake.sessions_since_startup} session(s) since startup\n"
            f"{live} session(s) - peak {live}, last 5min {live} \n"
            "0 session(s) per Sec out of max 200, peak 0, last 5min 0 \n"
            "2000 session(s) max\nmin idle cpu 0.00/100.00\nCurrent Stack Size/Max 240K/8192K\n"
        )

    def version(arg: str, conn: FakeConnection | None) -> str:
        return f"FreeSWITCH Version {VERSION}\n"

    def uptime(arg: str, conn: FakeConnection | None) -> str:
        up = time.time() - fake.started_at
        scale = {"us": 1e6, "ms": 1e3, "s": 1, "m": 1 / 60, "h": 1 / 3600, "d": 1 / 86400}
        return f"{int(up * scale.get(arg.strip() or 's', 1))}\n"

    def echo(arg: str, conn: FakeConnection | None) -> str:
        return arg

    def eval_(arg: str, conn: FakeConnection | None) -> str:
        variables = None
        if arg.startswith("uuid:"):
            uid, _, arg = arg[5:].partition(" ")
            channel = getattr(fake, "channels", {}).get(uid)
            variables = channel.variables if channel is not None else None
        return expand(fake, arg, variables)

    def create_uuid(arg: str, conn: FakeConnection | None) -> str:
        return str(uuidlib.uuid4())

    def global_getvar(arg: str, conn: FakeConnection | None) -> str:
        if not arg:
            return "".join(f"{k}={v}\n" for k, v in fake.global_vars.items())
        return fake.global_vars.get(arg.strip(), "")

    def global_setvar(arg: str, conn: FakeConnection | None) -> str:
        name, _, value = arg.partition("=")
        name = name.strip()
        if not name:
            return "-USAGE: <var>=<value>\n"
        if value:
            fake.global_vars[name] = value.strip()
        else:
            fake.global_vars.pop(name, None)
        return "+OK"

    def md5(arg: str, conn: FakeConnection | None) -> str:
        return hashlib.md5(arg.encode()).hexdigest()

    def show(arg: str, conn: FakeConnection | None) -> str:
        words = arg.split(" ")
        if words[0].lower().startswith("status"):
            return status(" ".join(words[1:]), conn)
        return sqldb.show(fake.coredb, arg)

    def hostname(arg: str, conn: FakeConnection | None) -> str:
        return fake.hostname

    def switchname(arg: str, conn: FakeConnection | None) -> str:
        return fake.switchname

    def module_exists(arg: str, conn: FakeConnection | None) -> str:
        return "true" if arg.strip() in ("mod_event_socket", "mod_commands", "mod_dptools") else "false"

    store: dict[str, dict[str, dict[str, str]]] = {"db": {}, "hash": {}}

    def _kv(kind: str, ok: str) -> ApiHandler:
        """mod_db's ``db`` / ``hash``: insert/realm/key/value, select/realm/key, delete/realm/key, exists."""

        def handler(arg: str, conn: FakeConnection | None) -> str:
            parts = arg.split("/", 3)
            action = parts[0]
            realm = parts[1] if len(parts) > 1 else ""
            key = parts[2] if len(parts) > 2 else ""
            data = store[kind].setdefault(realm, {})
            if action == "insert" and len(parts) == 4:
                data[key] = parts[3]
                return ok
            if action == "select" and key:
                return data.get(key, "")
            if action == "delete" and key:
                data.pop(key, None)
                return ok
            if action == "exists" and key:
                return "true" if key in data else "false"
            return f"-USAGE: {kind} [insert|delete|select|exists]/<realm>/<key>[/<value>]\n"

        return handler

    def reloadxml(arg: str, conn: FakeConnection | None) -> str:
        return "+OK [Success]\n"

    def bgapi(arg: str, conn: FakeConnection | None) -> str:
        name, _, rest = arg.partition(" ")
        job = str(uuidlib.uuid4())
        fake.spawn(fake.run_job(job, name, rest or None, None, conn))
        return f"+OK Job-UUID: {job}\n"

    commands: dict[str, ApiHandler] = {
        "status": status,
        "version": version,
        "uptime": uptime,
        "echo": echo,
        "eval": eval_,
        "expand": eval_,
        "create_uuid": create_uuid,
        "global_getvar": global_getvar,
        "global_setvar": global_setvar,
        "md5": md5,
        "show": show,
        "hostname": hostname,
        "switchname": switchname,
        "module_exists": module_exists,
        "bgapi": bgapi,
        "db": _kv("db", "+OK"),
        "hash": _kv("hash", "+OK\n"),
        "reloadxml": reloadxml,
    }
    for name, fn in commands.items():
        fake.api[name] = fn
