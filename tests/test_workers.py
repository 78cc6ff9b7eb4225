"""Outbound on many worker processes (esl.workers, ``esl outbound run --workers``), driven by the fake's socket app."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path

import pytest

from esl.testing import FakeFreeSWITCH

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="workers are forked")

APP = """
    import asyncio, os

    async def handler(session):
        await session.channel.setvar("worker_pid", os.getpid())
        dest = session.context.get("Caller-Destination-Number")
        if dest == "crash":
            os._exit(3)
        await session.channel.answer()
        if dest == "long":
            await asyncio.sleep(3600)
        elif dest == "short":
            await asyncio.sleep(0.6)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Pool:
    """A worker pool in a subprocess (its own session, killed as a group), its stderr collected as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.ready = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        while True:
            line = (await self.proc.stderr.readline()).decode()
            if not line:
                break
            self.lines.append(line)
            if "listening" in line and not self.ready.done():
                self.ready.set_result(line)
        if not self.ready.done():
            self.ready.set_exception(AssertionError("the pool exited before listening: " + "".join(self.lines)))

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    async def close(self) -> None:
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await self.proc.wait()
        await asyncio.wait_for(self._reader, 10)


async def start(args: list[str], cwd: Path) -> tuple[Pool, str]:
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, PYTHONPATH=str(cwd)), start_new_session=True,
    )  # fmt: skip
    pool = Pool(proc)
    line = await asyncio.wait_for(pool.ready, 60)
    return pool, line


async def place(fake: FakeFreeSWITCH, dest: str, n: int = 1) -> list[object]:
    return [await fake.call(dest) for _ in range(n)]


async def wait_pid(ch: object, timeout: float = 10.0) -> str:
    for _ in range(int(timeout / 0.01)):
        pid = ch.variables.get("worker_pid")  # type: ignore[attr-defined]
        if pid:
            return str(pid)
        await asyncio.sleep(0.01)
    raise AssertionError("the call never reached a worker")


async def test_cli_workers_spread_restart_and_drain(tmp_path: Path) -> None:
    (tmp_path / "wapp.py").write_text(textwrap.dedent(APP))
    port = free_port()
    async with FakeFreeSWITCH() as fake:
        for dest in ("quick", "crash", "long", "short"):
            fake.dialplan[dest] = [("socket", f"127.0.0.1:{port} async full")]
        pool, line = await start(
            [sys.executable, "-m", "esl", "outbound", "run", "wapp:handler", "--workers", "2", "--port", str(port),
             "--grace", "2", "--log-level", "warning"], tmp_path)  # fmt: skip
        proc = pool.proc
        pids = set(line.split("pids ")[1].split(";")[0].split())
        assert len(pids) == 2 and "SO_REUSEPORT" in line
        try:
            calls = await place(fake, "quick", 24)
            seen = {await wait_pid(ch) for ch in calls}
            for ch in calls:
                await ch.wait_hangup(10)  # type: ignore[attr-defined]
            assert seen == pids  # the kernel spread the calls over both workers

            crash = (await place(fake, "crash"))[0]
            crashed = await wait_pid(crash)
            await crash.wait_hangup(10)  # type: ignore[attr-defined]
            # the pool starts a new worker; calls keep being served meanwhile and after
            new: set[str] = set()
            deadline = asyncio.get_running_loop().time() + 30
            while not new - pids and asyncio.get_running_loop().time() < deadline:
                ch = (await place(fake, "quick"))[0]
                new.add(await wait_pid(ch))
                await ch.wait_hangup(10)  # type: ignore[attr-defined]
            assert new - pids and crashed not in new, pool.stderr

            long_call, short_call = (await place(fake, "long"))[0], (await place(fake, "short"))[0]
            await wait_pid(long_call)
            await wait_pid(short_call)
            proc.send_signal(signal.SIGTERM)
            await short_call.wait_hangup(10)  # type: ignore[attr-defined]
            await long_call.wait_hangup(10)  # type: ignore[attr-defined]
            assert short_call.hangup_cause == "NORMAL_CLEARING"  # type: ignore[attr-defined]
            assert long_call.hangup_cause == "SYSTEM_SHUTDOWN"  # type: ignore[attr-defined]
            assert await asyncio.wait_for(proc.wait(), 20) == 0, pool.stderr
        finally:
            await pool.close()
        err = pool.stderr
        assert "exited with 3" in err and "1 worker restarts" in err, err
        # after the stop nothing listens on the port any more
        late = (await place(fake, "quick"))[0]
        await late.wait_hangup(10)  # type: ignore[attr-defined]
        assert "worker_pid" not in late.variables  # type: ignore[attr-defined]


async def test_shared_socket_mode(tmp_path: Path) -> None:
    (tmp_path / "wapp2.py").write_text(textwrap.dedent(APP))
    port = free_port()
    code = f"""
        import logging, sys
        from esl.workers import serve_workers
        logging.basicConfig(level=logging.INFO)
        def ready(pool):
            print("listening pids", " ".join(map(str, pool.pids)), ";", file=sys.stderr, flush=True)
        sys.exit(serve_workers("wapp2:handler", "127.0.0.1", {port}, workers=2, grace=1.0,
                               reuse_port=False, on_ready=ready))
    """
    async with FakeFreeSWITCH() as fake:
        fake.dialplan["quick"] = [("socket", f"127.0.0.1:{port} async full")]
        fake.dialplan["long"] = [("socket", f"127.0.0.1:{port} async full")]
        pool, line = await start([sys.executable, "-c", textwrap.dedent(code)], tmp_path)
        proc = pool.proc
        pids = set(line.split("pids ")[1].split(";")[0].split())
        try:
            calls = await place(fake, "quick", 10)
            seen = {await wait_pid(ch) for ch in calls}
            assert seen <= pids and seen
            long_call = (await place(fake, "long"))[0]
            await wait_pid(long_call)
            proc.send_signal(signal.SIGINT)
            await long_call.wait_hangup(10)  # type: ignore[attr-defined]
            assert long_call.hangup_cause == "SYSTEM_SHUTDOWN"  # type: ignore[attr-defined]
            assert await asyncio.wait_for(proc.wait(), 20) == 0, pool.stderr
        finally:
            await pool.close()


async def test_workers_drain_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    (tmp_path / "wapp3.py").write_text(textwrap.dedent(APP))
    port = free_port()
    async with FakeFreeSWITCH() as fake:
        fake.dialplan["long"] = [("socket", f"127.0.0.1:{port} async full")]
        pool, line = await start(
            [sys.executable, "-m", "esl", "outbound", "run", "wapp3:handler", "--workers", "1", "--port", str(port),
             "--grace", "0.5", "--log-level", "warning"], tmp_path)  # fmt: skip
        try:
            call = (await place(fake, "long"))[0]
            try:
                await wait_pid(call)
            except AssertionError:
                raise AssertionError(pool.stderr + repr(call.variables) + repr(call.hangup_cause)) from None
            os.kill(pool.proc.pid, signal.SIGKILL)  # the supervisor alone
            await call.wait_hangup(15)  # type: ignore[attr-defined]
            assert call.hangup_cause == "SYSTEM_SHUTDOWN"  # type: ignore[attr-defined]
        finally:
            await pool.close()
