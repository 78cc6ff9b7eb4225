"""A reference model of how FreeSWITCH parses originate strings, api arguments and ESL commands.

Used only by the tests: the escaping functions in :mod:`esl.escaping` are checked
against this model, not against themselves. Each function follows one C function
of FreeSWITCH (named in its docstring) step by step, over a mutable buffer of
characters that ends with NUL, so that in-place writes (``*p = '\\0'``), pointer
arithmetic and the places where the C code reads past a token's NUL behave as they
do in the switch. Reading past the end of the whole buffer raises :class:`OverRead`
(undefined behaviour in C).

The model covers the paths ``api originate`` (mod_commands ``originate_function``,
``switch_ivr_originate`` up to the point where legs are created), ``uuid_setvar``,
channel-variable storage (``switch_event_base_add_header``, the ``${`` check), the
variable expansion applied to application arguments, and the command reader of
mod_event_socket (``read_packet``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

NUL = "\0"
ESCAPE_META = "\\"
QUOTED_ESC_COMMA = "\x01"
UNQUOTED_ESC_COMMA = "\x02"
ENT_ORIGINATE_DELIM = ":_:"
MAX_PEERS = 128


class OverRead(Exception):
    """The C code would read past the end of its buffer (undefined behaviour)."""


class ParseError(Exception):
    """The switch refuses the string ("Parse Error!", "-USAGE", ...)."""


class Buf:
    """A NUL-terminated C buffer: ``buf[i]`` reads, ``buf[i] = c`` writes, both bounds-checked."""

    def __init__(self, text: str) -> None:
        self.a = list(text) + [NUL]

    def __getitem__(self, i: int) -> str:
        if i < 0 or i >= len(self.a):
            raise OverRead(i)
        return self.a[i]

    def __setitem__(self, i: int, c: str) -> None:
        if i < 0 or i >= len(self.a):
            raise OverRead(i)
        self.a[i] = c

    def cstr(self, i: int) -> str:
        """The C string at ``i`` (up to the next NUL)."""
        end = i
        while self[end] != NUL:
            end += 1
        return "".join(self.a[i:end])

    def strchr(self, i: int, c: str) -> int | None:
        while self[i] != NUL:
            if self[i] == c:
                return i
            i += 1
        return None


# --- switch_utils.c -------------------------------------------------------------------------------


def unescape_char(c: str) -> str:
    """``unescape_char``: ``n r t s`` become LF, CR, TAB, space; anything else is itself."""
    return {"n": "\n", "r": "\r", "t": "\t", "s": " "}.get(c, c)


def cleanup_separated_string(b: Buf, start: int, delim: str) -> int:
    """``cleanup_separated_string``: strip leading spaces, unquote ``'...'``, unescape, cut trailing spaces.

    ``delim`` is ``NUL`` for "no delimiter" (the blank-split case). Returns the
    index of the cleaned string, written in place.
    """
    ptr = start
    while b[ptr] == " ":
        ptr += 1
    start = dest = ptr
    end: int | None = None
    inside = 0
    while b[ptr] != NUL:
        esc = 0
        if b[ptr] == ESCAPE_META:
            e = b[ptr + 1]
            if e in ("'", '"') or (delim != NUL and e == delim) or e == ESCAPE_META or unescape_char(e) != e:
                if not (e in ("'", '"') or (delim != NUL and e == delim) or e == ESCAPE_META):
                    e = unescape_char(e)
                ptr += 1
                b[dest] = e
                dest += 1
                end = dest
                esc = 1
        if not esc:
            if b[ptr] == "'" and (inside or b.strchr(ptr + 1, "'") is not None):
                inside = 1 - inside
                if inside:
                    end = dest
            else:
                c = b[ptr]
                b[dest] = c
                dest += 1
                if c != " " or inside:
                    end = dest
        ptr += 1
    if end is not None:
        b[end] = NUL
    return start


def _separate_char_delim(b: Buf, ptr: int, delim: str, arraylen: int) -> list[int]:
    """``separate_string_char_delim``."""
    out: list[int] = []
    state_start = True
    inside = 0
    while b[ptr] != NUL and len(out) < arraylen:
        if state_start:
            out.append(ptr)
            state_start = False
            continue
        if b[ptr] == ESCAPE_META:
            ptr += 1
        elif b[ptr] == "'" and (inside or b.strchr(ptr + 1, "'") is not None):
            inside = 1 - inside
        elif b[ptr] == delim and not inside:
            b[ptr] = NUL
            state_start = True
        ptr += 1
    return [cleanup_separated_string(b, i, delim) for i in out]


def _separate_blank_delim(b: Buf, ptr: int, arraylen: int) -> list[int]:
    """``separate_string_blank_delim``."""
    out: list[int] = []
    state = "START"
    inside = 0
    while b[ptr] != NUL and len(out) < arraylen:
        if state == "START":
            out.append(ptr)
            state = "SKIP_INITIAL"
        elif state == "SKIP_INITIAL":
            if b[ptr] == " ":
                ptr += 1
            else:
                state = "FIND"
        elif state == "FIND":
            if b[ptr] == ESCAPE_META:
                ptr += 1
            elif b[ptr] == "'":
                inside = 1 - inside
            elif b[ptr] == " " and not inside:
                b[ptr] = NUL
                state = "SKIP_ENDING"
            ptr += 1
        else:  # SKIP_ENDING
            if b[ptr] == " ":
                ptr += 1
            else:
                state = "START"
    return [cleanup_separated_string(b, i, NUL) for i in out]


def separate_string(b: Buf, i: int, delim: str, arraylen: int) -> list[int]:
    """``switch_separate_string``, with its ``^^<c>`` delimiter override. Returns token indexes."""
    if arraylen <= 0:
        return []
    if b[i] == "^" and b[i + 1] == "^":
        p = i + 2
        if b[p] != NUL and b[p + 1] != NUL:
            i = p
            delim = b[i]
            i += 1
    if delim == " ":
        return _separate_blank_delim(b, i, arraylen)
    return _separate_char_delim(b, i, delim, arraylen)


def split(text: str, delim: str, arraylen: int = 1024) -> list[str]:
    """``switch_separate_string`` on a fresh copy of ``text``, as Python strings."""
    b = Buf(text)
    return [b.cstr(i) for i in separate_string(b, 0, delim, arraylen)]


def separate_string_string(b: Buf, i: int, delim: str, arraylen: int) -> list[int]:
    """``switch_separate_string_string``: split on a multi-character delimiter, no quoting."""
    out = [i]
    while len(out) < arraylen:
        cur = b.cstr(out[-1])
        at = cur.find(delim)
        if at < 0:
            break
        d = out[-1] + at
        b[d] = NUL
        out.append(d + len(delim))
    return out


def find_end_paren(b: Buf, s: int, open_: str, close: str) -> int | None:
    """``switch_find_end_paren``: index of the bracket closing the one at ``s`` (after spaces)."""
    while b[s] == " ":
        s += 1
    e: int | None = None
    if b[s] == open_:
        depth = 1
        e = s + 1
        while b[e] != NUL:
            if b[e] == open_ and open_ != close:
                depth += 1
            elif b[e] == close:
                depth -= 1
                if not depth:
                    break
            e += 1
    return e if e is not None and b[e] == close else None


def strchr_strict(b: Buf, i: int, find: str, allowed: str) -> int | None:
    """``switch_strchr_strict``: ``find`` reached over ``allowed`` characters only (NUL counts as found)."""
    if b[i] == NUL:
        return None
    while b[i] != NUL:
        if b[i] == find:
            break
        if b[i] not in allowed:
            return None
        i += 1
    return i


def strip_whitespace(text: str) -> str:
    """``switch_strip_whitespace``: CR, LF, TAB, VT and space off both ends."""
    return text.strip("\r\n\t\x0b ")


# --- switch_event.c -------------------------------------------------------------------------------


@dataclass
class Header:
    name: str
    value: str
    array: list[str] = field(default_factory=list)


@dataclass
class Event:
    """A ``switch_event_t``'s headers; ``uniq`` is ``EF_UNIQ_HEADERS`` (CHANNEL_DATA events have it)."""

    uniq: bool = True
    headers: list[Header] = field(default_factory=list)
    body: str | None = None

    def get(self, name: str) -> str | None:
        """``switch_event_get_header``: names compare case-insensitively; first match wins."""
        h = self._ptr(name)
        return None if h is None else h.value

    def _ptr(self, name: str) -> Header | None:
        for h in self.headers:
            if h.name.lower() == name.lower():
                return h
        return None

    def delete(self, name: str) -> None:
        self.headers = [h for h in self.headers if h.name.lower() != name.lower()]

    def as_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for h in self.headers:
            out.setdefault(h.name, h.value)
        return out

    def add(self, name: str, data: str, push: bool = False) -> None:
        """``switch_event_base_add_header`` for the BOTTOM and PUSH stacks."""
        if name == "_body":
            self.body = data
        index: int | None = None
        if "[" in name:
            rest = name[name.index("[") + 1:]
            digits = ""
            for ch in rest.lstrip():
                if ch.isdigit() or (not digits and ch in "+-"):
                    digits += ch
                else:
                    break
            try:
                index = int(digits)
            except ValueError:
                index = 0
            name = name[: name.index("[")]
        header: Header | None = None
        exists = False
        if index is not None or push:
            header = self._ptr(name)
            fly = False
            if header is None and index is not None:
                header = Header(name, "")
                if self.uniq:
                    self.delete(name)
                fly = True
            if header is not None:
                if index is not None:
                    if -1 < index <= 4000:
                        if not header.array and header.value and not fly:
                            header.array = [header.value]
                        while len(header.array) < index:
                            header.array.append("")
                        if index < len(header.array):
                            header.array[index] = data
                        else:
                            header.array.append(data)
                        self._redraw(header)
                        if fly:
                            self.headers.append(header)
                    return
                exists = True
        if header is None:
            if data == "":
                self.delete(name)
                return
            if self.uniq:
                self.delete(name)
            if data.startswith("ARRAY::"):
                self._add_array(name, data)
                return
            header = Header(name, "")
        if push:
            if header.value and not header.array:
                header.array = [header.value]
            header.array.append(data)
            self._redraw(header)
        else:
            header.value = data
        if not exists:
            self.headers.append(header)

    @staticmethod
    def _redraw(h: Header) -> None:
        h.value = ("ARRAY::" if len(h.array) > 1 else "") + "|:".join(h.array)

    def _add_array(self, name: str, val: str) -> None:
        """``switch_event_add_array``."""
        if len(val) < 8:
            return
        b = Buf(val[7:])
        parts = [b.cstr(i) for i in separate_string_string(b, 0, "|:", val[7:].count("|:") + 1)]
        for p in parts:
            self.add(name, p, push=True)


