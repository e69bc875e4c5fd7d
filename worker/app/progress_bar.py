"""A one-line terminal view of a task's state, from the PROGRESS meta a poller reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["render"]


def render(state: str, meta: Mapping[str, Any] | None, width: int = 30) -> str:
    """``[#########---------]  45.0%  KSampler (node 3) step 4/10  websocket  pod0``"""
    if state != "PROGRESS" or not meta:
        return {"PENDING": "waiting for a worker…", "STARTED": "started…", "RETRY": "retrying…"}.get(state, state)
    progress = float(meta.get("progress") or 0.0)
    filled = int(width * min(100.0, max(0.0, progress)) / 100.0 + 0.5)  # half up, not to even
    parts = [f"[{'#' * filled}{'-' * (width - filled)}] {progress:5.1f}%"]
    if meta.get("status") == "queued":
        position = meta.get("queue_position")
        parts.append("queued" + (f" (position {position})" if position is not None else ""))
    elif meta.get("node_type"):
        node = f"{meta['node_type']} (node {meta.get('node_id')})"
        if meta.get("step") is not None and (meta.get("step_max") or 0) > 1:  # nodes without a progress bar report 0/1
            node += f" step {int(meta['step'])}/{int(meta['step_max'])}"
        parts.append(node)
    parts.append(str(meta.get("method", "")))
    if meta.get("pod"):
        parts.append(str(meta["pod"]))
    return "  ".join(p for p in parts if p)
