"""Outbound on many processes: N workers serving one port, restarted when they crash, drained on SIGTERM.

One Python process uses one core; a busy Outbound app needs more.
:func:`serve_workers` forks ``workers`` processes that each run the app's
:class:`esl.Outbound` on the same address:

- where the OS has ``SO_REUSEPORT`` (Linux, the BSDs) each worker listens on
  its own socket bound to the port and the kernel spreads new calls over them;
  elsewhere (or with ``reuse_port=False``) the supervisor listens once and the
  workers accept from that shared socket;
- a worker that dies (a crash, the OOM killer, ``kill -9``) is started again;
  its calls are gone with it (FreeSWITCH hangs up a call whose socket closes,
  unless the dialplan set ``socket_resume``);
- SIGTERM (or SIGINT) to the supervisor is passed to every worker: each stops
  accepting at once, lets its live calls go on for up to ``grace`` seconds,
  then hangs up those still up with ``cause`` (``SYSTEM_SHUTDOWN``) and ends;
  on Linux a worker whose supervisor dies (even by SIGKILL) does the same.

``ESL_WORKER`` is set to the worker's index (0..N-1) in each worker, e.g. to
name it in a :class:`esl.bus.calls.CallRegistry`.

>>> from esl.workers import serve_workers                            # doctest: +SKIP
>>> serve_workers("myapp:app", "0.0.0.0", 9000, workers=4)           # blocks until SIGTERM

Workers are forked (POSIX only); the app is imported once, in the supervisor,
before the fork. Call it from a program's main thread, with no event loop
running.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from esl.outbound import Outbound
from esl.types import HangupCause

__all__ = ["WorkerPool", "drain", "serve_workers"]

log = logging.getLogger("esl.workers")

#: a worker that dies sooner than this after starting is restarted with a growing delay
_QUICK_DEATH = 2.0


def load(spec: str) -> Any:
    """The object named ``"module:attr"`` (``attr`` may be dotted)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"expected MODULE:APP, got {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _as_outbound(app: Any, host: str, port: int) -> Outbound:
    if isinstance(app, str):
        app = load(app)
    if isinstance(app, Outbound):
        return app
    if callable(app):
        return Outbound(app, host, port)
    raise TypeError(f"{app!r} is not an esl.Outbound or a handler function")


async def drain(server: Outbound, grace: float, cause: HangupCause | str = HangupCause.SYSTEM_SHUTDOWN) -> None:
    """Stop accepting; let live calls run up to ``grace`` seconds; hang up the rest with ``cause``; stop."""
    cause = HangupCause.parse(cause)
    window = min(1.0, grace / 4)
    stopping = asyncio.ensure_future(server.stop(grace=grace))
    done, _ = await asyncio.wait({stopping}, timeout=max(0.0, grace - window))
    if not done:
        live = list(server.sessions)
        if live:
            log.warning("worker %d: hanging up %d calls still up after %.1fs (%s)",
                        os.getpid(), len(live), grace - window, cause.name)  # fmt: skip

            async def end(session: Any) -> None:
                try:
                    await asyncio.wait_for(session.hangup(cause), window)
                except Exception as exc:  # noqa: BLE001 - the call may already be going
                    log.debug("hanging up %s failed: %s", session.uuid, exc)

            await asyncio.gather(*(end(s) for s in live))
    await stopping


