"""Placing a call: the ``originate`` dial string and its variables, escaped as FreeSWITCH parses them."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Mapping

from esl.commands import check_line
from esl.exceptions import CommandError, ConnectionError, TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from esl.channel import Channel
    from esl.job import Job

__all__ = ["originate_command", "quote_var", "kill_orphan"]

log = logging.getLogger("esl.channel")


def quote_var(value: object) -> str:
    """A value for an originate ``{name=value}`` list: commas escaped, spaces single-quoted."""
    text = check_line(value if isinstance(value, str) else str(value), "originate variable value")
    text = text.replace(",", "\\,")
    if " " in text or "'" in text:
        text = "'" + text.replace("'", "\\'") + "'"
    return text


def _check_name(name: str) -> None:
    check_line(name, "originate variable name")
    if not name or any(c in name for c in "=,{}[]<>^' \t\"\\"):
        raise ValueError(f"invalid originate variable name {name!r}")


def originate_command(
    uuid: str,
    dial_path: str,
    variables: Mapping[str, object] | None,
    *,
    caller_id_number: str | None,
    caller_id_name: str | None,
    timeout: float | None,
    app: str,
) -> str:
    """The text after ``bgapi``: ``originate {vars}<dial_path> <app>`` with ``origination_uuid=<uuid>``."""
    check_line(dial_path, "dial path")
    check_line(app, "originate application")
    if not dial_path.strip() or " " in dial_path.strip():
        raise ValueError(f"invalid dial path {dial_path!r}")
    pairs: dict[str, str] = {}
    for name, value in (variables or {}).items():
        _check_name(name)
        if name.lower() == "origination_uuid":
            log.warning("Channel.create: ignoring user variable origination_uuid (the UUID is chosen by esl)")
            continue
        pairs[name] = quote_var(value)
    if caller_id_number is not None:
        pairs["origination_caller_id_number"] = quote_var(caller_id_number)
    if caller_id_name is not None:
        pairs["origination_caller_id_name"] = quote_var(caller_id_name)
    if timeout is not None:
        pairs["originate_timeout"] = str(max(1, int(round(timeout))))
    pairs["origination_uuid"] = uuid
    varlist = ",".join(f"{k}={v}" for k, v in pairs.items())
    return f"originate {{{varlist}}}{dial_path.strip()} {app}"


async def kill_orphan(channel: "Channel", sending: "asyncio.Task[Job]") -> None:
    """``Channel.create`` was cancelled while its originate was on its way: end the call it may place.

    Waits for the ``bgapi originate`` reply and then its result (the Job stays
    owned by the connection meanwhile), and hangs the call up if it was
    placed; the channel then leaves the owners table.
    """
    conn = channel.connection
    try:
        try:
            job = await sending
            await job.wait()
        except (CommandError, ConnectionError, TimeoutError, asyncio.CancelledError, ValueError):
            return  # never placed, or nothing more can be done
        try:
            await conn.api(f"uuid_kill {channel.uuid} ORIGINATOR_CANCEL", check=False)
        except (ConnectionError, TimeoutError):
            pass
    finally:
        channel._unregister()
