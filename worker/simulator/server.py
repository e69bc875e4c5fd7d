"""A ComfyUI 0.8.0 stand-in on aiohttp: REST and ``/ws`` on one port.

Routing follows the real server exactly (protocol §4.4): execution events go only to the
prompt's client; ``status`` to every socket; a prompt without ``client_id`` sends its progress
to everyone and its other events to no one. The same-clientId overlap hazard (§4.6) is
reproduced on purpose: the sockets table is keyed by clientId and a closing socket removes
whatever is registered under its id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from worker.comfyui.protocol import ExecutingData, FeatureFlagsData, KnownMessage, StatusData, encode_text
from worker.simulator.engine import Engine, SimulatorTiming
from worker.simulator.faults import Faults
from worker.simulator.origin import origin_mismatch
from worker.simulator.routes_files import FileRoutes
from worker.simulator.routes_info import SERVER_FEATURES, InfoRoutes
from worker.simulator.routes_queue import QueueRoutes

__all__ = ["SimulatorApp"]

log = logging.getLogger(__name__)

_Frame = tuple[str, str | bytes, str | None, str | None]  # kind, payload, event name, target client


class SimulatorApp(QueueRoutes, FileRoutes, InfoRoutes):
    """The aiohttp application with its engine, sockets and faults; the REST routes come from
    the mixins (``routes_queue``, ``routes_files``, ``routes_info``)."""

    def __init__(self, root: Path, timing: SimulatorTiming | None = None, faults: Faults | None = None) -> None:
        self.root = root
        self.faults = faults or Faults()
        self.timing = timing or SimulatorTiming()
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.socket_meta: dict[str, dict[str, Any]] = {}
        self.all_sockets: set[web.WebSocketResponse] = set()
        self.requests: Counter[str] = Counter()
        self.ws_connections = 0
        self.engine = Engine(self, root, self.timing)
        self.engine.on_event = self._on_event
        self._outbox: asyncio.Queue[_Frame] | None = None
        self._held: tuple[web.WebSocketResponse, str, str | bytes] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.app = self._build()

    # ---------------------------------------------------------------- Emitter for the engine

    def send(self, message: KnownMessage, client_id: str | None) -> None:
        self._enqueue(("text", encode_text(message), message.TYPE, client_id))

    def send_binary(self, frame: bytes, client_id: str | None) -> None:
        self._enqueue(("binary", frame, None, client_id))

    def wants_metadata(self, client_id: str) -> bool:
        flags = self.socket_meta.get(client_id, {}).get("feature_flags", {})
        return isinstance(flags, dict) and flags.get("supports_preview_metadata") is True

    def _enqueue(self, frame: _Frame) -> None:
        if self._outbox is not None:
            self._outbox.put_nowait(frame)

    def _on_event(self, name: str, prompt_id: str) -> None:
        if self.faults.take_restart():
            self.restart()

    # ---------------------------------------------------------------- sending

    async def _sender(self) -> None:
        assert self._outbox is not None
        while True:
            kind, payload, event, target = await self._outbox.get()
            if self.faults.take_drop_now():
                await self.drop_all()
            if target is None:
                targets = list(self.sockets.values())
            else:
                socket = self.sockets.get(target)
                targets = [socket] if socket is not None else []
            for ws in targets:
                await self._send_frame(ws, kind, payload, event)
            if targets and self.faults.count_message(event):
                await self.drop_all()

    async def _send_frame(self, ws: web.WebSocketResponse, kind: str, payload: str | bytes, event: str | None) -> None:
        if self.faults.silent:
            return
        mangling = self.faults.take_frame_mangling(event)
        if mangling == "corrupt":
            payload = payload[: max(1, len(payload) // 2)] if kind == "text" else payload[:3]
        if mangling == "reorder" and self._held is None:
            self._held = (ws, kind, payload)
            return
        await self._write(ws, kind, payload)
        if mangling == "duplicate":
            await self._write(ws, kind, payload)
        if self._held is not None and self._held[0] is ws and mangling != "reorder":
            held, self._held = self._held, None
            await self._write(held[0], held[1], held[2])

    async def _write(self, ws: web.WebSocketResponse, kind: str, payload: str | bytes) -> None:
        try:
            if kind == "text":
                await ws.send_str(payload if isinstance(payload, str) else payload.decode("utf-8", "replace"))
            else:
                await ws.send_bytes(payload if isinstance(payload, bytes) else payload.encode())
        except (ConnectionError, RuntimeError) as exc:  # send failures are logged and swallowed, as in ComfyUI
            log.debug("send failed: %s", exc)

    async def drop_all(self, code: int = 1001) -> None:
        for ws in list(self.all_sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=code, message=b"simulated drop")

    def restart(self) -> None:
        """Queue, history, cache and sockets are lost, as when the process restarts."""
        self.engine.restart()
        for ws in list(self.all_sockets):
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().create_task(ws.close(code=1012, message=b"restart"))

    # ---------------------------------------------------------------- app

    def _build(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=104857600)
        routes: list[tuple[str, str, Any]] = [
            ("GET", "/ws", self.ws_handler),
            ("POST", "/prompt", self.post_prompt),
            ("GET", "/prompt", self.get_prompt),
            ("GET", "/queue", self.get_queue),
            ("POST", "/queue", self.post_queue),
            ("POST", "/interrupt", self.post_interrupt),
            ("GET", "/history", self.get_history),
            ("GET", "/history/{prompt_id}", self.get_history_one),
            ("POST", "/history", self.post_history),
            ("GET", "/view", self.get_view),
            ("POST", "/upload/image", self.upload_image),
            ("GET", "/system_stats", self.system_stats),
            ("GET", "/object_info", self.object_info),
            ("GET", "/object_info/{node_class}", self.object_info_one),
            ("GET", "/features", self.features),
            ("POST", "/free", self.free),
        ]
        for method, path, handler in routes:
            app.router.add_route(method, path, handler)
            app.router.add_route(method, "/api" + path, handler)
        app.router.add_route("GET", "/api/jobs", self.get_jobs)
        app.router.add_route("GET", "/api/jobs/{job_id}", self.get_job)
        app.router.add_route("GET", "/_sim/stats", self.sim_stats)
        app.router.add_route("POST", "/_sim/faults", self.sim_faults)
        app.on_startup.append(self._on_startup)
        app.on_cleanup.append(self._on_cleanup)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self._outbox = asyncio.Queue()
        self._tasks = [asyncio.create_task(self._sender()), asyncio.create_task(self.engine.run_forever())]

    async def _on_cleanup(self, app: web.Application) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.drop_all(code=1001)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        resource = request.match_info.route.resource
        canonical = resource.canonical if resource is not None else request.path
        path = canonical[4:] if canonical.startswith("/api/") else canonical
        if not path.startswith("/_sim"):
            self.requests[f"{request.method} {path}"] += 1
            if origin_mismatch(request.headers.get("Host"), request.headers.get("Origin")):
                return web.Response(status=403)
            fault = self.faults.take_route_fault(request.method, path)
            if fault is not None:
                if fault.delay:
                    await asyncio.sleep(fault.delay)
                if fault.status is not None:
                    return web.Response(status=fault.status, text=f"{fault.status} simulated failure")
        response: web.StreamResponse = await handler(request)
        return response

    # ---------------------------------------------------------------- websocket

    async def ws_handler(self, request: web.Request) -> web.StreamResponse:
        refusal = self.faults.take_ws_refusal()
        if refusal is not None:
            return web.Response(status=refusal, text="simulated refusal")
        if self.faults.handshake_delay:
            await asyncio.sleep(self.faults.handshake_delay)
        ws = web.WebSocketResponse(max_msg_size=4 * 1024 * 1024, autoping=False)
        await ws.prepare(request)
        self.ws_connections += 1
        sid = request.query.get("clientId", "") or uuid.uuid4().hex
        self.sockets.pop(sid, None)
        self.sockets[sid] = ws
        self.socket_meta[sid] = {"feature_flags": {}}
        self.all_sockets.add(ws)
        try:
            if not self.faults.silent:  # a silent peer sends nothing at all, the greeting included
                await self._write(ws, "text", encode_text(StatusData(self.engine.queue_remaining(), sid)))
            if self.engine.running_client_id == sid and self.engine.last_node_id is not None and not self.faults.silent:
                await self._write(ws, "text", encode_text(ExecutingData(self.engine.last_node_id)))
            first = True
            async for msg in ws:
                if msg.type == WSMsgType.PING:
                    if not self.faults.silent:  # a silent peer answers nothing, pings included
                        await ws.pong(msg.data)
                    continue
                if msg.type != WSMsgType.TEXT:
                    continue
                try:
                    data = json.loads(msg.data)
                except ValueError:
                    log.debug("unparseable client frame")
                else:
                    if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                        flags = data.get("data")
                        self.socket_meta.setdefault(sid, {})["feature_flags"] = flags if isinstance(flags, dict) else {}
                        await self._write(ws, "text", encode_text(FeatureFlagsData(SERVER_FEATURES)))
                first = False
        finally:
            # Exactly ComfyUI's cleanup: whatever socket is now registered under sid goes too.
            self.sockets.pop(sid, None)
            self.socket_meta.pop(sid, None)
            self.all_sockets.discard(ws)
        return ws

    # ---------------------------------------------------------------- control (REST: the mixins)

    async def sim_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"requests": dict(self.requests), "ws_connections": self.ws_connections, "open_sockets": len(self.all_sockets)}
        )

    async def sim_faults(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        self.faults.arm(body if isinstance(body, dict) else {})
        if self.faults.take_restart():
            self.restart()
        if self.faults.take_drop_now():
            await self.drop_all()
        return web.json_response({"ok": True})
