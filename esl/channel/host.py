"""What a Channel needs of the connection it is driven from, and the stand-in once that has ended."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from esl.exceptions import ConnectionError

if TYPE_CHECKING:  # pragma: no cover
    from esl.commands import HeaderItems
    from esl.core import Event
    from esl.executor import Executor
    from esl.job import Job
    from esl.owners import Owners

__all__ = ["ChannelHost", "ENDED"]


class ChannelHost(Protocol):
    """What a Channel needs of the connection it is driven from (an Inbound or a Session)."""

    owners: "Owners"
    executor: "Executor"

    @property
    def timeout(self) -> float | None: ...

    @property
    def closed(self) -> bool: ...

    @property
    def connected(self) -> bool: ...

    @property
    def full_control(self) -> bool: ...

    @property
    def controlled_uuid(self) -> str | None: ...

    @property
    def receives_channel_events(self) -> bool: ...

    async def api(self, command: str, *, check: bool = True, timeout: Any = ...) -> str: ...

    async def bgapi(self, command: str, *, job_uuid: str | None = None, timeout: Any = ...,
                    job_timeout: Any = ...) -> "Job": ...

    async def sendmsg_raw(self, uuid: str | None, headers: "HeaderItems", body: str | bytes | None = None,
                          *, timeout: Any = ...) -> "Event": ...

    async def send(self, command: str, *, headers: "HeaderItems | None" = None,
                   body: str | bytes | None = None, timeout: Any = ...) -> "Event": ...

    async def ensure_channel_events(self, uuid: str) -> bool: ...

    def release_channel_events(self, uuid: str) -> None: ...


class _EndedConnection:
    """Stands in for the connection of a channel whose session has ended: every verb says so."""

    def __init__(self) -> None:
        from esl.executor import Executor
        from esl.owners import Owners

        self.owners = Owners()
        self.executor = Executor()
        self.executor.close()

    timeout: float | None = 5.0
    closed = True
    connected = False
    full_control = True
    controlled_uuid: str | None = None
    receives_channel_events = False

    def _err(self) -> ConnectionError:
        return ConnectionError("the session this channel belonged to has ended", "session ended")

    async def api(self, command: str, *, check: bool = True, timeout: Any = ...) -> str:
        raise self._err()

    async def bgapi(self, command: str, *, job_uuid: str | None = None, timeout: Any = ...,
                    job_timeout: Any = ...) -> "Job":
        raise self._err()

    async def sendmsg_raw(self, uuid: str | None, headers: "HeaderItems", body: str | bytes | None = None,
                          *, timeout: Any = ...) -> "Event":
        raise self._err()

    async def send(self, command: str, *, headers: "HeaderItems | None" = None,
                   body: str | bytes | None = None, timeout: Any = ...) -> "Event":
        raise self._err()

    async def ensure_channel_events(self, uuid: str) -> bool:
        raise self._err()

    def release_channel_events(self, uuid: str) -> None:
        pass


ENDED: ChannelHost = _EndedConnection()
