"""Test your Outbound app against the fake FreeSWITCH: run it on a free port, place a call into
it, press digits, hang up, and assert on what it did to the call.

::

    from esl.testing import FakeFreeSWITCH, place_call, serve

    async def test_sales_key() -> None:
        async with FakeFreeSWITCH() as fake, serve(ivr) as app:
            call = await place_call(fake, app)
            await call.press("1")
            await call.finished()              # the handler returned (its exception re-raised here)
        assert call.played == ["ivr/ivr-welcome_menu.wav", "ivr/sales.wav"]
        assert call.hangup_cause == "NORMAL_CLEARING"

With the pytest plugin, the ``freeswitch`` fixture is the running fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from esl.exceptions import TimeoutError

if TYPE_CHECKING:  # pragma: no cover
    from esl.outbound import Outbound
    from esl.session import Session
    from esl.testing.calls import FakeChannel
    from esl.testing.server import FakeFreeSWITCH

__all__ = ["AppUnderTest", "PlacedCall", "place_call", "serve"]

Handler = Callable[["Session"], Awaitable[Any]]

#: How often the waits below look at the call (the fake runs on the same loop, so this is cheap).
_POLL = 0.002


class AppUnderTest:
    """An Outbound app serving on a free loopback port for a test, remembering how each call's
    handler ended (returned, or the exception it raised), by call UUID."""

    def __init__(self, outbound: Outbound) -> None:
        self.outbound = outbound
        #: the handler's exception for each call whose handler raised
        self.errors: dict[str, BaseException] = {}
        self._done: dict[str, asyncio.Future[None]] = {}
        handler = outbound.handler

        async def run(session: Session) -> None:
            done = self._future(session.uuid or "")
            try:
                await handler(session)
            except BaseException as exc:
                self.errors[session.uuid or ""] = exc
                raise
            finally:
                if not done.done():
                    done.set_result(None)

        outbound.handler = run

    @property
    def host(self) -> str:
        """The address the app listens on."""
        return self.outbound.host

    @property
    def port(self) -> int:
        """The port the app listens on (chosen by the system)."""
        return self.outbound.port

    def _future(self, uuid: str) -> asyncio.Future[None]:
        fut = self._done.get(uuid)
        if fut is None:
            fut = self._done[uuid] = asyncio.get_running_loop().create_future()
        return fut

    async def wait_handled(self, uuid: str, timeout: float | None = 10.0) -> None:
        """Until the handler of call ``uuid`` has returned; re-raises what it raised."""
        try:
            await asyncio.wait_for(asyncio.shield(self._future(uuid)), timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"the app's handler for call {uuid} did not finish in {timeout} s") from None
        error = self.errors.get(uuid)
        if error is not None:
            raise error


@contextlib.asynccontextmanager
async def serve(app: Handler | Outbound, **options: Any) -> AsyncIterator[AppUnderTest]:
    """Run ``app`` (an ``async def handler(session)``, or an ``esl.Outbound``) on 127.0.0.1 at a
    port the system picks, for the ``async with`` block; ``options`` go to ``esl.Outbound``.

    An ``esl.Outbound`` object is moved to a free port unless it is already listening.
    """
    from esl.outbound import Outbound

    if isinstance(app, Outbound):
        if options:
            raise TypeError("options apply to a handler; set them on the Outbound object instead")
        outbound = app
        if not outbound.serving:
            outbound.host, outbound.port = "127.0.0.1", 0
    else:
        outbound = Outbound(app, "127.0.0.1", 0, **options)
    under_test = AppUnderTest(outbound)
    async with outbound:
        yield under_test


async def place_call(
    fake: FakeFreeSWITCH,
    app: AppUnderTest | Outbound | tuple[str, int],
    destination: str = "9000",
    *,
    caller_id_number: str = "1000",
    caller_id_name: str = "",
    variables: Mapping[str, str] | None = None,
    socket_args: str = "async full",
) -> PlacedCall:
    """A call from ``caller_id_number`` to ``destination`` that the fake hands to ``app`` with the
    dialplan's ``socket host:port async full`` (``socket_args``), as FreeSWITCH would."""
    if isinstance(app, tuple):
        host, port = app
    else:
        host, port = app.host, app.port
    fake.dialplan[destination] = [("socket", f"{host}:{port} {socket_args}".strip())]
    channel = await fake.call(destination, caller_id_number=caller_id_number, caller_id_name=caller_id_name,
                              variables=variables)
    return PlacedCall(channel, app if isinstance(app, AppUnderTest) else None)


