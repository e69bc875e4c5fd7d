"""The routes that describe the server rather than change it: ``/system_stats``,
``/object_info``, ``/features``.

Apart from the server because their answers are fixed (a CPU-only ComfyUI 0.8.0 and the node
catalogue), so they need none of its state; ``SimulatorApp`` takes them in as a mixin.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from worker.simulator.nodes import NODE_CLASSES

__all__ = ["SERVER_FEATURES", "InfoRoutes"]

SERVER_FEATURES: dict[str, Any] = {
    "supports_preview_metadata": True,
    "max_upload_size": 104857600,
    "extension": {"manager": {"supports_v4": True}},
}


class InfoRoutes:
    """``/system_stats``, ``/object_info`` (all, or one class) and ``/features``."""

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
