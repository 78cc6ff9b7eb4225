"""``Executor``: where user code runs, for one logical connection (an Inbound or a Session).

Async event handlers, the awaitables sync handlers return, and Channel handlers
(``onDTMF``, lifecycle hooks, per-channel ``on``) are queued here; a sync Channel
handler runs at once (:meth:`Executor.run_now`) when nothing of its channel waits
or runs, so the app's coroutine, resumed by a later event, sees what it did. The executor

* is **bounded**: ``max_queue`` jobs wait at most; past that the connection's
  policy applies — ``"drop"`` drops and counts the job, ``"pause"`` asks the
  reader to stop reading (``pressure`` callback) and drops only past twice the
  bound (reading resumes while a command waits for its reply, so events can
  still pile up);
* keeps **per-key order**: jobs with the same key (a channel UUID) run one at a
  time, in the order they were submitted (jobs without a key are not ordered
  among themselves); with ``concurrency=1`` (the default) every job runs in
  submission order;
* **logs every error** a job raises (with the key) and counts it;
* **owns its tasks**: workers and the internal tasks started with :meth:`spawn`
  are cancelled and awaited by :meth:`aclose`, which first gives queued and
  running jobs a grace period.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from typing import Any, Callable, Coroutine

__all__ = ["Executor", "POLICIES", "discard"]

log = logging.getLogger("esl.executor")

#: Flow-control policies: what happens to user work when the queue is full.
POLICIES = ("pause", "drop")

Job = tuple[Callable[..., Any] | None, tuple[Any, ...], object]  # fn, args, the key it was submitted with


def discard(awaitable: object) -> None:
    """Dispose of an awaitable that will never be awaited (no "never awaited" warning)."""
    close = getattr(awaitable, "close", None)  # coroutines
    if close is not None:
        close()
        return
    cancel = getattr(awaitable, "cancel", None)  # futures
    if cancel is not None:
        cancel()


class Executor:
    """A bounded, per-key ordered queue of user work, run by at most ``concurrency`` worker tasks."""

    def __init__(
        self,
        *,
        max_queue: int = 10_000,
        policy: str = "pause",
        concurrency: int = 1,
        pressure: Callable[[bool], None] | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.max_queue = max_queue
        self.policy = policy
        self.concurrency = concurrency
        self._pressure = pressure
        self._by_key: dict[object, collections.deque[Job]] = {}
        self._pending: dict[object, int] = {}  # jobs queued or running per submitted key
        self._ready: collections.deque[object] = collections.deque()
        self._size = 0
        self._running = 0
        self._workers: set[asyncio.Task[None]] = set()
        self._idle: collections.deque[asyncio.Future[None]] = collections.deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._drained: list[asyncio.Future[None]] = []
        self._pressing = False
        self.closed = False
        #: jobs dropped because the queue was full (or the executor closed)
        self.dropped = 0
        #: jobs that raised
        self.errors = 0
        #: how many times the queue asked the reader to pause
        self.pauses = 0

    # -- submitting ---------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Jobs waiting to run (not counting those running)."""
        return self._size

    @property
    def busy(self) -> bool:
        """True while a job waits or runs."""
        return bool(self._size or self._running)

    def pending(self, key: object) -> bool:
        """True while a job submitted with ``key`` waits or runs."""
        return key in self._pending

    @property
    def pending_keys(self) -> int:
        """How many keys (channel UUIDs...) have a job waiting or running; 0 once all work is done."""
        return len(self._pending)

    def run_now(self, key: object, fn: Callable[..., Any], *args: Any) -> None:
        """Run the sync ``fn(*args)`` at once when nothing of ``key`` waits or runs (so per-key order
        holds), else queue it; an awaitable it returns is queued. Errors are logged and counted."""
        if key in self._pending or self.closed:
            self.submit(key, fn, *args)
            return
        try:
            result = fn(*args)
        except Exception:
            self._report(fn, None, key)
            return
        if result is not None and inspect.isawaitable(result):
            self.submit(key, None, result)

    def submit(self, key: object, fn: Callable[..., Any] | None, *args: Any) -> bool:
        """Queue ``fn(*args)`` (sync or async); ``fn=None`` queues the awaitable ``args[0]``.

        Returns False when the job was dropped (queue full under the policy, or closed).
        """
        n = self._size
        if self.closed or (n >= self.max_queue and (self.policy == "drop" or n >= 2 * self.max_queue)):
            self.dropped += 1
            if fn is None:
                discard(args[0])
            return False
        orig = key
        if self.concurrency == 1:
            key = None
        elif key is None:  # no order to keep: a key of its own
            key = object()
        q = self._by_key.get(key)
        if q is None:
            q = self._by_key[key] = collections.deque()
            self._ready.append(key)
        q.append((fn, args, orig))
        pending = self._pending
        pending[orig] = pending.get(orig, 0) + 1
        self._size = n + 1
        if n + 1 >= self.max_queue and self.policy == "pause" and not self._pressing:
            self._set_pressure(True)
        idle = self._idle
        while idle:
            fut = idle.popleft()
            if not fut.done():
                fut.set_result(None)
                return True
        if len(self._workers) < self.concurrency:
            self._start_worker()
        return True

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str = "task") -> asyncio.Task[Any] | None:
        """Run library-internal work as a task this executor owns (cancelled by :meth:`aclose`).

        Not bounded by ``max_queue``: for the library's own follow-up commands
        (a filter to drop, a call to clean up), not for user handlers. Errors are logged.
        """
        if self.closed:
            coro.close()
            return None
        try:
            task = asyncio.get_running_loop().create_task(coro)
        except RuntimeError:  # no running loop (interpreter shutting down)
            coro.close()
            return None
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.warning("%s failed: %s", what, t.exception())

        task.add_done_callback(done)
        return task

    # -- running ------------------------------------------------------------------

    def _set_pressure(self, on: bool) -> None:
        self._pressing = on
        if on:
            self.pauses += 1
        if self._pressure is not None:
            self._pressure(on)

    def _start_worker(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._work())
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        ready = self._ready
        by_key = self._by_key
        low = self.max_queue // 2
        while True:
            if not ready:
                if not self._running:
                    self._wake_drained()
                fut = loop.create_future()
                self._idle.append(fut)
                await fut
                continue
            key = ready.popleft()
            q = by_key[key]
            fn, args, orig = q.popleft()
            self._size -= 1
            if self._pressing and self._size <= low:
                self._set_pressure(False)
            self._running += 1
            try:
                if fn is None:
                    await args[0]
                else:
                    result = fn(*args)
                    if inspect.isawaitable(result):
                        await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self._report(fn, args, orig)
            finally:
                self._running -= 1
                left = self._pending.get(orig, 1) - 1
                if left:
                    self._pending[orig] = left
                else:
                    self._pending.pop(orig, None)
                if q:
                    ready.append(key)
                elif by_key.get(key) is q:
                    del by_key[key]

    def _report(self, fn: Callable[..., Any] | None, args: tuple[Any, ...] | None, key: object) -> None:
        """Log and count the exception being handled, raised by a job."""
        self.errors += 1
        what = fn if fn is not None else (args[0] if args else None)
        name = getattr(what, "__qualname__", None) or repr(what)
        log.exception("handler %s raised%s", name, "" if key is None else f" (for {key})")

    def _wake_drained(self) -> None:
        waiters, self._drained = self._drained, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until no job waits or runs; ``esl.exceptions.TimeoutError`` after ``timeout``."""
        from esl.exceptions import TimeoutError

        while self.busy and not self.closed:
            fut = asyncio.get_running_loop().create_future()
            self._drained.append(fut)
            if not self._workers:
                self._start_worker()
            try:
                await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"handlers still busy after {timeout}s") from None

    # -- closing ------------------------------------------------------------------

    def close(self) -> None:
        """Stop now: queued jobs are dropped, workers and owned tasks cancelled (not awaited)."""
        if self.closed:
            return
        self.closed = True
        for q in self._by_key.values():
            for fn, args, _ in q:
                if fn is None:
                    discard(args[0])
        self._by_key.clear()
        self._pending.clear()
        self._ready.clear()
        self._size = 0
        if self._pressing:
            self._set_pressure(False)
        for fut in self._idle:
            if not fut.done():
                fut.cancel()
        self._idle.clear()
        for task in (*self._workers, *self._tasks):
            task.cancel()
        self._wake_drained()

    async def aclose(self, grace: float = 0.0) -> None:
        """Give queued and running jobs ``grace`` seconds to finish, then cancel and await every task."""
        if grace > 0 and self.busy and not self.closed:
            try:
                await self.drain(grace)
            except Exception:  # noqa: BLE001 - grace over: whatever is left is cancelled below
                pass
        tasks = [*self._workers, *self._tasks]
        self.close()
        current = asyncio.current_task()
        tasks = [t for t in tasks if t is not current]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def reopen(self) -> None:
        """Accept work again after :meth:`close` (an Inbound connecting anew after ``close()``)."""
        self.closed = False

    def __repr__(self) -> str:
        return (f"<Executor queued={self._size} running={self._running} workers={len(self._workers)}"
                f" dropped={self.dropped}>")

