"""The Channel's mod_audio_stream verbs: argument checks, the exact command lines, and text that
arrives literally through FreeSWITCH's argument splitter (``switch_separate_string``, ported in
``esl.testing.audio_stream`` and used by the fake)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import esl
from esl.channel.media import check_stream_url, quote_text, rate_word
from esl.exceptions import ChannelError
from esl.media import MediaServer
from esl.testing import Endpoint, FakeFreeSWITCH
from esl.testing.audio_stream import separate_string

MediaChannel = esl.Channel

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60)


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from(" '\"\\\\ntsrabc\t\n\r$"), max_size=30), st.integers(2, 7))
def test_splitter_port_agrees_with_the_byte_level_port(text: str, limit: int) -> None:
    # the fake's port (esl.testing.audio_stream) against tests/fsparse.py (a byte-level port of the C)
    import fsparse

    line = fsparse.strip_whitespace(f"u c {text}")
    try:
        expected = fsparse.split(line, " ", limit)
    except fsparse.OverRead:  # a trailing lone backslash: C reads past the end (never sent by esl)
        assume(False)
    assert separate_string(line, limit) == expected


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_quoted_text_survives_the_splitter(text: str) -> None:
    line = f"c0ffee-uuid send_text {quote_text(text)}"
    argv = separate_string(line, 6)
    assert argv[:2] == ["c0ffee-uuid", "send_text"] and argv[2] == text
    argv = separate_string(f"c0ffee-uuid stop {quote_text(text)}", 6)
    assert argv[2] == text
    argv = separate_string(f"u start ws://h/x mono 16k {quote_text(text)}", 6)
    assert len(argv) == 6 and argv[5] == text  # metadata: the rest of the line
    import fsparse  # and the byte-level port, after switch_api_execute's whitespace strip

    assert fsparse.split(fsparse.strip_whitespace(f"u send_text {quote_text(text)}"), " ", 6)[2] == text
    assert fsparse.split(fsparse.strip_whitespace(f"u start ws://h/x mono 16k {quote_text(text)}"), " ", 6)[5] == text


def test_splitter_matches_what_the_real_switch_did() -> None:
    # README (../shared/freeswitch): unquoted send_text takes one word; metadata keeps its spaces
    assert separate_string('u send_text {"x": 1}', 6)[2] == '{"x":'
    assert separate_string("u send_text '{\"x\": 1}'", 6)[2] == '{"x": 1}'
    meta = '{"a": 1, "b": "two words"}'
    assert separate_string(f"u start ws://127.0.0.1:8765 mono 16k {meta}", 6)[5] == meta
    # and what the splitter does to unquoted text: escapes resolved, paired quotes dropped
    assert separate_string(r"u send_text a\sb\'c", 6)[2] == "a b'c"
    assert separate_string("u send_text it's'", 6)[2] == "its"


def test_quote_text_refuses_what_cannot_arrive() -> None:
    with pytest.raises(ValueError):
        quote_text("a\x00b")
    with pytest.raises(ValueError):
        quote_text("\ud800")
    with pytest.raises(TypeError):
        quote_text(b"bytes")  # type: ignore[arg-type]
    assert quote_text("a\nb") == "'a\\nb'"  # no raw newline reaches the command line


@pytest.mark.parametrize("url", [
    "ws://127.0.0.1:8765", "ws://127.0.0.1:8765/", "wss://bot.example.com/stream/abc?x=1&y=2", "ws://h-1.local/a/b",
])
def test_urls_the_module_takes(url: str) -> None:
    assert check_stream_url(url) == url


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "ws://[::1]:80/x", "ws://user@host/x", "ws://h/a b", "ws://h/x\n", "ws://h/x\r",
    "ws://h?x=1", "ws://h/it's", "ws://h/a\\b", "ws://", "ws://h:port/x", "ws://h/\x00", "ws://h/" + "a" * 5000,
])
def test_urls_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_stream_url(url)


def test_rate_words() -> None:
    assert [rate_word(r) for r in (8000, 16000, 24000, "8k", "16K", "48000")] == ["8k", "16k", "24000", "8k", "16k",
                                                                                 "48000"]
    for bad in (0, -8000, 11025, "22k", True, 16000.0):
        with pytest.raises(ValueError):
            rate_word(bad)  # type: ignore[arg-type]


def _api_lines(fake: FakeFreeSWITCH) -> list[str]:
    return [c for conn in fake.connections for c in conn.commands if c.startswith("api uuid_audio_stream")]


async def _call(fake: FakeFreeSWITCH, client: esl.Inbound) -> Any:
    fake.endpoints["user/1000"] = Endpoint()
    ch = await MediaChannel.create(client, "user/1000")
    await ch.wait(esl.ChannelState.EXECUTE, timeout=5)
    return ch


async def test_command_lines_and_subscription(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    async with MediaServer() as media:
        ch = await _call(freeswitch, esl_client)
        await ch.start_audio_stream(media.url + "/bot?lang=en", "stereo", 24000, "my own text, it's mine")
        await ch.pause_audio_stream()
        await ch.resume_audio_stream()
        await ch.send_audio_stream_text("hi")
        await ch.stop_audio_stream()
        lines = _api_lines(freeswitch)
        assert lines == [
            f"api uuid_audio_stream {ch.uuid} start {media.url}/bot?lang=en stereo 24000 'my own text, it\\'s mine'",
            f"api uuid_audio_stream {ch.uuid} pause",
            f"api uuid_audio_stream {ch.uuid} resume",
            f"api uuid_audio_stream {ch.uuid} send_text 'hi'",
            f"api uuid_audio_stream {ch.uuid} stop",
        ]
        events = [c for conn in freeswitch.connections for c in conn.commands if c.startswith("event ")]
        assert any(c.startswith("event plain") and "CUSTOM" in c and c.split("CUSTOM", 1)[1].split() == [
            "mod_audio_stream::connect", "mod_audio_stream::disconnect", "mod_audio_stream::error",
            "mod_audio_stream::json", "mod_audio_stream::play"] for c in events)
        count = len(events)
        await ch.start_audio_stream(media.url)  # already subscribed: no second event command
        assert len([c for conn in freeswitch.connections for c in conn.commands if c.startswith("event ")]) == count
        await ch.hangup()


async def test_default_metadata_and_bad_arguments(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    async with MediaServer() as media:
        ch = await _call(freeswitch, esl_client)
        for kwargs in ({"url": "http://x/y"}, {"url": media.url, "mix": "quad"}, {"url": media.url, "rate": 44100},
                       {"url": media.url, "metadata": "x" * 8192}, {"url": media.url, "metadata": {"big": "é" * 4096}}):
            with pytest.raises(ValueError):
                await ch.start_audio_stream(**kwargs)
        assert _api_lines(freeswitch) == []  # nothing was sent
        with pytest.raises(ValueError):
            await ch.send_audio_stream_text("nul\x00")
        await ch.start_audio_stream(media.url, "mixed", 8000)
        meta = json.loads(separate_string(_api_lines(freeswitch)[-1][4:], 7)[6])
        assert meta == {"uuid": ch.uuid, "mix": "mixed", "rate": 8000, "channels": 1}
        await ch.hangup()
        with pytest.raises(ChannelError):
            await ch.start_audio_stream(media.url)  # the channel is gone


async def test_awkward_text_arrives_literally(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    texts = ["line one\nline two\r\n", "it's 'quoted' and \"double\"", "back\\slash \\n not a newline", "\ttab  ",
             "  spaces around  ", "", "ünïcødé ☎"]
    metadata = 'meta with \'quotes\', a \\ and\na newline'
    async with MediaServer() as media:
        ch = await _call(freeswitch, esl_client)
        await ch.start_audio_stream(media.url_for(ch.uuid), metadata=metadata, connect_timeout=5)
        stream = await media.stream_for(ch.uuid, timeout=5)
        assert stream.metadata_text == metadata
        for text in texts:
            await ch.send_audio_stream_text(text)
            assert await stream.next_text(timeout=5) == text
        await ch.stop_audio_stream("last 'word'\n")
        assert await stream.next_text(timeout=5) == "last 'word'\n"
        await ch.hangup()


async def test_auto_play_broadcasts_returned_audio(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    async with MediaServer() as media:
        ch = await _call(freeswitch, esl_client)
        await ch.start_audio_stream(media.url, auto_play=True)
        stream = await media.stream_for(ch.uuid, timeout=5)
        play = asyncio.ensure_future(ch.wait_audio_stream("play"))
        started = asyncio.ensure_future(ch.wait("PLAYBACK_START", timeout=5))
        await stream.send_audio(b"\x00\x10" * 1600)
        path = (await play).file
        event = await started
        assert event.get("Playback-File-Path") == path
        assert f"api uuid_broadcast {ch.uuid} {path} aleg" in [c for conn in freeswitch.connections
                                                               for c in conn.commands]
        ch.auto_play_audio_stream(False)
        await ch.hangup()


async def test_wait_fails_when_the_channel_hangs_up(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await _call(freeswitch, esl_client)
    waiting = asyncio.ensure_future(ch.wait_audio_stream("json", timeout=5))
    await asyncio.sleep(0.01)
    await ch.hangup()
    with pytest.raises(ChannelError):
        await waiting
    with pytest.raises(ValueError):
        ch.on_audio_stream("bogus", lambda c, e: None)


async def test_wait_fails_when_the_connection_drops(freeswitch: FakeFreeSWITCH, esl_client: esl.Inbound) -> None:
    ch = await _call(freeswitch, esl_client)
    waiting = asyncio.ensure_future(ch.wait_audio_stream("*", timeout=5))
    await asyncio.sleep(0.01)
    await freeswitch.drop_all()
    with pytest.raises(esl.exceptions.ConnectionError):
        await waiting


@pytest.mark.parametrize("full", [True, False])
async def test_outbound_session(freeswitch: FakeFreeSWITCH, full: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    got: dict[str, Any] = {}
    monkeypatch.setattr(esl.session, "Channel", MediaChannel)  # until Channel has the verbs itself

    async with MediaServer() as media:
        async def handler(session: esl.Session) -> None:
            ch = session.channel
            await ch.answer()
            try:
                await ch.start_audio_stream(media.url, connect_timeout=5)
            except ChannelError as exc:
                got["error"] = str(exc)
                await ch.hangup()
                return
            stream = await media.stream_for(ch.uuid, timeout=5)
            got["frame"] = await stream.read(timeout=2)
            json_ev = asyncio.ensure_future(ch.wait_audio_stream("json"))
            await stream.send_text("hi")
            got["json"] = (await json_ev).body
            await ch.stop_audio_stream()
            await ch.hangup()

        async with esl.Outbound(handler, "127.0.0.1", 0) as app:
            freeswitch.dialplan["app"] = [("socket", f"127.0.0.1:{app.port} async{' full' if full else ''}")]
            leg = await freeswitch.call("app")
            await leg.wait_hangup(10)
    if full:
        assert got.get("frame") is not None and len(got["frame"]) == 640 and got["json"] == "hi"
    else:
        assert "full" in got["error"]
