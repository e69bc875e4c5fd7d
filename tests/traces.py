"""Reading the recorded ComfyUI 0.8.0 traces kept in ``tests/data/comfyui-traces``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The recorded ComfyUI 0.8.0 traffic: ground truth, copied into the repository so that a plain
#: clone (a user's, a fork's CI) runs the whole suite; COMFY_TRACES_DIR points elsewhere.
TRACE_DIR = Path(os.environ.get("COMFY_TRACES_DIR") or ROOT / "tests" / "data" / "comfyui-traces")
WORKFLOW_DIR = TRACE_DIR / "workflows"


def trace_files() -> list[Path]:
    files = sorted(TRACE_DIR.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"no traces in {TRACE_DIR}: they belong in tests/data/comfyui-traces")
    return files


def load_trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def incoming_text_frames() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every recorded server→client text frame, with the scenario it came from."""
    for path in trace_files():
        for record in load_trace(path):
            if record["kind"] == "ws_text":
                yield path.stem, record["msg"]


def load_workflow(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((WORKFLOW_DIR / name).read_text())
    return data
