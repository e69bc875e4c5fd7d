"""The ComfyUI library: protocol, errors, clock, clients and progress.

May import: the standard library, ``requests`` and ``websocket-client``, and itself. Never
Celery, never ``config`` or the environment, never the fleet, the simulator or the app layer:
anyone can use it to drive a ComfyUI server from Python. The names below are imported on first
use, so ``import worker.comfyui.protocol`` (the simulator's only import) stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worker.comfyui.errors import ComfyUIError
    from worker.comfyui.follower import PromptFollower
    from worker.comfyui.job_request import JobRequest
    from worker.comfyui.observer import JobObserver
    from worker.comfyui.pod_client import ComfyUIPodClient, PodClientSettings
    from worker.comfyui.rest_client import ComfyUIRestClient
    from worker.comfyui.results import OutputFile, WorkflowResult
    from worker.comfyui.websocket_client import ComfyUIWebSocketClient, WebSocketSettings

_EXPORTS = {
    "ComfyUIError": "worker.comfyui.errors",
    "JobObserver": "worker.comfyui.observer",
    "JobRequest": "worker.comfyui.job_request",
    "PromptFollower": "worker.comfyui.follower",
    "ComfyUIPodClient": "worker.comfyui.pod_client",
    "PodClientSettings": "worker.comfyui.job_request",
    "ComfyUIRestClient": "worker.comfyui.rest_client",
    "OutputFile": "worker.comfyui.results",
    "WorkflowResult": "worker.comfyui.results",
    "ComfyUIWebSocketClient": "worker.comfyui.websocket_client",
    "WebSocketSettings": "worker.comfyui.websocket_client",
}

__all__ = [
    "ComfyUIError",
    "ComfyUIPodClient",
    "ComfyUIRestClient",
    "ComfyUIWebSocketClient",
    "JobObserver",
    "JobRequest",
    "OutputFile",
    "PodClientSettings",
    "PromptFollower",
    "WebSocketSettings",
    "WorkflowResult",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
