"""The fake behaves like FreeSWITCH where clients were seen to differ (issue 13): show
channels/calls layouts, console_execute, hostname/switchname, originate variables with
nested braces and escapes, dial lists, unknown endpoint types, uuid_bridge rules and an
outbound socket closed after uuid_bridge. Expected texts are what FreeSWITCH 1.11 answered
(tests/test_realfs.py checks the same things against a real switch)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from esl.testing import Endpoint, FakeFreeSWITCH
from esl.testing.dialstring import parse_dial, separate_string
from esl.testing.sqldb import CALL_COLUMNS, CHANNEL_COLUMNS
from fake_raw import Raw, until


@pytest.fixture
async def client(freeswitch: FakeFreeSWITCH) -> AsyncIterator[Raw]:
    c = await Raw.connect(freeswitch)
    yield c
    c.close()


def names(ch: Any) -> list[str]:
    return [e.name for e in ch.events_fired]


# -- show, console_execute, hostname ------------------------------------------------------------


async def test_show_with_no_channels(client: Raw) -> None:
    expected = {
        "show channels": "\n0 total.\n",
        "show channels as json": '{"row_count": 0}\n',
        "show channels as xml": '<result row_count="0"/>\n',
        "show channels count": "\n0 total.\n",
        "show channels count as json": '{"row_count":0,"rows":[]}',
        "show channels count as xml": '<result row_count="0"></result>\n',
        "show calls": "\n0 total.\n",
        "show calls count": "\n0 total.\n",
        "show calls as json": '{"row_count": 0}\n',
        "show channels as foo": "-ERR Cannot find format foo\n",
    }
    for command, text in expected.items():
        assert await client.cmd(f"api {command}") == text, command
    assert (await client.cmd("api show nosuch")).startswith("-USAGE: codec|endpoint|application|api|")
    assert (await client.cmd("api show")).startswith("-USAGE: ")


async def test_show_channels_has_the_channels_table_columns(freeswitch: FakeFreeSWITCH, client: Raw) -> None:
    assert len(CHANNEL_COLUMNS) == 38 and len(CALL_COLUMNS) == 41
    freeswitch.endpoints["user/1000"] = Endpoint()
    assert await client.cmd("api originate {origination_uuid=s1}user/1000 &park") == "+OK s1\n"
    await until(lambda: "CHANNEL_PARK" in names(freeswitch.channels["s1"]))
    text = await client.cmd("api show channels")
    head, row, blank, total = text.split("\n")[:4]
    assert head.split(",") == list(CHANNEL_COLUMNS)
    values = dict(zip(CHANNEL_COLUMNS, row.split(",")))
    assert values["uuid"] == "s1" and values["direction"] == "outbound" and values["state"] == "CS_EXECUTE"
    assert values["application"] == "park" and values["callstate"] == "ACTIVE"
    assert values["read_codec"] == "PCMU" and values["read_bit_rate"] == "64000"
    assert values["hostname"] == freeswitch.switchname and values["initial_dest"] == "1000"
    assert (blank, total) == ("", "1 total.")
    data = json.loads(await client.cmd("api show channels as json"))
    assert data["row_count"] == 1 and list(data["rows"][0]) == list(CHANNEL_COLUMNS)
    xml = await client.cmd("api show channels as xml")
    assert xml.startswith('<result row_count="1">\n  <row row_id="1">\n    <uuid>s1</uuid>\n')
    assert xml.endswith("  </row>\n</result>\n")
    assert await client.cmd("api show channels count as xml") == '<result row_count="1"></result>\n'
    assert await client.cmd("api show channels like s1") == text
    assert await client.cmd("api show channels like nomatch") == "\n0 total.\n"
    pipe = await client.cmd("api show channels as delim |")
    assert pipe.split("\n")[0] == "|".join(CHANNEL_COLUMNS)


async def test_show_calls_joins_bridged_legs(freeswitch: FakeFreeSWITCH, client: Raw) -> None:
    for uuid in ("ca", "cb", "cc"):
        assert await client.cmd(f"api originate {{origination_uuid={uuid}}}user/1000 &park") == f"+OK {uuid}\n"
    assert await client.cmd("api uuid_bridge ca cb") == "+OK cb\n"
    await until(lambda: "CHANNEL_BRIDGE" in names(freeswitch.channels["ca"]))
    text = await client.cmd("api show calls")
    lines = text.split("\n")
    assert lines[0].split(",") == list(CALL_COLUMNS)
    rows = [dict(zip(CALL_COLUMNS, line.split(","))) for line in lines[1:] if line and "total" not in line]
    # one row per call: the unbridged leg first (NULL call_created_epoch), then ca with cb as its B leg
    assert [r["uuid"] for r in rows] == ["cc", "ca"]
    assert rows[1]["b_uuid"] == "cb" and rows[1]["call_created_epoch"] and rows[0]["b_uuid"] == ""
    assert text.endswith("\n\n2 total.\n")
    assert await client.cmd("api show calls count") == "\n2 total.\n"
    assert await client.cmd("api show channels count") == "\n3 total.\n"
    bridged = await client.cmd("api show bridged_calls")
    assert bridged.endswith("\n1 total.\n")
    calls = json.loads(await client.cmd("api show calls as json"))
    assert calls["row_count"] == 2 and calls["rows"][1]["b_uuid"] == "cb"


async def test_console_execute_as_fs_cli_sends_it(client: Raw) -> None:
    assert await client.cmd("api show channels", console_execute="true") == "\n0 total.\n"
    assert await client.cmd("api hostname;;switchname", console_execute="true") == "fakefake"
    assert await client.cmd("api nosuch thing", console_execute="true") == "-ERR nosuch thing Command not found!\n"
    assert await client.cmd("api hostname;;nosuch", console_execute="true") == (
        "-ERR hostname;;nosuch Command not found!\n"
    )
    assert await client.cmd("api nosuch;;hostname", console_execute="true") == "INVALID COMMAND!\nfake"
    assert await client.cmd("api nosuchcmd arg") == "-ERR nosuchcmd Command not found!\n"


async def test_hostname_and_switchname() -> None:
    async with FakeFreeSWITCH(hostname="host1", switchname="sw1") as fake:
        c = await Raw.connect(fake)
        assert await c.cmd("api hostname") == "host1"
        assert await c.cmd("api switchname") == "sw1"
        await c.cmd("api version")
        api_event = next(e for e in c.events if e.name == "API")
        assert api_event["FreeSWITCH-Hostname"] == "host1" and api_event["FreeSWITCH-Switchname"] == "sw1"
        c.close()


async def test_api_event_fires_after_the_command_even_when_unknown(client: Raw) -> None:
    await client.cmd("api nosuch  some arg ")
    await client.collect(0.05)
    event = next(e for e in client.events if e.name == "API")
    assert event["API-Command"] == "nosuch" and event["API-Command-Argument"] == "some arg"


# -- originate: dial strings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dial", "expected"),
    [
        ('{json={"a":1}}user/1', '{"a":1}'),  # nested braces kept
        ('{json={"a":1,"b":2}}user/1', '{"a":1'),  # an unescaped comma still splits
        ('{json={"a":1\\,"b":2}}user/1', '{"a":1,"b":2}'),
        ("{json='x,y'}user/1", "x"),  # the api split removed the quotes first
        ("{json='a b\\,c'}user/1", "a b,c"),
        ("{json='it\\'s Bob\\'s'}user/1", "its Bobs"),
        ("{json=a=b}user/1", "a=b"),
        ("{json={x={y}}}user/1", "{x={y}}"),
        ("{json=a\\nb\\tc\\\\d}user/1", "a\nb\tc\\d"),
        ("{json=1}[json=2]user/1", "2"),  # leg variables win
        ("{^^;json=a,b;x=1}user/1", "a,b"),
    ],
)
async def test_originate_variables_as_freeswitch_reads_them(
    freeswitch: FakeFreeSWITCH, client: Raw, dial: str, expected: str
) -> None:
    reply = await client.cmd(f"api originate {dial} &park")
    assert reply.startswith("+OK ")
    uuid = reply.split()[1]
    assert freeswitch.channels[uuid].variables.get("json") == expected
    await client.cmd(f"api uuid_kill {uuid}")


async def test_originate_parse_errors_and_unknown_endpoints(client: Raw) -> None:
    # an unquoted space splits the command: the dial string has no closing brace
    assert await client.cmd("api originate {v=a b}user/1 &park") == "-ERR DESTINATION_OUT_OF_ORDER\n"
    assert await client.cmd("api originate foo/bar &park") == "-ERR CHAN_NOT_IMPLEMENTED\n"
    assert await client.cmd("api originate 1000 &park") == "-ERR CHAN_NOT_IMPLEMENTED\n"
    assert await client.cmd("api originate error/USER_BUSY &park") == "-ERR USER_BUSY\n"


async def test_configured_endpoint_types_are_known(freeswitch: FakeFreeSWITCH, client: Raw) -> None:
    freeswitch.endpoints["custom/*"] = Endpoint()
    assert (await client.cmd("api originate custom/7 &park")).startswith("+OK ")


async def test_sequential_dial_list_tries_the_next_target(freeswitch: FakeFreeSWITCH, client: Raw) -> None:
    freeswitch.endpoints["user/busy"] = Endpoint(fail="USER_BUSY")
    freeswitch.endpoints["user/ok"] = Endpoint(answer_after=0.01)
    reply = await client.cmd("api originate {x=1}user/busy|[y=2]user/ok &park")
    assert reply.startswith("+OK ")
    ch = freeswitch.channels[reply.split()[1]]
    assert ch.destination == "ok" and ch.variables["x"] == "1" and ch.variables["y"] == "2"
    assert await client.cmd("api originate user/busy|error/NO_ANSWER &park") == "-ERR NO_ANSWER\n"


async def test_simultaneous_dial_list_first_answer_wins(freeswitch: FakeFreeSWITCH, client: Raw) -> None:
    freeswitch.endpoints["user/slow"] = Endpoint(answer_after=0.5)
    freeswitch.endpoints["user/fast"] = Endpoint(answer_after=0.01)
    reply = await client.cmd("api originate [leg=s]user/slow,[leg=f,z='a,b']user/fast &park")
    assert reply.startswith("+OK ")
    winner = freeswitch.channels[reply.split()[1]]
    assert winner.destination == "fast" and winner.variables["leg"] == "f"
    await client.collect(0.1)
    loser = next(e for e in client.events if e.name == "CHANNEL_HANGUP" and e.uuid != winner.uuid)
    assert loser["Hangup-Cause"] == "LOSE_RACE"


async def test_bridge_app_tries_every_target(freeswitch: FakeFreeSWITCH) -> None:
    freeswitch.endpoints["user/busy"] = Endpoint(fail="USER_BUSY")
    freeswitch.endpoints["user/agent"] = Endpoint(answer_after=0.01)
    freeswitch.dialplan["q"] = [("bridge", "user/busy|user/agent")]
    a = await freeswitch.call("q")
    await until(lambda: a.other_leg is not None)
    assert a.other_leg is not None and a.other_leg.destination == "agent"
    await a.hangup()


def test_dialstring_helpers() -> None:
    assert separate_string("a=b=c", "=", 2) == ["a", "b=c"]
    assert separate_string("  x  'a b' y\\ z ") == ["x", "a b", "y\\ z"]
    variables, groups = parse_dial("<u=1>{g=2}[l=3,m=4]sofia/a/b,user/2|loopback/9")
    assert variables == {"u": "1", "g": "2"}
    assert [[leg.target for leg in g] for g in groups] == [["sofia/a/b", "user/2"], ["loopback/9"]]
    assert groups[0][0].variables == {"l": "3", "m": "4"}


# -- uuid_bridge --------------------------------------------------------------------------------------


async def test_uuid_bridge_refuses_legs_without_media(freeswitch: FakeFreeSWITCH, client: Raw) -> None:
    freeswitch.endpoints["user/ring"] = Endpoint(answer_after=None)
    await client.cmd("bgapi originate {origination_uuid=r1}user/ring &park")
    await client.cmd("bgapi originate {origination_uuid=r2}user/ring &park")
    await until(lambda: "r1" in freeswitch.channels and "r2" in freeswitch.channels)
    assert await client.cmd("api uuid_bridge r1 r2") == "-ERR Invalid uuid\n"
    assert not freeswitch.channels["r1"].answered  # not answered behind the caller's back
    assert await client.cmd("api uuid_bridge r1 nosuch") == "-ERR Invalid uuid\n"
    for uuid in ("r1", "r2"):
        await client.cmd(f"api uuid_kill {uuid}")


async def test_uuid_bridge_waits_for_a_ringing_peer(freeswitch: FakeFreeSWITCH, client: Raw) -> None:
    freeswitch.endpoints["user/later"] = Endpoint(answer_after=0.2)
    assert await client.cmd("api originate {origination_uuid=up}user/1000 &park") == "+OK up\n"
    await client.cmd("bgapi originate {origination_uuid=late}user/later &park")
    await until(lambda: "late" in freeswitch.channels)
    assert await client.cmd("api uuid_bridge late up") == "+OK up\n"  # swapped: "up" has media
    up, late = freeswitch.channels["up"], freeswitch.channels["late"]
    await asyncio.sleep(0.05)
    assert up.other_leg is None and not late.answered
    await until(lambda: up.other_leg is late, timeout=3)
    assert up.state == "CS_SOFT_EXECUTE" and late.state == "CS_EXCHANGE_MEDIA"
    n = names(up)
    assert n.index("CHANNEL_UNPARK") < n.index("CHANNEL_BRIDGE")
    execute = [e for e in up.events_fired if e.name == "CHANNEL_EXECUTE" and e["Application"] == "uuid_bridge"]
    assert execute and execute[0]["Application-Data"] == "late"
    await client.cmd("api uuid_kill late")
    await up.wait_hangup()
    assert up.hangup_cause == "NORMAL_CLEARING"


async def test_closing_an_outbound_socket_after_uuid_bridge_keeps_the_call(freeswitch: FakeFreeSWITCH) -> None:
    """FreeSWITCH only clears CF_CONTROLLED when the app goes: the bridged leg stays up."""
    client = await Raw.connect(freeswitch)
    accepted: asyncio.Future[tuple[str, asyncio.StreamWriter]] = asyncio.get_running_loop().create_future()

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"connect\n\n")
        data = await reader.readuntil(b"\n\n")
        uuid = next(line.split(": ")[1] for line in data.decode().split("\n") if line.startswith("Unique-ID: "))
        writer.write(b"myevents\n\n")
        accepted.set_result((uuid, writer))
        await reader.read()

    server = await asyncio.start_server(app, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    freeswitch.dialplan["9000"] = [("answer", ""), ("socket", f"127.0.0.1:{port} async full")]
    leg = await freeswitch.call("9000")
    uuid, writer = await asyncio.wait_for(accepted, 5)
    await until(lambda: "CHANNEL_PARK" in names(leg))
    assert await client.cmd("api originate {origination_uuid=other}user/1000 &park") == "+OK other\n"
    assert await client.cmd(f"api uuid_bridge {uuid} other") == "+OK other\n"
    await until(lambda: leg.other_leg is not None)
    writer.close()
    server.close()
    await asyncio.sleep(0.1)
    assert not leg.down and leg.other_leg is freeswitch.channels["other"]
    await client.cmd("api uuid_kill other")
    await leg.wait_hangup()
    assert leg.hangup_cause == "NORMAL_CLEARING"
    client.close()


async def test_far_end_hangs_up_on_time_after_a_uuid_bridge(freeswitch: FakeFreeSWITCH) -> None:
    import esl
    from esl.testing import Endpoint

    freeswitch.endpoints["user/customer"] = Endpoint(answer_after=0.0)
    freeswitch.endpoints["user/agent"] = Endpoint(answer_after=0.0, hangup_after=0.3)
    async with esl.Inbound(freeswitch.host, freeswitch.port) as client:
        customer = await esl.Channel.create(client, "user/customer")
        agent = await esl.Channel.create(client, "user/agent")
        await customer.wait("CHANNEL_ANSWER", timeout=5)
        await agent.wait("CHANNEL_ANSWER", timeout=5)
        await customer.bridge(agent)
        await agent.wait(esl.ChannelState.HANGUP, timeout=5)  # the agent's own timer still runs
        await customer.hangup()
