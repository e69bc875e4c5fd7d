"""The routes that read or change the engine's state: ``/prompt``, ``/queue``, ``/interrupt``,
``/history``, ``/free`` and ``/api/jobs``.

Apart from the server (sockets, sending, faults on the wire) because these are the REST API
proper, each a thin translation of a request into an engine call; ``SimulatorApp`` takes them
in as a mixin.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from aiohttp import web

from worker.simulator.engine import Engine
from worker.simulator.faults import Faults
from worker.simulator.jobs import job_view
from worker.simulator.validation import PromptRejected, validate_prompt

__all__ = ["QueueRoutes"]


class QueueRoutes:
    """Prompt submission, queue and history, interrupts, ``/free`` and the jobs API over ``engine``."""

    engine: Engine
    faults: Faults

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
