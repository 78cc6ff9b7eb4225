"""Placing calls: dial strings (``{var=value}[leg vars]target``), the originate api,
Endpoints (how a target rings, answers or fails), loopback legs and bridging.

``originate`` replies ``+OK <uuid>\\n`` once the leg answers or ``-ERR <CAUSE>\\n``
(``error/<cause>`` fails before any channel exists, as in FreeSWITCH). An answered
leg then runs ``&app(arg)`` or an extension of ``fake.dialplan``.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
import uuid as uuidlib
from typing import TYPE_CHECKING

from esl.testing.calls import Endpoint, FakeChannel, normalize_cause

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.server import FakeConnection, FakeFreeSWITCH

__all__ = ["CallEngine", "parse_dialstring", "split_args"]


def split_args(text: str) -> list[str]:
    """Split at spaces, as switch_separate_string does: not inside single quotes,
    braces, brackets or parentheses; single quotes are removed."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    quote = False
    for ch in text:
        if ch == "'":
            quote = not quote
            continue
        if not quote:
            if ch in "{[(":
                depth += 1
            elif ch in "}])" and depth:
                depth -= 1
            elif ch == " " and depth == 0:
                if cur:
                    out.append("".join(cur))
                    cur = []
                continue
        cur.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def _split_vars(body: str) -> dict[str, str]:
    """``a=b,c='x,y'`` (commas escaped with ``\\,`` or inside quotes) as a dict."""
    out: dict[str, str] = {}
    parts: list[str] = []
    cur: list[str] = []
    quote = False
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] == ",":
            cur.append(",")
            i += 2
            continue
        if ch == "'":
            quote = not quote
        elif ch == "," and not quote:
            parts.append("".join(cur))
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    parts.append("".join(cur))
    for part in parts:
        name, sep, value = part.partition("=")
        if sep and name.strip():
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            out[name.strip()] = value
    return out


def parse_dialstring(dial: str) -> tuple[dict[str, str], str]:
    """``{a=b}[c=d]user/1000`` -> ({"a": "b", "c": "d"}, "user/1000"); only the first
    target of a ``,`` / ``|`` list is dialled."""
    variables: dict[str, str] = {}
    rest = dial.strip()
    while rest[:1] in ("{", "[", "<"):
        close = {"{": "}", "[": "]", "<": ">"}[rest[0]]
        end = rest.find(close)
        if end < 0:
            break
        variables.update(_split_vars(rest[1:end]))
        rest = rest[end + 1 :]
    target = re.split(r"[,|]", rest, maxsplit=1)[0]
    while target[:1] == "[":
        end = target.find("]")
        if end < 0:
            break
        variables.update(_split_vars(target[1:end]))
        target = target[end + 1 :]
    return variables, target


