"""esl.commands: wire bytes of commands, and refusal of CR/LF injection before anything is written."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sys
from pathlib import Path

from esl.commands import build_command, build_sendmsg, check_header, check_line, redact
from esl.core import Parser

sys.path.insert(0, str(Path(__file__).parent))
import fsparse  # noqa: E402

INJECTIONS = [
    "status\n\nexit",
    "status\r\n\r\napi hupall",
    "status\nContent-Length: 5",
    "\n",
    "\r",
    "x\ry",
]


def test_build_command_plain() -> None:
    assert build_command("api status") == b"api status\n\n"


def test_build_command_headers_and_body_byte_length() -> None:
    data = build_command("sendevent CUSTOM", {"Event-Subclass": "my::x", "n": 3}, "héllo\nworld")
    head, body = data.split(b"\n\n", 1)
    assert head.split(b"\n") == [
        b"sendevent CUSTOM",
        b"Event-Subclass: my::x",
        b"n: 3",
        b"Content-Length: 12",  # bytes, not characters
    ]
    assert body == "héllo\nworld".encode()


def test_build_command_repeated_headers_as_pairs() -> None:
    data = build_command("sendmsg", [("application", "a 1"), ("application", "b 2")])
    assert data == b"sendmsg\napplication: a 1\napplication: b 2\n\n"


@pytest.mark.parametrize("bad", INJECTIONS)
def test_command_with_cr_or_lf_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        build_command("api " + bad)


@pytest.mark.parametrize("bad", INJECTIONS)
def test_header_value_with_cr_or_lf_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        build_command("sendevent CUSTOM", {"X-Test": bad})


@pytest.mark.parametrize("name", ["", "a:b", "a b", "a\nb", "Content-Length\r"])
def test_bad_header_names_refused(name: str) -> None:
    with pytest.raises(ValueError):
        check_header(name, "v")


def test_content_length_header_with_body_refused() -> None:
    with pytest.raises(ValueError):
        build_command("sendevent X", {"Content-Length": "3"}, "abc")


def test_empty_command_refused() -> None:
    with pytest.raises(ValueError):
        build_command("   ")


def test_non_str_refused() -> None:
    with pytest.raises(TypeError):
        check_line(b"api status")  # type: ignore[arg-type]


def test_body_may_hold_newlines_and_is_framed() -> None:
    # The frame parses back as one message whose body is exactly what was given.
    data = build_command("sendevent CUSTOM", {"Event-Subclass": "t::b"}, "line1\n\nline2\n")
    head, body = data.split(b"\n\n", 1)
    assert b"Content-Length: 13" in head
    assert body == b"line1\n\nline2\n"


def test_build_sendmsg() -> None:
    data = build_sendmsg("abc-123", {"call-command": "execute", "execute-app-name": "playback"})
    assert data == b"sendmsg abc-123\ncall-command: execute\nexecute-app-name: playback\n\n"
    data = build_sendmsg(None, {"call-command": "hangup"})
    assert data.startswith(b"sendmsg\n")


def test_build_sendmsg_body_adds_text_plain() -> None:
    data = build_sendmsg("u1", {"call-command": "execute", "execute-app-name": "speak"}, "hello\nthere")
    head, body = data.split(b"\n\n", 1)
    assert b"content-type: text/plain" in head
    assert b"Content-Length: 11" in head
    assert body == b"hello\nthere"


@pytest.mark.parametrize("uuid", ["a\nb", "a b", ""])
def test_build_sendmsg_bad_uuid(uuid: str) -> None:
    with pytest.raises(ValueError):
        build_sendmsg(uuid, {"call-command": "hangup"})


def test_redact() -> None:
    assert redact("auth ClueCon") == "auth ******"
    assert redact("userauth 1000@default:secret") == "userauth 1000@default:******"
    assert redact("api status") == "api status"


_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(_text, _text)
def test_property_one_command_block_or_value_error(arg: str, value: str) -> None:
    """Whatever the text, either it is refused or exactly one command block is written."""
    try:
        data = build_command(f"api {arg}", {"X-Value": value})
    except ValueError:
        assert any(c in arg + value for c in "\r\n\0") or not f"api {arg}".strip()
        return
    assert "\n" not in arg + value and "\r" not in arg + value and "\0" not in arg + value
    assert data.endswith(b"\n\n") and data.count(b"\n\n") == 1
    assert data.split(b"\n", 1)[0].decode() == f"api {arg}"


@given(st.binary(max_size=200))
def test_property_body_is_framed_exactly(body: bytes) -> None:
    """A body of any bytes comes back whole when the frame is read as FreeSWITCH frames messages."""
    data = build_command("sendevent CUSTOM", {"Event-Subclass": "t::p"}, body)
    frame = b"Content-Type: text/x\n" + data.split(b"\n", 1)[1]  # the same framing rules as a reply
    events = Parser().feed(frame)
    assert len(events) == 1
    assert events[0].raw.endswith(body)


# --- Content-Length and NUL (issue 8): checked against tests/fsparse.read_commands, a port of
# mod_event_socket's read_packet.


@pytest.mark.parametrize("name", ["Content-Length", "content-length", "CONTENT-LENGTH", "Content-length"])
def test_content_length_header_refused_without_body(name: str) -> None:
    with pytest.raises(ValueError, match="Content-Length"):
        build_command("sendevent CUSTOM", {name: "10"})
    with pytest.raises(ValueError, match="Content-Length"):
        build_sendmsg("u1", {"call-command": "execute", name: "10"})
    with pytest.raises(ValueError, match="Content-Length"):
        check_header(name, 0)


def test_caller_content_length_would_swallow_next_command() -> None:
    """Why it is refused: pipelined, the next command becomes the body of this one."""
    smuggled = b"sendevent CUSTOM\nContent-Length: 10\n\n" + build_command("api exit") + build_command("exit")
    cmds = fsparse.read_commands(smuggled)
    assert [c.command for c in cmds] == ["sendevent CUSTOM", "exit"]
    assert cmds[0].body == "api exit\n\n"


@pytest.mark.parametrize("where", ["command", "name", "value"])
def test_nul_refused(where: str) -> None:
    with pytest.raises(ValueError, match="NUL"):
        if where == "command":
            build_command("api status\0")
        elif where == "name":
            build_command("sendevent CUSTOM", {"X\0Y": "1"})
        else:
            build_command("sendevent CUSTOM", {"X": "a\0b"}, "body")
    with pytest.raises(ValueError, match="NUL"):
        check_line("a\0b")


def test_nul_would_cut_headers() -> None:
    """Why NUL is refused: the block is a C string, headers after a NUL (Content-Length too) are lost."""
    data = b"sendevent CUSTOM\nX: a\0b\nContent-Length: 10\n\napi exit\n\n"
    assert [c.command for c in fsparse.read_commands(data)] == ["sendevent CUSTOM", "api exit"]
    assert [c.command for c in fsparse.read_commands(data.replace(b"\0", b""))] == ["sendevent CUSTOM"]


_hname = st.one_of(st.sampled_from(["Content-Length", "content-length", "X", "Event-Name", "a:b", "a b", ""]),
                   st.text(st.characters(blacklist_categories=("Cs",)), max_size=12))
_hval = st.one_of(st.sampled_from(["10", "a\0b", "x\ny", "0"]), st.text(st.characters(blacklist_categories=("Cs",)),
                                                                          max_size=20))
_cmd = st.one_of(st.sampled_from(["api status", "api exit", "sendevent CUSTOM", "exit", "api a\0b"]),
                 st.text(st.characters(blacklist_categories=("Cs",)), max_size=20))
_body = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
                                     max_size=30))


@given(st.lists(st.tuples(_cmd, st.lists(st.tuples(_hname, _hval), max_size=4), _body), min_size=1, max_size=4))
def test_property_pipelined_commands_read_back_exactly(cmds: list) -> None:  # type: ignore[type-arg]
    """Whatever the user passes, FreeSWITCH reads exactly the commands built, each with its own headers and body."""
    wire = b""
    expected = []
    for command, headers, body in cmds:
        try:
            wire += build_command(command, headers, body)
        except ValueError:
            continue
        # FreeSWITCH skips spaces after the colon; an empty body gets no Content-Length read
        hdrs = [(n, str(v).lstrip(" ")) for n, v in headers]
        if body is not None:
            hdrs.append(("Content-Length", str(len(body.encode()))))
        expected.append((command, hdrs, body or None))
    got = [(c.command, c.headers, c.body) for c in fsparse.read_commands(wire)]
    assert got == expected
