"""Runs the simulator on its own event-loop thread: for tests, demos and users' CI."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from aiohttp import web

from worker.simulator.engine import SimulatorTiming
from worker.simulator.faults import Faults
from worker.simulator.server import SimulatorApp

__all__ = ["ComfyUISimulator"]


class ComfyUISimulator:
    """Runs :class:`SimulatorApp` on its own event loop thread; for tests, demos and users' CI.

    >>> with ComfyUISimulator() as sim:   # port 0: a free port is chosen
    ...     url = sim.url
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        timing: SimulatorTiming | None = None,
        root: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="comfy-sim-")) if root is None else root
        self.faults = Faults()
        self.sim = SimulatorApp(self.root, timing, self.faults)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ComfyUISimulator:
        self._thread = threading.Thread(target=self._run, name="comfyui-simulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("simulator did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"simulator failed to start: {self._error}") from self._error
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._shutdown())
            loop.close()

    async def _startup(self) -> None:
        # no access log: request lines carry query strings, and a `?token=` is a credential
        self._runner = web.AppRunner(self.sim.app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            self.port = int(sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self.sim.drop_all()
            await self._runner.cleanup()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the simulator's loop and return its result (for tests)."""
        assert self._loop is not None

        async def _call() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(_call(), self._loop).result(10)

    def restart(self) -> None:
        self.call(self.sim.restart)

    def drop_sockets(self) -> None:
        self.call(self.sim.drop_all)

    def request_counts(self) -> dict[str, int]:
        return dict(self.call(lambda: dict(self.sim.requests)))

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ComfyUISimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