class CallEngine:
    """The fake's call side: endpoints, dialplan, originate and the uuid_* api commands."""

    def __init__(self, fake: FakeFreeSWITCH) -> None:
        self.fake = fake

    def endpoint_for(self, target: str) -> Endpoint:
        """The Endpoint for a dial string: exact match, then the longest ``prefix*`` / prefix
        key, else one that answers at once."""
        endpoints: dict[str, Endpoint] = self.fake.endpoints
        if target in endpoints:
            return endpoints[target]
        best = None
        for key, ep in endpoints.items():
            k = key.removesuffix("*")
            if target.startswith(k) and (best is None or len(k) > len(best[0])):
                best = (k, ep)
        return best[1] if best else Endpoint(answer_after=self.fake.timings.ring)

    async def originate(self, args: str, conn: FakeConnection | None) -> str:
        """api/bgapi originate: returns ``+OK <uuid>\\n`` once answered or ``-ERR <CAUSE>\\n``."""
        usage = (
            "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] "
            "[<cid_name>] [<cid_num>] [<timeout_sec>]\n"
        )
        argv = split_args(args)
        if len(argv) < 2 or len(argv) > 7:
            return usage
        args7: list[str | None] = [None if a.lower() == "undef" else a for a in argv]
        args7 += [None] * (7 - len(args7))
        dial, exten, _dp, context, cid_name, cid_num, timeout_s = args7
        variables, target = parse_dialstring(dial or "")
        try:
            timeout = int(variables.get("originate_timeout") or timeout_s or 60)
        except ValueError:
            timeout = 60
        channel = self.place(
            target,
            variables,
            cid_name=cid_name or variables.get("origination_caller_id_name"),
            cid_num=cid_num or variables.get("origination_caller_id_number"),
            timeout=timeout,
        )
        if isinstance(channel, str):
            return f"-ERR {channel}\n"
        ok = await asyncio.shield(channel.answered_future)
        if not ok:
            return f"-ERR {channel.hangup_cause or 'NORMAL_CLEARING'}\n"
        channel.after_answer = (exten or "", context or "default")
        channel._go.set_result(None)
        return f"+OK {channel.uuid}\n"

    def place(
        self,
        target: str,
        variables: dict[str, str],
        *,
        cid_name: str | None = None,
        cid_num: str | None = None,
        timeout: int = 60,
        other: FakeChannel | None = None,
    ) -> FakeChannel | str:
        """Create an outgoing leg to ``target`` and start ringing it; returns the channel, or a
        cause string when the dial string fails before a channel exists (``error/<cause>``)."""
        if target.lower().startswith("error/"):
            return normalize_cause(target[6:], "NORMAL_CLEARING")
        uuid = variables.get("origination_uuid")
        if uuid and uuid in self.fake.channels:
            return "DESTINATION_OUT_OF_ORDER"
        endpoint = self.endpoint_for(target)
        name = endpoint.channel_name or self._channel_name(target)
        dest = target.split("/")[1] if "/" in target else target
        if target.startswith(("user/", "sofia/")):
            dest = target.rsplit("/", 1)[-1].split("@")[0]
        channel = FakeChannel(
            self.fake,
            uuid=uuid,
            name=name,
            direction="outbound",
            destination=dest,
            caller_id_name=cid_name or "",
            caller_id_number=cid_num or "",
            source="mod_loopback" if target.startswith("loopback/") else "mod_sofia",
            variables={k: v for k, v in variables.items()},
        )
        channel.callee_id_name = "Outbound Call"
        channel.callee_id_number = dest
        channel.variables.setdefault("call_uuid", channel.uuid)
        ring_timeout = (
            endpoint.ring_timeout if endpoint.ring_timeout is not None else timeout * self.fake.timings.scale
        )
        channel.start(self._outgoing_life(channel, target, endpoint, ring_timeout, bool(uuid), other))
        return channel

    @staticmethod
    def _channel_name(target: str) -> str:
        if target.startswith("loopback/"):
            return f"loopback/{target[9:].split('/')[0]}-a"
        if target.startswith("user/"):
            user = target[5:]
            if "@" not in user:
                user += "@127.0.0.1"
            return f"sofia/internal/{user}"
        return target

    async def _outgoing_life(
        self,
        ch: FakeChannel,
        target: str,
        endpoint: Endpoint,
        ring_timeout: float,
        had_uuid: bool,
        other: FakeChannel | None,
    ) -> None:
        outgoing = ("switch_core_session.c", "switch_core_session_outgoing_channel", 768)
        if had_uuid:
            ch.fire(
                "CHANNEL_UUID",
                pre=[("Old-Unique-ID", str(uuidlib.uuid4()))],
                extended=True,
                state="CS_NONE",
                calling=("switch_core_session.c", "switch_core_session_set_uuid", 2056),
            )
        ch.fire("CHANNEL_OUTGOING", state="CS_NONE", calling=outgoing)
        ch.set_state("CS_INIT")
        ch.fire(
            "CHANNEL_CREATE",
            extended=True,
            calling=("switch_core_state_machine.c", "switch_core_session_run", 626),
        )
        ch.fire(
            "CHANNEL_ORIGINATE",
            extended=True,
            calling=("switch_core_state_machine.c", "switch_core_session_run", 632),
        )
        await ch.step()
        ch.set_state("CS_ROUTING")
        ch.set_state("CS_CONSUME_MEDIA")
        if target.startswith("loopback/"):
            await self._loopback(ch, target, ring_timeout)
        else:
            await self._ring(ch, endpoint, ring_timeout)
        if ch.down:
            return
        # wait for the originator to say what runs on this leg (api originate) or to bridge it
        go = ch._go
        if other is None:
            await go
        else:
            if not go.done():
                go.set_result(None)
        if endpoint.dtmf or endpoint.hangup_after is not None:
            self.fake.spawn(self._far_end(ch, endpoint))
        exten, context = ch.after_answer
        if other is not None or not exten:
            # a bridge's B leg: held in CS_EXCHANGE_MEDIA until hangup
            ch.set_state("CS_EXCHANGE_MEDIA")
            await ch.pause(math.inf, breakable=False, parse=True)
            return
        if exten.startswith("&"):
            app, _, arg = exten[1:].partition("(")
            arg = arg.split(")", 1)[0] if ")" in arg else arg
            ch.set_state("CS_EXECUTE")
            await ch.execute(app, arg)
            await ch.run_pending_messages()
            if ch.transfer_to is not None and not ch.down:
                ext, _, ctx = ch.transfer_to
                ch.transfer_to = None
                await ch.run_extension(ext, ctx)
        else:
            await ch.run_extension(exten, context)

    async def _ring(self, ch: FakeChannel, endpoint: Endpoint, ring_timeout: float) -> None:
        if endpoint.answer_after is None or endpoint.answer_after > 0 or endpoint.fail:
            if endpoint.early_media:
                ch.pre_answer()
            else:
                ch.ring_ready()
        if endpoint.fail:
            await ch.pause(endpoint.answer_after or 0.0, breakable=False)
            ch.hangup(endpoint.fail)
            return
        if endpoint.answer_after is None or endpoint.answer_after >= ring_timeout:
            await ch.pause(ring_timeout, breakable=False)
            ch.hangup("NO_ANSWER")
            return
        if endpoint.answer_after > 0:
            await ch.pause(endpoint.answer_after, breakable=False)
        if not ch.down:
            ch.answer()

    async def _loopback(self, a: FakeChannel, target: str, ring_timeout: float) -> None:
        """loopback/EXT[/context]: a B leg runs EXT in the dialplan; A answers when B does."""
        parts = target[9:].split("/")
        exten = parts[0]
        context = parts[1] if len(parts) > 1 else "default"
        b = FakeChannel(
            self.fake,
            name=f"loopback/{exten}-b",
            direction="inbound",
            destination=exten,
            caller_id_name=a.caller_id_name,
            caller_id_number=a.caller_id_number,
            context=context,
            source="mod_loopback",
            variables={
                k: v
                for k, v in a.variables.items()
                if k not in ("direction", "uuid", "channel_name", "session_id", "is_outbound", "call_uuid")
            },
        )
        a.variables["other_loopback_leg_uuid"] = b.uuid
        a.variables["loopback_leg"] = "A"
        b.variables["other_loopback_leg_uuid"] = a.uuid
        b.variables["loopback_leg"] = "B"
        b.variables["call_uuid"] = b.uuid
        a.partner, b.partner = b, a
        b.on_answer.append(lambda _b: a.answer())
        b.start(b.run_incoming())
        ok = await asyncio.wait_for(asyncio.shield(a.answered_future), None)
        if not ok and not a.down:
            a.hangup(b.hangup_cause or "NORMAL_CLEARING")

    async def _far_end(self, ch: FakeChannel, endpoint: Endpoint) -> None:
        if endpoint.dtmf:
            await asyncio.sleep(self.fake.timings.playback)
            await ch.send_dtmf(endpoint.dtmf)
        if endpoint.hangup_after is not None and await ch.pause(endpoint.hangup_after, breakable=False):
            ch.hangup("NORMAL_CLEARING")

    # -- bridging ---------------------------------------------------------------------------

    def bridge(self, a: FakeChannel, b: FakeChannel) -> None:
        """Bridge two answered legs: CHANNEL_BRIDGE on the originator (A) with Other-Leg-* headers."""
        for leg in (a, b):
            if leg.other_leg is not None and leg.other_leg not in (a, b):
                old = leg.other_leg
                old.other_leg = None
                leg.other_leg = None
        a.other_leg, b.other_leg = b, a
        a.other_type, b.other_type = "originator", "originatee"
        a.variables["bridge_uuid"] = b.uuid
        b.variables["bridge_uuid"] = a.uuid
        a.variables["signal_bond"] = b.uuid
        b.variables["signal_bond"] = a.uuid
        a.variables["last_bridge_to"] = b.uuid
        b.variables["last_bridge_to"] = a.uuid
        now = str(int(time.time()))
        a.variables["bridge_epoch"] = b.variables["bridge_epoch"] = now
        a.fire(
            "CHANNEL_BRIDGE",
            extended=True,
            post=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)],
            calling=("switch_ivr_bridge.c", "audio_bridge_on_exchange_media", 725),
        )
