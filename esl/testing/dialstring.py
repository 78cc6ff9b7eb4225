"""Dial strings and argument lists read the way FreeSWITCH reads them, quirks included, so a
test against the fake sees exactly the values a real switch would store.

- :func:`separate_string` is ``switch_separate_string``: a space splits unless inside single
  quotes; a backslash escapes the next character; each piece loses its single quotes and
  has its escapes resolved (``\\n``, ``\\t``, ``\\s``, ``\\,``, ``\\'``...). The ``originate``
  api splits its arguments this way first, so ``{v='a b'}`` reaches the dial string as
  ``{v=a b}`` and ``{v=a b}`` (unquoted) breaks the command in two.
- :func:`parse_brackets` is ``switch_event_create_brackets``: ``{...}`` up to its *matching*
  brace (``switch_find_end_paren``: ``{json={"a":1}}`` keeps the JSON), split at unescaped
  commas (``^^;`` picks another separator), each ``name=value`` split at the first ``=``;
  a pair without a value is dropped.
- :func:`parse_dial` is switch_ivr_originate's reading of what follows: ``<...>`` and
  ``{...}`` groups, then ``|`` (try in turn) and ``,`` (ring together) lists of targets, each
  with its own ``[...]`` variables (commas inside ``[...]`` separate variables, not targets).

Checked against FreeSWITCH 1.11: ``{json={"a":1}}`` gives ``{"a":1}``; ``{json={"a":1,"b":2}}``
gives ``{"a":1``; ``{v='x,y'}`` gives ``x``; ``{v='a b\\,c'}`` gives ``a b,c``; ``{v=a\\nb}``
gives a newline; ``{v='it\\'s Bob\\'s'}`` gives ``its Bobs``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "DialParseError",
    "Leg",
    "cleanup",
    "find_end_paren",
    "parse_brackets",
    "parse_dial",
    "separate_string",
]

_UNQUOTED_COMMA = "\x01"  # UNQUOTED_ESC_COMMA: a comma inside [...] that separates variables
_QUOTED_COMMA = "\x02"  # QUOTED_ESC_COMMA: a comma inside quotes in [...]: a literal comma


class DialParseError(ValueError):
    """A dial string FreeSWITCH refuses with "Parse Error!" (an unclosed brace)."""


def _unescape(c: str) -> str:
    return {"n": "\n", "r": "\r", "t": "\t", "s": " "}.get(c, c)


def cleanup(text: str, delim: str = "") -> str:
    """cleanup_separated_string: leading spaces off, single quotes removed (a lone one is
    kept), escapes resolved, trailing spaces outside quotes off."""
    i, n = 0, len(text)
    while i < n and text[i] == " ":
        i += 1
    out: list[str] = []
    end: int | None = None
    inside = False
    while i < n:
        c = text[i]
        if c == "\\" and i + 1 < n:
            e = text[i + 1]
            if e in "'\"\\" or (delim and e == delim) or _unescape(e) != e:
                out.append(e if (e in "'\"\\" or (delim and e == delim)) else _unescape(e))
                end = len(out)
                i += 2
                continue
        if c == "'" and (inside or "'" in text[i + 1 :]):
            inside = not inside
            if inside:
                end = len(out)
        else:
            out.append(c)
            if c != " " or inside:
                end = len(out)
        i += 1
    return "".join(out[:end] if end is not None else out)


def separate_string(text: str, delim: str = " ", limit: int = 1 << 30) -> list[str]:
    """switch_separate_string: at most ``limit`` pieces (the last takes the rest), each cleaned
    up; ``^^X`` at the start makes X the separator."""
    if text.startswith("^^") and len(text) > 3:
        delim, text = text[2], text[3:]
    blank = delim == " "
    pieces: list[str] = []
    n = len(text)
    i = start = 0
    inside = False
    state = "start"
    open_piece = False
    while i < n:
        c = text[i]
        if state == "start":
            if len(pieces) >= limit:
                break
            pieces.append("")
            start, open_piece = i, True
            state = "skip" if blank else "find"
            if len(pieces) >= limit:
                break  # the last piece takes the rest
            continue
        if state == "skip":  # blank only: spaces before a piece
            if c == " ":
                i += 1
            else:
                state = "find"
            continue
        if state == "find":
            if c == "\\":
                i += 1
            elif c == "'" and (blank or inside or "'" in text[i + 1 :]):
                inside = not inside
            elif c == delim and not inside:
                pieces[-1] = text[start:i]
                open_piece = False
                state = "end" if blank else "start"
            i += 1
            continue
        if c == " ":  # blank only: spaces after a piece
            i += 1
        else:
            state = "start"
    if open_piece:
        pieces[-1] = text[start:]
    return [cleanup(p, "" if blank else delim) for p in pieces]


def find_end_paren(text: str, start: int, open_: str, close: str) -> int | None:
    """switch_find_end_paren: the index of the ``close`` matching the ``open_`` at ``start``
    (after spaces), or None."""
    i = start
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text) or text[i] != open_:
        return None
    depth = 0
    for j in range(i, len(text)):
        ch = text[j]
        if ch == open_ and (open_ != close or j == i):
            depth += 1
        elif ch == close:
            depth -= 1
            if not depth:
                return j
    return None


def parse_brackets(text: str, open_: str, close: str, delim: str, into: dict[str, str]) -> str:
    """switch_event_create_brackets: add the ``name=value`` pairs of the group at the start of
    ``text`` to ``into`` (later ones win); returns what follows the group."""
    end = find_end_paren(text, 0, open_, close)
    if end is None:
        raise DialParseError(f"no closing {close!r} in {text!r}")
    body = text[text.index(open_) + 1 : end]
    sep = delim
    if body.startswith("^^") and len(body) > 2:
        sep, body = body[2], body[3:]
    for item in separate_string(body, sep) if body else []:
        pair = separate_string(item, "=", 2)
        if len(pair) == 2:
            into[pair[0]] = pair[1]
    return text[end + 1 :]


@dataclass
class Leg:
    """One target of a dial string: its own ``[...]`` variables and the endpoint string."""

    target: str
    variables: dict[str, str] = field(default_factory=dict)


def parse_dial(dial: str) -> tuple[dict[str, str], list[list[Leg]]]:
    """``<ultra>{global}[leg]a/1,[leg]b/2|c/3`` -> (global variables, [[legs rung together], ...]
    tried in turn). Raises DialParseError where FreeSWITCH logs "Parse Error!"."""
    variables: dict[str, str] = {}
    data = dial.lstrip(" ")
    while data.startswith("<"):
        data = parse_brackets(data, "<", ">", ",", variables)
    while data.startswith("{"):
        data = parse_brackets(data, "{", "}", ",", variables)
    data = data.lstrip(" ")
    groups: list[list[Leg]] = []
    for pipe in separate_string(data, "|"):
        marked = _mark_leg_commas(pipe)
        legs = []
        for peer in separate_string(marked, ","):
            peer = peer.lstrip(" ")
            local: dict[str, str] = {}
            while peer.startswith("["):
                bend = find_end_paren(peer, 0, "[", "]")
                head = peer[: bend if bend is not None else len(peer)].replace(_QUOTED_COMMA, ",")
                peer = head + peer[len(head) :]
                rest = parse_brackets(peer, "[", "]", _UNQUOTED_COMMA, local)
                if rest == peer:
                    raise DialParseError(f"bad leg variables in {peer!r}")
                peer = rest.lstrip(" ")
            legs.append(Leg(peer.replace(_UNQUOTED_COMMA, ",").replace(_QUOTED_COMMA, ","), local))
        groups.append(legs)
    return variables, groups


def _mark_leg_commas(text: str) -> str:
    """Inside each ``[...]``, an unescaped comma becomes a variable separator (or a literal
    comma when quoted), so the target list split only sees the commas between targets."""
    chars = list(text)
    end: int | None = None
    quoted = False
    alt = False
    for i, c in enumerate(chars):
        if end is None and c == "[":
            end = find_end_paren(text, i, "[", "]")
            alt = text[i + 1 : i + 3] == "^^"
            quoted = False
        if c == "'":
            quoted = not quoted
        if end is not None and i < end and c == "," and (i == 0 or chars[i - 1] != "\\"):
            chars[i] = _QUOTED_COMMA if (quoted or alt) else _UNQUOTED_COMMA
        if i == end:
            end = None
    return "".join(chars)
