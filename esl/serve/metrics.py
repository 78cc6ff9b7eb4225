"""Prometheus metrics for esl connections, Outbound servers and scenario apps.

One :class:`ESLCollector` per registry reads each watched object's
``stats()`` snapshot when Prometheus scrapes; nothing is counted on the
per-event path. What a watched object exports depends on what its
``stats()`` returns:

- :class:`esl.stats.ConnectionStats` (an Inbound, a Session): ``esl_*`` connection metrics;
- :class:`esl.stats.OutboundStats` (an Outbound): ``esl_outbound_*`` plus the connection metrics of its sessions;
- :class:`esl.serve.ScenarioStats` (an App): ``esl_scenarios_*``, plus its connection's metrics;
- a mapping of member names to either of the first two (a cluster): one connection per member.

Library users need one call: ``register(inbound, outbound, app)`` (the
default registry, served by their own exporter) or ``await
start_metrics_server(9100, inbound)``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from esl.stats import LATENCY_BUCKETS, ConnectionStats, OutboundStats

__all__ = ["ESLCollector", "MetricsServer", "register", "snapshot", "start_metrics_server", "unregister"]

#: Event names exported per connection at most; the rest are summed under ``"other"``.
MAX_EVENT_NAMES = 200

_CONN = ("connection", "kind")
#: The ``le`` label of each latency bucket, as Prometheus spells it (the last is ``+Inf``).
_LE = [floatToGoString(b) for b in (*LATENCY_BUCKETS, float("inf"))]  # type: ignore[no-untyped-call]


def snapshot(obj: Any) -> Any:
    """``obj``'s stats snapshot: ``ConnectionStats``, ``OutboundStats``, ``ScenarioStats`` or a mapping of those."""
    stats = getattr(obj, "stats", None)
    if stats is None and getattr(obj, "protocol", None) is not None:  # a Consumer: its Inbound
        return snapshot(obj.protocol)
    return stats() if callable(stats) else stats


def _default_name(obj: Any) -> tuple[str, str]:
    """``(name, kind)`` for an object registered without a name."""
    kind = type(obj).__name__.lower()
    host, port = getattr(obj, "host", None), getattr(obj, "port", None)
    if host is not None and port is not None:
        return f"{host}:{port}", kind
    return f"{kind}-{id(obj):x}", kind


