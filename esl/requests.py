"""The request/reply half of the command layer: a command written, its reply awaited and measured.

:class:`Requests` is mixed into :class:`esl.connection.Connection` (so into
:class:`~esl.Inbound` and :class:`~esl.Session`): ``send``, ``command``,
``api``, ``bgapi``, ``sendmsg_raw``, ``sendevent`` and ``exit``, each building
its bytes with :mod:`esl.commands` (CR/LF/NUL and a caller's Content-Length
refused before anything is written). Every reply's latency goes into a
histogram per command kind (``stats().command_latency``). A timed-out reply
triggers the FIFO probe of :meth:`esl.protocol.ESLProtocol.probe`.
"""

from __future__ import annotations

import asyncio
import bisect
import uuid as _uuid
from types import EllipsisType
from typing import TYPE_CHECKING, Any

from esl.commands import HeaderItems, build_command, build_sendmsg, check_line, redact
from esl.exceptions import CommandError, ConnectionError, TimeoutError
from esl.job import Job
from esl.stats import LATENCY_BUCKETS, LatencyHistogram

if TYPE_CHECKING:  # pragma: no cover
    from esl.core import Event
    from esl.owners import Owners
    from esl.protocol import ESLProtocol

__all__ = ["Requests", "Timeout"]

_ERROR_PREFIXES = ("-ERR", "-USAGE")
Timeout = float | None | EllipsisType

#: Command words measured under their own name in ``stats().command_latency``; the rest are "other".
_KINDS = frozenset({
    "api", "bgapi", "sendmsg", "event", "nixevent", "noevents", "filter", "sendevent", "log", "nolog",
    "myevents", "divert_events", "linger", "nolinger", "exit", "auth", "userauth", "connect", "getvar",
    "resume",
})


class _Histogram:
    __slots__ = ("counts", "sum", "count")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1

    def snapshot(self) -> LatencyHistogram:
        return LatencyHistogram(tuple(self.counts), self.sum, self.count)


def _kind(command: str) -> str:
    word = command.split(None, 1)[0].lower() if command.strip() else ""
    return word if word in _KINDS else "other"


