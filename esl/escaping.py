"""Quoting user values for the places FreeSWITCH parses them: originate variables, uuid_setvar, app args.

FreeSWITCH has no single quoting rule. A value in ``originate {name=value}dial``
goes through four parsers in a row, each with its own escapes:

1. ``switch_api_execute`` strips whitespace off the api argument, then
   mod_commands splits it on spaces with ``switch_separate_string(' ')``: quotes
   ``'...'`` group, ``\\`` escapes, and each piece is cleaned (quotes removed,
   ``\\s \\t \\n \\r \\\\ \\' \\"`` decoded, edge spaces cut).
2. ``switch_ivr_originate`` finds the end of ``{...}`` by counting braces
   (``switch_find_end_paren``, blind to quotes and escapes), and switches to the
   enterprise parser if ``:_:`` appears anywhere in the dial string.
3. The block is split on ``,`` (``switch_event_create_brackets``), a leading
   ``^^<c>`` changes the separator, each piece is cleaned again.
4. Each piece is split on the first ``=`` and both halves are cleaned again.

The variable is then stored with ``switch_channel_set_variable_var_check``: an
empty value unsets it, a value starting with ``ARRAY::`` becomes an array, a
name with ``[`` addresses an array element, and a value holding ``${`` is
dropped unless ``origination_nested_vars=true`` appears in the dial string.

The functions here build text that comes out of all these steps as the exact
value given, or refuse with :class:`ValueError` what cannot come out literally.
They are checked against a port of the C parsers in ``tests/fsparse.py``.

>>> originate_vars({"origination_caller_id_name": "Smith, John", "x": "}evil"})
'{{,origination_caller_id_name=Smith\\\\,\\\\sJohn,x=}evil}'
>>> setvar_value(" it's ")
"\\\\sit\\\\'s\\\\s"
>>> app_arg("${x}")
'\\\\${x}'

(In the first, the leading ``{,`` is an ignored piece that balances the ``}`` of
the value: FreeSWITCH counts braces without regard to escapes.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = [
    "app_arg",
    "check_variable_name",
    "dial_string_leg_vars",
    "file_string",
    "file_vars",
    "originate_app",
    "originate_arg",
    "originate_vars",
    "set_app_arg",
    "setvar_value",
]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_APP = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-]*")
# Characters that form an escape when they follow a backslash in cleanup_separated_string.
_ESCAPES = frozenset("\\'\"nrts")
_ENTERPRISE = ":_:"
_NESTED = "origination_nested_vars=true"
# A ``$`` then any backslashes then ``{``: what switch_string_var_check_const calls a variable.
_VAR_REF = re.compile(r"\$\\*\{")
# switch_event_create_brackets splits a block into at most 1024 pieces; two may be balancing pieces.
_MAX_VARS = 1022


def check_variable_name(name: str) -> str:
    """Return ``name`` if FreeSWITCH stores a channel variable under exactly this name.

    Accepted: ASCII letters, digits, ``_``, ``-`` and ``.``, not starting with
    ``-`` or ``.`` (e.g. ``origination_caller_id_name``, ``sip_h_X-Account``).
    Refused with :class:`ValueError`: anything else, e.g. spaces (cut at
    the edges or split on), ``=`` ``,`` ``{}`` ``[]`` (block syntax; ``[``
    also means "array element"), ``^^`` (separator override), quotes and
    backslashes, ``:_:``. :class:`TypeError` for a non-``str``.
    """
    if not isinstance(name, str):
        raise TypeError(f"variable name must be str, not {type(name).__name__}")
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid channel variable name {name!r}: use letters, digits, '_', '-' and '.'")
    return name


def _text(value: object, what: str) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = value
    elif isinstance(value, (int, float)):
        text = str(value)
    else:
        raise TypeError(f"{what} must be str, int, float or bool, not {type(value).__name__}")
    for ch, label in (("\0", "NUL"), ("\r", "CR"), ("\n", "LF")):
        if ch in text:
            raise ValueError(f"{what} must not contain {label}: {text[:60]!r}")
    return text


def _stored(text: str, what: str) -> str:
    """Refuse what FreeSWITCH's variable store changes whatever the quoting."""
    if text == "":
        raise ValueError(f"{what} is empty: FreeSWITCH unsets a variable given an empty value")
    if text.startswith("ARRAY::"):
        raise ValueError(f"{what} starts with 'ARRAY::': FreeSWITCH would store it as an array")
    return text


def _escape(text: str, delim: str, breaks: frozenset[int] = frozenset(), tabs: bool = False) -> str:
    """Text that ``switch_separate_string(delim)`` keeps in one piece and cleans back to ``text``.

    ``delim`` ``" "`` is the blank split (its cleanup has no delimiter escape, so
    spaces are written ``\\s``, and tabs ``\\t``). Quotes are always escaped, edge spaces written
    ``\\s``, a backslash doubled only where it would start an escape or end the
    piece. ``breaks``: indexes before which an empty quote pair ``''`` is put
    (it vanishes in the cleanup and splits a substring FreeSWITCH looks for).
    """
    n = len(text)
    lead = n - len(text.lstrip(" "))
    trail = len(text.rstrip(" ")) if text.strip(" ") else n
    pieces: list[str] = []
    for i, ch in enumerate(text):
        if ch == "'":
            piece = "\\'"
        elif ch == " " and (delim == " " or i < lead or i >= trail):
            piece = "\\s"
        elif ch == "\t" and (tabs or delim == " "):
            piece = "\\t"  # the api argument loses edge tabs
        elif ch == delim:
            piece = "\\" + ch
        else:
            piece = ch
        pieces.append("''" + piece if i in breaks else piece)
    for i in range(n):
        if text[i] == "\\":
            nxt = pieces[i + 1] if i + 1 < n else ""
            if not nxt or nxt[0] in _ESCAPES or nxt[0] == delim:
                pieces[i] = "\\\\"
    return "".join(pieces)


def _value_breaks(text: str) -> frozenset[int]:
    """Where a value needs an empty ``''``: inside ``:_:`` and ``origination_nested_vars=true``."""
    out: set[int] = set()
    at = text.find(_ENTERPRISE)
    while at >= 0:
        out.add(at + 1)
        at = text.find(_ENTERPRISE, at + 1)
    low = text.lower()
    at = low.find(_NESTED)
    while at >= 0:
        out.add(at + 1)
        at = low.find(_NESTED, at + 1)
    return frozenset(out)


def _balance(entries: list[str], open_: str, close: str, sep: str) -> list[str]:
    """Add ignored pieces (no ``=``) of ``open_``/``close`` so the brackets in ``entries`` balance.

    ``switch_find_end_paren`` counts brackets without regard to escapes; a piece
    without ``=`` is skipped by ``switch_event_create_brackets``.
    """
    depth = low = 0
    for ch in sep.join(entries):
        if ch == open_:
            depth += 1
        elif ch == close:
            depth -= 1
            low = min(low, depth)
    head = [open_ * -low] if low else []
    tail = [close * (depth - low)] if depth - low else []
    return head + entries + tail


def _entries(
    variables: Mapping[str, object], what: str, nested_ok: bool = True
) -> tuple[list[tuple[str, str]], bool]:
    """Checked ``(name, value)`` pairs, and whether they switch off the ``${`` check."""
    if not isinstance(variables, Mapping):
        raise TypeError(f"{what} must be a mapping of names to values, not {type(variables).__name__}")
    seen: dict[str, str] = {}
    pairs: list[tuple[str, str]] = []
    for name, value in variables.items():
        check_variable_name(name)
        if name.lower() in seen:
            raise ValueError(f"{what}: {name!r} and {seen[name.lower()]!r} are the same FreeSWITCH variable")
        seen[name.lower()] = name
        pairs.append((name, _stored(_text(value, f"value of {name!r}"), f"value of {name!r}")))
    if len(pairs) > _MAX_VARS:
        raise ValueError(f"{what}: {len(pairs)} variables; FreeSWITCH reads at most {_MAX_VARS} from one block")
    # FreeSWITCH looks for this text anywhere in the dial string. Inside values it is broken up (see
    # _value_breaks), so only a name ending like it followed by a value starting with "true" counts.
    nested = nested_ok and any(n.lower().endswith(_NESTED[:-5]) and v.lower().startswith("true") for n, v in pairs)
    for name, text in pairs:
        if not nested and _VAR_REF.search(text):
            raise ValueError(
                f"value of {name!r} holds '${{': FreeSWITCH drops such a value"
                + (" unless origination_nested_vars=true is among the variables" if nested_ok else "")
            )
    return pairs, nested


def originate_vars(variables: Mapping[str, object]) -> str:
    """The ``{name=value,...}`` block to put in front of an originate dial string.

    Every value arrives on the new channel exactly as given, for any text
    without CR, LF or NUL: commas, quotes, all brackets, ``^``, ``=``,
    backslashes (trailing too), edge spaces, tabs, ``:_:``, UTF-8, JSON.
    The block is meant for the text of ``originate <block><dial> <app>`` (api
    or bgapi), where it is the start of the first argument; it contains no raw
    space, so the caller's dial string and arguments keep their meaning.

    Values: ``str``, ``int``, ``float`` or ``bool`` (written ``true``/``false``).
    Names: see :func:`check_variable_name`; names equal but for case are one
    FreeSWITCH variable and are refused. Returns ``""`` for no variables.

    :class:`ValueError` (nothing is changed silently) for: CR, LF or NUL; an
    empty value (FreeSWITCH would unset the variable); a value starting with
    ``ARRAY::`` (stored as an array); a value holding ``${`` (or ``$\\{``)
    unless ``origination_nested_vars`` is ``true`` among the variables
    (FreeSWITCH drops such values; with it, they are stored unexpanded).
    """
    pairs, _ = _entries(variables, "originate variables")
    if not pairs:
        return ""
    entries = [_escape(f"{n}={_escape(v, '=', _value_breaks(v))}", ",") for n, v in pairs]
    block = "{" + ",".join(_balance(entries, "{", "}", ",")) + "}"
    return _escape(block, " ")


#: Separator chosen with ``[^^;...]``: in this mode originate turns every comma
#: of the block into a plain character, so quotes cannot make it miscount.
_LEG_SEP = ";"


def dial_string_leg_vars(variables: Mapping[str, object], *, api: bool = True) -> str:
    """The ``[name=value,...]`` block of one leg, to put right before that leg's endpoint.

    Same contract as :func:`originate_vars` (values and names accepted and
    refused) plus one more refusal: the byte ``\\x01`` (originate turns it into
    a comma inside ``[...]``). The block survives everything a leg goes
    through: the api argument split, the ``|`` split of alternatives, the ``,``
    split of simultaneous legs, the ``[...]`` parse. It is written in the
    ``[^^;...]`` form. Returns ``""`` for no variables. ``api=False``: for a
    dial string that is not an api argument (the ``bridge`` application's,
    which has no space split; pass it through :func:`app_arg` too).
    """
    pairs, _ = _entries(variables, "leg variables")
    if not pairs:
        return ""
    for name, text in pairs:
        if "\x01" in text:
            raise ValueError(f"value of {name!r} holds \\x01: originate turns it into ',' inside [...]")
    entries = [_escape(f"{n}={_escape(v, '=', _value_breaks(v))}", _LEG_SEP) for n, v in pairs]
    block = f"[^^{_LEG_SEP}" + _LEG_SEP.join(_balance(entries, "[", "]", _LEG_SEP)) + "]"
    block = _escape(_escape(block, ","), "|")
    return _escape(block, " ") if api else block


def setvar_value(value: object) -> str:
    """The text to put after ``uuid_setvar <uuid> <name> `` so the variable holds exactly ``value``.

    mod_commands takes the value as the rest of the api argument, stripped of
    edge whitespace (``switch_strip_whitespace``) and cleaned like one piece of
    a space split (quotes removed, ``\\s \\t \\n \\r \\\\ \\' \\"`` decoded, edge
    spaces cut). Every text without CR, LF or NUL is stored literally,
    including quotes, backslashes, edge spaces/tabs and ``${...}`` (uuid_setvar
    does not check or expand variables). Values as in :func:`originate_vars`.
    :class:`ValueError` for CR/LF/NUL, an empty value (use ``uuid_setvar <uuid>
    <name>`` with nothing after it to unset) and ``ARRAY::`` at the start.
    """
    text = _stored(_text(value, "uuid_setvar value"), "uuid_setvar value")
    lead = len(text) - len(text.lstrip(" "))
    trail = len(text.rstrip(" ")) if text.strip(" ") else len(text)
    pieces: list[str] = []
    for i, ch in enumerate(text):
        if ch == "'":
            pieces.append("\\'")
        elif ch == " " and (i < lead or i >= trail):
            pieces.append("\\s")
        elif ch == "\t" and i == len(text) - 1:
            pieces.append("\\t")
        else:
            pieces.append(ch)
    for i, ch in enumerate(text):
        if ch == "\\":
            nxt = pieces[i + 1] if i + 1 < len(text) else ""
            if not nxt or nxt[0] in _ESCAPES:
                pieces[i] = "\\\\"
    out = "".join(pieces)
    if out[-1] == "\x0b":
        out += "''"  # an empty quote pair vanishes in the cleanup and keeps the strip off the last char
    return out


def _has_escaped_data(text: str) -> bool:
    return re.search(r"\\[\\nst']", text) is not None


def app_arg(text: str) -> str:
    """An application argument that reaches the application exactly as ``text``.

    FreeSWITCH expands variables in every argument of an executed application
    (``switch_channel_expand_variables``: ``${var}``, ``$${global}``,
    ``${api(args)}`` are replaced, ``\\\\``, ``\\'`` and ``\\$`` decoded) when the
    argument holds a variable reference or one of those escapes; otherwise it
    is passed as is. The result escapes ``\\`` and ``$`` only in the first case,
    so the expansion gives back ``text`` and runs nothing.

    Send the result in the body of ``sendmsg`` (``content-type: text/plain``),
    which is taken verbatim; the ``execute-app-arg`` header loses leading spaces
    and cannot hold a newline. CR and LF are allowed here (for the body form).
    :class:`ValueError` for NUL and for an argument starting ``%[`` or ``%<c>[``
    (FreeSWITCH reads that as scoped variables). Does not apply when the channel
    has ``app_disable_expand_variables=true``.
    """
    if not isinstance(text, str):
        raise TypeError(f"application argument must be str, not {type(text).__name__}")
    if "\0" in text:
        raise ValueError(f"application argument must not contain NUL: {text[:60]!r}")
    if text.startswith("%") and (text[1:2] == "[" or text[2:3] == "["):
        raise ValueError(f"application argument {text[:20]!r} would be read as %[scoped variables]")
    return _expand_escape(text)


def _expand_escape(text: str) -> str:
    if not (_VAR_REF.search(text) or _has_escaped_data(text)):
        return text
    return text.replace("\\", "\\\\").replace("$", "\\$")


def set_app_arg(name: str, value: object) -> str:
    """The argument of the ``set`` application that stores exactly ``value`` in ``name``.

    ``set`` (mod_dptools ``base_set``) expands variables in the value a second
    time after the expansion every application argument gets, so ``$`` and
    ``\\`` are escaped for both. ``${...}`` is stored literally, not expanded.
    Name as :func:`check_variable_name`; value as :func:`app_arg` plus the
    refusals of the variable store (empty, ``ARRAY::``). CR/LF refused too:
    a variable is read back line-based by many tools.
    """
    check_variable_name(name)
    text = _stored(_text(value, f"value of {name!r}"), f"value of {name!r}")
    return app_arg(f"{name}={_expand_escape(text)}")


def originate_app(app: str, arg: str | None = None) -> str:
    """The ``&app(arg)`` argument of ``originate <dial> &app(arg)``: what the new leg runs.

    mod_commands cuts the text at its first ``)`` and splits it at its first
    ``(``, after the api argument's space split and cleanup; the argument is
    then expanded like any application argument (see :func:`app_arg`). The
    result is one space-free piece whose application gets exactly ``arg``.
    ``app``: letters, digits, ``_``, ``-``. :class:`ValueError` for a ``)``
    in ``arg`` (it cannot be carried there), for ``\\'`` (backslash then
    quote: ``switch_caller_extension_add_application`` refuses such data and
    the leg runs nothing), CR/LF/NUL, and what :func:`app_arg` refuses. Such
    arguments can be sent with ``sendmsg`` once the call is up.
    """
    if not isinstance(app, str) or not _APP.fullmatch(app):
        raise ValueError(f"invalid application name {app!r}")
    if arg is None:
        return "&" + app
    if not isinstance(arg, str):
        raise TypeError(f"application argument must be str, not {type(arg).__name__}")
    _text(arg, f"argument of {app!r}")
    if ")" in arg:
        raise ValueError(f"argument of {app!r} holds ')': originate's &app(arg) ends at the first ')'")
    if "\\'" in arg:
        raise ValueError(f"argument of {app!r} holds a backslash before a quote: FreeSWITCH refuses to add the "
                         "application (\"Invalid character sequence in data string\")")
    return _escape(f"&{app}({app_arg(arg)})", " ")


def originate_arg(text: str) -> str:
    """One space-separated argument of the ``originate`` api (extension, dialplan, context, caller id...).

    The result is one piece of mod_commands' space split that cleans back to
    exactly ``text`` (quotes, backslashes, spaces kept). :class:`ValueError` for
    CR/LF/NUL, an empty text, and ``undef`` in any case (originate reads that
    as "argument absent").
    """
    text = _text(text, "originate argument")
    if text == "" or text.lower() == "undef":
        raise ValueError(f"originate argument {text!r} would be read as absent")
    if text.startswith("&"):
        raise ValueError(f"originate argument {text!r} starts with '&' (use originate_app)")
    out = _escape(text, " ")
    # as the last argument, an edge VT would be stripped; an empty quote pair vanishes and protects it
    return out + "''" if out[-1] == "\x0b" else out


def _vt_safe(text: str) -> str:
    # an api argument ending in VT loses it; an empty quote pair vanishes in the cleanup and protects it
    return text + "''" if text.endswith("\x0b") else text


def setvar_multi_arg(variables: Mapping[str, object]) -> str:
    """The text after ``uuid_setvar_multi <uuid> `` that sets exactly these variables.

    mod_commands splits it on ``;`` (``switch_separate_string``: quotes,
    escapes, edge spaces cleaned) and each piece at its first ``=``, then stores
    with the ``${`` check on. Values and names as in :func:`originate_vars`
    (the same refusals: CR/LF/NUL, empty, ``ARRAY::``, and ``${`` always, as
    the switch drops such values here), at most 64 variables.
    """
    pairs, _ = _entries(variables, "uuid_setvar_multi variables", nested_ok=False)
    if not pairs:
        raise ValueError("uuid_setvar_multi needs at least one variable")
    if len(pairs) > 64:
        raise ValueError(f"uuid_setvar_multi takes at most 64 variables, not {len(pairs)}")
    return _vt_safe(";".join(_escape(f"{n}={v}", ";", tabs=True) for n, v in pairs))


def multiset_app_arg(variables: Mapping[str, object]) -> str:
    """The argument of the ``multiset`` application that stores exactly these variables.

    ``multiset`` reads ``^^;`` as "separator ``;``", splits with
    ``switch_separate_string`` and runs ``set`` on each piece, so a value goes
    through the application-argument expansion, the split's cleanup and the
    ``set`` expansion; it is escaped for all three. ``${...}`` is stored
    literally. Names and values as in :func:`set_app_arg`; at most 256
    variables. Send it in the sendmsg body, as :func:`app_arg` says.
    """
    if not isinstance(variables, Mapping):
        raise TypeError(f"multiset variables must be a mapping, not {type(variables).__name__}")
    pieces: list[str] = []
    for name, value in variables.items():
        check_variable_name(name)
        text = _stored(_text(value, f"value of {name!r}"), f"value of {name!r}")
        pieces.append(_escape(f"{name}={_expand_escape(text)}", ";"))
    if not pieces:
        raise ValueError("multiset needs at least one variable")
    if len(pieces) > 256:
        raise ValueError(f"multiset takes at most 256 variables, not {len(pieces)}")
    return app_arg("^^;" + ";".join(pieces))


def file_vars(variables: Mapping[str, object]) -> str:
    """The ``{name=value,...}`` block in front of a file path, for that file only (``{volume=2}x.wav``).

    ``switch_core_file_open`` parses it with ``switch_event_create_brackets``
    (``,`` split, then ``=``, each piece cleaned) into the file handle's
    parameters. Names and values as in :func:`originate_vars`; ``${`` is
    refused. Not for an api argument: put the whole application argument
    through :func:`app_arg`. Returns ``""`` for no variables.
    """
    pairs, _ = _entries(variables, "file variables", nested_ok=False)
    if not pairs:
        return ""
    entries = [_escape(f"{n}={_escape(v, '=', _value_breaks(v))}", ",") for n, v in pairs]
    return "{" + ",".join(_balance(entries, "{", "}", ",")) + "}"


def file_string(paths: "list[str] | tuple[str, ...]") -> str:
    """``file_string://a!b!c``: several files played one after the other as one file.

    mod_dptools splits the text on ``!`` with ``switch_separate_string`` (each
    piece cleaned: quotes, backslash escapes); every path arrives literally.
    :class:`ValueError` for an empty list, an empty path or CR/LF/NUL.
    """
    if not paths:
        raise ValueError("file_string needs at least one path")
    pieces = []
    for path in paths:
        text = _text(path, "file path")
        if not text:
            raise ValueError("empty file path")
        pieces.append(_escape(text, "!"))
    return "file_string://" + "!".join(pieces)
