"""Recording a call in the background: start with options, stop (now or later), mask, pause.

``uuid_record <uuid> start|stop|mask|unmask|pause|resume <path>`` where ``api``
is allowed; the ``record_session`` family of applications otherwise.
"""

from __future__ import annotations

from typing import Any, Mapping

from esl.channel.control import Control, _task_id
from esl.commands import check_line
from esl.escaping import file_vars

__all__ = ["Recording"]


_URL = {c: f"%{ord(c):02X}" for c in " \t'\"\\%$"}


def _path(path: str) -> str:
    check_line(path, "record path")
    if not path or " " in path or path.startswith("{"):
        raise ValueError(f"invalid record path {path!r}")
    return path


def _one(path: str) -> str:
    if _path(path) == "all":
        raise ValueError("give the recording's path: FreeSWITCH masks and pauses one recording at a time")
    return path


class Recording(Control):
    """The recording verbs; mixed into :class:`esl.channel.Channel`."""

    __slots__ = ()

    async def record(self, path: str, time_limit: int | None = None, *, rx_only: bool = False,
                     stereo: bool = False, sample_rate: int | None = None,
                     variables: Mapping[str, object] | None = None) -> Any:
        """Start recording the call to ``path`` in the background (until :meth:`stop_record` or hangup).

        ``time_limit``: seconds. ``rx_only``: only what the caller says
        (``RECORD_READ_ONLY``); ``stereo``: caller left, FreeSWITCH right
        (``RECORD_STEREO``); ``sample_rate``: e.g. 16000 (``record_sample_rate``).
        ``variables``: further recording variables (``RECORD_APPEND``,
        ``RECORD_TITLE``...). These apply to this recording only: they are
        passed as the recording's ``{...}`` variables, escaped (any text).
        """
        _path(path)
        opts: dict[str, object] = {}
        if rx_only:
            opts["RECORD_READ_ONLY"] = "true"
        if stereo:
            opts["RECORD_STEREO"] = "true"
        if sample_rate is not None:
            if int(sample_rate) <= 0 or int(sample_rate) % 8000:
                raise ValueError(f"sample_rate must be a positive multiple of 8000, not {sample_rate!r}")
            opts["record_sample_rate"] = int(sample_rate)
        opts.update(variables or {})
        # FreeSWITCH space-splits the argument (cleaning quotes and escapes), url-decodes the
        # {...} block, then parses it: what the split would touch is %-encoded
        block = "".join(_URL.get(c, c) for c in file_vars(opts))
        self._check_alive()
        if self._own() or not self.connection.full_control:
            # the application takes its limit as "+<seconds>" (a bare second word would be its variables)
            arg = path if time_limit is None else f"{path} +{int(time_limit)}"
            return await self.execute("record_session", f"{arg} {block}" if block else arg)
        limit = "" if time_limit is None else f" {int(time_limit)}"
        if block:
            limit = f" {int(time_limit or 0)} {block}"
        return await self._api(f"uuid_record {self.uuid} start {path}{limit}")

    async def stop_record(self, path: str = "all", *, delay: float | None = None) -> Any:
        """Stop a recording started with :meth:`record` (``"all"``: every one).

        ``delay``: in that many seconds instead (``sched_api`` running
        ``uuid_record <uuid> stop``; returns the task id, which
        :meth:`sched_del` cancels). A delayed stop needs ``api``.
        """
        _path(path)
        self._check_alive()
        if delay is not None:
            if not self.connection.full_control:
                raise self._no_api("stop_record(delay=)")
            if delay < 0:
                raise ValueError("a delay cannot be negative")
            reply = await self._api(f"sched_api +{int(round(delay))} {self.uuid} uuid_record {self.uuid} stop {path}")
            return _task_id(reply)
        if self._own() or not self.connection.full_control:
            return await self.execute("stop_record_session", path)
        return await self._api(f"uuid_record {self.uuid} stop {path}")

    async def mask_record(self, path: str, mask: bool = True) -> Any:
        """Replace the audio written to recording ``path`` by silence (``mask=False``: resume).

        For card numbers and the like: ``uuid_record <uuid> mask|unmask <path>``,
        or ``record_session_mask`` / ``record_session_unmask``. ``path`` is the
        recording's exact path (FreeSWITCH has no "all" here).
        """
        _one(path)
        self._check_alive()
        if self._own() or not self.connection.full_control:
            return await self.execute("record_session_mask" if mask else "record_session_unmask", path)
        return await self._api(f"uuid_record {self.uuid} {'mask' if mask else 'unmask'} {path}")

    async def unmask_record(self, path: str) -> Any:
        """Undo :meth:`mask_record`."""
        return await self.mask_record(path, mask=False)

    async def pause_record(self, path: str, pause: bool = True) -> Any:
        """Stop writing to recording ``path`` for a while (``pause=False``: resume).

        ``uuid_record <uuid> pause|resume <path>``, or ``record_session_pause`` / ``_resume``
        (``path`` exact, as for :meth:`mask_record`).
        """
        _one(path)
        self._check_alive()
        if self._own() or not self.connection.full_control:
            return await self.execute("record_session_pause" if pause else "record_session_resume", path)
        return await self._api(f"uuid_record {self.uuid} {'pause' if pause else 'resume'} {path}")
