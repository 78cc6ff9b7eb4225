"""Placing a call: the ``originate`` dial string and its variables, escaped as FreeSWITCH parses them."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Mapping

from esl.commands import check_line
from esl.escaping import originate_app, originate_arg, originate_vars
from esl.exceptions import CommandError, ConnectionError, TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from esl.channel import Channel
    from esl.job import Job

__all__ = ["originate_command", "kill_orphan"]

log = logging.getLogger("esl.channel")


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
    """The text after ``bgapi``: ``originate {vars}<dial_path> <app>`` with ``origination_uuid=<uuid>``.

    The ``{...}`` block is built by :func:`esl.escaping.originate_vars`: every
    value reaches the channel literally, none can end the block or change the
    dial string. ``ValueError`` for names FreeSWITCH would not store as given,
    values it would change (see there), and a dial path or app with CR/LF or spaces.
    """
    check_line(dial_path, "dial path")
    check_line(app, "originate application")
    path = dial_path.strip()
    if not path or any(c in path for c in " '\\\0") or ":_:" in path:
        # the api argument split would alter quotes and backslashes; ":_:" switches originate's parser
        raise ValueError(f"invalid dial path {dial_path!r}")
    app_text = _app(app.strip())
    pairs: dict[str, object] = {}
    for name, value in (variables or {}).items():
        if isinstance(name, str) and name.lower() == "origination_uuid":
            log.warning("Channel.create: ignoring user variable origination_uuid (the UUID is chosen by esl)")
            continue
        pairs[name] = value
    if caller_id_number is not None:
        pairs["origination_caller_id_number"] = caller_id_number
    if caller_id_name is not None:
        pairs["origination_caller_id_name"] = caller_id_name
    if timeout is not None:
        pairs["originate_timeout"] = str(max(1, int(round(timeout))))
    pairs["origination_uuid"] = uuid
    return f"originate {originate_vars(pairs)}{path} {app_text}"


def _app(app: str) -> str:
    """What the answered leg runs: ``&app(arg)`` or ``<extension> [<dialplan> [<context>]]``, escaped."""
    m = re.fullmatch(r"&([A-Za-z0-9_-]+)(?:\((.*)\))?", app, re.S)
    if m:
        return originate_app(m[1], m[2])
    parts = app.split()
    if not 1 <= len(parts) <= 3:
        raise ValueError(f"invalid originate application {app!r}: '&app(arg)' or '<extension> [dialplan [context]]'")
    return " ".join(originate_arg(p) for p in parts)


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