class Requests:
    """Commands and their replies over the connection's current socket."""

    #: With ``True`` (the default), ``bgapi`` makes sure BACKGROUND_JOB reaches this
    #: connection: it subscribes to it (in the current format) if not subscribed to
    #: it or ALL, and adds ``filter Event-Name BACKGROUND_JOB`` when the connection
    #: has filters (which would otherwise hide it).
    job_subscribe: bool = True

    protocol: "ESLProtocol | None"
    owners: "Owners"
    job_timeout: float | None
    _timeout: float | None
    _latency: dict[str, _Histogram]

    @property
    def full_control(self) -> bool:
        """False where FreeSWITCH refuses ``api``/``bgapi``/``event`` (an outbound socket without ``full``)."""
        return True

    async def _ensure_job_delivery(self, timeout: Timeout) -> None:
        """Make BACKGROUND_JOB reach this connection (see :class:`esl.subscriptions.Subscriptions`)."""

    # -- sending --------------------------------------------------------------------------------

    def _wire(self) -> ESLProtocol:
        proto = self.protocol
        if proto is None or not proto.connected:
            reason = None if proto is None else proto.close_reason
            raise ConnectionError("not connected", reason or "not connected")
        return proto

    async def _request(self, data: bytes, what: str, *, api: bool = False, tag: str | None = None,
                       timeout: Timeout = ...) -> "Event":
        """Write one command and wait for its reply (``TimeoutError``/``ConnectionError``)."""
        proto = self._wire()
        fut = proto.write(data, api=api, tag=tag)
        if timeout is ...:
            timeout = self._timeout
        loop = asyncio.get_running_loop()
        start = loop.time()
        try:
            if timeout is None:
                reply = await fut
            else:
                reply = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            if fut.done() and not fut.cancelled():
                reply = fut.result()
            else:
                self._timed_out(proto)
                raise TimeoutError(f"no reply to {redact(what)!r} within {timeout}s") from None
        kind = _kind(what)
        hist = self._latency.get(kind)
        if hist is None:
            hist = self._latency[kind] = _Histogram()
        hist.observe(loop.time() - start)
        return reply  # type: ignore[no-any-return]

    def _timed_out(self, proto: ESLProtocol) -> None:
        """A reply did not come in time: probe, so a lost reply cannot shift every later one."""
        if not self.full_control:
            return
        fut = proto.probe()
        if fut is not None:
            fut.add_done_callback(_retrieve)

    async def send(
        self,
        command: str,
        *,
        headers: HeaderItems | None = None,
        body: str | bytes | None = None,
        timeout: Timeout = ...,
    ) -> "Event":
        """Send a raw command (with optional headers and body); return the reply Event.

        The reply is the ``command/reply`` (look at ``reply["Reply-Text"]``) or
        the ``api/response`` (``reply.body``); ``-ERR`` is *not* raised here.
        A ``Content-Length`` header is refused (the body sets it).
        """
        data = build_command(command, headers, body)
        return await self._request(data, command, api=_kind(command) == "api", timeout=timeout)

    async def command(self, command: str, *, timeout: Timeout = ...) -> str:
        """Send a command that answers with ``command/reply``; its Reply-Text, ``CommandError`` on ``-ERR``."""
        reply = await self.send(command, timeout=timeout)
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, redact(command))
        return text

    async def api(self, command: str, *, check: bool = True, timeout: Timeout = ...) -> str:
        """Run ``api <command>``; the output text.

        With ``check`` (the default) an output starting with ``-ERR`` or
        ``-USAGE`` raises :class:`~esl.exceptions.CommandError` carrying it;
        ``check=False`` returns it. FreeSWITCH's ``-ERR no reply`` (the text it
        sends when a command printed nothing) comes back as ``""``.
        """
        check_line(command, "api command")
        reply = await self._request(build_command("api " + command), "api " + command, api=True,
                                    timeout=timeout)
        if reply.content_type == "command/reply":  # refused before it ran (e.g. no "full" control)
            text = reply.get("Reply-Text", "")
            if check:
                raise CommandError(text, command)
            return text
        body = reply.body or ""
        if body.startswith("-ERR no reply"):
            return ""
        if check and body.startswith(_ERROR_PREFIXES):
            raise CommandError(body, command)
        return body

    async def bgapi(
        self,
        command: str,
        *,
        job_uuid: str | None = None,
        timeout: Timeout = ...,
        job_timeout: Timeout = ...,
    ) -> Job:
        """Run ``bgapi <command>`` in the background; the :class:`~esl.job.Job` of its result.

        The Job-UUID is chosen here (``job_uuid`` or a random UUID) and the Job
        owned by this connection before the command is written, so the
        BACKGROUND_JOB event cannot be missed. With ``job_subscribe`` (the
        default) the connection is subscribed to BACKGROUND_JOB first if needed,
        and when it has filters, ``filter Event-Name BACKGROUND_JOB`` is added
        (once) so the filters do not hide the result. ``timeout`` bounds the
        wait for the ``+OK Job-UUID`` reply; ``job_timeout`` (default
        ``self.job_timeout``) is the job's deadline: past it the Job fails with
        :class:`~esl.exceptions.TimeoutError` and is forgotten. ``CommandError``
        if FreeSWITCH refuses the command; ``ValueError`` for a Job-UUID already
        pending here.
        """
        check_line(command, "bgapi command")
        job_id = job_uuid or str(_uuid.uuid4())
        check_line(job_id, "job uuid")
        if not job_id or " " in job_id:
            raise ValueError(f"invalid job uuid {job_id!r}")
        if job_id in self.owners.jobs:
            raise ValueError(f"a job with uuid {job_id} is already pending")
        if self.job_subscribe:
            await self._ensure_job_delivery(timeout)
        deadline = self.job_timeout if job_timeout is ... else job_timeout
        job = Job(job_id, command, timeout=deadline, loop=asyncio.get_running_loop())
        self.owners.add_job(job, deadline)
        try:
            reply = await self._request(build_command("bgapi " + command, (("Job-UUID", job_id),)),
                                        "bgapi " + command, tag=job_id, timeout=timeout)
        except BaseException:
            self.owners.remove_job(job_id)
            job.cancel()
            raise
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            self.owners.remove_job(job_id)
            job.cancel()
            raise CommandError(text, "bgapi " + command)
        return job

    async def sendmsg_raw(
        self,
        uuid: str | None,
        headers: HeaderItems,
        body: str | bytes | None = None,
        *,
        timeout: Timeout = ...,
    ) -> "Event":
        """Write ``sendmsg [<uuid>]`` with these headers (and body); the reply Event; ``CommandError`` on -ERR."""
        reply = await self._request(build_sendmsg(uuid, headers, body), "sendmsg", timeout=timeout)
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, f"sendmsg {uuid or ''}".strip())
        return reply

    async def sendevent(
        self,
        name: str,
        headers: HeaderItems | None = None,
        body: str | bytes | None = None,
        *,
        timeout: Timeout = ...,
    ) -> str:
        """``sendevent <name>`` with these headers (and body): fire an event; the reply text (``+OK <uuid>``)."""
        check_line(name, "event name")
        if not name or " " in name:
            raise ValueError(f"invalid event name {name!r}")
        reply = await self.send(f"sendevent {name}", headers=headers, body=body, timeout=timeout)
        text = reply.get("Reply-Text", "")
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, f"sendevent {name}")
        return text

    async def exit(self, *, timeout: Timeout = ...) -> str:
        """``exit``: ask FreeSWITCH to close the connection (it answers ``+OK bye`` then disconnects).

        If FreeSWITCH does not answer in time, the connection is left as it was
        (a later drop is still a failure, not a close by the client).
        """
        proto = self._wire()
        proto.by_client = True
        try:
            reply = await self._request(build_command("exit"), "exit", timeout=timeout)
        except ConnectionError:
            return "+OK bye"
        except BaseException:
            if not proto.closed:
                proto.by_client = False
            raise
        return reply.get("Reply-Text", "")


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()