class _Families:
    """The metric families of one scrape, filled source by source."""

    def __init__(self) -> None:
        c, g = CounterMetricFamily, GaugeMetricFamily
        self.connected = g("esl_connected", "1 while the connection is up and authenticated", labels=_CONN)
        self.received = c("esl_events_received", "Events read from FreeSWITCH", labels=_CONN)
        self.dropped = c("esl_events_dropped", "Event deliveries dropped by flow control", labels=_CONN)
        self.malformed = c("esl_events_malformed", "Events that could not be decoded", labels=_CONN)
        self.lost = c("esl_events_lost", "Events FreeSWITCH sent that never arrived (Event-Sequence)",
                      labels=_CONN)
        self.by_name = c("esl_events", "Events received by Event-Name", labels=(*_CONN, "event"))
        self.handler_errors = c("esl_handler_errors", "User handler calls that raised", labels=_CONN)
        self.reconnects = c("esl_reconnects", "Successful reconnects", labels=_CONN)
        self.pauses = c("esl_flow_pauses", "Times reading was paused by flow control", labels=_CONN)
        self.paused = g("esl_flow_paused", "1 while reading is paused by flow control", labels=_CONN)
        self.queue = g("esl_queue_depth", "Events waiting in handler queues and events() buffers", labels=_CONN)
        self.pending = g("esl_pending_commands", "Commands waiting for their reply", labels=_CONN)
        self.jobs = g("esl_pending_jobs", "Background jobs waiting for their result", labels=_CONN)
        self.channels = g("esl_channels", "Channels the connection tracks", labels=_CONN)
        self.owners = g("esl_owners", "Entries of the event ownership table", labels=_CONN)
        self.latency = HistogramMetricFamily("esl_command_latency_seconds", "Command reply latency by command",
                                             labels=(*_CONN, "command"))
        self.serving = g("esl_outbound_serving", "1 while the Outbound server accepts connections",
                         labels=("server",))
        self.sessions = g("esl_outbound_sessions_active", "Outbound sessions connected now", labels=("server",))
        self.sessions_total = c("esl_outbound_sessions_accepted", "Outbound sessions accepted", labels=("server",))
        self.sessions_failed = c("esl_outbound_sessions_failed", "Outbound sessions whose handler raised",
                                 labels=("server",))
        self.sc_live = g("esl_scenarios_live", "Scenario calls placing or running now", labels=("app",))
        self.sc_max = g("esl_scenarios_max", "Limit on live scenario calls", labels=("app",))
        self.sc_kept = g("esl_scenarios_kept", "Ended scenario calls kept for GET /calls", labels=("app",))
        self.sc_started = c("esl_scenarios_started", "Scenario calls started", labels=("app", "scenario"))
        self.sc_ended = c("esl_scenarios_ended", "Scenario calls ended, by outcome",
                          labels=("app", "scenario", "outcome"))
        self.sc_refused = c("esl_scenarios_refused", "Scenario requests refused, by reason",
                            labels=("app", "reason"))

    def all(self) -> list[Any]:
        return list(vars(self).values())

    def connection(self, name: str, kind: str, s: ConnectionStats, max_names: int) -> None:
        lab = [name, kind]
        self.connected.add_metric(lab, 1 if s.connected else 0)
        self.received.add_metric(lab, s.events_received)
        self.dropped.add_metric(lab, s.events_dropped)
        self.malformed.add_metric(lab, s.events_malformed)
        self.lost.add_metric(lab, s.events_lost)
        self.handler_errors.add_metric(lab, s.handler_errors)
        self.reconnects.add_metric(lab, s.reconnects)
        self.pauses.add_metric(lab, s.pauses)
        self.paused.add_metric(lab, 1 if s.paused else 0)
        self.queue.add_metric(lab, s.queue_depth)
        self.pending.add_metric(lab, s.pending_commands)
        self.jobs.add_metric(lab, s.jobs)
        self.channels.add_metric(lab, s.channels)
        self.owners.add_metric(lab, s.owners)
        names = sorted(s.events_by_name.items(), key=lambda kv: -kv[1])
        other = sum(n for _, n in names[max_names:])
        for event, n in names[:max_names]:
            if event == "other":
                other += n
            else:
                self.by_name.add_metric([*lab, event], n)
        if other:
            self.by_name.add_metric([*lab, "other"], other)
        for command, h in sorted(s.command_latency.items()):
            buckets = list(zip(_LE, itertools.accumulate(float(n) for n in h.counts)))
            self.latency.add_metric([*lab, command], buckets, h.sum)

    def outbound(self, name: str, s: OutboundStats, max_names: int) -> None:
        self.serving.add_metric([name], 1 if s.serving else 0)
        self.sessions.add_metric([name], s.sessions)
        self.sessions_total.add_metric([name], s.sessions_total)
        self.sessions_failed.add_metric([name], s.sessions_failed)
        self.connection(name, "outbound", s.connections, max_names)

    def scenarios(self, name: str, s: Any) -> None:
        self.sc_live.add_metric([name], s.live)
        self.sc_max.add_metric([name], s.max_concurrent)
        self.sc_kept.add_metric([name], s.finished_kept)
        for scenario, n in sorted(s.started.items()):
            self.sc_started.add_metric([name, scenario], n)
        for (scenario, outcome), n in sorted(s.outcomes.items()):
            self.sc_ended.add_metric([name, scenario, outcome], n)
        for reason, n in sorted(s.refused.items()):
            self.sc_refused.add_metric([name, reason], n)


