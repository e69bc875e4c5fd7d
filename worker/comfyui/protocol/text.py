"""Text frames: the closed union of known messages, and total parsing and encoding."""

from __future__ import annotations

import json
from typing import Any

from worker.comfyui.protocol._fields import MAX_FRAME_BYTES, _Invalid
from worker.comfyui.protocol.messages import (
    ExecutedMessageData,
    ExecutingData,
    ExecutionCachedData,
    ExecutionErrorData,
    ExecutionInterruptedData,
    ExecutionStartData,
    ExecutionSuccessData,
    FeatureFlagsData,
    LogsData,
    MalformedMessage,
    ProgressData,
    ProgressStateMessageData,
    StatusData,
    UnknownMessage,
)

KnownMessage = (
    StatusData
    | FeatureFlagsData
    | ExecutionStartData
    | ExecutionCachedData
    | ExecutingData
    | ProgressData
    | ProgressStateMessageData
    | ExecutedMessageData
    | ExecutionSuccessData
    | ExecutionErrorData
    | ExecutionInterruptedData
    | LogsData
)
ComfyUIMessage = KnownMessage | UnknownMessage | MalformedMessage

_TEXT_TYPES: dict[str, Any] = {
    cls.TYPE: cls
    for cls in (
        StatusData,
        FeatureFlagsData,
        ExecutionStartData,
        ExecutionCachedData,
        ExecutingData,
        ProgressData,
        ProgressStateMessageData,
        ExecutedMessageData,
        ExecutionSuccessData,
        ExecutionErrorData,
        ExecutionInterruptedData,
        LogsData,
    )
}

_EXCERPT = 200


def _excerpt(text: str | bytes) -> str:
    if isinstance(text, bytes):
        return text[:_EXCERPT].hex()
    return text[:_EXCERPT]


def parse_text(frame: str | bytes, *, max_bytes: int = MAX_FRAME_BYTES) -> ComfyUIMessage:
    """Decode one text frame. Never raises."""
    if len(frame) > max_bytes:
        return MalformedMessage(f"frame of {len(frame)} bytes exceeds {max_bytes}", _excerpt(frame[:_EXCERPT]))
    try:
        text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
        envelope = json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad UTF-8, bad JSON, deep nesting
        return MalformedMessage(f"not JSON: {exc.__class__.__name__}", _excerpt(frame))
    if not isinstance(envelope, dict):
        return MalformedMessage("not a JSON object", _excerpt(text))
    kind = envelope.get("type")
    if not isinstance(kind, str):
        return MalformedMessage("'type' is missing or not a string", _excerpt(text))
    data = envelope.get("data")
    cls = _TEXT_TYPES.get(kind)
    if cls is None:
        return UnknownMessage(kind, data)
    if not isinstance(data, dict):
        return MalformedMessage("'data' is not an object", _excerpt(text), kind)
    try:
        message: KnownMessage = cls.from_data(data)
    except (_Invalid, ValueError, TypeError, OverflowError) as exc:
        return MalformedMessage(str(exc), _excerpt(text), kind)
    return message


def encode_text(message: KnownMessage) -> str:
    """The JSON text frame the real server would send for ``message``."""
    return json.dumps({"type": message.TYPE, "data": message.to_wire()})
