"""``WorkflowResult``: what a finished prompt produced, read from its history entry.

History is the authoritative record (protocol §9.2): outputs come from it, never from a
hard-coded node id. Failure is decided from ``status.messages`` rather than ``status_str``
alone (§8.7 edge case).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import PurePosixPath
from typing import Any, Literal

from worker.comfyui import protocol as p
from worker.comfyui.errors import ComfyUIError, ExecutionError, PromptInterruptedError, ResultTooLargeError

__all__ = [
    "MAX_OUTPUT_FILES",
    "MAX_RESULT_BYTES",
    "OutputFile",
    "WorkflowResult",
    "check_result_size",
    "error_from_history",
    "files_from_outputs",
    "history_outcome",
]

#: output files and texts of one prompt; a history entry with 10**6 of them took 2.2 GB
MAX_OUTPUT_FILES = 10_000
#: the encoded result (it is stored whole in ``celery-task-meta-<id>``; 217 MB was seen)
MAX_RESULT_BYTES = 8 * 1024 * 1024

Kind = Literal["image", "video", "audio", "text", "latent", "file"]
_VIDEO_EXT = {".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif"}
_KEY_KINDS: dict[str, Kind] = {
    "images": "image",
    "gifs": "video",
    "videos": "video",
    "video": "video",
    "audio": "audio",
    "latents": "latent",
}


@dataclass(frozen=True)
class OutputFile:
    """One output: a file on the pod (fetch with ``GET /view``) or a text value."""

    node_id: str
    kind: Kind
    filename: str | None = None
    subfolder: str = ""
    type: str = "output"
    format: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class WorkflowResult:
    prompt_id: str
    status: Literal["success"]
    outputs: dict[str, Any]
    files: list[OutputFile]
    method: Literal["websocket", "rest_polling"]
    duration_s: float
    progress_updates: int
    server_url: str
    #: outputs dropped by partial validation (``POST /prompt`` 200 with node_errors)
    node_errors: dict[str, Any] = field(default_factory=dict)
    fallback_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowResult:
        """Rebuild from :meth:`to_dict` (keys added by other layers, such as ``pod``, are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["files"] = [OutputFile(**f) for f in values.get("files", [])]
        return cls(**values)


def _kind(key: str, item: Mapping[str, Any], animated: bool) -> Kind:
    suffix = PurePosixPath(str(item.get("filename", ""))).suffix.lower()
    if key == "images" and (animated or suffix in _VIDEO_EXT - {".gif"}):
        return "video"
    return _KEY_KINDS.get(key, "file")


def files_from_outputs(outputs: Mapping[str, Any]) -> list[OutputFile]:
    """Every file and text of every node's UI output (values are always lists, §5.8)."""
    files: list[OutputFile] = []
    for node_id, output in outputs.items():
        if not isinstance(output, Mapping):
            continue
        animated = any(bool(a) for a in output.get("animated", []) if isinstance(output.get("animated"), list))
        for key, items in output.items():
            if not isinstance(items, list) or key == "animated":
                continue
            for item in items:
                if len(files) >= MAX_OUTPUT_FILES:
                    raise ResultTooLargeError(
                        f"the prompt has more than {MAX_OUTPUT_FILES} outputs", limit=MAX_OUTPUT_FILES, what="output files"
                    )
                if key == "text" and isinstance(item, str):
                    files.append(OutputFile(str(node_id), "text", text=item))
                elif isinstance(item, Mapping) and isinstance(item.get("filename"), str):
                    files.append(
                        OutputFile(
                            str(node_id),
                            _kind(key, item, animated),
                            filename=item["filename"],
                            subfolder=str(item.get("subfolder", "") or ""),
                            type=str(item.get("type", "output") or "output"),
                            format=item.get("format") if isinstance(item.get("format"), str) else None,
                        )
                    )
    return files


def history_outcome(entry: Mapping[str, Any]) -> Literal["success", "error", "interrupted"]:
    messages = entry.get("status", {}).get("messages", []) if isinstance(entry.get("status"), Mapping) else []
    names = {m[0] for m in messages if isinstance(m, list | tuple) and m}
    if "execution_interrupted" in names:
        return "interrupted"
    if "execution_error" in names:
        return "error"
    status = entry.get("status")
    if isinstance(status, Mapping) and status.get("status_str") == "error":
        return "error"
    return "success"


def error_from_history(prompt_id: str, entry: Mapping[str, Any]) -> ComfyUIError:
    """The typed error a failed history entry stands for."""
    status = entry.get("status")
    messages = status.get("messages", []) if isinstance(status, Mapping) else []
    for item in messages:
        if not (isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[1], dict)):
            continue
        name, data = item
        event = p.parse_text(json.dumps({"type": name, "data": {"prompt_id": prompt_id, **data}}))
        if isinstance(event, p.ExecutionErrorData) and event.is_fatal:
            return ExecutionError.from_event(event)
        if isinstance(event, p.ExecutionInterruptedData):
            return PromptInterruptedError.from_event(event)
    return ExecutionError(f"prompt {prompt_id} ended with status 'error' and no error details", prompt_id=prompt_id)


def check_result_size(result: Mapping[str, Any]) -> int:
    """The encoded size of a result, or :class:`ResultTooLargeError` past :data:`MAX_RESULT_BYTES`."""
    try:
        size = len(json.dumps(result, default=str))
    except (ValueError, RecursionError):  # outputs nested past the decoder's own bound cannot be stored either
        raise ResultTooLargeError("the prompt's outputs cannot be encoded as JSON", what="result") from None
    if size > MAX_RESULT_BYTES:
        raise ResultTooLargeError(
            f"the result is {size} bytes as JSON, more than the {MAX_RESULT_BYTES} allowed", limit=MAX_RESULT_BYTES, what="result"
        )
    return size
