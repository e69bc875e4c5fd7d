"""The example web app: what a FastAPI backend on comfy-celery looks like, end to end.

Everything goes through :class:`tasks.client.ComfyClient` (the app never imports the worker):

* ``POST /api/jobs`` submits a sample workflow (or inverts an uploaded image) with previews on;
* ``GET /api/jobs/{id}`` is the job's JSON view; ``POST /api/jobs/{id}/cancel`` cancels it;
* ``GET /api/jobs/{id}/events`` streams the job's updates as Server-Sent Events, straight from
  ``client.watch`` (no polling: the watch blocks on Redis pub/sub), ending with the final state;
* ``GET /api/jobs/{id}/preview`` is the latest sampler preview, ``/output`` the first output image;
* ``GET /`` is a page with a progress bar, the live preview and the final image.

The SSE stream is a plain generator run on Starlette's thread pool: one thread and one Redis
connection per watching browser, idle (blocked on the socket) between updates.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse

from tasks.client import ComfyClient, JobView, WatchTimeout

__all__ = ["MAX_UPLOAD_BYTES", "SAMPLES", "UPLOAD_WORKFLOW", "create_app", "output_location", "sse_events"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_OUTPUT_BYTES = 64 * 1024 * 1024
WATCH_SECONDS = 3600.0


def _txt2img() -> dict[str, Any]:
    workflow: dict[str, Any] = json.loads((ROOT / "worker" / "app" / "samples" / "txt2img.json").read_text())
    return workflow


SAMPLES: dict[str, dict[str, Any]] = {"txt2img": _txt2img()}
#: what an uploaded image goes through: LoadImage refers to the input "image" (the media pipeline uploads it to the pod)
UPLOAD_WORKFLOW: dict[str, Any] = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "input:image"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inverted"}},
}


def sse_events(updates: Iterator[JobView]) -> Iterator[str]:
    """Server-Sent Events framing: one ``update`` event per view, then ``end``; a watch that
    times out ends with a ``timeout`` event (the browser may reconnect)."""
    yield "retry: 2000\n\n"
    try:
        for number, view in enumerate(updates, 1):
            yield f"id: {number}\nevent: update\ndata: {json.dumps(view, separators=(',', ':'))}\n\n"
    except WatchTimeout as exc:
        yield f"event: timeout\ndata: {json.dumps(exc.last)}\n\n"
        return
    yield "event: end\ndata: {}\n\n"


def output_location(result: Mapping[str, Any], index: int = 0) -> str | None:
    """Where the ``index``-th output image is: in the output store when the workers have one
    (the result's ``media`` section: its presigned HTTPS URL, or a ``file://`` URL of a file
    store on this machine), else on the pod (``/view``)."""
    media = result.get("media")
    stored = media.get("files", []) if isinstance(media, Mapping) else []
    images = [f for f in stored or result.get("files", []) if isinstance(f, Mapping) and f.get("kind") == "image"]
    if index >= len(images):
        return None
    entry = images[index]
    for key in ("presigned_url", "url"):
        if isinstance(entry.get(key), str) and entry[key].startswith(("http://", "https://", "file://")):
            return str(entry[key])
    query = urllib.parse.urlencode({k: entry.get(k) or "" for k in ("filename", "subfolder", "type")})
    return f"{str(result.get('server_url', '')).rstrip('/')}/view?{query}"


def _sniff(body: bytes) -> str:
    if body.startswith(b"\x89PNG"):
        return "image/png"
    return "image/jpeg" if body.startswith(b"\xff\xd8") else "application/octet-stream"


def _fetch(url: str) -> tuple[bytes, str]:
    """Read an output (capped): from the store's presigned URL, a local file store or the pod."""
    if url.startswith("file://"):
        path = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path))
        with path.open("rb") as file:
            body = file.read(MAX_OUTPUT_BYTES + 1)
        media_type = _sniff(body)
    else:
        with urllib.request.urlopen(url, timeout=10) as answer:  # a URL from our own result
            body = answer.read(MAX_OUTPUT_BYTES + 1)
            media_type = answer.headers.get_content_type()
    if len(body) > MAX_OUTPUT_BYTES:
        raise HTTPException(502, "output too large")
    return body, media_type


async def _job_of(sample: str, image: UploadFile | None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The workflow (a sample with a fresh seed, or the upload workflow) and its inputs."""
    if image is not None and image.filename:
        data = await image.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise HTTPException(413, f"the image is over {MAX_UPLOAD_BYTES} bytes")
        return copy.deepcopy(UPLOAD_WORKFLOW), {"image": {"base64": base64.b64encode(data).decode()}}
    if sample not in SAMPLES:
        raise HTTPException(400, f"unknown sample {sample!r}")
    workflow = copy.deepcopy(SAMPLES[sample])
    for node in workflow.values():  # a new seed per run: ComfyUI would return the cached image otherwise
        if "seed" in node.get("inputs", {}):
            node["inputs"]["seed"] = secrets.randbelow(2**32)
    return workflow, None


def _output_of(view: JobView, index: int) -> tuple[bytes, str]:
    if view["state"] != "SUCCESS":
        raise HTTPException(409, f"the job is {view['state']}")
    location = output_location(view["result"], index)
    if location is None:
        raise HTTPException(404, "no such output image")
    return _fetch(location)


def create_app(client: ComfyClient) -> FastAPI:
    app = FastAPI(title="comfy-celery example")

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(HERE / "static" / "index.html", media_type="text/html")

    @app.get("/api/samples")
    def samples() -> list[str]:
        return sorted(SAMPLES)

    @app.post("/api/jobs", status_code=201)
    async def submit(sample: Annotated[str, Form()] = "txt2img", image: Annotated[UploadFile | None, File()] = None) -> dict[str, str]:
        workflow, inputs = await _job_of(sample, image)
        return {"job_id": client.submit(workflow, inputs=inputs, options={"previews": True})}

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str) -> dict[str, Any]:
        return dict(client.status(job_id))

    @app.post("/api/jobs/{job_id}/cancel", status_code=202)
    def cancel(job_id: str) -> dict[str, str]:
        client.cancel(job_id)
        return {"job_id": job_id}

    @app.get("/api/jobs/{job_id}/events")
    def events(job_id: str) -> StreamingResponse:
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(sse_events(client.watch(job_id, timeout=WATCH_SECONDS)), media_type="text/event-stream", headers=headers)

    @app.get("/api/jobs/{job_id}/preview")
    def preview(job_id: str) -> Response:
        image = client.preview(job_id)
        if image is None:
            return JSONResponse({"detail": "no preview (yet)"}, status_code=404)
        media_type = _sniff(image)
        return Response(image, media_type=media_type, headers={"Cache-Control": "no-store"})

    @app.get("/api/jobs/{job_id}/output")
    def output(job_id: str, index: int = 0) -> Response:
        body, media_type = _output_of(client.status(job_id), index)
        return Response(body, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})

    return app
