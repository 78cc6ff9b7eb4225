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
from typing import Any, TYPE_CHECKING

from esl.testing.calls import Endpoint, FakeChannel, normalize_cause
from esl.testing.dialstring import DialParseError, Leg, parse_dial, separate_string

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.server import FakeConnection, FakeFreeSWITCH

__all__ = ["ENDPOINT_TYPES", "CallEngine", "parse_dialstring"]


#: Endpoint types a dial string may name (the modules of a usual build); anything else fails
#: with CHAN_NOT_IMPLEMENTED, as FreeSWITCH does, unless ``fake.endpoints`` configures it.
ENDPOINT_TYPES = frozenset({
    "sofia", "loopback", "user", "group", "error", "null", "pickup", "verto", "rtc", "freetdm",
    "skinny", "portaudio", "alsa", "rtmp", "gsmopen",
})  # fmt: skip


def parse_dialstring(dial: str) -> tuple[dict[str, str], str]:
    """``{a=b}[c=d]user/1000`` -> ({"a": "b", "c": "d"}, "user/1000"): the variables and the
    first target only (see :func:`esl.testing.dialstring.parse_dial` for the whole list)."""
    variables, groups = parse_dial(dial)
    first = groups[0][0] if groups and groups[0] else Leg("")
    return {**variables, **first.variables}, first.target


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

    def known_endpoint(self, target: str) -> bool:
        """Whether ``target`` names an endpoint type this switch has (or one a test configured)."""
        if target.split("/", 1)[0].lower() in ENDPOINT_TYPES:
            return True
        return any(target.startswith(key.removesuffix("*")) for key in self.fake.endpoints)

    async def originate(self, args: str, conn: FakeConnection | None) -> str:
        """api/bgapi originate: returns ``+OK <uuid>\\n`` once answered or ``-ERR <CAUSE>\\n``.

        The arguments are split as mod_commands does (switch_separate_string: quotes removed,
        escapes resolved, no brace awareness), then the dial string is read as
        switch_ivr_originate does (``dialstring.parse_dial``)."""
        usage = (
            "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] "
            "[<cid_name>] [<cid_num>] [<timeout_sec>]\n"
        )
        argv = separate_string(args, " ", 10) if args else []
        if len(argv) < 2 or len(argv) > 7:
            return usage
        args7: list[str | None] = [None if a.lower() == "undef" else a for a in argv]
        args7 += [None] * (7 - len(args7))
        dial, exten, _dp, context, cid_name, cid_num, timeout_s = args7
        try:
            timeout = int(timeout_s or 60)
        except ValueError:
            timeout = 0
        result = await self.dial(dial or "", cid_name=cid_name, cid_num=cid_num, timeout=timeout or 60)
        if isinstance(result, str):
            return f"-ERR {result}\n"
        result.after_answer = (exten or "", context or "default")
        if not result._go.done():
            result._go.set_result(None)
        return f"+OK {result.uuid}\n"

    async def dial(
        self,
        dial: str,
        *,
        cid_name: str | None = None,
        cid_num: str | None = None,
        timeout: int = 60,
        other: FakeChannel | None = None,
        inherit: dict[str, str] | None = None,
    ) -> FakeChannel | str:
        """switch_ivr_originate: ring each ``|`` group in turn, the ``,`` targets of a group
        together; the first leg to answer wins (the others hang up with LOSE_RACE). Returns
        the answered leg, or the cause of the last failure (DESTINATION_OUT_OF_ORDER for a
        dial string FreeSWITCH can not parse). Cancelled: every leg rung so far is hung up
        with ORIGINATOR_CANCEL."""
        try:
            variables, groups = parse_dial(dial)
        except DialParseError:
            return "DESTINATION_OUT_OF_ORDER"
        if inherit:
            variables = {**inherit, **variables}
        cause = "DESTINATION_OUT_OF_ORDER"
        rung: list[FakeChannel] = []
        try:
            for group in groups:
                legs: list[FakeChannel] = []
                for leg in group:
                    lv = {**variables, **leg.variables}
                    try:
                        secs = int(lv.get("leg_timeout") or lv.get("originate_timeout") or timeout)
                    except ValueError:
                        secs = timeout
                    placed = self.place(
                        leg.target,
                        lv,
                        cid_name=lv.get("origination_caller_id_name") or cid_name,
                        cid_num=lv.get("origination_caller_id_number") or cid_num,
                        timeout=secs,
                        other=other,
                    )
                    if isinstance(placed, str):
                        cause = placed
                        continue
                    legs.append(placed)
                    rung.append(placed)
                if not legs:
                    continue
                if str(variables.get("return_ring_ready", "")).lower() in ("true", "1", "yes", "on"):
                    winner = await self._first_ring(legs)
                else:
                    winner = await self._first_answer(legs)
                if winner is not None:
                    for leg_ch in legs:
                        if leg_ch is not winner and not leg_ch.down:
                            leg_ch.hangup("LOSE_RACE")
                    return winner
                cause = legs[-1].hangup_cause or "NORMAL_CLEARING"
            return cause
        except asyncio.CancelledError:
            for leg_ch in rung:
                if not leg_ch.down:
                    leg_ch.hangup("ORIGINATOR_CANCEL")
            raise

    @staticmethod
    async def _first_ring(legs: list[FakeChannel]) -> FakeChannel | None:
        """``return_ring_ready=true``: the first leg to ring (or answer) wins, as in switch_ivr_originate."""
        waits: dict[asyncio.Future[Any], FakeChannel] = {}
        for leg in legs:
            waits[leg.answered_future] = leg
            for name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA"):
                waits[asyncio.ensure_future(leg.wait_event(name, None))] = leg
        pending = set(waits)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for fut in done:
                    leg = waits[fut]
                    if fut is not leg.answered_future or fut.result():
                        return leg
                    pending = {f for f in pending if waits[f] is not leg}  # this one failed
            return None
        finally:
            for fut, leg in waits.items():
                if fut is not leg.answered_future and not fut.done():
                    fut.cancel()

    @staticmethod
    async def _first_answer(legs: list[FakeChannel]) -> FakeChannel | None:
        pending = {leg.answered_future: leg for leg in legs}
        while pending:
            done, _ = await asyncio.wait(list(pending), return_when=asyncio.FIRST_COMPLETED)
            for fut in done:
                leg = pending.pop(fut)
                if fut.result():
                    return leg
        return None

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
        if not self.known_endpoint(target):
            return "CHAN_NOT_IMPLEMENTED"
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
        channel.endpoint = endpoint
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
        if target.startswith("loopback/"):
            # loopback sets L16 up as it creates the channel (under the uuid it had before
            # origination_uuid renamed it: nobody filtering on the final uuid sees those CODEC events)
            ch.set_codecs("L16", "8000", fire=not had_uuid)
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
        if ch._uuid_bridge is not None:
            return  # uuid_bridge took the leg while it rang
        if other is None:
            ch.flip_cid()  # an originated leg about to run its application
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
        b.set_codecs("L16", "8000")
        b.on_answer.append(lambda _b: a.answer())
        b.start(b.run_incoming())
        ok = await asyncio.wait_for(asyncio.shield(a.answered_future), None)
        if not ok and not a.down:
            a.hangup(b.hangup_cause or "NORMAL_CLEARING")

    async def _far_end(self, ch: FakeChannel, endpoint: Endpoint) -> None:
        if endpoint.dtmf:
            await asyncio.sleep(self.fake.timings.playback)
            await ch.send_dtmf(endpoint.dtmf)
        if endpoint.hangup_after is not None:
            # the far end's own clock: what the leg runs meanwhile (a uuid_bridge included) does not stop it
            await asyncio.sleep(endpoint.hangup_after)
            if not ch.down:
                ch.hangup("NORMAL_CLEARING")

    # -- bridging ---------------------------------------------------------------------------

    def uuid_bridge(self, a_uuid: str, b_uuid: str) -> bool:
        """switch_ivr_uuid_bridge: both legs leave what they run and bridge (the one with media
        first becomes the originator); False when a leg is missing or neither has media."""
        a = self.fake.channels.get(a_uuid)
        b = self.fake.channels.get(b_uuid)
        if a is None or b is None or a is b or a.down or b.down:
            return False
        if not a.media_up:
            if not b.media_up:
                return False
            a, b = b, a
        a.start_uuid_bridge(b, True)
        b.start_uuid_bridge(a, False)
        return True

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
        for leg, peer in ((a, b), (b, a)):
            if leg.source == "mod_sofia":
                # mod_sofia tells the phone who it is now talking to
                leg.fire(
                    "CALL_UPDATE",
                    pre=[("Direction", "SEND"), ("Sent-Callee-ID-Name", peer.caller_id_name),
                         ("Sent-Callee-ID-Number", peer.caller_id_number), ("Bridged-To", peer.uuid)],
                    extended=True,
                    calling=("mod_sofia.c", "sofia_receive_message", 2133),
                )  # fmt: skip
