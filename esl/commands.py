"""Building the bytes of Event Socket commands, with the injection checks.

Every command the library writes goes through :func:`build_command` or
:func:`build_sendmsg`. FreeSWITCH reads a command as a header block ended by a
blank line (ESL-PROTOCOL.md §1.3) and does not decode header values, so a CR or
LF inside a command, an argument or a header would let the text end the block
early and smuggle in a second command. Such text is refused here with
:class:`ValueError` before anything is written. Only a body (sent with its own
``Content-Length``) may hold newlines.

NUL is refused the same way: FreeSWITCH reads the header block as a C string,
so a NUL ends it and every header after it (a ``Content-Length`` too) is lost.
A caller-supplied ``Content-Length`` header is always refused: the switch would
read that many bytes after the block, i.e. the next command, as a body. The
header is written by :func:`build_command` alone, from the body.

>>> build_command("api status")
b'api status\\n\\n'
>>> build_command("sendevent CUSTOM", {"Event-Subclass": "my::thing"}, "hello\\nworld")
b'sendevent CUSTOM\\nEvent-Subclass: my::thing\\nContent-Length: 11\\n\\nhello\\nworld'
"""

from __future__ import annotations

from typing import Iterable, Mapping, Union

__all__ = ["check_line", "check_header", "build_command", "build_sendmsg", "redact", "HeaderItems"]

HeaderItems = Union[Mapping[str, object], Iterable[tuple[str, object]]]

#: FreeSWITCH rejects (and drops the connection for) a command body over 16 MiB.
MAX_BODY = 16 * 1024 * 1024


def check_line(text: str, what: str = "argument") -> str:
    """Return ``text`` if it is safe on one command line; ``ValueError`` if it holds CR, LF or NUL.

    ``what`` names the thing in the error message ("command", "header value"...).
    """
    if not isinstance(text, str):
        raise TypeError(f"{what} must be str, not {type(text).__name__}")
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} must not contain CR or LF (it would inject Event Socket commands): {text[:60]!r}")
    if "\0" in text:
        raise ValueError(f"{what} must not contain NUL (FreeSWITCH would cut the command there): {text[:60]!r}")
    return text


def check_header(name: str, value: object) -> tuple[str, str]:
    """A header ``(name, value)`` checked for injection; the value is turned into ``str``.

    The name must be non-empty and hold no ``:``, space, CR, LF or NUL, and must
    not be ``Content-Length`` in any case (only :func:`build_command` writes that
    one, from the body); the value must hold no CR, LF or NUL.
    """
    check_line(name, "header name")
    if not name or ":" in name or " " in name:
        raise ValueError(f"invalid header name {name!r}")
    if name.lower() == "content-length":
        raise ValueError("Content-Length is computed from the body; a caller-supplied one would make "
                         "FreeSWITCH read the next command as a body")
    text = value if isinstance(value, str) else str(value)
    check_line(text, f"value of header {name!r}")
    return name, text


def _header_items(headers: HeaderItems | None) -> Iterable[tuple[str, object]]:
    if headers is None:
        return ()
    if isinstance(headers, Mapping):
        return headers.items()
    return headers


def build_command(
    command: str,
    headers: HeaderItems | None = None,
    body: str | bytes | None = None,
) -> bytes:
    """The wire bytes of one command: ``command``, its header lines, a blank line, then ``body``.

    ``headers`` is a mapping or a sequence of pairs (pairs allow a repeated
    name). A ``body`` gets a ``Content-Length`` header (in bytes); it may hold
    any text. ``ValueError`` for CR/LF/NUL in the command or a header, a
    ``Content-Length`` header from the caller, an empty command, or a body
    over 16 MiB.
    """
    check_line(command, "command")
    if not command.strip():
        raise ValueError("empty command")
    lines = [command]
    for name, value in _header_items(headers):
        name, text = check_header(name, value)
        lines.append(f"{name}: {text}")
    if body is None:
        lines.append("\n")
        return "\n".join(lines).encode("utf-8", "surrogateescape")
    data = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else bytes(body)
    if len(data) > MAX_BODY:
        raise ValueError(f"body of {len(data)} bytes is over FreeSWITCH's 16 MiB limit")
    lines.append(f"Content-Length: {len(data)}")
    lines.append("\n")
    return "\n".join(lines).encode("utf-8", "surrogateescape") + data


def build_sendmsg(
    uuid: str | None,
    headers: HeaderItems,
    body: str | bytes | None = None,
) -> bytes:
    """The wire bytes of ``sendmsg [<uuid>]`` with these headers (and body).

    With a body and no ``content-type`` header, ``content-type: text/plain`` is
    added: that is what makes FreeSWITCH take the body as ``execute-app-arg``
    (ESL-PROTOCOL.md §1.9).
    """
    if uuid is not None:
        check_line(uuid, "uuid")
        if not uuid or " " in uuid:
            raise ValueError(f"invalid uuid {uuid!r}")
    command = "sendmsg" if uuid is None else f"sendmsg {uuid}"
    items = list(_header_items(headers))
    if body is not None and not any(str(n).lower() == "content-type" for n, _ in items):
        items.append(("content-type", "text/plain"))
    return build_command(command, items, body)


def redact(command: str) -> str:
    """``command`` safe to log or show: the secret of ``auth``/``userauth`` replaced by ``******``."""
    head = command[:9].lower()
    if head.startswith("auth "):
        return "auth ******"
    if head.startswith("userauth "):
        user = command[9:].split(":", 1)[0]
        return f"userauth {user}:******"
    return command