def create_brackets(b: Buf, i: int, a: str, bc: str, c: str, ev: Event | None) -> tuple[int, Event]:
    """``switch_event_create_brackets`` (``dup`` false): parse ``a...bc`` at ``i`` into ``ev``.

    Returns the index after the block and the event; :class:`ParseError` when there is no closing bracket.
    """
    vdata: int | None = i
    end = find_end_paren(b, i, a, bc)
    check_a = end
    guard = 0
    while check_a is not None:
        check_b = strchr_strict(b, check_a, a, " ")
        if check_b is None:
            break
        check_b = find_end_paren(b, check_b, a, bc)
        if check_b is not None:
            check_a = check_b
        guard += 1
        if guard > 10000:
            raise ParseError("create_brackets loops forever")
    if check_a is not None:
        end = check_a
    if end is None:
        raise ParseError(f"no closing {bc!r}")
    nxt: int | None = end
    assert vdata is not None
    vdata += 1
    b[end] = NUL
    end += 1
    if ev is None:
        ev = Event(uniq=True)
    vnext: int | None = None
    while True:
        if nxt is not None:
            b[nxt] = NUL
            nxt += 1
            pnext = strchr_strict(b, nxt, a, " ")
            if pnext is not None:
                nxt = pnext + 1
            vnext = find_end_paren(b, nxt, a, bc)
            nxt = None
        if vdata is not None and b[vdata] == "^" and b[vdata + 1] == "^":
            vdata += 2
            c = b[vdata]
            vdata += 1
        assert vdata is not None
        for var in separate_string(b, vdata, c, 1024):
            inner = separate_string(b, var, "=", 2)
            if len(inner) == 2:
                ev.add(b.cstr(inner[0]), b.cstr(inner[1]))
        if vnext is not None:
            vdata = vnext
            vnext = None
        else:
            break
    return end, ev


