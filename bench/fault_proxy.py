"""A TCP fault proxy on 127.0.0.1, for chaos runs: what a bad network or a broken proxy does.

It forwards bytes both ways between a client and one upstream (a ComfyUI pod or the simulator),
so HTTP and WebSocket traffic pass through unchanged, until a fault is armed. Faults hit the
next chunks a client sends (a request, a WebSocket frame), on any connection, keep-alive ones
included (a fault on new connections only would miss ``requests``' pooled sockets):

* ``drop_reply``: forward the request, then close without its reply (the lost-reply case);
* ``truncate``: forward the request, pass the first ``truncate_bytes`` of the reply, then close;
* ``bad_gateway``: forward the request, answer ``502 Bad Gateway`` in place of its reply (a
  proxy whose upstream timed out after accepting the request);
* ``blackhole``: swallow the request and hold the connection silent for ``hold`` seconds;
* ``cut``: close at once, request unsent;
* ``delay``: hold the request ``delay`` seconds, then forward it;
* ``refuse``: new connections are closed at once for ``seconds`` (see :meth:`refuse`);
* :meth:`cut_all`: close every open connection now (a pod or proxy restart, a partition).

Only 127.0.0.1 is accepted as listening address and upstream: this is a test tool.

    with FaultProxy(upstream_port) as proxy:      # proxy.url instead of the pod's URL
        proxy.arm("drop_reply", times=1)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

__all__ = ["FAULT_KINDS", "FaultKind", "FaultProxy"]

FaultKind = Literal["drop_reply", "truncate", "bad_gateway", "blackhole", "cut", "delay"]
FAULT_KINDS: tuple[FaultKind, ...] = ("drop_reply", "truncate", "bad_gateway", "blackhole", "cut", "delay")
_BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Gateway"
_LOCALHOST = "127.0.0.1"


@dataclass
class _Armed:
    kind: FaultKind
    times: int


class FaultProxy:
    """One listening port forwarding to ``upstream_port`` on 127.0.0.1; thread-safe arming."""

    def __init__(
        self,
        upstream_port: int,
        *,
        upstream_host: str = _LOCALHOST,
        truncate_bytes: int = 20,
        hold: float = 3.0,
        delay: float = 1.0,
    ) -> None:
        if upstream_host != _LOCALHOST:
            raise ValueError("the fault proxy only forwards to 127.0.0.1")
        self.upstream_port = upstream_port
        self.truncate_bytes = truncate_bytes
        self.hold = hold
        self.delay = delay
        self.port = 0
        self.applied: Counter[str] = Counter()
        self._armed: list[_Armed] = []
        self._refuse_until = 0.0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{_LOCALHOST}:{self.port}"

    # ------------------------------------------------------------------ arming (any thread)

    def arm(self, kind: FaultKind, times: int = 1) -> None:
        with self._lock:
            self._armed.append(_Armed(kind, times))

    def refuse(self, seconds: float) -> None:
        with self._lock:
            self._refuse_until = time.monotonic() + seconds

    def cut_all(self) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._close_all)

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()
            self._refuse_until = 0.0

    def _take(self) -> FaultKind | None:
        with self._lock:
            if not self._armed:
                return None
            armed = self._armed[0]
            armed.times -= 1
            if armed.times <= 0:
                self._armed.pop(0)
            self.applied[armed.kind] += 1
            return armed.kind

    def _refusing(self) -> bool:
        with self._lock:
            refusing = time.monotonic() < self._refuse_until
            if refusing:
                self.applied["refuse"] += 1
            return refusing

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._server = loop.run_until_complete(asyncio.start_server(self._handle, _LOCALHOST, 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            self._close_all()
            self._server.close()
            loop.run_until_complete(self._server.wait_closed())
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def _close_all(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    # ------------------------------------------------------------------ forwarding

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._refusing():
            client_w.close()
            return
        try:
            up_r, up_w = await asyncio.wait_for(asyncio.open_connection(_LOCALHOST, self.upstream_port), 5)
        except (OSError, TimeoutError):
            client_w.close()
            return
        self._writers.update((client_w, up_w))
        link = _Link(self, client_r, client_w, up_r, up_w)
        pumps = [asyncio.ensure_future(link.quietly(link.requests)), asyncio.ensure_future(link.quietly(link.replies))]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            for writer in (client_w, up_w):
                self._writers.discard(writer)
                writer.close()


class _Link:
    """One client connection and its upstream: two pumps, and the fault of the request in flight."""

    def __init__(
        self,
        proxy: FaultProxy,
        client_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        up_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter,
    ) -> None:
        self.proxy = proxy
        self.client_r, self.client_w, self.up_r, self.up_w = client_r, client_w, up_r, up_w
        #: None: the reply passes whole; else the bytes of it still allowed through
        self.reply_budget: int | None = None

    @staticmethod
    async def quietly(pump: Callable[[], Awaitable[None]]) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            await pump()

    async def replies(self) -> None:
        while data := await self.up_r.read(65536):
            if self.reply_budget is not None:
                data = data[: max(0, self.reply_budget)]
                self.reply_budget -= len(data)
            if data:
                self.client_w.write(data)
                await self.client_w.drain()
            if self.reply_budget is not None and self.reply_budget <= 0:
                return

    async def requests(self) -> None:
        while data := await self.client_r.read(65536):
            kind = self.proxy._take()
            if kind == "cut":
                return
            if kind == "blackhole":
                await asyncio.sleep(self.proxy.hold)
                return
            if kind == "delay":
                await asyncio.sleep(self.proxy.delay)
            if kind == "bad_gateway":
                self.reply_budget = 0
                self.client_w.write(_BAD_GATEWAY)
                await self.client_w.drain()
            self.up_w.write(data)
            await self.up_w.drain()
            if kind == "drop_reply":
                self.reply_budget = 0
            elif kind == "truncate":
                self.reply_budget = self.proxy.truncate_bytes