class ESLCollector(Collector):
    """A Prometheus collector reading the ``stats()`` of the objects it watches, at scrape time.

    Objects are held weakly where they allow it: a connection that is dropped
    and collected disappears from the metrics. A scrape from another thread
    (``prometheus_client.start_http_server``) takes the snapshots on the
    event loop the collector was made on, so counters are never read mid-update.
    """

    def __init__(self, *objects: Any, max_event_names: int = MAX_EVENT_NAMES) -> None:
        self.max_event_names = max_event_names
        self._sources: dict[int, tuple[Any, str, str]] = {}
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self._thread = threading.get_ident()
        for obj in objects:
            self.add(obj)

    def add(self, obj: Any, name: str | None = None) -> None:
        """Watch ``obj`` (an object, or a ``(name, object)`` pair); ``name`` labels its series."""
        if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str):
            name, obj = obj
        if getattr(obj, "stats", None) is None and getattr(obj, "protocol", None) is None:
            raise TypeError(f"{obj!r} has no stats() to export")
        default, kind = _default_name(obj)
        try:
            ref: Any = weakref.ref(obj)
        except TypeError:
            ref = lambda obj=obj: obj
        self._sources[id(obj)] = (ref, name or default, kind)

    def remove(self, obj: Any) -> None:
        """Stop watching ``obj``."""
        self._sources.pop(id(obj), None)

    def describe(self) -> Iterable[Any]:
        return _Families().all()

    def collect(self) -> Iterator[Any]:
        loop = self._loop
        if loop is not None and threading.get_ident() != self._thread and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._collect_async(), loop)
            families = future.result(timeout=10)
        else:
            families = self._families()
        yield from families.all()

    async def _collect_async(self) -> _Families:
        return self._families()

    def _families(self) -> _Families:
        fam = _Families()
        for key, (ref, name, kind) in list(self._sources.items()):
            obj = ref()
            if obj is None:
                del self._sources[key]
                continue
            self._add(fam, obj, name, kind)
        return fam

    def _add(self, fam: _Families, obj: Any, name: str, kind: str) -> None:
        stats = snapshot(obj)
        if isinstance(stats, ConnectionStats):
            fam.connection(name, kind, stats, self.max_event_names)
        elif isinstance(stats, OutboundStats):
            fam.outbound(name, stats, self.max_event_names)
        elif type(stats).__name__ == "ScenarioStats":
            fam.scenarios(name, stats)
            conn = getattr(obj, "connection", None)
            if conn is not None:
                cname, ckind = _default_name(conn)
                self._add(fam, conn, cname, ckind)
        elif isinstance(stats, Mapping):
            for member, s in stats.items():
                if isinstance(s, ConnectionStats):
                    fam.connection(f"{name}/{member}", kind, s, self.max_event_names)
                elif isinstance(s, OutboundStats):
                    fam.outbound(f"{name}/{member}", s, self.max_event_names)


_COLLECTORS: weakref.WeakKeyDictionary[CollectorRegistry, ESLCollector] = weakref.WeakKeyDictionary()


def register(*objects: Any, registry: CollectorRegistry = REGISTRY) -> ESLCollector:
    """Export ``objects`` (or ``(name, object)`` pairs) in ``registry``; returns the registry's collector.

    Call it as often as needed: each registry has one esl collector, which
    gains the objects. Objects are held weakly: keep a reference to what you
    register (a connection that is garbage-collected leaves the metrics).
    """
    collector = _COLLECTORS.get(registry)
    if collector is None:
        collector = _COLLECTORS[registry] = ESLCollector()
        registry.register(collector)
    elif collector._loop is None:
        try:
            collector._loop = asyncio.get_running_loop()
            collector._thread = threading.get_ident()
        except RuntimeError:
            pass
    for obj in objects:
        collector.add(obj)
    return collector


def unregister(*objects: Any, registry: CollectorRegistry = REGISTRY) -> None:
    """Stop exporting ``objects`` from ``registry``."""
    collector = _COLLECTORS.get(registry)
    if collector is not None:
        for obj in objects:
            collector.remove(obj)


class MetricsServer:
    """``GET /metrics`` of a registry on aiohttp, in the event loop (see :func:`start_metrics_server`)."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        from aiohttp import web

        self.registry = registry
        self.host = host
        self._port = port
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._site: Any = None

    @property
    def port(self) -> int:
        server = getattr(self._site, "_server", None)
        sockets = getattr(server, "sockets", None)
        return int(sockets[0].getsockname()[1]) if sockets else self._port

    async def start(self) -> MetricsServer:
        from aiohttp import web

        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self._port, reuse_address=True)
        await self._site.start()
        return self

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _metrics(self, request: Any) -> Any:
        from aiohttp import web

        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self.registry), headers={"Content-Type": content_type})


async def start_metrics_server(port: int, *objects: Any, host: str = "127.0.0.1",
                               registry: CollectorRegistry = REGISTRY) -> MetricsServer:
    """Export ``objects`` and serve ``registry`` on ``http://host:port/metrics``; returns the server.

    The server runs on the current event loop (scrapes read ``stats()`` there);
    ``await server.stop()`` ends it. ``port=0`` picks a free port (``server.port``).
    """
    register(*objects, registry=registry)
    return await MetricsServer(registry, host, port).start()
