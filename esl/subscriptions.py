"""The set-up half of the command layer: subscriptions, filters and socket settings, and re-applying them.

:class:`Subscriptions` keeps what a connection asked FreeSWITCH for
(``event``, ``filter``, ``myevents``, ``divert_events``, ``linger``, ``log``)
so a reconnect can ask again, and does the set-up the library needs on its
own behalf (BACKGROUND_JOB, the channel events, a channel's ``Unique-ID``
filter) one-shot: concurrent callers share one command in flight, none is
sent twice.
"""

from __future__ import annotations

import asyncio
import logging
from types import EllipsisType
from typing import Any, Callable, Iterable

from esl.commands import check_line
from esl.exceptions import CommandError, ConnectionError, TimeoutError
from esl.executor import Executor
from esl.requests import Requests, Timeout

__all__ = ["CHANNEL_EVENTS", "Subscriptions"]

log = logging.getLogger("esl.connection")

#: The events a Channel lives on; subscribed (additively) when a Channel is used on an Inbound.
CHANNEL_EVENTS = (
    "CHANNEL_CREATE", "CHANNEL_DESTROY", "CHANNEL_STATE", "CHANNEL_CALLSTATE", "CHANNEL_ANSWER",
    "CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE", "CHANNEL_EXECUTE", "CHANNEL_EXECUTE_COMPLETE",
    "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_OUTGOING", "CHANNEL_PARK", "CHANNEL_UNPARK", "CHANNEL_ORIGINATE", "CHANNEL_UUID",
    "CHANNEL_HOLD", "CHANNEL_UNHOLD", "DTMF", "PLAYBACK_START", "PLAYBACK_STOP", "RECORD_START",
    "RECORD_STOP", "CALL_UPDATE", "BACKGROUND_JOB",
)


