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
import ipaddress
import json
import logging
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from worker.comfyui.protocol import ExecutingData, FeatureFlagsData, KnownMessage, StatusData, encode_text
from worker.simulator.engine import Engine, SimulatorTiming
from worker.simulator.faults import Faults
from worker.simulator.jobs import job_view
from worker.simulator.nodes import NODE_CLASSES
from worker.simulator.validation import PromptRejected, validate_prompt

__all__ = ["SimulatorApp"]

log = logging.getLogger(__name__)

SERVER_FEATURES: dict[str, Any] = {
    "supports_preview_metadata": True,
    "max_upload_size": 104857600,
    "extension": {"manager": {"supports_v4": True}},
}

_Frame = tuple[str, str | bytes, str | None, str | None]  # kind, payload, event name, target client


def _is_loopback(hostname: str | None) -> bool:
    if not hostname:
        return False
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _origin_mismatch(host: str | None, origin: str | None) -> bool:
    """ComfyUI's Host/Origin check (protocol §2.4): only for loopback hosts; a port missing on
    either side is dropped from the other before comparing."""
    if host is None or origin is None:
        return False
    parsed_origin = urlsplit(origin)
    parsed_host = urlsplit("//" + host.lower())
    if not _is_loopback(parsed_host.hostname):
        return False
    host_part: str | None = host.lower()
    origin_part: str | None = parsed_origin.netloc.lower()
    if parsed_origin.port is None:
        host_part = parsed_host.hostname
    if parsed_host.port is None:
        origin_part = parsed_origin.hostname
    if not host_part or not origin_part:
        return False
    return host_part != origin_part


