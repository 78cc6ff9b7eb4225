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


def test_members_print_as_freeswitch_names() -> None:
    """print(channel.state) shows CS_EXECUTE (issue 13), f-strings too; :d gives the number."""
    assert str(ChannelState.EXECUTE) == "CS_EXECUTE" and f"{ChannelState.EXECUTE}" == "CS_EXECUTE"
    assert f"{ChannelState.EXECUTE:>12}" == "  CS_EXECUTE" and f"{ChannelState.EXECUTE:d}" == "4"
    assert f"{HangupCause.USER_BUSY}" == "USER_BUSY" and f"{HangupCause.USER_BUSY:d}" == "17"
    assert f"{CallState.ACTIVE}" == "ACTIVE"
    assert repr(ChannelState.EXECUTE) == "<ChannelState.EXECUTE: 4>"


def test_members_compare_equal_to_their_names() -> None:
    assert HangupCause.USER_BUSY == "USER_BUSY" and HangupCause.USER_BUSY != "NO_ANSWER"
    assert HangupCause.USER_BUSY == 17 and HangupCause.USER_BUSY != 16
    assert "USER_BUSY" == HangupCause.USER_BUSY
    assert CallState.ACTIVE == "ACTIVE" and CallState.HELD != "ACTIVE"
    assert ChannelState.EXECUTE == "CS_EXECUTE" and ChannelState.EXECUTE != "EXECUTE"
    # a set of members answers lookups by the wire string
    retry = {HangupCause.USER_BUSY, HangupCause.NO_ANSWER}
    assert "NO_ANSWER" in retry and "NORMAL_CLEARING" not in retry
    assert {ChannelState.HANGUP: "gone"}["CS_HANGUP"] == "gone"


def test_channel_state_keeps_its_order() -> None:
    assert ChannelState.EXECUTE < ChannelState.HANGUP <= ChannelState.DESTROY
    assert ChannelState.EXECUTE >= 4 and max(ChannelState.NEW, ChannelState.REPORTING) is ChannelState.REPORTING
    assert sorted([ChannelState.DESTROY, ChannelState.INIT]) == [ChannelState.INIT, ChannelState.DESTROY]
    assert HangupCause.NORMAL_CLEARING < HangupCause.USER_BUSY  # numeric, as Q.850


def test_members_survive_pickle_and_copy() -> None:
    import copy
    import pickle

    for member in (ChannelState.PARK, HangupCause.CALL_REJECTED, CallState.RINGING):
        assert pickle.loads(pickle.dumps(member)) is member
        assert copy.deepcopy(member) is member
