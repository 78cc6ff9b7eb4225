"""esl.testing for users: serve an Outbound app, place a call into it, press digits, hang up,
assert on what the app did. (The plugin's fixtures in pytest-asyncio's strict mode, in a project
of its own: tests/test_docs.py runs the documentation's test examples that way.)"""

from __future__ import annotations

import pytest

import esl
from esl.exceptions import ChannelError, TimeoutError
from esl.testing import FakeFreeSWITCH, PlacedCall, place_call, serve


async def ivr(session: esl.Session) -> None:
    """The README's menu: 1 transfers to sales, any other key is invalid, no key hangs up."""
    channel = session.channel
    assert channel is not None
    choice: list[str] = []

    @channel.onDTMF("1")
    def sales(digit: str) -> None:
        choice.append("sales")

    @channel.onDTMF()
    def other(digit: str) -> None:
        choice.append("invalid")

    await channel.answer()
    await channel.playback("ivr/ivr-welcome_menu.wav", block=False)
    if not choice:
        try:
            await channel.wait("DTMF", timeout=10.0)
        except TimeoutError:
            await channel.hangup("NO_USER_RESPONSE")
            return
    await channel.break_media()
    if choice[0] == "sales":
        await channel.transfer("sales")
    else:
        await channel.playback("ivr/ivr-that_was_an_invalid_entry.wav")
        await channel.hangup()


async def test_press_1_transfers_to_sales(freeswitch: FakeFreeSWITCH) -> None:
    async with serve(ivr) as app:
        call = await place_call(freeswitch, app, "9000", caller_id_number="1000")
        assert isinstance(call, PlacedCall)
        await call.wait_for_app("playback")      # the caller presses while the menu plays
        await call.press("1")
        await call.finished()
    assert call.answered
    assert call.played == ["ivr/ivr-welcome_menu.wav"]
    assert call.transferred_to is not None and call.transferred_to[0] == "sales"
    assert ("answer", "") in call.applications


async def test_an_invalid_key_plays_the_error_and_hangs_up(freeswitch: FakeFreeSWITCH) -> None:
    async with serve(ivr) as app:
        call = await place_call(freeswitch, app)
        assert await call.wait_for_app("playback") == "ivr/ivr-welcome_menu.wav"
        await call.press("7")
        await call.finished()
        assert await call.wait_hangup() == "NORMAL_CLEARING"
    assert call.played == ["ivr/ivr-welcome_menu.wav", "ivr/ivr-that_was_an_invalid_entry.wav"]
    assert "DTMF" in call.events and "CHANNEL_HANGUP" in call.events


async def test_the_caller_hangs_up_while_the_app_waits(freeswitch: FakeFreeSWITCH) -> None:
    seen: list[str] = []

    async def waiter(session: esl.Session) -> None:
        channel = session.channel
        assert channel is not None
        await channel.answer()
        try:
            await channel.wait("DTMF", timeout=10.0)
        except ChannelError as exc:
            seen.append(f"gone: {exc.cause}")

    async with serve(waiter) as app:
        call = await place_call(freeswitch, app)
        await call.wait_answered()
        await call.hangup("ORIGINATOR_CANCEL")
        await call.finished()
    assert call.hangup_cause == "ORIGINATOR_CANCEL"
    assert seen == ["gone: ORIGINATOR_CANCEL"]


async def test_finished_reraises_what_the_handler_raised(freeswitch: FakeFreeSWITCH) -> None:
    async def broken(session: esl.Session) -> None:
        raise LookupError("no such customer")

    async with serve(broken) as app:
        call = await place_call(freeswitch, app)
        with pytest.raises(LookupError, match="no such customer"):
            await call.finished()
        assert isinstance(app.errors[call.uuid], LookupError)
        await call.wait_hangup()
    assert call.hangup_cause == "NORMAL_TEMPORARY_FAILURE"  # Outbound's error_cause


async def test_an_outbound_object_and_bad_input(freeswitch: FakeFreeSWITCH) -> None:
    outbound = esl.Outbound(ivr, "127.0.0.1", 9000)
    async with serve(outbound) as app:
        assert app.outbound is outbound and app.port not in (0, 9000)
        call = await place_call(freeswitch, app)
        with pytest.raises(ValueError, match="not DTMF digits"):
            await call.press("1x")
        await call.wait_for_app("playback")
        await call.press("1")
        await call.finished()
    with pytest.raises(TypeError):
        async with serve(outbound, linger=False):
            pass


async def test_a_call_never_answered_times_out_clearly(freeswitch: FakeFreeSWITCH) -> None:
    async def silent(session: esl.Session) -> None:
        await session.channel.wait("DTMF", timeout=5.0)  # type: ignore[union-attr]

    async with serve(silent) as app:
        call = await place_call(freeswitch, app)
        with pytest.raises(TimeoutError, match="waiting for the app to answer"):
            await call.wait_answered(timeout=0.2)
        await call.hangup()
