"""The call simulation: FakeChannel (one call leg, its state machine and the events it
fires), Endpoint (how an originate target behaves) and Timings. Placing calls is in
``originate.py``, applications in ``apps.py``, the uuid_* api in ``callapi.py``.

Event order and header sets follow the real FreeSWITCH 1.10 captures: an
originated leg fires CHANNEL_UUID (when origination_uuid is set), CHANNEL_OUTGOING,
CHANNEL_STATE CS_INIT, CHANNEL_CREATE, CHANNEL_ORIGINATE, CHANNEL_STATE
CS_ROUTING / CS_CONSUME_MEDIA, CHANNEL_ANSWER, CHANNEL_CALLSTATE ACTIVE, then
CS_EXECUTE and its application; an incoming leg fires CHANNEL_STATE CS_INIT,
CHANNEL_CREATE, CHANNEL_CALLSTATE RINGING, CHANNEL_STATE CS_ROUTING / CS_EXECUTE
and runs its dialplan; every leg ends with CHANNEL_HANGUP, CHANNEL_STATE
CS_HANGUP, CHANNEL_CALLSTATE HANGUP, CHANNEL_STATE CS_REPORTING,
CHANNEL_HANGUP_COMPLETE, CHANNEL_DESTROY, CHANNEL_STATE CS_DESTROY.

Each channel is one asyncio task (no threads), so thousands of calls run on one loop.
"""

from __future__ import annotations

import asyncio
import collections
import math
import re
import time
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from esl.core import Event
from esl.testing.events import build_plain
from esl.testing.sqldb import WATCHED

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.server import Command, FakeConnection, FakeFreeSWITCH

__all__ = [
    "CALLSTATE_NUMBERS",
    "STATE_NUMBERS",
    "Endpoint",
    "FakeChannel",
    "Timings",
    "normalize_cause",
    "q850",
]

STATE_NUMBERS = {
    "CS_NEW": 0, "CS_INIT": 1, "CS_ROUTING": 2, "CS_SOFT_EXECUTE": 3, "CS_EXECUTE": 4,
    "CS_EXCHANGE_MEDIA": 5, "CS_PARK": 6, "CS_CONSUME_MEDIA": 7, "CS_HIBERNATE": 8, "CS_RESET": 9,
    "CS_HANGUP": 10, "CS_REPORTING": 11, "CS_DESTROY": 12, "CS_NONE": 13,
}  # fmt: skip
CALLSTATE_NUMBERS = {
    "DOWN": 0, "DIALING": 1, "RINGING": 2, "EARLY": 3, "ACTIVE": 4, "HELD": 5, "RING_WAIT": 6,
    "HANGUP": 7, "UNHELD": 8,
}  # fmt: skip


def q850(cause: str) -> int:
    """The Q.850 code of a hangup cause name (0 when unknown)."""
    try:
        from esl.types import HangupCause

        return int(HangupCause[cause])
    except (ImportError, KeyError):
        return 0


def normalize_cause(cause: str | None, default: str = "NORMAL_CLEARING") -> str:
    """switch_channel_str2cause: a cause name (any case) or a Q.850 number; unknown -> ``default``."""
    if not cause:
        return default
    cause = cause.strip().upper()
    try:
        from esl.types import HangupCause

        if cause.isdigit():
            return HangupCause(int(cause)).name
        return HangupCause[cause].name
    except (ImportError, KeyError, ValueError):
        return cause if re.fullmatch(r"[A-Z_]+", cause) else default


@dataclass
class Timings:
    """How long simulated things take, in seconds (tiny by default so tests are fast).

    ``scale`` converts the durations written in commands and dialplans
    (``linger 2``, ``sleep 1000``, originate timeouts, ``sched_hangup +5``,
    digit timeouts) into simulated seconds: 0.01 makes one second take 10 ms.
    """

    step: float = 0.0  # pause between two state-machine steps (0: only yield to the loop)
    ring: float = 0.0  # default ringing time of an originate target before it answers
    playback: float = 0.02  # playback / speak / say length
    media: dict[str, float] = field(default_factory=dict)  # per-file playback length
    record: float = 0.02  # record length when no limit is given
    dtmf_gap: float = 0.0  # between two DTMF digits
    # How long the ``socket`` application waits for its TCP connect before it gives up (logs
    # "Socket Error!" and goes on with the dialplan). FreeSWITCH has no limit of its own (the OS
    # gives up after its SYN retries); 30 s outlasts the 1+2+4+8 s retransmits of SYNs dropped by a
    # full accept queue (hundreds of calls at once on a loaded machine) yet ends a test whose app
    # never answers. A refused connection fails at once whatever this is.
    connect_timeout: float = 30.0
    scale: float = 0.01


@dataclass
class Endpoint:
    """How an originate target (a dial string, e.g. ``"user/1000"``) behaves.

    ``answer_after``: seconds of ringing before answering (None: never answers,
    so the originate times out with NO_ANSWER). ``fail``: a hangup cause to reject
    with after ringing. ``ring_timeout``: seconds before NO_ANSWER (default: the
    originate timeout times ``Timings.scale``). ``dtmf``: digits the far end presses
    once answered. ``hangup_after``: the far end hangs up this long after answering.
    ``early_media``: send CHANNEL_PROGRESS_MEDIA while ringing. ``channel_name``:
    the Channel-Name to use. ``beep_after``: see :mod:`esl.testing.avmd`.
    """

    answer_after: float | None = 0.0
    fail: str | None = None
    ring_timeout: float | None = None
    dtmf: str | None = None
    hangup_after: float | None = None
    early_media: bool = False
    channel_name: str | None = None
    #: an answering machine: seconds after ``avmd_start`` until mod_avmd hears its beep (None: a human)
    beep_after: float | None = None


# -- the channel -----------------------------------------------------------------------