def _reuseport_socket(host: str, port: int, listen: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if listen:
        sock.listen(1024)
    sock.setblocking(False)
    return sock


def _shared_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _term_with_parent() -> None:
    """On Linux, have the kernel send this process SIGTERM when the supervisor dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - no prctl: orphans live on until stopped
        pass


class WorkerPool:
    """The supervisor of :func:`serve_workers`; ``run()`` blocks until stopped and returns an exit status."""

    def __init__(
        self,
        app: Any,
        host: str = "127.0.0.1",
        port: int = 9000,
        workers: int = 2,
        *,
        grace: float = 30.0,
        cause: HangupCause | str = HangupCause.SYSTEM_SHUTDOWN,
        reuse_port: bool | None = None,
        on_ready: Callable[[WorkerPool], Any] | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        if grace < 0:
            raise ValueError("grace must not be negative")
        self.server = _as_outbound(app, host, port)
        self.host = host
        self.port = port
        self.workers = workers
        self.grace = grace
        self.cause = HangupCause.parse(cause)
        self.reuse_port = hasattr(socket, "SO_REUSEPORT") if reuse_port is None else reuse_port
        self.on_ready = on_ready
        #: worker processes started again after they died
        self.restarts = 0
        self._procs: dict[int, Any] = {}  # index -> Process
        self._started: dict[int, float] = {}
        self._failures: dict[int, int] = {}
        self._pending: dict[int, float] = {}  # index -> when to start it again
        self._stopping = False
        self._sock: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        self._ready_r, self._ready_w = os.pipe()  # a byte from each worker once it listens

    @property
    def pids(self) -> list[int]:
        """The process ids of the live workers."""
        return [p.pid for p in self._procs.values() if p.is_alive()]

    def _bind(self) -> None:
        if self.reuse_port:
            # bound, never listening: reserves the port (and resolves port 0) without taking calls
            self._sock = _reuseport_socket(self.host, self.port, listen=False)
        else:
            self._sock = _shared_socket(self.host, self.port)
        self.port = int(self._sock.getsockname()[1])

    def _spawn(self, index: int) -> None:
        ctx = multiprocessing.get_context("fork")
        proc = ctx.Process(target=self._worker, args=(index,), name=f"esl-worker-{index}", daemon=False)
        proc.start()
        self._procs[index] = proc
        self._started[index] = time.monotonic()

    def _worker(self, index: int) -> None:
        os.environ["ESL_WORKER"] = str(index)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        _term_with_parent()
        os.close(self._wake_r)
        os.close(self._wake_w)
        os.close(self._ready_r)
        assert self._sock is not None
        if self.reuse_port:
            self._sock.close()
            sock = _reuseport_socket(self.host, self.port, listen=True)
        else:
            sock = self._sock
        self.server.sock = sock
        os.write(self._ready_w, b"r")  # listening: the kernel queues calls for this worker from now on
        os.close(self._ready_w)
        try:
            asyncio.run(self._worker_main())
        except KeyboardInterrupt:  # pragma: no cover - a second Ctrl-C
            pass
        sys.exit(0)

    async def _worker_main(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.server.start(block=False)
        await stop.wait()
        await drain(self.server, self.grace, self.cause)

    def _signal(self, signum: int, frame: Any) -> None:
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # pragma: no cover
            pass

    def run(self) -> int:
        """Bind, start the workers, supervise them until SIGTERM/SIGINT, then drain them; 0 on a clean stop."""
        self._bind()
        previous = {sig: signal.signal(sig, self._signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i in range(self.workers):
                self._spawn(i)
            self._wait_listening()
            log.info("%d workers serving %s:%d (%s)", self.workers, self.host, self.port,
                     "SO_REUSEPORT" if self.reuse_port else "shared socket")  # fmt: skip
            if self.on_ready is not None:
                self.on_ready(self)
            self._supervise()
            return self._shutdown()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self._sock is not None:
                self._sock.close()
            for fd in (self._wake_r, self._wake_w, self._ready_r, self._ready_w):
                os.close(fd)

    def _wait_listening(self, timeout: float = 60.0) -> None:
        """Return once every first-generation worker listens (so on_ready means calls are taken)."""
        deadline = time.monotonic() + timeout
        ready = 0
        while ready < self.workers and not self._stopping:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"only {ready} of {self.workers} workers listening after {timeout}s")
            sentinels = [p.sentinel for p in self._procs.values()]
            found = multiprocessing.connection.wait([self._ready_r, self._wake_r, *sentinels], left)
            if self._ready_r in found:
                ready += len(os.read(self._ready_r, 256))
            elif any(s in found for s in sentinels):
                return  # a worker died at start: the supervisor loop reports and restarts it

    def _supervise(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            timeout = 1.0
            for index, when in list(self._pending.items()):
                if when <= now:
                    del self._pending[index]
                    self._spawn(index)
                else:
                    timeout = min(timeout, when - now)
            sentinels = [p.sentinel for p in self._procs.values()]
            ready = multiprocessing.connection.wait([*sentinels, self._wake_r, self._ready_r], timeout)
            if self._wake_r in ready:
                os.read(self._wake_r, 64)
            if self._ready_r in ready:
                os.read(self._ready_r, 256)  # restarted workers say they listen; nothing to do but read it
            if self._stopping:
                return
            for index, proc in list(self._procs.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del self._procs[index]
                lived = time.monotonic() - self._started[index]
                fails = self._failures[index] = self._failures.get(index, 0) + 1 if lived < _QUICK_DEATH else 0
                delay = min(10.0, 0.1 * 2**fails) if fails else 0.0
                log.warning("worker %d (pid %d) exited with %s after %.1fs; starting it again in %.1fs",
                            index, proc.pid, proc.exitcode, lived, delay)  # fmt: skip
                self.restarts += 1
                self._pending[index] = time.monotonic() + delay

    def _shutdown(self) -> int:
        if self._sock is not None and not self.reuse_port:
            self._sock.close()  # the workers still hold theirs until they have drained
            self._sock = None
        procs = list(self._procs.values())
        for p in procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace + 5.0
        status = 0
        for p in procs:
            p.join(max(0.0, deadline - time.monotonic()))
            if p.is_alive():
                log.error("worker pid %d did not stop in time; killing it", p.pid)
                p.kill()
                p.join()
                status = 1
            elif p.exitcode != 0:
                status = 1
        self._procs.clear()
        return status


def serve_workers(
    app: Any,
    host: str = "127.0.0.1",
    port: int = 9000,
    workers: int = 2,
    *,
    grace: float = 30.0,
    cause: HangupCause | str = HangupCause.SYSTEM_SHUTDOWN,
    reuse_port: bool | None = None,
    on_ready: Callable[[WorkerPool], Any] | None = None,
) -> int:
    """Serve ``app`` (an :class:`esl.Outbound`, a handler ``async def h(session)``, or ``"module:attr"``
    naming either) from ``workers`` processes on ``host:port`` until SIGTERM/SIGINT; see the module doc.

    Returns 0 when every worker stopped cleanly. ``on_ready(pool)`` is called once the workers listen.
    """
    return WorkerPool(app, host, port, workers, grace=grace, cause=cause, reuse_port=reuse_port,
                      on_ready=on_ready).run()  # fmt: skip
