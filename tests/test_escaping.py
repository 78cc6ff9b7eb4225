"""esl.escaping against tests/fsparse.py, a port of FreeSWITCH's own parsers.

The property tests feed arbitrary text through the escaping functions and then
through the port of the C code the switch runs on the same text, and require the
exact value back, with the rest of the command unchanged.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).parent))

import fsparse

from esl.escaping import (
    app_arg,
    check_variable_name,
    dial_string_leg_vars,
    multiset_app_arg,
    originate_app,
    originate_arg,
    originate_vars,
    set_app_arg,
    setvar_multi_arg,
    setvar_value,
)

UUID = "8b1f0c54-6d5e-4f3a-9c2b-1a2b3c4d5e6f"
NASTY = list("{}[]<>,'\"\\ =^|;:_$%\t\x01\x02\x0b") + ["ARRAY::", "${", ":_:", "origination_nested_vars=true"]

# Text FreeSWITCH can carry in a variable: anything but CR, LF and NUL, with the
# characters its parsers treat specially drawn often.
chars = st.one_of(
    st.sampled_from(NASTY),
    st.characters(blacklist_characters="\r\n\0", blacklist_categories=("Cs",)),
)
any_text = st.lists(chars, max_size=30).map("".join).filter(lambda t: "\r" not in t and "\n" not in t and "\0" not in t)
values = any_text.filter(lambda t: t != "" and not t.startswith("ARRAY::") and not re.search(r"\$\\*\{", t))
names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,20}", fullmatch=True)


def unique_ci(d: Mapping[str, str]) -> bool:
    return len({k.lower() for k in d}) == len(d)


var_maps = st.dictionaries(names, values, min_size=1, max_size=6).filter(unique_ci)

# ESL_ESCAPING_EXAMPLES=5000 for a deep run; the default keeps the suite fast.
EXAMPLES = int(os.environ.get("ESL_ESCAPING_EXAMPLES", "150"))


def parse_originate(text: str) -> tuple[fsparse.Originate, list[str]]:
    return fsparse.originate_api(text)


# --- the model reproduces the bugs of issue 8 ------------------------------------------------------


def _old_block(variables: dict[str, str]) -> str:
    """The originate block as esl.channel built it before esl.escaping (commas escaped, spaces quoted)."""
    def q(text: str) -> str:
        text = text.replace(",", "\\,")
        if " " in text or "'" in text:
            text = "'" + text.replace("'", "\\'") + "'"
        return text
    return "{" + ",".join(f"{k}={q(v)}" for k, v in variables.items()) + "}"


def test_model_reproduces_caller_id_breakout() -> None:
    o, _ = parse_originate(_old_block({"origination_caller_id_name": "}sofia/gateway/evil/900",
                                       "origination_uuid": UUID}) + "loopback/9003 &park")
    # the dial string now starts at the value; origination_uuid is lost
    assert o.groups[0][0].chan_type == "sofia" and o.groups[0][0].chan_data == "gateway/evil/900"
    assert "origination_uuid" not in o.channel_variables()


def test_model_reproduces_open_brace_parse_error() -> None:
    with pytest.raises(fsparse.ParseError):
        parse_originate(_old_block({"x": "{"}) + "loopback/9003 &park")


def test_model_reproduces_trailing_backslash_swallow() -> None:
    o, _ = parse_originate("{a=x\\\\,b=2}loopback/9003 &park")
    assert o.channel_variables() == {"a": "x,b=2"}


def test_model_reproduces_vanishing_quotes() -> None:
    o, _ = parse_originate(_old_block({"x": "it''s"}) + "loopback/9003 &park")
    assert o.channel_variables()["x"] != "it''s"


def test_model_reproduces_separator_override() -> None:
    o, _ = parse_originate("{^^;a=1,b=2;c=3}loopback/9003 &park")
    assert o.channel_variables() == {"a": "1,b=2", "c": "3"}


# --- originate_vars -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [
    "}sofia/gateway/evil/900",
    "{",
    "}",
    "}{",
    "x\\",
    "\\",
    "\\\\",
    "it''s",
    "'",
    "''",
    '"quoted"',
    "a,b",
    " lead",
    "trail ",
    "  ",
    "\t",
    "a=b=c",
    "^^;x",
    "^^,",
    "[x]",
    "<x>",
    "a|b",
    "a:_:b",
    "x:_:",
    "origination_nested_vars=true",
    "ORIGINATION_NESTED_VARS=TRUE",
    "héllo wörld ☃ 🎉",
    '{"json": [1, 2, {"k": "v\\"q"}], "s": "a,b"}',
    "\\'",
    "\\n\\t\\s",
    "$",
    "$$",
    "\x01\x02\x0b",
    "&park",
    "%[x=1]",
])
def test_nasty_values_round_trip(value: str) -> None:
    variables = {"x": value, "origination_uuid": UUID, "origination_caller_id_name": value}
    o, rest = parse_originate(originate_vars(variables) + "loopback/9003 &park")
    assert o.channel_variables() == variables
    assert [[(p.chan_type, p.chan_data) for p in g] for g in o.groups] == [[("loopback", "9003")]]
    assert rest == ["&park"]
    assert o.check_vars


def test_block_has_no_raw_space_or_quote() -> None:
    text = originate_vars({"a": " x 'y' ", "b": "c d"})
    assert " " not in text
    assert re.search(r"(?<!\\)'", text) is None


def test_empty_mapping_gives_empty_block() -> None:
    assert originate_vars({}) == ""


def test_non_str_values() -> None:
    o, _ = parse_originate(originate_vars({"a": 5, "b": 2.5, "c": True, "d": False}) + "loopback/9003 &park")
    assert o.channel_variables() == {"a": "5", "b": "2.5", "c": "true", "d": "false"}


@given(var_maps)
@settings(max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])
@example({"caller_id_name": "}sofia/gateway/evil/900"})
@example({"a": "\\", "b": "x"})
def test_property_originate_round_trip(variables: dict[str, str]) -> None:
    o, rest = parse_originate(originate_vars(variables) + "sofia/x/y &park")
    assert o.channel_variables() == variables
    assert [[(p.chan_type, p.chan_data, p.local) for p in g] for g in o.groups] == [[("sofia", "x/y", None)]]
    assert rest == ["&park"]


@given(var_maps, var_maps, var_maps)
@settings(max_examples=max(10, EXAMPLES // 3), suppress_health_check=[HealthCheck.too_slow])
def test_property_leg_vars_round_trip(glob: dict[str, str], leg1: dict[str, str], leg2: dict[str, str]) -> None:
    leg1 = {k: v for k, v in leg1.items() if "\x01" not in v}
    leg2 = {k: v for k, v in leg2.items() if "\x01" not in v}
    text = (originate_vars(glob) + dial_string_leg_vars(leg1) + "sofia/x/y,"
            + dial_string_leg_vars(leg2) + "loopback/1|user/1000 &park")
    o, rest = parse_originate(text)
    assert rest == ["&park"]
    assert [[(p.chan_type, p.chan_data) for p in g] for g in o.groups] == [
        [("sofia", "x/y"), ("loopback", "1")], [("user", "1000")]]
    assert o.var_event.as_dict() == glob
    got1 = o.groups[0][0].local.as_dict() if o.groups[0][0].local else {}
    got2 = o.groups[0][1].local.as_dict() if o.groups[0][1].local else {}
    assert got1 == leg1 and got2 == leg2


def test_leg_vars_refuse_x01() -> None:
    with pytest.raises(ValueError, match="x01"):
        dial_string_leg_vars({"a": "x\x01y"})


def test_nested_vars_allow_variable_references() -> None:
    variables = {"origination_nested_vars": "true", "x": "${caller_id_number}", "y": "$\\{z}"}
    o, _ = parse_originate(originate_vars(variables) + "loopback/9003 &park")
    assert not o.check_vars
    assert o.channel_variables() == variables


@pytest.mark.parametrize("value", ["${x}", "a${b}c", "$\\{x}", "$$\\\\{x}"])
def test_variable_reference_refused_without_nested(value: str) -> None:
    # FreeSWITCH would drop the variable ("Invalid data (${x} contains a variable)")
    o, _ = parse_originate("{x=" + value.replace("\\", "\\\\") + "}loopback/9003 &park")
    assert "x" not in o.channel_variables()
    with pytest.raises(ValueError, match=r"\$\{"):
        originate_vars({"x": value})


@pytest.mark.parametrize("value", ["", "ARRAY::a|:b", "ARRAY::x", "a\nb", "a\rb", "a\0b"])
def test_values_freeswitch_cannot_carry_refused(value: str) -> None:
    with pytest.raises(ValueError):
        originate_vars({"x": value})
    with pytest.raises(ValueError):
        dial_string_leg_vars({"x": value})


def test_model_shows_why_empty_and_array_refused() -> None:
    o, _ = parse_originate("{x=ARRAY::abc,y=a}loopback/9003 &park")
    assert o.channel_variables()["x"] == "abc"  # the prefix is eaten
    o, _ = parse_originate("{x=,y=a}loopback/9003 &park")
    assert "x" not in o.channel_variables()


@pytest.mark.parametrize("name", ["", "^^;x", "a b", " a", "a=b", "a,b", "x[1]", "a{", "a}", "a'b", "a\\b",
                                  "a:_:b", "-x", ".x", "a\nb", "a\0b", "é"])
def test_bad_names_refused(name: str) -> None:
    with pytest.raises(ValueError):
        originate_vars({name: "v"})
    with pytest.raises(ValueError):
        check_variable_name(name)


def test_case_duplicates_refused() -> None:
    with pytest.raises(ValueError, match="same FreeSWITCH variable"):
        originate_vars({"Foo": "1", "foo": "2"})


def test_type_errors() -> None:
    with pytest.raises(TypeError):
        originate_vars({"a": None})
    with pytest.raises(TypeError):
        originate_vars({"a": b"x"})
    with pytest.raises(TypeError):
        originate_vars([("a", "b")])  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        check_variable_name(5)  # type: ignore[arg-type]


def test_name_with_separator_override_would_have_changed_parsing() -> None:
    # what the refused name would have done: ^^; at the start of the block makes ';' the separator
    o, _ = parse_originate("{^^;x=1,origination_uuid=" + UUID + "}loopback/9003 &park")
    assert "origination_uuid" not in o.channel_variables()


# --- uuid_setvar ----------------------------------------------------------------------------------


setvar_values = any_text.filter(lambda t: t != "" and not t.startswith("ARRAY::"))


@given(names, setvar_values)
@settings(max_examples=EXAMPLES)
@example("x", " a ")
@example("x", "\\")
@example("x", "a\x0b")
def test_property_setvar_round_trip(name: str, value: str) -> None:
    assert fsparse.uuid_setvar_api(f"{UUID} {name} {setvar_value(value)}") == (UUID, name, value)


@pytest.mark.parametrize("value", ["it's", "'quoted'", "a\\", "\\'", "  two  ", "\t", "${x}", "a b c", "\\n"])
def test_setvar_literal(value: str) -> None:
    assert fsparse.uuid_setvar_api(f"{UUID} x {setvar_value(value)}")[2] == value


def test_setvar_model_shows_the_bug() -> None:
    assert fsparse.uuid_setvar_api(f"{UUID} x 'a' ")[2] == "a"
    assert fsparse.uuid_setvar_api(f"{UUID} x  pad  ")[2] == "pad"
    assert fsparse.uuid_setvar_api(f"{UUID} x a\\nb")[2] == "a\nb"


@pytest.mark.parametrize("value", ["", "ARRAY::a|:b", "a\nb", "a\rb", "a\0b"])
def test_setvar_refusals(value: str) -> None:
    with pytest.raises(ValueError):
        setvar_value(value)


# --- application arguments -----------------------------------------------------------------------

app_texts = st.lists(st.one_of(st.sampled_from(list("$\\'{}%[") + ["${x}", "$${y}", "\\$", "\\'"]), chars),
                     max_size=25).map("".join).filter(
    lambda t: "\0" not in t and not (t.startswith("%") and (t[1:2] == "[" or t[2:3] == "[")))


@given(app_texts)
@settings(max_examples=EXAMPLES)
@example("${system(rm -rf /)}")
@example("\\$$")
def test_property_app_arg_reaches_app_literally(text: str) -> None:
    assert fsparse.execute_app_arg(app_arg(text)) == (None, text)


def test_app_arg_plain_text_unchanged() -> None:
    assert app_arg("/tmp/a file.wav") == "/tmp/a file.wav"
    assert app_arg("cost $5") == "cost $5"


def test_app_arg_model_shows_expansion() -> None:
    with pytest.raises(fsparse.Substitution):
        fsparse.execute_app_arg("${uuid_kill(x)}")
    assert fsparse.execute_app_arg("a\\'b")[1] == "ab"


@pytest.mark.parametrize("text", ["%[x=1]f.wav", "%,[x=1]f.wav", "a\0b"])
def test_app_arg_refusals(text: str) -> None:
    with pytest.raises(ValueError):
        app_arg(text)


@given(names, values.filter(lambda t: "\0" not in t), st.booleans())
@settings(max_examples=EXAMPLES)
@example("x", "${x}", False)
@example("x", "\\\\$", False)
def test_property_set_app_stores_literally(name: str, value: str, dollar: bool) -> None:
    if dollar:
        value = "${" + value + "}"
    assert fsparse.set_app(set_app_arg(name, value)) == (name, value)


def test_set_app_refusals() -> None:
    for value in ("", "ARRAY::a", "a\nb"):
        with pytest.raises(ValueError):
            set_app_arg("x", value)
    with pytest.raises(ValueError):
        set_app_arg("a=b", "c")


# --- the originate's own arguments: &app(arg), extension/dialplan/context -----------------------

originate_app_args = app_texts.filter(lambda t: ")" not in t and "\\'" not in t and "\r" not in t and "\n" not in t)


@given(originate_app_args)
@settings(max_examples=EXAMPLES)
@example("a b 'c' \\ ${uuid_kill x} $${domain} ((")
@example(" edge ")
@example("")
def test_property_originate_app_reaches_app_literally(arg: str) -> None:
    _, rest = parse_originate(originate_vars({"a": "b"}) + "sofia/x/y " + originate_app("log", arg))
    assert len(rest) == 1
    app, data = fsparse.originate_exten(rest[0])
    assert app == "log" and data is not None
    assert fsparse.execute_app_arg(data) == (None, arg)


def test_originate_app_without_arg() -> None:
    assert originate_app("park") == "&park"
    _, rest = parse_originate("sofia/x/y " + originate_app("park"))
    assert fsparse.originate_exten(rest[0]) == ("park", None)


@pytest.mark.parametrize("app, arg", [("log", "a)b"), ("log", "a\\'b"), ("log", "a\nb"), ("log", "%[x=1]y"),
                                      ("bad app", "x"), ("", "x"), ("a(b", "x"), ("a)", None)])
def test_originate_app_refusals(app: str, arg: str | None) -> None:
    with pytest.raises(ValueError):
        originate_app(app, arg)


def test_model_refuses_backslash_quote_in_app_data() -> None:
    with pytest.raises(fsparse.ParseError):
        fsparse.originate_exten("&log(a\\'b)")


@given(st.lists(any_text.filter(lambda t: t != "" and t.lower() != "undef" and not t.startswith("&")),
                min_size=1, max_size=5))
@settings(max_examples=EXAMPLES)
def test_property_originate_args_literal(args: list[str]) -> None:
    _, rest = parse_originate("sofia/x/y " + " ".join(originate_arg(a) for a in args))
    assert rest == args


@pytest.mark.parametrize("text", ["", "undef", "UNDEF", "&park", "a\nb"])
def test_originate_arg_refusals(text: str) -> None:
    with pytest.raises(ValueError):
        originate_arg(text)


def test_nested_vars_text_inside_a_value_does_not_count() -> None:
    variables = {"a": "origination_nested_vars=true"}
    o, _ = parse_originate(originate_vars(variables) + "loopback/9003 &park")
    assert o.check_vars and o.channel_variables() == variables
    with pytest.raises(ValueError, match=r"\$\{"):
        originate_vars({"a": "origination_nested_vars=true", "x": "${y}"})


def test_too_many_variables_refused() -> None:
    many = {f"v{i}": "x" for i in range(1022)}
    many["v0"], many["v1021"] = "}", "{"  # both balancing pieces are needed: 1024 pieces in all
    o, _ = parse_originate(originate_vars(many) + "loopback/9003 &park")
    assert o.channel_variables() == many
    many["v1022"] = "x"
    with pytest.raises(ValueError, match="at most"):
        originate_vars(many)


# --- uuid_setvar_multi and multiset ----------------------------------------------------------------


@given(var_maps)
@settings(max_examples=EXAMPLES)
@example({"a": "x\t", "b": " y "})
@example({"a": "v\x0b"})
def test_property_setvar_multi_round_trip(variables: dict[str, str]) -> None:
    assert fsparse.uuid_setvar_multi_api(f"{UUID} {setvar_multi_arg(variables)}") == (UUID, variables)


def test_setvar_multi_refusals() -> None:
    for bad in ({}, {"x": "${y}"}, {"x": ""}, {"x": "ARRAY::a"}, {f"v{i}": "x" for i in range(65)}):
        with pytest.raises(ValueError):
            setvar_multi_arg(bad)


def test_setvar_multi_model_drops_variable_references() -> None:
    assert fsparse.uuid_setvar_multi_api(f"{UUID} a=1;x=${{y}}") == (UUID, {"a": "1"})


set_values = any_text.filter(lambda t: t != "" and not t.startswith("ARRAY::"))


@given(st.dictionaries(names, set_values, min_size=1, max_size=6).filter(unique_ci))
@settings(max_examples=EXAMPLES)
@example({"a": "${x}", "b": "x;y", "c": " z "})
def test_property_multiset_round_trip(variables: dict[str, str]) -> None:
    assert dict(fsparse.multiset_app(multiset_app_arg(variables))) == variables


def test_multiset_refusals() -> None:
    for bad in ({}, {"x": ""}, {"x": "ARRAY::a"}, {"a b": "x"}, {f"v{i}": "x" for i in range(257)}):
        with pytest.raises(ValueError):
            multiset_app_arg(bad)