class FakeChannel:
    """One simulated call leg: its state, variables, the events it fired, and the task
    that runs it (ringing, dialplan or the originate's application, sendmsg
    messages, hangup).

    Tests use ``uuid``, ``name``, ``state`` ("CS_EXECUTE"...), ``call_state``,
    ``answered``, ``hangup_cause``, ``variables``, ``events_fired`` (the last
    events of this leg), ``send_dtmf()``, ``hangup()``, ``wait_hangup()``,
    ``wait_state()``, ``wait_event()``.
    """

    EVENT_HISTORY = 256

    def __init__(
        self,
        fake: FakeFreeSWITCH,
        *,
        uuid: str | None = None,
        name: str,
        direction: str,
        destination: str,
        caller_id_name: str = "",
        caller_id_number: str = "",
        context: str = "default",
        source: str = "mod_sofia",
        variables: dict[str, str] | None = None,
    ) -> None:
        self.fake = fake
        self.timings: Timings = fake.timings
        self.uuid = uuid or str(uuidlib.uuid4())
        self.name = name
        self.direction = direction
        self.destination = destination
        self.context = context
        self.source = source
        self.caller_id_name = caller_id_name or "Outbound Call"
        self.caller_id_number = caller_id_number or "0000000000"
        self.callee_id_name = ""
        self.callee_id_number = ""
        self.dialplan = "XML"
        self.orig_caller_id_name = self.caller_id_name
        self.orig_caller_id_number = self.caller_id_number
        self._read_codec: tuple[str, str, str] | None = None  # set with the media (CODEC events)
        self._write_codec: tuple[str, str, str] | None = None
        #: Caller-Network-Addr (the signalling peer of a SIP leg; empty for loopback/originated legs)
        self.network_addr = ""
        self.state = "CS_NEW"
        self.running_state = "CS_NONE"
        self.call_state = "DOWN"
        self.answer_state = "ringing"
        self.answered = False
        #: Channel-HIT-Dialplan: true for incoming legs, and for outgoing ones once they execute
        self.hit_dialplan = direction == "inbound"
        self.hangup_cause: str | None = None
        self.created = time.time()
        self.answered_at = 0.0
        self.hungup_at = 0.0
        self.variables: dict[str, str] = {}
        self.events_fired: collections.deque[Event] = collections.deque(maxlen=self.EVENT_HISTORY)
        self.other_leg: FakeChannel | None = None  # bridged peer
        self.partner: FakeChannel | None = None  # loopback partner
        self.other_type = ""  # "originator" / "originatee" for Other-Leg-* headers
        self.listeners: list[FakeConnection] = []
        self.socket_conn: FakeConnection | None = None
        self.current_app: str | None = None
        self.destroyed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.answered_future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.transfer_to: tuple[str, str, str] | None = None
        self.on_answer: list[Callable[[FakeChannel], Any]] = []
        #: the originate target's Endpoint (outgoing legs)
        self.endpoint: Endpoint | None = None
        self.on_hangup: list[Callable[[FakeChannel], Any]] = []
        # the session's private event queue (sendmsg) and the flags that gate it
        self._messages: collections.deque[Command] = collections.deque()
        self._msg_waiter: asyncio.Future[None] | None = None
        self._event_lock = 0  # CF_EVENT_LOCK (set recursively by each event-locked message running)
        self._broadcast = False  # CF_BROADCAST: a sendmsg execute is running
        self._stop_broadcast = False  # CF_STOP_BROADCAST
        self._break_flag = False  # CF_BREAK set while no media loop was there to take it
        # future -> interruptible by break; a None result means "a message was queued"
        self._waiters: dict[asyncio.Future[bool | None], bool] = {}
        self._parse_waiters: set[asyncio.Future[bool | None]] = set()
        self._dtmf: list[str] = []
        self._dtmf_waiter: asyncio.Future[None] | None = None
        self._event_waiters: list[tuple[str, asyncio.Future[Event]]] = []
        self._task: asyncio.Task[None] | None = None
        self._unpark = False
        # set by originate: what runs once answered, and the go-ahead to run it
        self.after_answer: tuple[str, str] = ("", "default")
        self._go: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # set by the bridge application while this leg is bridged
        self._bridge_waiter: asyncio.Future[None] | None = None
        # set by uuid_bridge: (peer, originator?) until the leg has left its application
        self._uuid_bridge: tuple[FakeChannel, bool] | None = None
        self._uuid_bridged = False  # in the uuid_bridge state handlers
        self.recordings: set[str] = set()  # "locked" / "nested" while a sendmsg application runs
        base = {
            "direction": direction,
            "uuid": self.uuid,
            "session_id": str(fake.sessions_since_startup + 1),
            "channel_name": name,
        }
        if direction == "outbound":
            base["is_outbound"] = "true"
        self.variables.update(base)
        if variables:
            self.variables.update({k: str(v) for k, v in variables.items()})
        fake.sessions_since_startup += 1
        fake.channels[self.uuid] = self

    def __repr__(self) -> str:
        return f"<FakeChannel {self.uuid} {self.name} {self.state} {self.call_state}>"

    # -- properties --------------------------------------------------------------

    @property
    def down(self) -> bool:
        """True once hung up (switch_channel_down)."""
        return self.hangup_cause is not None

    @property
    def peer(self) -> FakeChannel | None:
        """The leg media and DTMF go to: the bridged leg, else the loopback partner."""
        return self.other_leg or self.partner

    @property
    def is_call_leader(self) -> bool:
        """Counted by ``show calls``: a leg that is not the originatee of a bridge."""
        return self.other_type != "originatee"

    @property
    def read_codec(self) -> tuple[str, str, str]:
        """(name, rate, bit rate) of the read codec; empty strings before the media is set up."""
        return self._read_codec or ("", "", "")

    @property
    def write_codec(self) -> tuple[str, str, str]:
        """(name, rate, bit rate) of the write codec; empty strings before the media is set up."""
        return self._write_codec or ("", "", "")

    def set_codecs(self, name: str = "PCMU", rate: str = "8000", *, fire: bool = True) -> None:
        """The media is set up: read codec then write codec, a CODEC event for each (as
        switch_core_session_set_read_codec / set_write_codec fire them)."""
        bits = _bit_rate(name, rate)
        self._read_codec = (name, rate, bits)
        self.variables["read_codec"], self.variables["read_rate"] = name, rate
        sofia = self.source == "mod_sofia"
        if fire:
            self.fire(
                "CODEC",
                post=[("channel-read-codec-name", name), ("channel-read-codec-rate", rate),
                      ("channel-read-codec-bit-rate", bits)],
                calling=("switch_core_codec.c", "switch_core_session_set_real_read_codec", 189) if sofia
                else ("switch_core_codec.c", "switch_core_session_set_read_codec", 300),
            )  # fmt: skip
        self._write_codec = (name, rate, bits)
        self.variables["write_codec"], self.variables["write_rate"] = name, rate
        if fire:
            self.fire(
                "CODEC",
                post=[("Channel-Write-Codec-Name", name), ("Channel-Write-Codec-Rate", rate),
                      ("Channel-Write-codec-bit-rate", bits)],
                calling=("switch_core_codec.c", "switch_core_session_set_write_codec", 471),
            )  # fmt: skip

    def flip_cid(self) -> None:
        """switch_channel_flip_cid (an originated leg once answered): caller and callee id
        swap, then CALL_UPDATE with ``Direction: RECV``."""
        self.variables["pre_transfer_caller_id_name"] = self.caller_id_name
        self.variables["pre_transfer_caller_id_number"] = self.caller_id_number
        name, number = self.caller_id_name, self.caller_id_number
        self.caller_id_name = self.callee_id_name or "Outbound Call"
        self.caller_id_number = self.callee_id_number or self.destination
        self.callee_id_name, self.callee_id_number = name, number
        self.variables["channel_cid_flipped"] = "yes"
        self.hit_dialplan = True  # CF_DIALPLAN, set as the leg is handed its application
        pre = [("Direction", "RECV")]
        if self.other_leg is not None:
            pre.append(("Bridged-To", self.other_leg.uuid))
        self.fire("CALL_UPDATE", pre=pre, extended=True, calling=("switch_channel.c", "switch_channel_flip_cid", 3279))

    def show_row(self) -> dict[str, str]:
        """This channel's row of ``show channels`` (the 38 columns of the channels table)."""
        row = self.fake.coredb.channels.get(self.uuid)
        return dict(row) if row is not None else {}

    # -- event building --------------------------------------------------------------

    def _profile(self, prefix: str) -> list[tuple[str, str]]:
        created = str(int(self.created * 1_000_000))
        answered = str(int(self.answered_at * 1_000_000)) if self.answered_at else "0"
        hung = str(int(self.hungup_at * 1_000_000)) if self.hungup_at else "0"
        p = prefix
        return [
            (f"{p}-Direction", self.direction),
            (f"{p}-Logical-Direction", self.direction),
            (f"{p}-Dialplan", "XML"),
            (f"{p}-Caller-ID-Name", self.caller_id_name),
            (f"{p}-Caller-ID-Number", self.caller_id_number),
            (f"{p}-Orig-Caller-ID-Name", self.orig_caller_id_name),
            (f"{p}-Orig-Caller-ID-Number", self.orig_caller_id_number),
            (f"{p}-Callee-ID-Name", self.callee_id_name or "Outbound Call"),
            (f"{p}-Callee-ID-Number", self.callee_id_number or self.destination),
            *([(f"{p}-Network-Addr", self.network_addr)] if self.network_addr else []),
            (f"{p}-ANI", self.caller_id_number),
            (f"{p}-Destination-Number", self.destination),
            (f"{p}-Unique-ID", self.uuid),
            (f"{p}-Source", self.source),
            (f"{p}-Context", self.context),
            (f"{p}-Channel-Name", self.name),
            (f"{p}-Profile-Index", "1"),
            (f"{p}-Profile-Created-Time", created),
            (f"{p}-Channel-Created-Time", created),
            (f"{p}-Channel-Answered-Time", answered),
            (f"{p}-Channel-Progress-Time", "0"),
            (f"{p}-Channel-Progress-Media-Time", "0"),
            (f"{p}-Channel-Hangup-Time", hung),
            (f"{p}-Channel-Transfer-Time", "0"),
            (f"{p}-Channel-Resurrect-Time", "0"),
            (f"{p}-Channel-Bridged-Time", "0"),
            (f"{p}-Channel-Last-Hold", "0"),
            (f"{p}-Channel-Hold-Accum", "0"),
            (f"{p}-Screen-Bit", "true"),
            (f"{p}-Privacy-Hide-Name", "false"),
            (f"{p}-Privacy-Hide-Number", "false"),
        ]

    def basic_data(self, state: str | None = None) -> list[tuple[str, str]]:
        """switch_channel_event_set_basic_data: state, names, codecs, caller profile, other leg."""
        st = state or self.state
        pairs = [
            ("Channel-State", st),
            ("Channel-Call-State", self.call_state),
            ("Channel-State-Number", str(STATE_NUMBERS.get(st, 0))),
            ("Channel-Name", self.name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "true" if self.hit_dialplan else "false"),
            ("Channel-Call-UUID", self.variables.get("call_uuid", self.uuid)),
            ("Answer-State", self.answer_state),
        ]
        if self.hangup_cause is not None:
            pairs.append(("Hangup-Cause", self.hangup_cause))
        rc, wc = self._read_codec, self._write_codec
        if rc is not None:
            pairs += [
                ("Channel-Read-Codec-Name", rc[0]),
                ("Channel-Read-Codec-Rate", rc[1]),
                ("Channel-Read-Codec-Bit-Rate", rc[2]),
            ]
        if wc is not None:
            pairs += [
                ("Channel-Write-Codec-Name", wc[0]),
                ("Channel-Write-Codec-Rate", wc[1]),
                ("Channel-Write-Codec-Bit-Rate", wc[2]),
            ]
        pairs += self._profile("Caller")
        other = self.other_leg
        if other is not None:
            pairs += [
                ("Other-Type", self.other_type or "originatee"),
                ("Other-Leg-Direction", other.direction),
                ("Other-Leg-Logical-Direction", other.direction),
                ("Other-Leg-Dialplan", "XML"),
                ("Other-Leg-Caller-ID-Name", other.caller_id_name),
                ("Other-Leg-Caller-ID-Number", other.caller_id_number),
                ("Other-Leg-Destination-Number", other.destination),
                ("Other-Leg-Unique-ID", other.uuid),
                ("Other-Leg-Source", other.source),
                ("Other-Leg-Context", other.context),
                ("Other-Leg-Channel-Name", other.name),
            ]
        return pairs

    def fire(
        self,
        name: str,
        pre: Iterable[tuple[str, str]] = (),
        post: Iterable[tuple[str, str]] = (),
        *,
        extended: bool = False,
        state: str | None = None,
        calling: tuple[str, str, int] | None = None,
        subclass: str | None = None,
    ) -> Event:
        """Fire a channel event: ``pre`` headers, the basic data, the ``variable_*`` headers
        when ``extended``, then ``post`` headers; deliver it on the fake's bus."""
        pre = list(pre)
        pairs = pre + self.basic_data(state)
        if extended:
            pairs += [(f"variable_{k}", v) for k, v in self.variables.items()]
        post = list(post)
        pairs += post
        event = self.fake.factory.make_trusted(name, pairs, subclass, calling)
        self.events_fired.append(event)
        if name in WATCHED:
            self.fake.coredb.channel_event(self, name, pre + post if pre else post)
        self.fake.fire_nowait(event, {"event-name": name, "event-subclass": subclass, "unique-id": self.uuid})
        if self._event_waiters:
            for wanted, fut in list(self._event_waiters):
                if wanted == name and not fut.done():
                    fut.set_result(event)
            self._event_waiters = [(n, f) for n, f in self._event_waiters if not f.done()]
        return event

    def set_state(self, state: str) -> None:
        """Move the state machine and fire CHANNEL_STATE."""
        if state == "CS_EXECUTE":
            self.hit_dialplan = True
        self.state = state
        self.running_state = state
        self.fire(
            "CHANNEL_STATE", calling=("switch_channel.c", "switch_channel_perform_set_running_state", 2409)
        )

    def set_call_state(self, call_state: str) -> None:
        """Change the call state and fire CHANNEL_CALLSTATE."""
        if call_state == self.call_state:
            return
        original = self.call_state
        self.call_state = call_state
        self.fire(
            "CHANNEL_CALLSTATE",
            pre=[
                ("Original-Channel-Call-State", original),
                ("Channel-Call-State-Number", str(CALLSTATE_NUMBERS.get(call_state, 0))),
            ],
            calling=("switch_channel.c", "switch_channel_perform_set_callstate", 302),
        )

    def connect_reply(self, conn: FakeConnection) -> bytes:
        """The reply to ``connect`` on an outbound socket: the URL-encoded CHANNEL_DATA dump,
        then Content-Type / Reply-Text / Socket-Mode / Control (no Content-Length)."""
        from esl import _codec

        pairs = self.fake.factory.standard("CHANNEL_DATA", ("mod_event_socket.c", "parse_command", 2029))
        pairs += self._profile("Channel")
        pairs += self.basic_data()
        pairs += [(f"variable_{k}", v) for k, v in self.variables.items()]
        pairs += [
            ("Content-Type", "command/reply"),
            ("Reply-Text", "+OK\n"),
            ("Socket-Mode", "async" if conn.async_mode else "static"),
            ("Control", "full" if conn.full else "single-channel"),
        ]
        return _codec.serialize(pairs, None, "plain")

    # -- waiting -----------------------------------------------------------------------

    async def pause(
        self,
        seconds: float,
        *,
        breakable: bool = True,
        parse: bool = False,
        until: asyncio.Future[Any] | None = None,
    ) -> bool:
        """Wait ``seconds`` of simulated media time (``math.inf``: until cut short); False when
        cut short by hangup (or by uuid_break / the break app when ``breakable``).

        ``parse``: this is a media loop of the session (playback, sleep, bridge...), which runs
        the queued sendmsg messages as they arrive, nested inside it, as
        switch_ivr_parse_all_events does, unless an event-locked message is running
        (CF_EVENT_LOCK): then they wait until it ends. Time spent in a nested message does not
        count. ``until``: also return True once that future is done.
        """
        if self.down:
            return False
        loop = asyncio.get_running_loop()
        remaining = max(seconds, 0.0)
        while True:
            if parse and self._messages and not self._event_lock:
                await self.parse_all_events()
                if self.down:
                    return False
            if breakable and self._break_flag:
                self._break_flag = False
                return False
            if until is not None and until.done():
                return True
            fut: asyncio.Future[bool | None] = loop.create_future()
            self._waiters[fut] = breakable
            if parse:
                self._parse_waiters.add(fut)

            def elapsed(_: object = None, fut: asyncio.Future[bool | None] = fut) -> None:
                if not fut.done():
                    fut.set_result(True)

            handle = loop.call_later(remaining, elapsed) if remaining != math.inf else None
            if until is not None:
                until.add_done_callback(elapsed)
            started = loop.time()
            try:
                result = await fut
            finally:
                if handle is not None:
                    handle.cancel()
                if until is not None:
                    until.remove_done_callback(elapsed)
                self._waiters.pop(fut, None)
                self._parse_waiters.discard(fut)
            if result is None:  # a message was queued: run it (or keep waiting) and go on
                remaining = max(remaining - (loop.time() - started), 0.0)
                continue
            return result

    async def step(self) -> None:
        """One state-machine step: yield to the loop (and wait Timings.step if set)."""
        await asyncio.sleep(self.timings.step)

    def interrupt(self, *, only_breakable: bool = False) -> None:
        """Cut every pending media wait short (hangup), or only the breakable ones (CF_BREAK:
        uuid_break, the break app; kept for the next media loop when none is running)."""
        hit = False
        for fut, breakable in list(self._waiters.items()):
            if not fut.done() and (breakable or not only_breakable):
                fut.set_result(False)
                hit = True
        if only_breakable and not hit:
            self._break_flag = True
        if not only_breakable:
            self._wake_messages()
            if self._dtmf_waiter is not None and not self._dtmf_waiter.done():
                self._dtmf_waiter.set_result(None)

    def stop_broadcast(self) -> bool:
        """switch_channel_stop_broadcast: end the running sendmsg execute (and its loops) and
        break its media; False when no sendmsg execute is running."""
        if not self._broadcast:
            return False
        self._stop_broadcast = True
        self.interrupt(only_breakable=True)
        return True

    def flush_messages(self) -> int:
        """switch_core_session_flush_private_events: drop every queued message; returns how many."""
        count = len(self._messages)
        self._messages.clear()
        return count

    async def wait_hangup(self, timeout: float | None = 5.0) -> None:
        """Until the channel is destroyed."""
        await asyncio.wait_for(asyncio.shield(self.destroyed), timeout)

    async def wait_state(self, state: str, timeout: float | None = 5.0) -> None:
        """Until the channel reaches ``state`` (e.g. "CS_EXECUTE") or a later one."""
        target = STATE_NUMBERS[state if state.startswith("CS_") else "CS_" + state.upper()]

        async def poll() -> None:
            while STATE_NUMBERS.get(self.state, 0) < target and not self.destroyed.done():
                await asyncio.sleep(0.001)

        await asyncio.wait_for(poll(), timeout)

    async def wait_event(self, name: str, timeout: float | None = 5.0) -> Event:
        """The next event ``name`` this channel fires."""
        fut: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._event_waiters.append((name, fut))
        return await asyncio.wait_for(fut, timeout)

    # -- DTMF --------------------------------------------------------------------------

    async def send_dtmf(self, digits: str, duration: int = 100, source: str = "RTP") -> None:
        """DTMF from the far end of this leg (as if the caller pressed keys): a DTMF event per
        digit, and the digits buffered for play_and_get_digits / read."""
        for i, digit in enumerate(digits):
            if self.down:
                return
            if i and self.timings.dtmf_gap:
                await asyncio.sleep(self.timings.dtmf_gap)
            self.receive_dtmf(digit, duration, source)
        await asyncio.sleep(0)

    def receive_dtmf(self, digit: str, duration: int = 100, source: str = "RTP") -> None:
        """One digit arriving on this leg."""
        self.variables["last_dtmf_duration"] = str(duration * 8)
        post = [("DTMF-Digit", digit), ("DTMF-Duration", str(duration * 8)), ("DTMF-Source", source)]
        calling = ("switch_channel.c", "switch_channel_dequeue_dtmf", 678)
        diverted = [c for c in self.listeners if c.divert and c.is_open]
        if diverted:
            # divert_events on: the event goes to the session's own listener(s), not the global bus
            pairs = self.basic_data() + post
            event = self.fake.factory.make_trusted("DTMF", pairs, None, calling)
            self.events_fired.append(event)
            for conn in diverted:
                conn.deliver(event.raw if conn.format == "plain" else event.frame(conn.format))
        else:
            self.fire("DTMF", post=post, calling=calling)
        self._dtmf.append(digit)
        if self._dtmf_waiter is not None and not self._dtmf_waiter.done():
            self._dtmf_waiter.set_result(None)

    async def collect_digits(
        self, max_digits: int, terminators: str, timeout: float, digit_timeout: float | None = None
    ) -> tuple[str, str]:
        """Take digits from the buffer until ``max_digits``, a terminator or a timeout.
        Returns (digits, terminator-or-"")."""
        got: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < max_digits and not self.down:
            if self._dtmf:
                d = self._dtmf.pop(0)
                if d in terminators:
                    return "".join(got), d
                got.append(d)
                if digit_timeout is not None:
                    deadline = loop.time() + digit_timeout
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            waiter = self._dtmf_waiter = loop.create_future()
            try:
                # a media loop: queued messages run meanwhile (switch_ivr_collect_digits_count)
                await self.pause(remaining, breakable=False, parse=True, until=waiter)
            finally:
                self._dtmf_waiter = None
            if not waiter.done():
                break
        return "".join(got), ""

    # -- answer / hangup -----------------------------------------------------------------

    def pre_answer(self) -> None:
        """Early media: CHANNEL_PROGRESS_MEDIA and call state EARLY."""
        if self.answered or self.down or self.answer_state == "early":
            return
        if self._read_codec is None:
            self.set_codecs()
        self.answer_state = "early"
        self.fire(
            "CHANNEL_PROGRESS_MEDIA",
            extended=True,
            calling=("switch_channel.c", "switch_channel_perform_mark_pre_answered", 3620),
        )
        self.set_call_state("EARLY")

    def ring_ready(self) -> None:
        """Ringing: CHANNEL_PROGRESS and call state RINGING."""
        if self.answered or self.down:
            return
        self.fire(
            "CHANNEL_PROGRESS",
            extended=True,
            calling=("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3520),
        )
        self.set_call_state("RINGING")

    def answer(self) -> bool:
        """Answer: CHANNEL_ANSWER then CHANNEL_CALLSTATE ACTIVE (once); False if hung up."""
        if self.down:
            return False
        if self.answered:
            return True
        if self._read_codec is None:
            self.set_codecs()
        self.answered = True
        self.answered_at = time.time()
        self.answer_state = "answered"
        self.variables.setdefault("endpoint_disposition", "ANSWER")
        self.fire(
            "CHANNEL_ANSWER",
            extended=True,
            calling=("switch_channel.c", "switch_channel_perform_mark_answered", 3848),
        )
        self.set_call_state("ACTIVE")
        if not self.answered_future.done():
            self.answered_future.set_result(True)
        for cb in list(self.on_answer):
            cb(self)
        return True

    def hangup(self, cause: str = "NORMAL_CLEARING") -> _HangupResult:
        """Hang up with ``cause`` (from anywhere: far end, api, sendmsg, app); the channel's task
        then runs the teardown. Returns False if it was already down.

        Tests may ``await ch.hangup(...)``: the call returns an awaitable that waits for
        CHANNEL_DESTROY when awaited, and is a plain truth value otherwise.
        """
        if self.down:
            return _HangupResult(False, self)
        cause = normalize_cause(cause)
        self.hangup_cause = cause
        self.hungup_at = time.time()
        self.answer_state = "hangup"
        self.variables["hangup_cause"] = cause
        self.variables["hangup_cause_q850"] = str(q850(cause))
        if not self.answered_future.done():
            self.answered_future.set_result(False)
        self.fire(
            "CHANNEL_HANGUP",
            extended=True,
            calling=("switch_channel.c", "switch_channel_perform_hangup", 3447),
        )
        # listeners without linger see the channel go down and close at once (events after are lost)
        for conn in list(self.listeners):
            if conn.linger is None:
                conn.session_gone()
        self.interrupt()
        for cb in list(self.on_hangup):
            cb(self)
        for leg in (self.other_leg, self.partner):
            if leg is not None and not leg.down:
                self._release_peer(leg, cause)
        if self._task is None or self._task.done():
            self._task = self.fake.spawn(self._teardown())
        return _HangupResult(True, self)

    def _release_peer(self, leg: FakeChannel, cause: str) -> None:
        if leg is self.partner:
            leg.hangup(cause)
            return
        # a bridge ends: UNBRIDGE on the originator, the other leg carries on or hangs up
        a, b = (self, leg) if self.other_type == "originator" else (leg, self)
        a.fire(
            "CHANNEL_UNBRIDGE",
            extended=True,
            post=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)],
            calling=("switch_ivr_bridge.c", "audio_bridge_on_exchange_media", 750),
        )
        leg.variables["bridge_hangup_cause"] = cause
        self.other_leg = None
        leg.other_leg = None
        leg._bridge_ended()

    def _bridge_ended(self) -> None:
        """Hook for the bridge app and uuid_bridge: the bridged peer went away."""
        waiter = self._bridge_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
            if self._uuid_bridged and self.variables.get("park_after_bridge") != "true":
                self.hangup("NORMAL_CLEARING")  # at once, as the bridge thread does
        elif self.variables.get("park_after_bridge") != "true":
            self.hangup(self.variables.get("bridge_hangup_cause", "NORMAL_CLEARING"))
        else:
            self._unpark = False

    async def _teardown(self) -> None:
        """After hangup: CS_HANGUP, HANGUP callstate, CS_REPORTING, HANGUP_COMPLETE, then (once
        every listener holding the session is gone) CHANNEL_DESTROY and CS_DESTROY."""
        try:
            await self.step()
            self.set_state("CS_HANGUP")
            self.set_call_state("HANGUP")
            await self.step()
            self.set_state("CS_REPORTING")
            self._cdr_variables()
            self.fire(
                "CHANNEL_HANGUP_COMPLETE",
                pre=[("Hangup-Cause", self.hangup_cause or "")],
                extended=True,
                calling=("switch_core_state_machine.c", "switch_core_session_reporting_state", 943),
            )
            for conn in list(self.listeners):
                if conn.linger is not None and conn.is_open:
                    conn.write(
                        b"Content-Type: text/disconnect-notice\nControlled-Session-UUID: %s\n"
                        b"Content-Disposition: linger\nChannel-Name: %s\nLinger-Time: %d\nContent-Length: 0\n\n"
                        % (self.uuid.encode(), self.name.encode(), int(conn.linger))
                    )
                    if conn.linger != -1:
                        asyncio.get_running_loop().call_later(
                            conn.linger * self.timings.scale, conn.session_gone
                        )
            # the listeners hold a read lock on the session: destroy waits for them
            while self.listeners:
                waits = [c.closed for c in self.listeners]
                await asyncio.wait(waits)
                self.listeners = [c for c in self.listeners if not c.closed.done()]
            self.state = "CS_DESTROY"
            self.fire(
                "CHANNEL_DESTROY",
                extended=True,
                state="CS_REPORTING",
                calling=("switch_core_session.c", "switch_core_session_perform_destroy", 1588),
            )
            self.fire(
                "CHANNEL_STATE",
                calling=("switch_channel.c", "switch_channel_perform_set_running_state", 2409),
            )
        finally:
            self._messages.clear()
            self.fake.channels.pop(self.uuid, None)
            if not self.destroyed.done():
                self.destroyed.set_result(None)

    def _cdr_variables(self) -> None:
        end = self.hungup_at or time.time()
        start = self.created
        answer = self.answered_at
        v = self.variables
        v.update({
            "start_stamp": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(start)),
            "answer_stamp": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(answer)) if answer else "",
            "end_stamp": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(end)),
            "start_epoch": str(int(start)), "start_uepoch": str(int(start * 1e6)),
            "answer_epoch": str(int(answer)), "answer_uepoch": str(int(answer * 1e6)),
            "end_epoch": str(int(end)), "end_uepoch": str(int(end * 1e6)),
            "duration": str(int(end - start)), "billsec": str(int(end - answer) if answer else 0),
            "mduration": str(int((end - start) * 1000)),
            "billmsec": str(int((end - answer) * 1000) if answer else 0),
            "last_app": self.variables.get("current_application", ""),
            "caller_id": f'"{self.caller_id_name}" <{self.caller_id_number}>',
        })  # fmt: skip
        if not answer:
            v.pop("answer_stamp", None)

    # -- listeners (outbound socket, inbound myevents <uuid>) ---------------------------------

    def _listener_attached(self, conn: FakeConnection) -> None:
        if conn not in self.listeners:
            self.listeners.append(conn)

    def _listener_gone(self, conn: FakeConnection) -> None:
        if conn is self.socket_conn:
            self._wake_messages()
            self._unpark = True

    # -- messages (sendmsg) ----------------------------------------------------------------

    def queue_message(self, cmd: Command) -> None:
        """switch_core_session_queue_private_event: a sendmsg for this channel (async mode).

        The session runs it the next time it parses its queue: at once when parked, between
        two dialplan applications, or nested inside the media application running now
        (playback, sleep, bridge...). While an event-locked message runs (``event-lock:
        true``, CF_EVENT_LOCK) nothing more is taken off the queue: later messages, a
        ``call-command: hangup`` included, wait until that application ends. ``uuid_kill``
        and ``uuid_break`` (api) go around the queue.
        """
        if self.down:
            return  # accepted, never run (the session is going away)
        self._messages.append(cmd)
        self._wake_messages()

    def _wake_messages(self) -> None:
        if self._msg_waiter is not None and not self._msg_waiter.done():
            self._msg_waiter.set_result(None)
        for fut in list(self._parse_waiters):
            if not fut.done():
                fut.set_result(None)

    @property
    def event_locked(self) -> bool:
        """CF_EVENT_LOCK: an event-locked message is running, the queue is held."""
        return self._event_lock > 0

    @property
    def queued_messages(self) -> int:
        """How many sendmsg messages wait in the session's queue."""
        return len(self._messages)

    async def parse_all_events(self) -> None:
        """switch_ivr_parse_all_events: run queued messages in order while none holds the lock;
        PRIVATE_COMMAND fires after each one has run (switch_ivr_parse_next_event)."""
        while self._messages and not self._event_lock and not self.down:
            msg = self._messages.popleft()
            await self.run_message(msg)
            self.fire_private_command(msg)

    async def run_pending_messages(self) -> None:
        """Run every queued message now (between dialplan applications)."""
        await self.parse_all_events()

    def fire_private_command(self, cmd: Command) -> None:
        """PRIVATE_COMMAND, fired once a queued message has run: the message's own headers
        first, then the standard headers and the channel data."""
        text = cmd.line + "\n" + "".join(f"{k}: {v}\n" for k, v in cmd.headers) + "\n"
        pairs = [("Command", text), *cmd.headers]
        pairs += self.fake.factory.standard(
            "PRIVATE_COMMAND", ("switch_ivr.c", "switch_ivr_parse_next_event", 804)
        )
        pairs += self.basic_data()
        pairs += [(f"variable_{k}", v) for k, v in self.variables.items()]
        event = build_plain(pairs, cmd.body)
        self.events_fired.append(event)
        self.fake.fire_nowait(event)

    async def run_message(self, cmd: Command) -> None:
        """switch_ivr_parse_event: run one sendmsg (execute ``loops`` times, hangup, xferext...),
        holding the queue while it runs when it says ``event-lock: true``."""
        command = (cmd.get("call-command") or "").lower()
        locked = _true(cmd.get("event-lock"))
        if locked:
            self._event_lock += 1
        try:
            if command == "execute":
                await self._run_execute(cmd)
            elif command == "hangup":
                self.hangup(cmd.get("hangup-cause") or "NORMAL_CLEARING")
            elif command == "xferext":
                for _, value in [h for h in cmd.headers if h[0].lower() == "application"]:
                    app, _, arg = value.partition(" ")
                    if self.down:
                        break
                    await self.execute(app, arg)
            # unicast, nomedia: accepted, nothing to simulate
        finally:
            if locked:
                self._event_lock -= 1

    async def _run_execute(self, cmd: Command) -> None:
        app = cmd.get("execute-app-name") or ""
        arg = cmd.get("execute-app-arg")
        if not arg and (cmd.get("content-type") or "").lower() == "text/plain":
            arg = cmd.body
        try:
            loops = int(cmd.get("loops") or 1)
        except ValueError:
            loops = 1
        if not app:
            return
        event_uuid = cmd.get("Event-UUID")
        name = cmd.get("event-uuid-name")
        self._stop_broadcast = False
        owner = not self._broadcast
        self._broadcast = True
        count = 0
        try:
            while not self.down and (loops < 0 or count < loops) and not self._stop_broadcast:
                if loops != 1:
                    self.variables["current_loop"] = str(count + 1)
                    self.variables["total_loops"] = str(loops)
                await self.execute(app, arg or "", app_uuid=event_uuid, app_uuid_name=name)
                count += 1
        finally:
            self.variables.pop("current_loop", None)
            self.variables.pop("total_loops", None)
            if owner:
                self._broadcast = False
            if self._stop_broadcast:
                # a stopped broadcast also breaks the media loop it ran inside (CF_BREAK)
                self._broadcast = False
                self._stop_broadcast = False
                self._break_flag = True

    # -- applications ------------------------------------------------------------------------

    async def execute(
        self, app: str, arg: str = "", *, app_uuid: str | None = None, app_uuid_name: str | None = None
    ) -> str | None:
        """Run a dialplan application with CHANNEL_EXECUTE / CHANNEL_EXECUTE_COMPLETE around it;
        returns its Application-Response."""
        from esl.testing.apps import run_app

        if self.down:
            return None
        self.variables["current_application_data"] = arg
        self.variables["current_application"] = app
        if app_uuid:
            self.variables["app_uuid"] = app_uuid
        ids = [("Application-UUID", app_uuid)] if app_uuid else []
        if app_uuid_name:
            ids.append(("Application-UUID-Name", app_uuid_name))
        self.current_app = app
        self.fire(
            "CHANNEL_EXECUTE",
            extended=True,
            post=[("Application", app), ("Application-Data", arg), *ids],
            calling=("switch_core_session.c", "switch_core_session_exec", 2949),
        )
        response = await run_app(self, app, arg)
        if response is not None:
            self.variables["current_application_response"] = response
        self.fire(
            "CHANNEL_EXECUTE_COMPLETE",
            extended=True,
            post=[
                ("Application", app),
                ("Application-Data", arg),
                ("Application-Response", response if response is not None else "_none_"),
                *ids,
            ],
            calling=("switch_core_session.c", "switch_core_session_exec", 2972),
        )
        self.current_app = None
        return response

    async def park(self) -> None:
        """switch_ivr_park: CHANNEL_PARK, run queued messages until hangup/unpark, CHANNEL_UNPARK."""
        self._unpark = False
        self.fire("CHANNEL_PARK", extended=True, calling=("switch_ivr.c", "switch_ivr_park", 1002))
        loop = asyncio.get_running_loop()
        while True:
            self._break_flag = False  # the park loop takes a stray CF_BREAK
            if self._messages and not self._event_lock and not self.down:
                await self.parse_all_events()
                continue
            if self.down or self._unpark or self.transfer_to is not None or self._uuid_bridge is not None:
                break
            self._msg_waiter = loop.create_future()
            try:
                await self._msg_waiter
            finally:
                self._msg_waiter = None
        self.fire("CHANNEL_UNPARK", extended=True, calling=("switch_ivr.c", "switch_ivr_park", 1213))

    async def run_extension(self, extension: str, context: str | None = None) -> None:
        """Run the dialplan entry for ``extension`` (NO_ROUTE_DESTINATION when there is none);
        a transfer starts over with the new extension; the end of the list hangs up."""
        while True:
            apps = self.fake.dialplan.get(extension)
            if apps is None and context is not None:
                apps = self.fake.dialplan.get(f"{context}:{extension}")
            if apps is None:
                self.hangup("NO_ROUTE_DESTINATION")
                return
            self.destination = extension
            if self.state != "CS_EXECUTE":
                self.set_state("CS_EXECUTE")
            for app, arg in _app_list(apps):
                if self.down or self.transfer_to is not None or self._uuid_bridge is not None:
                    break
                await self.execute(app, arg)
                await self.run_pending_messages()
            if self.transfer_to is not None and not self.down:
                extension, _, context = self.transfer_to
                self.transfer_to = None
                self.set_state("CS_ROUTING")
                continue
            break
        if not self.down and self._uuid_bridge is None:
            self.hangup("NORMAL_CLEARING")

    def transfer(self, extension: str, dialplan: str = "XML", context: str = "default") -> None:
        """Leave the current application and run ``extension`` (uuid_transfer / transfer app)."""
        self.transfer_to = (extension, dialplan, context)
        self.variables["transfer_history"] = (
            f"{int(time.time())}:{self.uuid}:bl_xfer:{extension}/{context}/{dialplan}"
        )
        self.interrupt()

    # -- uuid_bridge ---------------------------------------------------------------------------

    @property
    def media_up(self) -> bool:
        """switch_channel_media_up: answered or in early media."""
        return self.answered or self.answer_state == "early"

    def start_uuid_bridge(self, peer: FakeChannel, originator: bool) -> None:
        """switch_ivr_uuid_bridge on this leg: leave the running application (a ringing leg
        goes on ringing) and, once out of it, bridge to ``peer`` (see stay_uuid_bridged)."""
        self._uuid_bridge = (peer, originator)
        self._unpark = True
        self.transfer_to = None
        if self.media_up:
            self.interrupt()

    async def stay_uuid_bridged(self) -> None:
        """The uuid_bridge state handlers: the originator (CS_SOFT_EXECUTE) waits for the peer
        to answer, then bridges; the originatee waits in CS_EXCHANGE_MEDIA. When the bridge
        ends the leg hangs up (or parks with ``park_after_bridge``). The outbound socket that
        controlled the leg no longer matters: closing it only clears CF_CONTROLLED."""
        assert self._uuid_bridge is not None
        peer, originator = self._uuid_bridge
        self._uuid_bridge = None
        loop = asyncio.get_running_loop()
        waiter = self._bridge_waiter = loop.create_future()
        self.set_state("CS_SOFT_EXECUTE" if originator else "CS_EXCHANGE_MEDIA")
        self.fire(
            "CHANNEL_EXECUTE",
            extended=True,
            post=[("Application", "uuid_bridge"), ("Application-Data", peer.uuid)],
            calling=("switch_ivr_bridge.c", "uuid_bridge_on_soft_execute", 872),
        )
        self._uuid_bridged = True
        try:
            if originator:
                await self.pause(math.inf, breakable=False, parse=True, until=peer.answered_future)
                if self.down or self._uuid_bridge is not None:
                    return
                if peer.down or not peer.answered_future.result():
                    self.hangup("ORIGINATOR_CANCEL")
                    return
                self.fake.calls.bridge(self, peer)
            await self.pause(math.inf, breakable=False, parse=True, until=waiter)
        finally:
            self._bridge_waiter = None
            self._uuid_bridged = False
        if self.down or self._uuid_bridge is not None:
            return
        if self.variables.get("park_after_bridge", "").lower() == "true":
            await self.park()
        else:
            self.hangup("NORMAL_CLEARING")

    # -- lifecycles ---------------------------------------------------------------------------

    def start(self, coro: Awaitable[None]) -> None:
        """Run this channel's life as a task of the fake; teardown follows whatever ends it."""

        async def life() -> None:
            try:
                await coro
                while self._uuid_bridge is not None and not self.down:
                    await self.stay_uuid_bridged()
            finally:
                if not self.down:
                    self.hangup("NORMAL_CLEARING")
                await self._teardown()

        self._task = self.fake.spawn(life())

    async def run_incoming(self) -> None:
        """An incoming call running its dialplan (fake.call, a loopback B leg)."""
        self.set_state("CS_INIT")
        self.fire(
            "CHANNEL_CREATE",
            extended=True,
            state="CS_INIT",
            calling=("switch_core_state_machine.c", "switch_core_session_run", 626),
        )
        await self.step()
        self.state = "CS_ROUTING"
        self.set_call_state("RINGING")
        self.fire(
            "CHANNEL_STATE", calling=("switch_channel.c", "switch_channel_perform_set_running_state", 2409)
        )
        await self.step()
        if self.down:
            return
        self.set_state("CS_EXECUTE")
        await self.run_extension(self.destination, self.context)