class SimulatorApp:
    """The aiohttp application with its engine, sockets and faults."""

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
            if _origin_mismatch(request.headers.get("Host"), request.headers.get("Origin")):
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

    # ---------------------------------------------------------------- REST

    @staticmethod
    async def _json_body(request: web.Request) -> Any:
        text = await request.text()
        return json.loads(text)

    async def post_prompt(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
        except ValueError:
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        if not isinstance(body, dict):
            return web.Response(status=500, text="500 Internal Server Error\n\nServer got itself in trouble")
        try:
            validated = validate_prompt(body, self.engine.files.input_files())
        except PromptRejected as rejected:
            return web.json_response(rejected.body, status=400)
        prompt_id = str(body["prompt_id"]) if "prompt_id" in body else str(uuid.uuid4())
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        extra["create_time"] = int(time.time() * 1000)
        raw_number = body.get("number")
        number = float(raw_number) if isinstance(raw_number, int | float) else None
        queued = self.engine.submit(
            prompt_id=prompt_id,
            prompt=body["prompt"],
            extra_data=extra,
            outputs=validated.outputs,
            number=number,
            front=bool(body.get("front")),
        )
        if self.faults.prompt_reply_delay:
            await asyncio.sleep(self.faults.prompt_reply_delay)
        return web.json_response({"prompt_id": prompt_id, "number": queued, "node_errors": validated.node_errors})

    async def get_prompt(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({"exec_info": {"queue_remaining": self.engine.queue_remaining()}})

    async def get_queue(self, request: web.Request) -> web.StreamResponse:
        running = [self.engine.running.as_list()] if self.engine.running else []
        return web.json_response({"queue_running": running, "queue_pending": [i.as_list() for i in self.engine.pending()]})

    async def post_queue(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
        except ValueError:
            return web.Response(status=500, text="500 Internal Server Error")
        if not isinstance(body, dict):
            return web.Response(status=500, text="500 Internal Server Error")
        if body.get("clear"):
            self.engine.clear_pending()
        if isinstance(body.get("delete"), list):
            self.engine.delete_pending([str(i) for i in body["delete"]])
        return web.Response(status=200)

    async def post_interrupt(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()
        prompt_id: str | None = None
        if text:
            try:
                body = json.loads(text)
            except ValueError:
                body = {}
            if body is None:
                return web.Response(status=500, text="500 Internal Server Error")
            if isinstance(body, dict) and body.get("prompt_id") is not None:
                prompt_id = str(body["prompt_id"])
        self.engine.interrupt(prompt_id)
        return web.Response(status=200)

    async def get_history(self, request: web.Request) -> web.StreamResponse:
        items = list(self.engine.history.items())
        offset = int(request.query.get("offset", 0) or 0)
        max_items = request.query.get("max_items")
        if offset:
            items = items[offset:]
            if max_items is not None:
                items = items[: int(max_items)]
        elif max_items is not None:
            items = items[-int(max_items) :] if int(max_items) > 0 else []
        return web.json_response(dict(items))

    async def get_history_one(self, request: web.Request) -> web.StreamResponse:
        prompt_id = request.match_info["prompt_id"]
        entry = self.engine.history.get(prompt_id)
        return web.json_response({prompt_id: entry} if entry is not None else {})

    async def post_history(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await self._json_body(request)
        except ValueError:
            return web.Response(status=500, text="500 Internal Server Error")
        if isinstance(body, dict):
            if body.get("clear"):
                self.engine.history.clear()
            for prompt_id in body.get("delete", []) or []:
                self.engine.history.pop(str(prompt_id), None)
        return web.Response(status=200)

    async def get_view(self, request: web.Request) -> web.StreamResponse:
        filename = request.query.get("filename")
        if not filename:
            return web.Response(status=404)
        kind = request.query.get("type", "output")
        for suffix in ("output", "input", "temp"):
            if filename.endswith(f" [{suffix}]"):
                filename, kind = filename[: -len(suffix) - 3], suffix
        if filename.startswith("/") or ".." in filename or kind not in ("output", "input", "temp"):
            return web.Response(status=400)
        base = (self.root / kind).resolve()
        folder = (base / request.query.get("subfolder", "")).resolve()
        if os.path.commonpath([base, folder]) != str(base):
            return web.Response(status=403)
        path = folder / os.path.basename(filename)
        if not path.is_file():
            return web.Response(status=404)
        content_type = {".png": "image/png", ".gif": "image/gif", ".jpg": "image/jpeg", ".mp4": "video/mp4"}.get(
            path.suffix, "application/octet-stream"
        )
        # streamed from disk, as ComfyUI does (web.FileResponse): a large video never sits in memory
        return web.FileResponse(path, headers={"Content-Type": content_type, "Content-Disposition": f'filename="{path.name}"'})

    async def upload_image(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        image = form.get("image")
        if image is None or not isinstance(image, web.FileField):
            return web.Response(status=400)
        kind = str(form.get("type", "input") or "input")
        if kind not in ("input", "temp", "output"):
            return web.Response(status=500, text="500 Internal Server Error")
        subfolder = str(form.get("subfolder", "") or "")
        base = (self.root / kind).resolve()
        folder = (base / subfolder).resolve()
        if os.path.commonpath([base, folder]) != str(base):
            return web.Response(status=400)
        folder.mkdir(parents=True, exist_ok=True)
        content = image.file.read()
        name = os.path.basename(image.filename or "upload.png")
        overwrite = str(form.get("overwrite", "")).lower() in ("true", "1")
        stem, ext = os.path.splitext(name)
        candidate, index = name, 1
        while not overwrite and (folder / candidate).exists():
            if (folder / candidate).read_bytes() == content:
                break
            candidate = f"{stem} ({index}){ext}"
            index += 1
        (folder / candidate).write_bytes(content)
        return web.json_response({"name": candidate, "subfolder": subfolder, "type": kind})

    async def system_stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "system": {
                    "os": "linux",
                    "ram_total": 25276510208,
                    "ram_free": 24092356608,
                    "comfyui_version": "0.8.0",
                    "required_frontend_version": "1.35.9",
                    "installed_templates_version": "0.7.67",
                    "required_templates_version": "0.7.67",
                    "python_version": "simulated",
                    "pytorch_version": "simulated",
                    "embedded_python": False,
                    "argv": ["comfy-celery-simulator"],
                },
                "devices": [
                    {
                        "name": "cpu",
                        "type": "cpu",
                        "index": None,
                        "vram_total": 0,
                        "vram_free": 0,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        )

    async def object_info(self, request: web.Request) -> web.StreamResponse:
        return web.json_response({name: cls.object_info() for name, cls in NODE_CLASSES.items()})

    async def object_info_one(self, request: web.Request) -> web.StreamResponse:
        cls = NODE_CLASSES.get(request.match_info["node_class"])
        return web.json_response({cls.class_type: cls.object_info()} if cls else {})

    async def features(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(SERVER_FEATURES)

    async def free(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        self.engine.free(free_memory=isinstance(body, dict) and body.get("free_memory") is True)
        return web.Response(status=200)

    async def get_jobs(self, request: web.Request) -> web.StreamResponse:
        ids = [i.prompt_id for i in ([self.engine.running] if self.engine.running else []) + self.engine.pending()] + list(
            self.engine.history
        )
        jobs = [j for j in (job_view(self.engine, i, False) for i in ids) if j is not None]
        wanted = request.query.get("status")
        if wanted:
            allowed = set(wanted.split(","))
            if not allowed <= {"pending", "in_progress", "completed", "failed"}:
                return web.json_response({"error": f"Invalid status: {wanted}"}, status=400)
            jobs = [j for j in jobs if j["status"] in allowed]
        jobs.sort(key=lambda j: j.get("create_time") or 0, reverse=request.query.get("sort_order", "desc") == "desc")
        try:
            offset = int(request.query.get("offset", 0))
            limit = int(request.query["limit"]) if "limit" in request.query else None
        except ValueError:
            return web.json_response({"error": "offset and limit must be integers"}, status=400)
        page = jobs[offset : offset + limit if limit is not None else None]
        return web.json_response(
            {"jobs": page, "pagination": {"offset": offset, "limit": limit, "total": len(jobs), "has_more": offset + len(page) < len(jobs)}}
        )

    async def get_job(self, request: web.Request) -> web.StreamResponse:
        job = job_view(self.engine, request.match_info["job_id"], True)
        if job is None:
            return web.json_response({"error": "Job not found"}, status=404)
        return web.json_response(job)

    # ---------------------------------------------------------------- control

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