class PlacedCall:
    """A call placed into an app by the fake: act as the caller, and read what the app did.

    What the app did is read from the events the call fired (``channel.events_fired``, its last
    256 events): ``applications`` in the order they ran, ``played`` files, ``answered``,
    ``hangup_cause``, ``variables`` and ``transferred_to``.
    """

    def __init__(self, channel: FakeChannel, app: AppUnderTest | None = None) -> None:
        self.channel = channel
        self.app = app

    def __repr__(self) -> str:
        return f"<PlacedCall {self.uuid} answered={self.answered} hangup_cause={self.hangup_cause}>"

    # -- the caller's side ------------------------------------------------------------------

    @property
    def uuid(self) -> str:
        """The call's Unique-ID."""
        return self.channel.uuid

    async def wait_answered(self, timeout: float = 5.0) -> None:
        """Until the app answers; TimeoutError if it has not after ``timeout`` seconds or the call ended."""
        await self._until(lambda: self.answered or self.channel.down, timeout, "the app to answer")
        if not self.answered:
            raise TimeoutError(f"call {self.uuid} ended ({self.hangup_cause}) without being answered")

    async def press(self, digits: str, *, wait_answered: bool = True, gap: float | None = None,
                    timeout: float = 5.0) -> None:
        """Press ``digits`` (``0-9*#A-D``) as the caller; by default once the app has answered.
        ``gap`` overrides the fake's pause between digits (``Timings.dtmf_gap``)."""
        bad = [d for d in digits if d not in "0123456789*#ABCDabcd"]
        if bad or not digits:
            raise ValueError(f"not DTMF digits: {digits!r}")
        if wait_answered:
            await self.wait_answered(timeout)
        if gap is None:
            await self.channel.send_dtmf(digits)
            return
        for i, digit in enumerate(digits):
            if i:
                await asyncio.sleep(gap)
            await self.channel.send_dtmf(digit)

    async def hangup(self, cause: str = "NORMAL_CLEARING") -> None:
        """Hang up as the caller (the app sees the hangup, with ``cause``)."""
        if not self.channel.down:
            self.channel.hangup(cause)
        await self.channel.wait_hangup(5.0)

    async def wait_for_app(self, name: str, timeout: float = 5.0) -> str:
        """Until the app has run the dialplan application ``name`` (``playback``, ``bridge``...)
        on the call; returns its argument (the first time it ran)."""
        await self._until(lambda: any(app == name for app, _ in self.applications) or self.channel.down,
                          timeout, f"the app to run {name!r}")
        for app, data in self.applications:
            if app == name:
                return data
        raise AssertionError(f"the call ended ({self.hangup_cause}) before the app ran {name!r}; "
                             f"it ran {self.applications}")

    async def wait_hangup(self, timeout: float = 10.0) -> str:
        """Until the call is hung up (by either side); returns the hangup cause."""
        try:
            await self.channel.wait_hangup(timeout)
        except asyncio.TimeoutError:
            raise TimeoutError(f"call {self.uuid} was not hung up within {timeout} s") from None
        return str(self.hangup_cause)

    async def finished(self, timeout: float = 10.0) -> None:
        """Until the app is done with the call: its handler returned (re-raising what it raised,
        when the app was started with :func:`serve`), else until the call is hung up."""
        if self.app is not None:
            await self.app.wait_handled(self.uuid, timeout)
        else:
            await self.wait_hangup(timeout)

    # -- what the app did -----------------------------------------------------------------------

    @property
    def answered(self) -> bool:
        """True once the call was answered."""
        return bool(self.channel.answered)

    @property
    def hangup_cause(self) -> str | None:
        """The hangup cause (``"NORMAL_CLEARING"``...), None while the call is up."""
        return self.channel.hangup_cause

    @property
    def variables(self) -> dict[str, str]:
        """The channel variables as the app left them (``set``, ``export``...)."""
        return dict(self.channel.variables)

    @property
    def transferred_to(self) -> tuple[str, str, str] | None:
        """(extension, dialplan, context) of the last transfer of the call (the ``transfer`` app or
        ``uuid_transfer``), read from its ``transfer_history`` variable; None if it was never transferred."""
        history = self.channel.variables.get("transfer_history", "")
        last = history.rsplit("|:", 1)[-1] if history else ""
        parts = last.split(":", 3)
        if len(parts) < 4 or "/" not in parts[3]:
            return None
        extension, context, dialplan = (parts[3].split("/", 2) + ["", ""])[:3]
        return extension, dialplan, context

    @property
    def applications(self) -> list[tuple[str, str]]:
        """(application, argument) of each application the call ran, in order: the dialplan's
        (``socket``...) then the app's (``answer``, ``playback``...). An application run without an
        argument has ``""`` (FreeSWITCH's ``_undef_``)."""
        apps = []
        for ev in self.channel.events_fired:
            if ev.get("Event-Name") == "CHANNEL_EXECUTE":
                data = str(ev.get("Application-Data") or "")
                apps.append((str(ev.get("Application") or ""), "" if data == "_undef_" else data))
        return apps

    @property
    def played(self) -> list[str]:
        """The files the app played (``playback`` arguments), in order."""
        return [data for app, data in self.applications if app == "playback"]

    @property
    def events(self) -> list[str]:
        """The names of the events the call fired, in order."""
        return [str(ev.get("Event-Name")) for ev in self.channel.events_fired]

    async def _until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"call {self.uuid}: timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(_POLL)
