"""``Cluster``: one client over several FreeSWITCH nodes, each an :class:`esl.Inbound` with its own reconnect.

>>> import esl
>>> async def main():                                               # doctest: +SKIP
...     cluster = esl.Cluster({"fs1": esl.Inbound("10.0.0.1", reconnect=True),
...                            "fs2": esl.Inbound("10.0.0.2", reconnect=True)}, max_sessions=500)
...     async with cluster:
...         @cluster.on("CHANNEL_HANGUP_COMPLETE")
...         def hangup(ev):                      # ev.node == "fs1" or "fs2"
...             print(ev.node, ev.uuid, ev["Hangup-Cause"])
...         await cluster.subscribe("CHANNEL_HANGUP_COMPLETE")
...         print(await cluster.api_all("status"))   # {"fs1": "...", "fs2": ConnectionError(...)}
...         client = cluster.pick()                   # the node with the fewest calls
...         await client.bgapi("originate user/1000 &park")

What each piece does:

- ``api``/``bgapi`` run on the node named by ``node=`` or, without it, on the
  node :meth:`pick` chooses; a failure because the node's connection is gone
  is a :class:`esl.exceptions.ConnectionError` whose message names the node.
- ``api_all`` runs a command on every node at once and returns each node's
  result or exception: one node failing never hides the others.
- Handlers registered with ``on`` see the events of every node, as
  :class:`esl.tagged.NodeEvent` (``ev.node``, ``ev.hostname``, ``ev.core_uuid``).
  ``subscribe``/``filter`` apply to every node, including nodes that join later.
- Placement: :meth:`pick` returns the Inbound of the node to place the next
  call on, by a pluggable policy (default :class:`FewestSessions`): nodes that
  are down or at ``max_sessions`` are skipped; :class:`NoNodeAvailable` when
  none is left. A node's load comes from HEARTBEAT's ``Session-Count`` (the
  cluster subscribes to HEARTBEAT) and from ``show calls count`` every
  ``load_interval`` seconds; each pick counts one more call on its node until
  the next figure arrives, so a burst spreads out.
- A node down at start is retried in the background (with backoff) and joins
  when it answers; a node lost later reconnects by itself if its Inbound has
  ``reconnect=True``, else (or once its Inbound gives up) the cluster keeps
  trying to join it back the same way. ``stats()`` gives each node's counters.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from typing import Any, TypeVar, overload

from esl.exceptions import ConnectionError
from esl.inbound import Inbound
from esl.job import Job
from esl.placement import FewestSessions, NodeInfo, NoNodeAvailable, Placement, RoundRobin
from esl.stats import ConnectionStats
from esl.tagged import ClusterEvents, NodeEvent

__all__ = ["Cluster", "ClusterEvents", "FewestSessions", "NoNodeAvailable", "NodeInfo", "NodeJob", "Placement", "RoundRobin"]

log = logging.getLogger("esl.cluster")

_CALLS_COUNT = re.compile(r"(\d+)\s+total")

NodeHandler = Callable[[NodeEvent], Any]
NH = TypeVar("NH", bound=NodeHandler)


class NodeJob:
    """A background job on one node: ``await`` it like a :class:`esl.Job`; a lost connection names the node."""

    __slots__ = ("job", "node")

    def __init__(self, job: Job, node: str) -> None:
        self.job = job
        self.node = node

    @property
    def uuid(self) -> str:
        return self.job.uuid

    async def wait(self, timeout: Any = ...) -> str:
        """The job's result (see :meth:`esl.Job.wait`)."""
        try:
            return await self.job.wait(timeout)
        except ConnectionError as exc:
            raise ConnectionError(f"node {self.node}: {exc}", getattr(exc, "reason", None)) from exc

    def __await__(self) -> Generator[Any, None, str]:
        return self.wait().__await__()

    def __repr__(self) -> str:
        return f"<NodeJob {self.node} {self.job!r}>"