# --- mod_commands.c / switch_ivr_originate.c --------------------------------------------------------


@dataclass
class Peer:
    """One leg of a dial string: its ``[...]`` variables, endpoint type and data."""

    local: Event | None
    chan_type: str
    chan_data: str | None


@dataclass
class Originate:
    """What ``switch_ivr_originate`` parsed out of a dial string."""

    check_vars: bool
    var_event: Event
    groups: list[list[Peer]]  # '|'-separated groups of ','-separated peers

    def channel_variables(self, group: int = 0, peer: int = 0) -> dict[str, str]:
        """The variables the new channel of one peer gets from ``{}`` and ``[]`` (after the ``${`` check)."""
        chan = Event(uniq=True)
        p = self.groups[group][peer]
        local_clobber = _switch_true(self.var_event.get("local_var_clobber"))
        order: list[Event] = []
        if local_clobber:
            order.append(self.var_event)
        if p.local is not None:
            order.append(p.local)
        if not local_clobber:
            order.append(self.var_event)
        for ev in order:
            for h in ev.headers:
                set_variable_var_check(chan, h.name, h.value, self.check_vars)
        return chan.as_dict()


def _switch_true(v: str | None) -> bool:
    if not v:
        return False
    if v.lower() in ("yes", "on", "true", "t", "enabled", "active", "allow"):
        return True
    try:
        return int(v.strip() or "0") != 0
    except ValueError:
        return False


