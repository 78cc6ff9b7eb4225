"""esl.types: ChannelState ordering/parsing, CallState, HangupCause validation."""

from __future__ import annotations

import pytest

from esl.types import CallState, ChannelState, HangupCause


def test_channel_state_follows_freeswitch_order() -> None:
    order = ["NEW", "INIT", "ROUTING", "SOFT_EXECUTE", "EXECUTE", "EXCHANGE_MEDIA", "PARK",
             "CONSUME_MEDIA", "HIBERNATE", "RESET", "HANGUP", "REPORTING", "DESTROY"]
    states = [ChannelState[name] for name in order]
    assert states == sorted(states)
    assert [int(s) for s in states] == list(range(13))
    assert ChannelState.EXECUTE < ChannelState.HANGUP < ChannelState.DESTROY


@pytest.mark.parametrize("text,expected", [
    ("CS_EXECUTE", ChannelState.EXECUTE), ("EXECUTE", ChannelState.EXECUTE),
    ("cs_hangup", ChannelState.HANGUP), (12, ChannelState.DESTROY), ("4", ChannelState.EXECUTE),
    (ChannelState.PARK, ChannelState.PARK),
])
def test_channel_state_parse(text: object, expected: ChannelState) -> None:
    assert ChannelState.parse(text) is expected  # type: ignore[arg-type]
    assert ChannelState.from_freeswitch(text) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["CS_BOGUS", "", 99, None, True])
def test_channel_state_parse_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        ChannelState.parse(bad)  # type: ignore[arg-type]


def test_channel_state_wire_name() -> None:
    assert ChannelState.SOFT_EXECUTE.wire == "CS_SOFT_EXECUTE"


def test_call_state_parse_and_str() -> None:
    assert CallState.parse("ACTIVE") is CallState.ACTIVE
    assert CallState.parse("ccs_ring_wait") is CallState.RING_WAIT
    assert str(CallState.HELD) == "HELD"
    assert CallState.EARLY == "EARLY"
    for bad in ("SINGING", "", 3, None):
        with pytest.raises(ValueError):
            CallState.parse(bad)  # type: ignore[arg-type]


def test_hangup_cause_values_are_freeswitch_codes() -> None:
    assert HangupCause.NORMAL_CLEARING == 16
    assert HangupCause.USER_BUSY == 17
    assert HangupCause.ORIGINATOR_CANCEL == 487
    assert HangupCause.REJECT_ALL == 825
    assert HangupCause.USER_BUSY.q850 == 17
    assert HangupCause.MANAGER_REQUEST.q850 is None
    assert str(HangupCause.NO_ANSWER) == "NO_ANSWER"
    assert len(HangupCause) >= 80


@pytest.mark.parametrize("value,expected", [
    ("USER_BUSY", HangupCause.USER_BUSY), ("user_busy", HangupCause.USER_BUSY),
    ("SWITCH_CAUSE_NO_ANSWER", HangupCause.NO_ANSWER), (17, HangupCause.USER_BUSY),
    ("16", HangupCause.NORMAL_CLEARING), (HangupCause.CRASH, HangupCause.CRASH),
])
def test_hangup_cause_parse(value: object, expected: HangupCause) -> None:
    assert HangupCause.parse(value) is expected  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["NOT_A_CAUSE", "USER_BUSY\nexit", 4, 9999, True, None, ""])
def test_hangup_cause_parse_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        HangupCause.parse(bad)  # type: ignore[arg-type]
