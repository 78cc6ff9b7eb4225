"""The fake's core database: the ``channels`` and ``calls`` tables FreeSWITCH keeps from
channel events (switch_core_sqldb.c ``core_event_handler``), and the ``show`` api that reads
them (mod_commands ``show_function``: delim/csv, json and xml layouts, ``count``).

``show channels`` has the 38 columns of the ``channels`` table; ``show calls`` reads the
``basic_calls`` view (41 columns: the A leg, its bridged B leg as ``b_*``, and
``call_created_epoch``), one row per call leader. Rows are filled the way the real table
is: CHANNEL_CREATE inserts, CHANNEL_STATE CS_ROUTING fills the caller-id/destination
columns, CHANNEL_EXECUTE the application, CHANNEL_ANSWER/CODEC the codecs, CALL_UPDATE the
callee, CHANNEL_BRIDGE/UNBRIDGE the calls table, CHANNEL_DESTROY deletes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from esl.testing.calls import FakeChannel

__all__ = ["CALL_COLUMNS", "CHANNEL_COLUMNS", "CoreDB", "show"]

#: The columns of FreeSWITCH's ``channels`` table, in order.
CHANNEL_COLUMNS: tuple[str, ...] = (
    "uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num",
    "ip_addr", "dest", "application", "application_data", "dialplan", "context", "read_codec",
    "read_rate", "read_bit_rate", "write_codec", "write_rate", "write_bit_rate", "secure", "hostname",
    "presence_id", "presence_data", "accountcode", "callstate", "callee_name", "callee_num",
    "callee_direction", "call_uuid", "sent_callee_name", "sent_callee_num", "initial_cid_name",
    "initial_cid_num", "initial_ip_addr", "initial_dest", "initial_dialplan", "initial_context",
)  # fmt: skip

_A_COLUMNS = (
    "uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num", "ip_addr",
    "dest", "presence_id", "presence_data", "accountcode", "callstate", "callee_name", "callee_num",
    "callee_direction", "call_uuid", "hostname", "sent_callee_name", "sent_callee_num",
)  # fmt: skip
_B_COLUMNS = (
    "uuid", "direction", "created", "created_epoch", "name", "state", "cid_name", "cid_num", "ip_addr",
    "dest", "presence_id", "presence_data", "accountcode", "callstate", "callee_name", "callee_num",
    "callee_direction", "sent_callee_name", "sent_callee_num",
)  # fmt: skip

#: The columns of the ``basic_calls`` view (``show calls``), in order.
CALL_COLUMNS: tuple[str, ...] = (*_A_COLUMNS, *("b_" + c for c in _B_COLUMNS), "call_created_epoch")

#: Channel events the table follows (core_event_handler's switch).
WATCHED = frozenset({
    "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_UUID", "CHANNEL_ANSWER", "CHANNEL_PROGRESS_MEDIA",
    "CODEC", "CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_EXECUTE", "CHANNEL_ORIGINATE", "CALL_UPDATE",
    "CHANNEL_CALLSTATE", "CHANNEL_STATE", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE",
})  # fmt: skip

_NO_UPDATE_STATES = frozenset({"CS_NEW", "CS_DESTROY", "CS_REPORTING", "CS_HANGUP", "CS_INIT"})


class _Call:
    __slots__ = ("call_uuid", "callee", "caller", "created", "epoch")

    def __init__(self, call_uuid: str, caller: str, callee: str) -> None:
        now = time.time()
        self.call_uuid = call_uuid
        self.caller = caller
        self.callee = callee
        self.created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))
        self.epoch = str(int(now))


class CoreDB:
    """The ``channels`` and ``calls`` rows of one fake switch (owned by FakeFreeSWITCH: a row
    lives from CHANNEL_CREATE to CHANNEL_DESTROY, a call from BRIDGE to UNBRIDGE/DESTROY)."""

    def __init__(self, switchname: str) -> None:
        self.switchname = switchname
        self.channels: dict[str, dict[str, str]] = {}
        self.calls: dict[str, _Call] = {}  # by caller (A leg) uuid

    def channel_event(self, ch: FakeChannel, name: str, post: Iterable[tuple[str, str]] = ()) -> None:
        """Update the tables for event ``name`` fired by ``ch`` (``post``: its extra headers)."""
        uuid = ch.uuid
        if name == "CHANNEL_CREATE":
            now = time.time()
            new_row = dict.fromkeys(CHANNEL_COLUMNS, "")
            new_row.update(
                uuid=uuid, direction=ch.direction,
                created=time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now)),
                created_epoch=str(int(now)), name=ch.name, state=ch.state, callstate=ch.call_state,
                dialplan=ch.dialplan, context=ch.context, hostname=self.switchname,
                initial_cid_name=ch.caller_id_name, initial_cid_num=ch.caller_id_number,
                initial_ip_addr=ch.network_addr, initial_dest=ch.destination,
                initial_dialplan=ch.dialplan, initial_context=ch.context,
            )  # fmt: skip
            self.channels[uuid] = new_row
            return
        if name == "CHANNEL_DESTROY":
            self.channels.pop(uuid, None)
            self.calls.pop(uuid, None)
            for caller, call in list(self.calls.items()):
                if call.callee == uuid:
                    del self.calls[caller]
            return
        row = self.channels.get(uuid)
        if row is None:
            return
        v = ch.variables
        if name in ("CHANNEL_ANSWER", "CHANNEL_PROGRESS_MEDIA", "CODEC"):
            row.update(
                read_codec=ch.read_codec[0], read_rate=ch.read_codec[1], read_bit_rate=ch.read_codec[2],
                write_codec=ch.write_codec[0], write_rate=ch.write_codec[1], write_bit_rate=ch.write_codec[2],
            )  # fmt: skip
        elif name in ("CHANNEL_HOLD", "CHANNEL_UNHOLD", "CHANNEL_EXECUTE"):
            extra = dict(post)
            row.update(
                application=extra.get("Application", ""), application_data=extra.get("Application-Data", ""),
                presence_id=v.get("presence_id", ""), presence_data=v.get("presence_data", ""),
                accountcode=v.get("accountcode", ""),
            )  # fmt: skip
        elif name == "CHANNEL_ORIGINATE":
            row.update(
                presence_id=v.get("presence_id", ""), presence_data=v.get("presence_data", ""),
                accountcode=v.get("accountcode", ""), call_uuid=v.get("call_uuid", uuid),
            )  # fmt: skip
        elif name == "CALL_UPDATE":
            extra = dict(post)
            row.update(
                callee_name=ch.callee_id_name, callee_num=ch.callee_id_number,
                sent_callee_name=extra.get("Sent-Callee-ID-Name", ""),
                sent_callee_num=extra.get("Sent-Callee-ID-Number", ""),
                callee_direction=extra.get("Direction", ""),
                cid_name=ch.caller_id_name, cid_num=ch.caller_id_number,
            )  # fmt: skip
        elif name == "CHANNEL_CALLSTATE":
            if ch.call_state not in ("DOWN", "HANGUP"):
                row["callstate"] = ch.call_state
        elif name == "CHANNEL_STATE":
            state = ch.state
            if state in _NO_UPDATE_STATES:
                return
            row["state"] = state
            if state == "CS_ROUTING":
                row.update(
                    cid_name=ch.caller_id_name, cid_num=ch.caller_id_number,
                    callee_name=ch.callee_id_name, callee_num=ch.callee_id_number,
                    ip_addr=ch.network_addr, dest=ch.destination, dialplan=ch.dialplan, context=ch.context,
                    presence_id=v.get("presence_id", ""), presence_data=v.get("presence_data", ""),
                    accountcode=v.get("accountcode", ""),
                )  # fmt: skip
        elif name == "CHANNEL_BRIDGE":
            extra = dict(post)
            a = extra.get("Bridge-A-Unique-ID") or uuid
            b = extra.get("Bridge-B-Unique-ID") or ""
            call_uuid = v.get("call_uuid", uuid)
            for leg in (a, b):
                if leg in self.channels:
                    self.channels[leg]["call_uuid"] = call_uuid
            self.calls[a] = _Call(call_uuid, a, b)
        elif name == "CHANNEL_UNBRIDGE":
            call_uuid = v.get("call_uuid", uuid)
            for other in self.channels.values():
                if other["call_uuid"] == call_uuid:
                    other["call_uuid"] = other["uuid"]
            for caller, call in list(self.calls.items()):
                if uuid in (call.caller, call.callee):
                    del self.calls[caller]
        elif name == "CHANNEL_UUID":
            old = dict(post).get("Old-Unique-ID")
            if old and old in self.channels:
                moved = self.channels.pop(old)
                moved["uuid"] = uuid
                self.channels[uuid] = moved

    # -- reading ---------------------------------------------------------------------

    def channel_rows(self) -> list[dict[str, str]]:
        """``select * from channels order by created_epoch``."""
        return sorted(self.channels.values(), key=lambda r: int(r["created_epoch"] or 0))

    def call_rows(self, *, bridged_only: bool = False) -> list[dict[str, str]]:
        """The ``basic_calls`` view: each channel that leads a call, or is in none as its callee,
        joined with its B leg; ordered by call_created_epoch (unbridged first, as NULLs sort)."""
        callees = {c.callee for c in self.calls.values()}
        rows = []
        for a in self.channel_rows():
            call = self.calls.get(a["uuid"])
            if call is None and a["uuid"] in callees:
                continue
            if bridged_only and call is None:
                continue
            b = self.channels.get(call.callee) if call is not None else None
            row = {c: a[c] for c in _A_COLUMNS}
            for c in _B_COLUMNS:
                row["b_" + c] = b[c] if b is not None else ""
            row["call_created_epoch"] = call.epoch if call is not None else ""
            rows.append(row)
        rows.sort(key=lambda r: int(r["call_created_epoch"] or -1))
        return rows


def _xml_text(value: str) -> str:
    """switch_xml_ampencode for element text, with UTF-8 as character references."""
    out = []
    for ch in value:
        if ch == "&":
            out.append("&amp;")
        elif ch == "<":
            out.append("&lt;")
        elif ch == ">":
            out.append("&gt;")
        elif ch == "\r":
            out.append("&#xD;")
        elif ord(ch) > 0x7F:
            out.append(f"&#x{ord(ch):X};")
        else:
            out.append(ch)
    return "".join(out)


def format_rows(rows: list[dict[str, str]], columns: tuple[str, ...], fmt: str, delim: str = ",",
                count: int | None = None) -> str:
    """Rows as show_function prints them: delim/csv (a header line, the rows, ``N total.``),
    json (``{"row_count":N,"rows":[...]}``) or xml (``<result row_count="N">``)."""
    fmt = fmt.lower()
    if fmt in ("delim", "csv"):
        if count is not None:
            return f"\n{count} total.\n"
        if not rows:
            return "\n0 total.\n"
        lines = [delim.join(columns)]
        lines += [delim.join(r[c] for c in columns) for r in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"
    if fmt == "json":
        if count is not None:
            return json.dumps({"row_count": count, "rows": []}, separators=(",", ":"), ensure_ascii=False)
        if not rows:
            return '{"row_count": 0}\n'
        data = {"row_count": len(rows), "rows": [{c: r[c] for c in columns} for r in rows]}
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    if fmt == "xml":
        if count is not None:
            return f'<result row_count="{count}"></result>\n'
        if not rows:
            return '<result row_count="0"/>\n'
        out = [f'<result row_count="{len(rows)}">']
        for i, r in enumerate(rows, 1):
            out.append(f'  <row row_id="{i}">')
            out += [f"    <{c}>{_xml_text(r[c])}</{c}>" for c in columns]
            out.append("  </row>")
        out.append("</result>")
        return "\n".join(out) + "\n"
    return f"-ERR Cannot find format {fmt}\n"


SHOW_USAGE = (
    "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|channels [count|like "
    "<match string>]|calls|detailed_calls|bridged_calls|detailed_bridged_calls|aliases|complete|chat|"
    "management|modules|nat_map|say|interfaces|interface_types|tasks|limits|status\n"
)


def show(db: CoreDB, arg: str) -> str:
    """The ``show`` api for calls / channels / bridged_calls (``count``, ``like``, ``as FMT [DELIM]``)."""
    argv = arg.split(" ")[:6] if arg else []
    argv += [""] * (6 - len(argv))
    command = argv[0]
    if not command:
        return SHOW_USAGE
    fmt = argv[2] if argv[2] and argv[1].lower() == "as" else ""
    delim = ","
    justcount = False
    low = command.lower()
    if low == "calls":
        rows, columns = db.call_rows(), CALL_COLUMNS
        if argv[1].lower() == "count":
            justcount = True
            if argv[2].lower() == "as" and argv[3]:
                fmt = argv[3]
    elif low == "bridged_calls":
        rows, columns = db.call_rows(bridged_only=True), CALL_COLUMNS
    elif low == "channels":
        rows, columns = db.channel_rows(), CHANNEL_COLUMNS
        if argv[1].lower() == "count":
            justcount = True
            if argv[2].lower() == "as" and argv[3]:
                fmt = argv[3]
        elif argv[1].lower() == "like" and argv[2]:
            needle = argv[2].replace("%", "").lower()
            keys = ("uuid", "name", "cid_name", "cid_num", "presence_data", "accountcode")
            rows = [r for r in rows if any(needle in r[k].lower() for k in keys)]
            fmt = argv[4] if argv[3].lower() == "as" and argv[4] else ""
    else:
        return SHOW_USAGE
    if fmt.lower() in ("delim", "csv") and argv[3] and not justcount:
        delim = argv[3]
    return format_rows(rows, columns, fmt or "delim", delim, len(rows) if justcount else None)