def var_check_const(s: str) -> bool:
    """``switch_string_var_check_const``: ``$`` then backslashes then ``{`` (a variable reference)."""
    dol = False
    for ch in s:
        if ch == "$":
            dol = True
        elif dol:
            if ch == "{":
                return True
            if ch != "\\":
                dol = False
    return False


def set_variable_var_check(chan: Event, name: str, value: str, var_check: bool) -> None:
    """``switch_channel_set_variable_var_check``: empty deletes; a ``${`` value is dropped when checking."""
    if not name:
        return
    if value == "":
        chan.delete(name)
        return
    if var_check and var_check_const(value):
        return  # FreeSWITCH logs "Invalid data (${name} contains a variable)" and does not set it
    chan.add(name, value)


def ivr_originate(bridgeto: str) -> Originate:
    """The dial-string parsing of ``switch_ivr_originate`` (no session, no dial handle)."""
    if ENT_ORIGINATE_DELIM in bridgeto:
        raise ParseError("enterprise originate (':_:' in the dial string)")
    b = Buf(bridgeto)
    var_event = Event(uniq=True)
    data = 0
    while b[data] == " ":
        data += 1
    check_vars = "origination_nested_vars=true" not in b.cstr(data).lower()
    if b[data] == "<":
        while b[data] == "<":
            data, var_event = create_brackets(b, data, "<", ">", ",", var_event)
    while b[data] == "{":
        data, var_event = create_brackets(b, data, "{", "}", ",", var_event)
    while b[data] == " ":
        data += 1
    if b[data] == NUL:
        raise ParseError("No origination URL specified!")
    loop = Buf(b.cstr(data))
    groups: list[list[Peer]] = []
    for pipe in separate_string(loop, 0, "|", MAX_PEERS):
        p = pipe
        end: int | None = None
        q = alt = 0
        while loop[p] != NUL:
            if end is None and loop[p] == "[":
                end = find_end_paren(loop, p, "[", "]")
                alt = 1 if (loop[p + 1] == "^" and loop[p + 2] == "^") else 0
                q = 0
            if loop[p] == "'":
                q = 1 - q
            if end is not None and p < end and loop[p] == "," and loop[p - 1] != "\\":
                loop[p] = QUOTED_ESC_COMMA if (q or alt) else UNQUOTED_ESC_COMMA
            if p == end:
                end = None
            p += 1
        peers: list[Peer] = []
        for ct in separate_string(loop, pipe, ",", MAX_PEERS):
            while loop[ct] == " ":
                ct += 1
            local: Event | None = Event(uniq=True) if loop[ct] == "[" else None
            while loop[ct] == "[":
                bend = find_end_paren(loop, ct, "[", "]")
                p = ct + 1
                while bend is not None and p < bend and loop[p] != NUL:
                    if loop[p] == QUOTED_ESC_COMMA:
                        loop[p] = ","
                    p += 1
                parsed, local = create_brackets(loop, ct, "[", "]", UNQUOTED_ESC_COMMA, local)
                if parsed == ct:
                    raise ParseError("empty leg variables")
                ct = parsed
            while loop[ct] == " ":
                ct += 1
            text = loop.cstr(ct)
            chan_type, slash, chan_data = text.partition("/")
            peers.append(Peer(local, chan_type, chan_data if slash else None))
        groups.append(peers)
    return Originate(check_vars, var_event, groups)


