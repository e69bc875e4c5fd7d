"""The file routes: ``GET /view`` streams an output, input or temp file; ``POST /upload/image``
stores an upload with ComfyUI's naming (``name (1).png`` unless ``overwrite``).

Apart from the server because these touch only the folders under ``root``, and both guard
against paths that leave them; ``SimulatorApp`` takes them in as a mixin.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web

__all__ = ["FileRoutes"]


class FileRoutes:
    """``/view`` and ``/upload/image`` over the folders under ``root``."""

    root: Path

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