class Subscriptions(Requests):
    """What the connection subscribed to and filtered on, and the commands that change it."""

    executor: Executor

    def _init_subscriptions(self) -> None:
        self._format = "plain"
        self._subs: set[str] = set()
        self._custom: set[str] = set()
        self._filters: list[tuple[str, str]] = []
        self.log_level: str | None = None
        self.myevents_uuid: str | None = None
        self.myevents_enabled = False
        self.divert: bool | None = None
        self.linger_seconds: int | None | EllipsisType = ...  # ... = never set
        self._job_filter = False
        self._bgapi_used = False
        self._inflight: dict[object, asyncio.Future[None]] = {}

    def _update_tracking(self) -> None:
        """Subscriptions or filters changed (the connection decides what it can count)."""

    @property
    def connected(self) -> bool:
        proto = self.protocol
        return proto is not None and proto.connected

    @property
    def filters(self) -> tuple[tuple[str, str], ...]:
        """The ``(header, value)`` filters in force (re-applied on reconnect)."""
        return tuple(self._filters)

    @property
    def subscriptions(self) -> frozenset[str]:
        """The event names subscribed (``"ALL"`` included; CUSTOM subclasses in :attr:`custom_subscriptions`)."""
        return frozenset(self._subs)

    @property
    def custom_subscriptions(self) -> frozenset[str]:
        """The CUSTOM subclasses subscribed."""
        return frozenset(self._custom)

    @property
    def event_format(self) -> str:
        """The event format (``plain``/``json``/``xml``) of the latest subscription."""
        return self._format

    @property
    def job_filter(self) -> bool:
        """True when this connection's filters already let its BACKGROUND_JOB events through."""
        return self._job_filter

    @job_filter.setter
    def job_filter(self, value: bool) -> None:
        self._job_filter = bool(value)

    @property
    def bgapi_used(self) -> bool:
        """True once ``bgapi`` ran here (later filters then keep BACKGROUND_JOB visible)."""
        return self._bgapi_used

    # -- one-shot set-up ------------------------------------------------------------------------

    async def _once(self, key: object, step: Callable[[], Any]) -> None:
        """Run ``step()`` unless the same step is already in flight; then wait for that one."""
        while True:
            fut = self._inflight.get(key)
            if fut is None:
                break
            await asyncio.shield(fut)
            return
        fut = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            await step()
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, Exception) else ConnectionError("set-up interrupted"))
                fut.exception()
            raise
        else:
            if not fut.done():
                fut.set_result(None)
        finally:
            if self._inflight.get(key) is fut:
                del self._inflight[key]

    async def ensure_subscribed(self, names: Iterable[str], timeout: Timeout = ...) -> None:
        """Subscribe to those of ``names`` not yet subscribed (nothing if ALL is), one command at a time."""
        wanted = tuple(n.upper() for n in names)
        while True:
            if "ALL" in self._subs:
                return
            missing = [n for n in wanted if n not in self._subs]
            if not missing:
                return
            if "subscribe" in self._inflight:
                try:
                    await asyncio.shield(self._inflight["subscribe"])
                except Exception:  # noqa: BLE001 - the other caller sees it; we try ourselves
                    pass
                continue

            async def step(missing: list[str] = missing) -> None:
                await self.subscribe(*missing, format=self._format, timeout=timeout)

            await self._once("subscribe", step)

    async def ensure_filter(self, header: str, value: str, timeout: Timeout = ...) -> bool:
        """Add ``filter <header> <value>`` unless it is in force or in flight; True if it is in force now."""
        if (header, value) in self._filters:
            return True

        async def step() -> None:
            if (header, value) not in self._filters:
                await self.filter(header, value, timeout=timeout)

        await self._once(("filter", header, value), step)
        return (header, value) in self._filters

    async def _ensure_job_delivery(self, timeout: Timeout) -> None:
        self._bgapi_used = True
        if not (self._subs & {"ALL", "BACKGROUND_JOB"}):
            await self.ensure_subscribed(("BACKGROUND_JOB",), timeout)
        if self._filters and not self._job_filter:
            await self._ensure_job_filter(timeout)

    async def _ensure_job_filter(self, timeout: Timeout) -> None:
        async def step() -> None:
            if not self._job_filter:
                await self.command("filter Event-Name BACKGROUND_JOB", timeout=timeout)
                self._job_filter = True

        await self._once(("filter", "Event-Name", "BACKGROUND_JOB"), step)

    async def ensure_channel_events(self, uuid: str) -> bool:
        """Make sure the events of channel ``uuid`` reach this connection; True if a filter was added for it.

        The channel events are subscribed once (additively, in the current
        format, unless ALL is); a ``filter Unique-ID <uuid>`` is added only when
        the connection already has filters — adding the first filter would hide
        every other event from the user's handlers.
        """
        await self.ensure_subscribed(CHANNEL_EVENTS)
        if self._filters:
            return await self.ensure_filter("Unique-ID", uuid)
        return False

    async def ensure_custom_events(self, subclasses: Iterable[str], timeout: Timeout = ...) -> None:
        """Subscribe to those CUSTOM ``subclasses`` (``avmd::beep``...) not yet subscribed (nothing if ALL is)."""
        missing = [c for c in subclasses if c not in self._custom]
        if not missing or "ALL" in self._subs:
            return

        async def step() -> None:
            still = [c for c in missing if c not in self._custom]
            if still:
                await self.subscribe(*(f"CUSTOM {c}" for c in still), format=self._format, timeout=timeout)

        await self._once(("custom", *missing), step)

    def release_channel_events(self, uuid: str) -> None:
        """Drop the ``filter Unique-ID <uuid>`` added for a channel that has ended (in the background)."""
        if ("Unique-ID", uuid) not in self._filters or not self.connected:
            return

        async def drop() -> None:
            try:
                await self.filter_delete("Unique-ID", uuid)
            except (ConnectionError, TimeoutError, CommandError):
                pass  # the filter dies with the connection anyway

        self.executor.spawn(drop(), f"dropping the Unique-ID filter of {uuid}")

    # -- subscriptions and filters -----------------------------------------------------------------

    @staticmethod
    def _split_names(names: Iterable[str]) -> tuple[list[str], list[str]]:
        plain: list[str] = []
        custom: list[str] = []
        for name in names:
            check_line(name, "event name")
            words = name.split()
            if not words:
                raise ValueError("empty event name")
            if words[0].upper() == "CUSTOM":
                if len(words) == 1:
                    plain.append("CUSTOM")
                custom.extend(words[1:])
            elif "::" in words[0] or len(words) > 1:
                custom.extend(words)  # subclass names such as sofia::register
            else:
                plain.append(words[0])
        return plain, custom

    async def subscribe(self, *names: str, format: str = "plain", timeout: Timeout = ...) -> str:
        """``event <format> <names...>``: receive these events (all of them when no name is given).

        A name may be ``"CUSTOM sofia::register"`` or just a subclass
        (``"sofia::register"``, anything with ``::``). Subscriptions add up.
        Returns FreeSWITCH's reply text; ``CommandError`` on ``-ERR``.
        """
        if format not in ("plain", "json", "xml"):
            raise ValueError(f"format must be plain, json or xml, not {format!r}")
        plain, custom = self._split_names(names)
        if not plain and not custom:
            plain = ["ALL"]
        parts = ["event", format, *plain]
        if custom:
            parts += ["CUSTOM", *custom]
        text = await self.command(" ".join(parts), timeout=timeout)
        self._format = format
        self._subs.update(n.upper() for n in plain)
        self._custom.update(custom)
        self._update_tracking()
        return text

    async def unsubscribe(self, *names: str, timeout: Timeout = ...) -> str:
        """``nixevent <names...>``; with no name, ``noevents`` (stop all events)."""
        if not names:
            text = await self.command("noevents", timeout=timeout)
            self._subs.clear()
            self._custom.clear()
            self._update_tracking()
            return text
        plain, custom = self._split_names(names)
        parts = ["nixevent", *plain]
        if custom:
            parts += ["CUSTOM", *custom]
        text = await self.command(" ".join(parts), timeout=timeout)
        self._subs.difference_update(n.upper() for n in plain)
        self._custom.difference_update(custom)
        self._update_tracking()
        return text

    async def filter(self, header: str, value: str, *, timeout: Timeout = ...) -> str:
        """``filter <header> <value>``: only events matching a filter are sent (FreeSWITCH's semantics).

        Once bgapi has been used on this connection (and ``job_subscribe`` is
        on), ``filter Event-Name BACKGROUND_JOB`` is added first so that job
        results keep arriving.
        """
        check_line(header, "filter header")
        check_line(value, "filter value")
        if not header or " " in header:
            raise ValueError(f"invalid filter header {header!r}")
        if (
            self.job_subscribe
            and self._bgapi_used
            and not self._job_filter
            and (header, value) != ("Event-Name", "BACKGROUND_JOB")
        ):
            await self._ensure_job_filter(timeout)
        text = await self.command(f"filter {header} {value}", timeout=timeout)
        if (header, value) not in self._filters:
            self._filters.append((header, value))
        if (header, value) == ("Event-Name", "BACKGROUND_JOB"):
            self._job_filter = True
        self._update_tracking()
        return text

    async def filter_delete(self, header: str, value: str | None = None, *, timeout: Timeout = ...) -> str:
        """``filter delete <header> [<value>]`` (``header="all"`` deletes every filter)."""
        check_line(header, "filter header")
        command = f"filter delete {header}"
        if value is not None:
            check_line(value, "filter value")
            command += f" {value}"
        text = await self.command(command, timeout=timeout)
        if header.lower() == "all":
            self._filters.clear()
            self._job_filter = False
        else:
            self._filters = [(h, v) for h, v in self._filters if not (h == header and value in (None, v))]
            if header == "Event-Name" and value in (None, "BACKGROUND_JOB"):
                self._job_filter = False
        self._update_tracking()
        return text

    async def log(self, level: str | int = "debug", *, timeout: Timeout = ...) -> str:
        """``log <level>``: receive log lines as ``log/data`` messages (handlers under ``"log/data"``)."""
        text_level = str(level)
        check_line(text_level, "log level")
        text = await self.command(f"log {text_level}", timeout=timeout)
        self.log_level = text_level
        return text

    async def nolog(self, *, timeout: Timeout = ...) -> str:
        """``nolog``: stop log lines."""
        text = await self.command("nolog", timeout=timeout)
        self.log_level = None
        return text

    async def myevents(self, uuid: str | None = None, format: str = "plain", *, timeout: Timeout = ...) -> str:
        """``myevents [<uuid>] <format>``: the events of one channel (inbound: binds the connection to it)."""
        if format not in ("plain", "json", "xml"):
            raise ValueError(f"format must be plain, json or xml, not {format!r}")
        command = "myevents"
        if uuid is not None:
            check_line(uuid, "uuid")
            if not uuid or " " in uuid:
                raise ValueError(f"invalid uuid {uuid!r}")
            command += f" {uuid}"
        text = await self.command(f"{command} {format}", timeout=timeout)
        self.myevents_enabled = True
        self.myevents_uuid = uuid
        self._format = format
        self._update_tracking()
        return text

    async def divert_events(self, on: bool = True, *, timeout: Timeout = ...) -> str:
        """``divert_events on|off``: input-callback events (DTMF...) only to this socket."""
        text = await self.command(f"divert_events {'on' if on else 'off'}", timeout=timeout)
        self.divert = bool(on)
        return text

    async def linger(self, seconds: int | None = None, *, timeout: Timeout = ...) -> str:
        """``linger <seconds>``: keep the socket open that long after the channel hangs up.

        ``None`` sends a bare ``linger``, which in FreeSWITCH means *forever*: you must then ``exit``.
        """
        if seconds is None:
            command = "linger"
        else:
            if int(seconds) != seconds or seconds < 0:
                raise ValueError("linger seconds must be a non-negative integer")
            command = f"linger {int(seconds)}"
        text = await self.command(command, timeout=timeout)
        self.linger_seconds = seconds
        return text

    async def nolinger(self, *, timeout: Timeout = ...) -> str:
        """``nolinger``."""
        text = await self.command("nolinger", timeout=timeout)
        self.linger_seconds = ...
        return text

    # -- re-applying state on a new socket --------------------------------------------------------

    async def _reapply(self) -> None:
        """Re-issue the subscriptions, filters and settings on the current (new) socket."""
        filters = list(self._filters)
        self._filters = []
        job_filter, self._job_filter = self._job_filter, False
        for header, value in filters:  # filters first, so nothing unfiltered slips in between
            await self.filter(header, value)
        if job_filter and not self._job_filter:
            await self._ensure_job_filter(...)
        names = sorted(self._subs)
        custom = sorted(self._custom)
        if names or custom:
            await self.subscribe(*names, *(f"CUSTOM {c}" for c in custom), format=self._format)
        if self.myevents_enabled:
            try:
                await self.myevents(self.myevents_uuid, self._format)
            except Exception as exc:  # noqa: BLE001 - the channel may be gone
                log.warning("reconnect: myevents %s not re-applied: %s", self.myevents_uuid, exc)
        if self.divert is not None:
            try:
                await self.divert_events(self.divert)
            except Exception as exc:  # noqa: BLE001
                log.warning("reconnect: divert_events not re-applied: %s", exc)
        if self.linger_seconds is not ...:
            try:
                await self.linger(self.linger_seconds)
            except Exception as exc:  # noqa: BLE001
                log.warning("reconnect: linger not re-applied: %s", exc)
        if self.log_level is not None:
            await self.log(self.log_level)

    async def _verify_channels(self) -> None:
        """After a reconnect: end the owned channels FreeSWITCH no longer has (one pipelined round)."""
        owned = [ch.uuid for ch in self.owners]
        if not owned:
            return
        replies = await asyncio.gather(*(self.api(f"uuid_exists {u}", check=False) for u in owned),
                                       return_exceptions=True)
        alive: set[str] = set()
        for uuid, reply in zip(owned, replies):
            if isinstance(reply, BaseException) or reply.strip() != "false":
                alive.add(uuid)  # keep it when the answer is not a clear "no"
        alive.update(u for u in self.owners.channels if u not in owned)  # placed meanwhile
        for channel in self.owners.end_missing(alive, "the channel ended while the connection was down"):
            self.release_channel_events(channel.uuid)
