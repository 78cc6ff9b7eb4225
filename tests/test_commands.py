"""esl.commands: wire bytes of commands, and refusal of CR/LF injection before anything is written."""

from __future__ import annotations

import pytest

from esl.commands import build_command, build_sendmsg, check_header, check_line, redact

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