class _HangupResult(int):
    """What FakeChannel.hangup returns: truthy if this call hung the channel up, and
    awaitable (``await ch.hangup()`` waits for CHANNEL_DESTROY)."""

    channel: FakeChannel

    def __new__(cls, value: bool, channel: FakeChannel) -> _HangupResult:
        obj = super().__new__(cls, bool(value))
        obj.channel = channel
        return obj

    def __await__(self) -> Generator[Any, None, None]:
        return asyncio.shield(self.channel.destroyed).__await__()


_BIT_RATES = {"PCMU": 64000, "PCMA": 64000, "G722": 64000, "G729": 8000, "L16": 128000}


def _bit_rate(name: str, rate: str) -> str:
    if name.upper() == "L16" and rate.isdigit():
        return str(int(rate) * 16)
    return str(_BIT_RATES.get(name.upper(), 0))


def _true(value: str | None) -> bool:
    """switch_true: yes/on/true/t/enabled/active/allow or a non-zero number."""
    if not value:
        return False
    low = value.strip().lower()
    if low in ("yes", "on", "true", "t", "enabled", "active", "allow"):
        return True
    return low.lstrip("-").isdigit() and int(low) != 0


def _app_list(apps: Any) -> list[tuple[str, str]]:
    out = []
    for item in apps:
        if isinstance(item, str):
            app, _, arg = item.partition(" ")
            out.append((app, arg))
        else:
            out.append((item[0], item[1] if len(item) > 1 else ""))
    return out