def api_args(arg: str, arraylen: int) -> list[str]:
    """How an api function receives ``arg``: ``switch_api_execute`` strips it, the function blank-splits it."""
    return split(strip_whitespace(arg), " ", arraylen)


def originate_api(arg: str) -> tuple[Originate, list[str]]:
    """``originate <dial> <app> ...`` as mod_commands parses it: the dial string parsed, the other args.

    An argument ``undef`` (any case) comes back as None: mod_commands treats it as absent.
    """
    argv = api_args(arg, 10)
    if len(argv) < 2 or len(argv) > 7:
        raise ParseError("-USAGE")
    args: list[str | None] = [None if a.lower() == "undef" else a for a in argv[1:]]
    return ivr_originate(argv[0]), args  # type: ignore[return-value]


def originate_exten(exten: str) -> tuple[str, str | None]:
    """mod_commands' reading of the originate extension ``&app(arg)``: the app name and raw argument.

    An extension without ``&`` is returned as ``("", exten)`` (a dialplan transfer).
    """
    if not (exten.startswith("&") and len(exten) > 1):
        return "", exten
    app_name = exten[1:]
    e = app_name.find(")")
    if e >= 0:
        app_name = app_name[:e]
    a = app_name.find("(")
    arg: str | None = None
    if a >= 0:
        app_name, arg = app_name[:a], app_name[a + 1:]
    if arg is not None and "\\'" in arg:
        raise ParseError("App not added, Invalid character sequence in data string")
    return app_name, arg


def uuid_setvar_api(arg: str) -> tuple[str, str, str | None]:
    """``uuid_setvar <uuid> <name> [<value>]``: the uuid, name and value mod_commands stores (None: unset)."""
    argv = api_args(arg, 3)
    if len(argv) not in (2, 3) or not argv[0]:
        raise ParseError("-USAGE")
    value = argv[2] if len(argv) == 3 else None
    chan = Event(uniq=True)
    if value:
        chan.add(argv[1], value)  # switch_channel_add_variable_var_check, var_check false
    return argv[0], argv[1], chan.get(argv[1])


# --- application arguments (switch_core_session_execute_application, switch_channel_expand_variables) --


class Substitution(Exception):
    """Variable expansion would substitute something (``${...}``/``$${...}``) in this argument."""


def has_escaped_data(s: str) -> bool:
    """``switch_string_has_escaped_data``."""
    i = s.find("\\")
    while i >= 0 and i < len(s) and s[i] == "\\":
        i += 1
        if i < len(s) and s[i] in "\\nst'":
            return True
        i = s.find("\\", i)
    return False


def expand_variables(s: str) -> str:
    """The escape handling of ``switch_channel_expand_variables`` (``\\\\``, ``\\'``, ``\\$``).

    Raises :class:`Substitution` where a ``${``/``$${`` reference would be replaced.
    """
    if not s or not (var_check_const(s) or has_escaped_data(s)):
        return s
    out: list[str] = []
    p = 0
    n = len(s)
    at = (lambda k: s[k] if k < n else NUL)
    while p < n:
        nv = False
        if s[p] == "\\":
            if at(p + 1) == "$":
                nv = True
                p += 1
                if at(p + 1) == "$":
                    p += 1
            elif at(p + 1) == "'":
                p += 2
                continue
            elif at(p + 1) == "\\":
                out.append(s[p])
                p += 2
                continue
        if s[p] == "$" and not nv:
            q = p
            if at(q + 1) == "$":
                q += 1
            if at(q + 1) == "{":
                raise Substitution(s[p:])
            nv = True
        out.append(s[p])
        p += 1
    return "".join(out)


