"""esl.escaping against a real FreeSWITCH (opt-in: ``ESL_FREESWITCH=host:port pytest -m realfs``).

Values go in through ``originate {…}`` / ``[…]`` / ``uuid_setvar`` / the ``set`` application
and are read back with ``uuid_getvar``; each must come back exactly. The switch
needs extension 9003 (park) in the default context.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid as uuidlib
from collections.abc import AsyncIterator
from typing import Any

import fsparse
import pytest

from esl import Inbound
from esl.escaping import (
    app_arg,
    dial_string_leg_vars,
    multiset_app_arg,
    originate_app,
    originate_vars,
    set_app_arg,
    setvar_multi_arg,
    setvar_value,
)

ADDR = os.environ.get("ESL_FREESWITCH", "")

pytestmark = [
    pytest.mark.realfs,
    pytest.mark.skipif(not ADDR, reason="set ESL_FREESWITCH=host:port to run against a real FreeSWITCH"),
]

NASTY = [
    "}sofia/gateway/evil/900", "{", "}", "}{", "x\\", "\\", "\\\\", "it''s", "'", "''", '"q"', "a,b", " lead",
    "trail ", "  ", "\t", "a=b=c", "^^;x", "^^,", "[x]", "<x>", "a|b", "a:_:b", "origination_nested_vars=true",
    "héllo wörld ☃ 🎉", '{"json": [1, 2, {"k": "v\\"q"}], "s": "a,b"}', "\\'", "\\n\\t\\s", "$", "$$", "&park",
    "%[x=1]", "a\tb", "tab\t", "\x0bvt\x0b", "\x01\x02", "a;b", "_undef_",
]
ALPHABET = list("{}[]<>,'\"\\ =^|;:_$%\t\x0b") + list("abcXYZ019") + ["é", "☃", "🎉", ":_:"]


def generated(count: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        text = "".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(1, 24)))
        if not text.startswith("ARRAY::") and "${" not in text and "$\\" not in text:
            out.append(text)
    return out


VALUES = NASTY + generated(120, 8)


@pytest.fixture
async def fs() -> AsyncIterator[Inbound]:
    host, _, port = ADDR.rpartition(":")
    async with Inbound(host or "127.0.0.1", int(port or 8021), "ClueCon", timeout=30) as conn:
        yield conn


async def _originate(fs: Inbound, block: str, call: str) -> str:
    """``bgapi originate <block>loopback/9003 &park`` (9003 parks and never answers); ``call`` once it exists."""
    job = await fs.bgapi(f"originate {block}loopback/9003 &park")
    for _ in range(500):
        if (await fs.api(f"uuid_exists {call}", check=False)).strip() == "true":
            return call
        if job.done():
            pytest.fail(f"originate failed: {job.result!r}")
        await asyncio.sleep(0.01)
    pytest.fail(f"channel {call} never appeared")


async def _park(fs: Inbound, leg_block: str) -> str:
    """A parked loopback leg (its uuid) with ``leg_block`` in front of its endpoint."""
    call = str(uuidlib.uuid4())
    return await _originate(fs, originate_vars({"origination_uuid": call}) + leg_block, call)


async def _getvar(fs: Inbound, call: str, name: str) -> str:
    return await fs.api(f"uuid_getvar {call} {name}", check=False)


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


async def test_originate_vars_round_trip(fs: Inbound) -> None:
    bad: list[tuple[str, str]] = []
    for chunk in _chunks(VALUES, 16):
        variables = {f"esc_v{i}": v for i, v in enumerate(chunk)}
        call = str(uuidlib.uuid4())
        await _originate(fs, originate_vars({"origination_uuid": call, **variables}), call)
        try:
            for name, value in variables.items():
                got = await _getvar(fs, call, name)
                if got != value:
                    bad.append((value, got))
        finally:
            await fs.api(f"uuid_kill {call}", check=False)
    assert not bad, bad


async def test_caller_id_name_cannot_change_dial_string(fs: Inbound) -> None:
    call = str(uuidlib.uuid4())
    block = originate_vars({"origination_uuid": call, "origination_caller_id_name": "}sofia/gateway/evil/900"})
    await _originate(fs, block, call)
    try:
        assert await _getvar(fs, call, "caller_id_name") == "}sofia/gateway/evil/900"
        assert (await _getvar(fs, call, "channel_name")).startswith("loopback/9003")
    finally:
        await fs.api(f"uuid_kill {call}", check=False)


async def test_nested_vars_store_references_unexpanded(fs: Inbound) -> None:
    call = str(uuidlib.uuid4())
    variables = {"origination_nested_vars": "true", "esc_n": "${caller_id_number}", "esc_m": "$${domain}"}
    await _originate(fs, originate_vars({"origination_uuid": call, **variables}), call)
    try:
        assert await _getvar(fs, call, "esc_n") == "${caller_id_number}"
        assert await _getvar(fs, call, "esc_m") == "$${domain}"
    finally:
        await fs.api(f"uuid_kill {call}", check=False)


async def test_leg_vars_round_trip(fs: Inbound) -> None:
    bad: list[tuple[str, str]] = []
    for chunk in _chunks([v for v in VALUES if "\x01" not in v], 16):
        variables = {f"esc_l{i}": v for i, v in enumerate(chunk)}
        call = await _park(fs, dial_string_leg_vars(variables))
        try:
            for name, value in variables.items():
                got = await _getvar(fs, call, name)
                if got != value:
                    bad.append((value, got))
        finally:
            await fs.api(f"uuid_kill {call}", check=False)
    assert not bad, bad


async def test_setvar_and_set_app_round_trip(fs: Inbound) -> None:
    call = await _park(fs, "")
    bad: list[tuple[str, str, str]] = []
    try:
        for value in VALUES + ["${caller_id_number}", "$${domain}", "a\\${x}", "${uuid_kill(" + call + ")}"]:
            await fs.api(f"uuid_setvar {call} esc_s {setvar_value(value)}")
            got = await _getvar(fs, call, "esc_s")
            if got != value:
                bad.append(("uuid_setvar", value, got))
            await fs.api(f"uuid_setvar {call} esc_a")
            await fs.sendmsg_raw(call, {"call-command": "execute", "execute-app-name": "set"},
                                 set_app_arg("esc_a", value))
            for _ in range(200):
                got = await _getvar(fs, call, "esc_a")
                if got != "_undef_" or value == "_undef_":
                    break
                await asyncio.sleep(0.01)
            if got != value:
                bad.append(("set", value, got))
        assert await _getvar(fs, call, "channel_name"), "the ${uuid_kill(...)} value must not have run"
    finally:
        await fs.api(f"uuid_kill {call}", check=False)
    assert not bad, bad


async def test_app_arg_reaches_application_literally(fs: Inbound) -> None:
    """FreeSWITCH stores what an application received in ``current_application_data``."""
    call = await _park(fs, "")
    try:
        for text in ["DEBUG ${uuid_kill(" + call + ")}", "DEBUG a\\'b \\\\ $${domain} \\$x", "DEBUG plain $5 \\q"]:
            await fs.sendmsg_raw(call, {"call-command": "execute", "execute-app-name": "log"}, app_arg(text))
            for _ in range(200):
                got = await _getvar(fs, call, "current_application_data")
                if got == text:
                    break
                await asyncio.sleep(0.01)
            assert got == text
        assert await _getvar(fs, call, "channel_name"), "the ${uuid_kill(...)} text must not have run"
    finally:
        await fs.api(f"uuid_kill {call}", check=False)


async def test_originate_app_argument_literal(fs: Inbound) -> None:
    """``originate … &log(<arg>)`` on a leg that answers (9004 echo): the CHANNEL_EXECUTE event shows the argument."""
    seen: dict[str, str] = {}

    def on_execute(event: Any) -> None:
        get = event.get
        if get("Application") == "log":
            seen[get("Unique-ID")] = get("Application-Data")

    fs.on("CHANNEL_EXECUTE", on_execute)
    await fs.subscribe("CHANNEL_EXECUTE")
    texts = ["DEBUG a b 'c' \\ ${uuid_kill x} $${domain} (( \t", "DEBUG   lead", "DEBUG x'y \\q $5 \\$"]
    for text in texts:
        call = str(uuidlib.uuid4())
        await fs.bgapi(f"originate {originate_vars({'origination_uuid': call})}loopback/9004 {originate_app('log', text)}")
        for _ in range(500):
            if call in seen:
                break
            await asyncio.sleep(0.01)
        await fs.api(f"uuid_kill {call}", check=False)
        assert seen.get(call) == text


@pytest.mark.parametrize("payload", [
    b"api eval one\nContent-Length: 14\n\napi eval two\n\napi eval three\n\n",
    b"api eval one\nX: a\0b\nContent-Length: 14\n\napi eval two\n\napi eval three\n\n",
    b"api eval one\nX: 1\n\napi eval two\n\n",
])
async def test_read_packet_model_matches_switch(payload: bytes) -> None:
    """The port of read_packet (used to test esl.commands) runs the same commands as the switch: raw bytes
    that the library itself refuses to write (a caller Content-Length, a NUL) are sent on a plain socket."""
    host, _, port = ADDR.rpartition(":")
    reader, writer = await asyncio.open_connection(host or "127.0.0.1", int(port or 8021))
    try:
        await reader.readuntil(b"\n\n")
        writer.write(b"auth ClueCon\n\n")
        assert b"+OK" in await reader.readuntil(b"\n\n")
        writer.write(payload)
        outputs: list[str] = []
        while True:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\n\n"), 1.0)
            except asyncio.TimeoutError:
                break
            length = int(head.split(b"Content-Length: ")[1].split(b"\n")[0])
            outputs.append((await reader.readexactly(length)).decode())
    finally:
        writer.close()
    expected = [c.command.split(" ", 2)[2] for c in fsparse.read_commands(payload)]
    assert outputs == expected


async def test_setvar_multi_and_multiset_round_trip(fs: Inbound) -> None:
    call = await _park(fs, "")
    bad: list[tuple[str, str, str]] = []
    try:
        for c, chunk in enumerate(_chunks(VALUES, 12)):
            variables = {f"esc_m{c}_{i}": v for i, v in enumerate(chunk)}
            await fs.api(f"uuid_setvar_multi {call} {setvar_multi_arg(variables)}")
            for name, value in variables.items():
                got = await _getvar(fs, call, name)
                if got != value:
                    bad.append(("uuid_setvar_multi", value, got))
            variables = {f"esc_ms{c}_{i}": v for i, v in enumerate(chunk + ["${uuid_kill(" + call + ")}"])}
            await fs.sendmsg_raw(call, {"call-command": "execute", "execute-app-name": "multiset"},
                                 multiset_app_arg(variables))
            last = list(variables)[-1]
            for _ in range(200):
                if await _getvar(fs, call, last) != "_undef_":
                    break
                await asyncio.sleep(0.01)
            for name, value in variables.items():
                got = await _getvar(fs, call, name)
                if got != value:
                    bad.append(("multiset", value, got))
        assert await _getvar(fs, call, "channel_name")
    finally:
        await fs.api(f"uuid_kill {call}", check=False)
    assert not bad, bad
