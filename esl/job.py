"""``Job``: the future result of one ``bgapi`` command.

FreeSWITCH runs a ``bgapi`` command in its own thread and reports the output
later in a ``BACKGROUND_JOB`` event carrying the job's ``Job-UUID``
(ESL-PROTOCOL.md §1.10). The library picks that UUID itself and registers the
Job before the command is written, so the result can never arrive "too early".

>>> job = await client.bgapi("originate user/1000 &park")   # doctest: +SKIP
>>> print(job.uuid)                                        # doctest: +SKIP
>>> text = await job            # "+OK <uuid>\\n", or CommandError on -ERR    # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
from types import EllipsisType
from typing import TYPE_CHECKING, Any, Callable, Generator

from esl.exceptions import CommandError, TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from esl.channel import Channel

__all__ = ["Job"]

_ERROR_PREFIXES = ("-ERR", "-USAGE")


class Job:
    """The future of one ``bgapi`` call.

    * ``uuid`` — the ``Job-UUID`` (chosen by the client), ``command`` — what ran;
    * ``done()`` — whether the result (or a failure) is in;
    * ``result`` — the output text (``None`` while pending), ``success`` — True
      when the output does not start with ``-ERR``/``-USAGE``;
    * ``event`` — the ``BACKGROUND_JOB`` event itself;
    * ``await job`` — the output text, or :class:`~esl.exceptions.CommandError`
      on ``-ERR``; it waits at most ``job.timeout`` seconds (``None``: no limit);
    * ``await job.wait(timeout)`` — the same with an explicit timeout.

    The ``AsyncResult`` names switchio users know: ``ready()``,
    ``successful()``, ``await job.get(timeout=None)``. A job that placed a
    call links to it: ``job.channel`` (the :class:`~esl.channel.Channel` made
    by ``Channel.create``) and ``job.session_uuid`` (the UUID in the
    originate's ``+OK <uuid>``).

    If the connection drops first, waiting raises
    :class:`~esl.exceptions.ConnectionError`.
    """

    __slots__ = ("uuid", "command", "timeout", "event", "channel", "_future", "__weakref__")

    def __init__(
        self,
        uuid: str,
        command: str,
        *,
        timeout: float | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.uuid = uuid
        self.command = command
        self.timeout = timeout
        self.event: Any = None
        #: the Channel this job placed (set by ``Channel.create``), else None
        self.channel: Channel | None = None
        self._future: asyncio.Future[Any] = (loop or asyncio.get_running_loop()).create_future()

    # -- state --------------------------------------------------------------

    def done(self) -> bool:
        """True once the result arrived or the job failed."""
        return self._future.done()

    @property
    def result(self) -> str | None:
        """The output of the command (the BACKGROUND_JOB body), ``None`` until it arrives."""
        if self.event is None:
            return None
        return self.event.body or ""

    @property
    def success(self) -> bool:
        """True when the output arrived and does not start with ``-ERR`` or ``-USAGE``."""
        text = self.result
        return text is not None and not text.startswith(_ERROR_PREFIXES)

    def ready(self) -> bool:
        """True once the job is done (AsyncResult name for :meth:`done`)."""
        return self._future.done()

    def successful(self) -> bool:
        """True once the job is done and its output is not ``-ERR``/``-USAGE`` (False while pending)."""
        return self._future.done() and self.exception() is None

    @property
    def session_uuid(self) -> str | None:
        """The UUID of the call an ``originate`` placed (its ``+OK <uuid>``); None otherwise or while pending."""
        text = self.result
        if not text or not text.startswith("+OK") or not self.command.lstrip().startswith("originate"):
            return None
        parts = text[3:].split()
        return parts[0] if parts else None

    async def get(self, timeout: float | None = None) -> str:
        """The output text (AsyncResult ``get``): ``await job.get(5)``; ``None`` waits without limit.

        :class:`~esl.exceptions.CommandError` on ``-ERR``,
        :class:`~esl.exceptions.TimeoutError` after ``timeout`` (the job goes on).
        """
        return await self.wait(timeout)

    def exception(self) -> BaseException | None:
        """The error waiting would raise (CommandError, ConnectionError...), or ``None``."""
        if not self._future.done():
            return None
        if self._future.cancelled():
            return asyncio.CancelledError()
        exc = self._future.exception()
        if exc is not None:
            return exc
        if not self.success:
            return CommandError(self.result or "", self.command)
        return None

    def add_done_callback(self, fn: Callable[["Job"], Any]) -> None:
        """Call ``fn(job)`` once the job is done (from the event loop)."""
        self._future.add_done_callback(lambda _f: fn(self))

    def cancel(self) -> bool:
        """Stop waiting for the result (FreeSWITCH still runs the command)."""
        return self._future.cancel()

    # -- resolution (called by the protocol) --------------------------------

    def _resolve(self, event: Any) -> None:
        if not self._future.done():
            self.event = event
            self._future.set_result(event)

    def _fail(self, exc: BaseException) -> None:
        fut = self._future
        if not fut.done():
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: nobody may ever await a failed job

    # -- waiting ------------------------------------------------------------

    def _outcome(self) -> str:
        exc = self._future.exception()
        if exc is not None:
            raise exc
        text = self.result or ""
        if text.startswith(_ERROR_PREFIXES):
            raise CommandError(text, self.command)
        return text

    async def wait(self, timeout: float | None | EllipsisType = ...) -> str:
        """The output text; ``CommandError`` on ``-ERR``, ``esl.exceptions.TimeoutError`` after ``timeout``.

        ``timeout`` defaults to ``job.timeout``; ``None`` waits without limit
        (a dropped connection still ends the wait with ``ConnectionError``).
        Timing out does not cancel the job: it can be awaited again.
        """
        limit = self.timeout if isinstance(timeout, EllipsisType) else timeout
        if not self._future.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._future), limit)
            except asyncio.TimeoutError:
                if self._future.done():
                    return self._outcome()
                raise TimeoutError(f"background job {self.uuid} ({self.command!r}) not done after {limit}s") from None
        return self._outcome()

    def __await__(self) -> Generator[Any, None, str]:
        return self.wait().__await__()

    def __repr__(self) -> str:
        if not self._future.done():
            state = "pending"
        elif self._future.cancelled():
            state = "cancelled"
        elif self._future.exception() is not None:
            state = f"failed: {type(self._future.exception()).__name__}"
        else:
            state = "ok" if self.success else "error"
        return f"<Job {self.uuid} {self.command!r} {state}>"