def execute_app_arg(arg: str, expand: bool = True) -> tuple[Event | None, str]:
    """What an application receives for ``arg`` (``switch_core_session_execute_application_get_flags``).

    Returns the ``%[...]`` scope variables (if the argument starts with such a block) and the argument.
    """
    expanded = expand_variables(arg) if expand else arg
    if expand and expanded.startswith("%") and (expanded[1:2] == "[" or expanded[2:3] == "["):
        delim = ","
        p = expanded[1:]
        if not p.startswith("["):
            delim, p = p[0], p[1:]
        b = Buf(p)
        rest, ev = create_brackets(b, 0, "[", "]", delim, None)
        return ev, b.cstr(rest)
    return None, expanded


def base_set(data: str) -> tuple[str, str | None]:
    """mod_dptools ``base_set`` on the data an application received: the name and the stored value."""
    if not data:
        raise ParseError("No variable name specified.")
    eq = data.find("=")
    if eq < 0:
        eq = data.find(",")
    if eq < 0:
        return data, None
    name, val = data[:eq], data[eq + 1:]
    if not val:
        return name, None
    chan = Event(uniq=True)
    chan.add(name, expand_variables(val))
    return name, chan.get(name)


def set_app(arg: str) -> tuple[str, str | None]:
    """The ``set`` application run with ``arg``: the name and stored value."""
    return base_set(execute_app_arg(arg)[1])


def multiset_app(arg: str) -> list[tuple[str, str | None]]:
    """The ``multiset`` application run with ``arg`` (``^^<c>`` picks the separator, else space)."""
    data = execute_app_arg(arg)[1]
    delim = " "
    if data.startswith("^^") and len(data) > 2:
        delim, data = data[2], data[3:]
    return [base_set(piece) for piece in split(data, delim, 256)]


def uuid_setvar_multi_api(arg: str) -> tuple[str, dict[str, str]]:
    """``uuid_setvar_multi <uuid> <name>=<value>;...``: the uuid and the variables the channel then holds."""
    cmd = strip_whitespace(arg)
    if " " not in cmd:
        raise ParseError("-USAGE")
    uuid, rest = cmd.split(" ", 1)
    chan = Event(uniq=True)
    for piece in split(rest, ";", 64):
        name, eq, value = piece.partition("=")
        if not name:
            raise ParseError("No variable name specified.")
        set_variable_var_check(chan, name, value if eq else "", True)
    return uuid, chan.as_dict()


# --- mod_event_socket.c read_packet ------------------------------------------------------------------


@dataclass
class Command:
    command: str
    headers: list[tuple[str, str]]
    body: str | None


def _atoi(text: str) -> int:
    m = re.match(r"[ \t\n\v\f\r]*([+-]?\d+)", text)
    return int(m.group(1)) if m else 0


def read_commands(data: bytes) -> list[Command]:
    """Split a byte stream into the commands mod_event_socket's ``read_packet`` reads from it.

    A packet is the bytes up to two LF (CR between them ignored), after any
    leading CR/LF. Its text is a C string, so it ends at the first NUL: lines
    after a NUL are lost. The first line is the command; each later line is cut
    at its first CR or LF and read as ``name: value`` (spaces after the colon
    skipped). Each ``Content-Length`` header reads that many bytes following the
    packet as the body. Incomplete trailing data is ignored.
    """
    out: list[Command] = []
    pos = 0
    n = len(data)
    while pos < n:
        while pos < n and data[pos] in (13, 10):
            pos += 1
        crcount = 0
        start = pos
        while pos < n and crcount < 2:
            ch = data[pos]
            if ch == 10:
                crcount += 1
            elif ch != 13:
                crcount = 0
            pos += 1
        if crcount < 2:
            break
        text = data[start:pos].split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        lines = re.split(r"[\r\n]+", text)
        command = lines[0]
        headers: list[tuple[str, str]] = []
        body: str | None = None
        for line in lines[1:]:
            if not line or ":" not in line:
                continue
            name, val = line.split(":", 1)
            val = val.lstrip(" ")
            headers.append((name, val))
            if name.lower() == "content-length":
                clen = _atoi(val)
                if clen < 0 or clen > 16 * 1024 * 1024:
                    raise ParseError("Content-Length out of range: the switch drops the connection")
                if clen > 0:
                    chunk = data[pos:pos + clen]
                    pos += clen
                    body = (body or "") + chunk.decode("utf-8", "surrogateescape")
        out.append(Command(command, headers, body))
    return out