class Cluster:
    """Several FreeSWITCH nodes behind one client; see the module doc.

    ``nodes``: ``{"name": Inbound(...)}`` (or Inbounds, named ``host:port``).
    ``max_sessions``: a limit for every node, or ``{"name": limit}``. ``heartbeat=False``: do not
    subscribe the nodes to HEARTBEAT (the load then comes from ``show calls count`` alone).
    ``load_interval=None``: never run ``show calls count`` (on joining nor periodically); the load
    then comes from HEARTBEAT and :meth:`refresh_load` alone.
    """

    is_cluster = True

    def __init__(
        self,
        nodes: Mapping[str, Inbound] | Iterable[Inbound],
        *,
        policy: Placement | None = None,
        max_sessions: int | Mapping[str, int] | None = None,
        load_interval: float | None = 5.0,
        heartbeat: bool = True,
        join_delay: float = 0.5,
        join_max_delay: float = 30.0,
    ) -> None:
        if isinstance(nodes, Mapping):
            self._nodes: dict[str, Inbound] = dict(nodes)
        else:
            self._nodes = {f"{n.host}:{n.port}": n for n in nodes}
        if not self._nodes:
            raise ValueError("a Cluster needs at least one node")
        self.policy: Placement = policy or FewestSessions()
        if isinstance(max_sessions, Mapping):
            self._limits: dict[str, int | None] = {n: max_sessions.get(n) for n in self._nodes}
        else:
            self._limits = dict.fromkeys(self._nodes, max_sessions)
        self.load_interval = load_interval
        self.heartbeat = heartbeat
        self.join_delay = join_delay
        self.join_max_delay = join_max_delay
        self._sessions: dict[str, int | None] = dict.fromkeys(self._nodes)
        self._handlers: dict[tuple[str, NodeHandler], dict[str, Any]] = {}
        self._subscriptions: list[tuple[tuple[str, ...], str]] = []
        self._filters: list[tuple[str, str]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._streams: set[ClusterEvents] = set()
        self._closing = False
        for name, client in self._nodes.items():
            client.node_name = name  # its channels' and jobs' connection errors then name the node
            client.on("HEARTBEAT", self._heartbeat_handler(name))
            client.add_reconnect_callback(self._rejoined_handler(name))

    # -- nodes ---------------------------------------------------------------------------

    @property
    def nodes(self) -> dict[str, Inbound]:
        """Every node by name (a copy)."""
        return dict(self._nodes)

    def node(self, name: str) -> Inbound:
        """The Inbound of node ``name``; KeyError naming the known nodes if there is none."""
        try:
            return self._nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r} (nodes: {', '.join(self._nodes)})") from None

    def up(self) -> list[str]:
        """Names of the nodes connected right now."""
        return [n for n, c in self._nodes.items() if c.connected]

    def sessions(self) -> dict[str, int | None]:
        """The load figure of each node (None while unknown)."""
        return dict(self._sessions)

    def stats(self) -> dict[str, ConnectionStats]:
        """Each node's ``Inbound.stats()`` snapshot."""
        return {name: client.stats() for name, client in self._nodes.items()}

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self) -> Cluster:
        """Connect every node; nodes that do not answer are retried in the background.

        Raises :class:`NoNodeAvailable` when not a single node could be connected.
        """
        self._closing = False
        names = list(self._nodes)
        results = await asyncio.gather(*(self._nodes[n].connect() for n in names), return_exceptions=True)
        errors: dict[str, BaseException] = {}
        for name, res in zip(names, results):
            if isinstance(res, BaseException):
                if not isinstance(res, Exception):
                    raise res
                errors[name] = res
                log.warning("cluster: node %s not connected (%s); retrying in the background", name, res)
                self._spawn(self._join(name))
        if len(errors) == len(names):
            await self.close()
            raise NoNodeAvailable("no node could be connected: "
                                  + "; ".join(f"{n}: {e}" for n, e in errors.items()))  # fmt: skip
        await asyncio.gather(*(self._setup(n) for n in names if n not in errors))
        if self.load_interval:
            self._spawn(self._poll_load())
        return self

    async def close(self) -> None:
        """Stop the background work and close every node."""
        self._closing = True
        for stream in list(self._streams):
            stream.close()
        tasks, self._tasks = list(self._tasks), set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in self._nodes.values()), return_exceptions=True)

    async def __aenter__(self) -> Cluster:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _setup(self, name: str) -> None:
        """What a node needs on (first) connection: HEARTBEAT, the cluster's filters and subscriptions, its load."""
        client = self._nodes[name]
        client.add_close_callback(self._closed_handler(name))
        try:
            for header, value in self._filters:
                await client.filter(header, value)
            if self.heartbeat:
                await client.subscribe("HEARTBEAT")
            for names, fmt in self._subscriptions:
                await client.subscribe(*names, format=fmt)
            if self.load_interval:
                await self._refresh(name)
        except Exception as exc:  # noqa: BLE001 - the node dropped again: its reconnect or _join takes over
            log.warning("cluster: setting up node %s failed: %s", name, exc)

    async def _join(self, name: str) -> None:
        delay = self.join_delay
        client = self._nodes[name]
        while not self._closing:
            await asyncio.sleep(delay)
            try:
                await client.connect()
            except Exception as exc:  # noqa: BLE001
                log.debug("cluster: node %s still down: %s", name, exc)
                delay = min(delay * 2, self.join_max_delay)
                continue
            log.info("cluster: node %s joined", name)
            await self._setup(name)
            return

    def _closed_handler(self, name: str) -> Callable[[BaseException], None]:
        def closed(exc: BaseException) -> None:
            # the Inbound is down for good (no reconnect, or it gave up): keep trying to join it back
            if not self._closing:
                log.warning("cluster: node %s lost (%s); trying to join it back", name, exc)
                self._sessions[name] = None
                self._spawn(self._join(name))

        return closed

    def _rejoined_handler(self, name: str) -> Callable[[Inbound], Awaitable[None]]:
        async def rejoined(client: Inbound) -> None:
            log.info("cluster: node %s reconnected", name)
            self._sessions[name] = None
            self._spawn(self._refresh(name))

        return rejoined

    # -- load ----------------------------------------------------------------------------

    def _heartbeat_handler(self, name: str) -> Callable[[Any], None]:
        def heartbeat(event: Any) -> None:
            count = event.get("Session-Count")
            if count is not None and count.isdigit():
                self._sessions[name] = int(count)

        return heartbeat

    async def _refresh(self, name: str) -> None:
        client = self._nodes[name]
        if not client.connected:
            return
        try:
            text = await client.api("show calls count", check=False)
        except Exception as exc:  # noqa: BLE001 - a figure missed; the next poll or HEARTBEAT brings one
            log.debug("cluster: load of %s not read: %s", name, exc)
            return
        m = _CALLS_COUNT.search(text)
        if m:
            self._sessions[name] = int(m.group(1))

    async def refresh_load(self) -> dict[str, int | None]:
        """Read every connected node's call count now (``show calls count``); returns :meth:`sessions`."""
        await asyncio.gather(*(self._refresh(n) for n in self._nodes))
        return self.sessions()

    async def _poll_load(self) -> None:
        assert self.load_interval
        while True:
            await asyncio.sleep(self.load_interval)
            await self.refresh_load()

    # -- placement -----------------------------------------------------------------------

    def candidates(self) -> list[NodeInfo]:
        """The nodes a call may go to now: connected and under their limit."""
        out = []
        for name, client in self._nodes.items():
            if not client.connected:
                continue
            count, limit = self._sessions[name], self._limits[name]
            if limit is not None and count is not None and count >= limit:
                continue
            out.append(NodeInfo(name, client, count, limit))
        return out

    def pick_name(self, *, exclude: Iterable[str] = ()) -> str:
        """The name of the node the policy chooses for the next call (counted as one more call there)."""
        skip = set(exclude)
        cands = [c for c in self.candidates() if c.name not in skip]
        if not cands:
            why = []
            for name, client in self._nodes.items():
                if name in skip:
                    why.append(f"{name} excluded")
                elif not client.connected:
                    why.append(f"{name} down")
                else:
                    why.append(f"{name} at its limit of {self._limits[name]}")
            raise NoNodeAvailable("no node available for a call: " + ", ".join(why))
        chosen = self.policy.choose(cands)
        count = self._sessions[chosen.name]
        self._sessions[chosen.name] = (count or 0) + 1
        return chosen.name

    def pick(self, *, exclude: Iterable[str] = ()) -> Inbound:
        """The Inbound of the node to place the next call on (see :meth:`pick_name`)."""
        return self._nodes[self.pick_name(exclude=exclude)]

    # -- commands ------------------------------------------------------------------------

    def _target(self, node: str | None) -> tuple[str, Inbound]:
        name = node if node is not None else self.pick_name()
        return name, self.node(name)

    async def api(self, command: str, *, node: str | None = None, **kwargs: Any) -> str:
        """``api command`` on ``node`` (default: the one :meth:`pick` chooses)."""
        name, client = self._target(node)
        try:
            return await client.api(command, **kwargs)
        except ConnectionError as exc:
            raise ConnectionError(f"node {name}: {exc}", getattr(exc, "reason", None)) from exc

    async def bgapi(self, command: str, *, node: str | None = None, **kwargs: Any) -> NodeJob:
        """``bgapi command`` on ``node`` (default: the one :meth:`pick` chooses); await the NodeJob for the result."""
        name, client = self._target(node)
        try:
            return NodeJob(await client.bgapi(command, **kwargs), name)
        except ConnectionError as exc:
            raise ConnectionError(f"node {name}: {exc}", getattr(exc, "reason", None)) from exc

    async def api_all(self, command: str, **kwargs: Any) -> dict[str, str | BaseException]:
        """``api command`` on every node at once: each node's output, or the exception it raised."""
        names = list(self._nodes)
        results = await asyncio.gather(*(self.api(command, node=n, **kwargs) for n in names), return_exceptions=True)
        out: dict[str, str | BaseException] = {}
        for name, res in zip(names, results):
            if isinstance(res, BaseException) and not isinstance(res, Exception):
                raise res
            out[name] = res
        return out

    async def subscribe(self, *names: str, format: str = "plain") -> None:
        """Subscribe every node (and every node that joins later) to these events."""
        if (names, format) not in self._subscriptions:
            self._subscriptions.append((names, format))
        await self._on_all(lambda c: c.subscribe(*names, format=format))

    async def filter(self, header: str, value: str) -> None:
        """Add an event filter on every node (and every node that joins later)."""
        if (header, value) not in self._filters:
            self._filters.append((header, value))
        await self._on_all(lambda c: c.filter(header, value))

    async def _on_all(self, op: Callable[[Inbound], Awaitable[Any]]) -> None:
        up = [(n, c) for n, c in self._nodes.items() if c.connected]
        results = await asyncio.gather(*(op(c) for _, c in up), return_exceptions=True)
        for (name, _), res in zip(up, results):
            if isinstance(res, Exception):
                log.warning("cluster: node %s: %s", name, res)

    # -- events --------------------------------------------------------------------------

    @overload
    def on(self, name: str) -> Callable[[NH], NH]: ...

    @overload
    def on(self, name: str, handler: NH) -> NH: ...

    def on(self, name: str, handler: NodeHandler | None = None) -> Any:
        """Call ``handler(NodeEvent)`` for event ``name`` (``"*"``: all) from every node; usable as a decorator."""
        if handler is None:

            def decorator(fn: NH) -> NH:
                self.on(name, fn)
                return fn

            return decorator
        key = (name, handler)
        if key in self._handlers:
            return handler
        wrappers: dict[str, Any] = {}
        for node, client in self._nodes.items():
            wrapper = _wrap(handler, node)
            client.on(name, wrapper)
            wrappers[node] = wrapper
        self._handlers[key] = wrappers
        return handler

    def events(self, *names: str, maxsize: int = 10_000) -> ClusterEvents:
        """An async iterator over these events (none given: all) from every node, as NodeEvents.

        It holds at most ``maxsize`` events; past that new ones are dropped and counted
        (``dropped``), so a slow reader never stalls the nodes. ``async with`` or ``close()``
        stops it; closing the cluster ends it.
        """
        stream = ClusterEvents(self, names or ("*",), maxsize)
        self._streams.add(stream)
        return stream

    def remove(self, name: str, handler: NodeHandler) -> None:
        """Undo :meth:`on`."""
        wrappers = self._handlers.pop((name, handler), None)
        if wrappers:
            for node, wrapper in wrappers.items():
                self._nodes[node].remove(name, wrapper)

    def __repr__(self) -> str:
        return f"<Cluster nodes={len(self._nodes)} up={len(self.up())}>"


def _wrap(handler: NodeHandler, node: str) -> Callable[[Any], Any]:
    if inspect.iscoroutinefunction(handler):

        async def async_wrapper(event: Any) -> Any:
            return await handler(NodeEvent(event, node))

        return async_wrapper

    def wrapper(event: Any) -> Any:
        return handler(NodeEvent(event, node))

    return wrapper
