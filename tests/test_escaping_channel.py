"""Issue 8, finding 8 through the public API: values a user passes to Channel.create / setvar /
setvars reach FreeSWITCH literally. The commands the fake received are read back with
tests/fsparse.py (the port of FreeSWITCH's parsers).
"""

from __future__ import annotations

import fsparse
import pytest

import esl
from esl.testing import Endpoint, FakeFreeSWITCH


NASTY = {
    "a": "{",
    "b": "x\\",
    "c": "it''s",
    "d": " pad ",
    "e": '{"json": [1, 2], "s": "a,b"}',
    "f": "a:_:b",
    "g": "^^;x",
}


def _commands(fake: FakeFreeSWITCH) -> list[str]:
    return [c for conn in fake.connections if not getattr(conn, "outbound", False) for c in conn.commands]


async def test_create_values_cannot_change_the_dial_string(freeswitch: FakeFreeSWITCH,
                                                           esl_client: esl.Inbound) -> None:
    freeswitch.endpoints["user/1000"] = Endpoint(answer_after=None)
    ch = await esl.Channel.create(esl_client, "user/1000", NASTY, caller_id_name="}sofia/gateway/evil/900",
                                  caller_id_number="'5'")
    try:
        originate = next(c for c in _commands(freeswitch) if c.startswith("bgapi originate "))
        parsed, rest = fsparse.originate_api(originate[len("bgapi originate "):])
        assert [[(p.chan_type, p.chan_data) for p in g] for g in parsed.groups] == [[("user", "1000")]]
        got = parsed.channel_variables()
        assert got["origination_uuid"] == ch.uuid
        assert got["origination_caller_id_name"] == "}sofia/gateway/evil/900"
        assert got["origination_caller_id_number"] == "'5'"
        assert {k: got[k] for k in NASTY} == NASTY
        assert len(rest) == 1
    finally:
        await ch.hangup()


async def test_setvar_values_stored_literally(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    freeswitch.endpoints["user/1000"] = Endpoint(answer_after=None)
    ch = await esl.Channel.create(esl_client, "user/1000")
    try:
        for value in NASTY.values():
            await ch.setvar("v", value)
            cmd = [c for c in _commands(freeswitch) if c.startswith("api uuid_setvar ")][-1]
            assert fsparse.uuid_setvar_api(cmd[len("api uuid_setvar "):]) == (ch.uuid, "v", value)
        await ch.setvars({"m1": "a;b", "m2": " c\\", "m3": "'q'"})
        cmd = [c for c in _commands(freeswitch) if c.startswith("api uuid_setvar_multi ")][-1]
        assert fsparse.uuid_setvar_multi_api(cmd[len("api uuid_setvar_multi "):]) == (
            ch.uuid, {"m1": "a;b", "m2": " c\\", "m3": "'q'"})
    finally:
        await ch.hangup()
