"""The ComfyUI 0.8 WebSocket protocol as typed, immutable values (a package: ``messages``,
``text`` and ``binary``; every public name is re-exported here, so ``from worker.comfyui import
protocol as p`` then ``p.ExecutingData`` keeps working).

Parsing is *total*: whatever arrives on the wire (invalid JSON, wrong field types, truncated
binary headers, NaN, huge frames) becomes a value, never an exception. Unknown message types
become :class:`UnknownMessage`; broken known ones become :class:`MalformedMessage`. The
caller logs and skips those.

Every message class also knows how to encode itself in exactly the shape the real server
sends (``to_wire``). The simulator builds its frames with these, so client and simulator
cannot drift apart.
"""

from __future__ import annotations

from worker.comfyui.protocol._fields import MAX_FRAME_BYTES, ImageFormat, Number
from worker.comfyui.protocol.binary import (
    FORMAT_JPEG,
    FORMAT_PNG,
    PREVIEW_IMAGE,
    PREVIEW_IMAGE_WITH_METADATA,
    TEXT,
    BinaryFrame,
    MalformedBinary,
    PreviewImage,
    PreviewImageWithMetadata,
    ProgressText,
    UnknownBinary,
    encode_preview_image,
    encode_preview_with_metadata,
    encode_progress_text,
    parse_binary,
    sniff_image_format,
)
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
    NodeProgress,
    NodeState,
    ProgressData,
    ProgressStateMessageData,
    StatusData,
    UnknownMessage,
)
from worker.comfyui.protocol.text import ComfyUIMessage, KnownMessage, encode_text, parse_text

__all__ = [
    "FORMAT_JPEG",
    "FORMAT_PNG",
    "MAX_FRAME_BYTES",
    "PREVIEW_IMAGE",
    "PREVIEW_IMAGE_WITH_METADATA",
    "TEXT",
    "BinaryFrame",
    "ComfyUIMessage",
    "ExecutedMessageData",
    "ExecutingData",
    "ExecutionCachedData",
    "ExecutionErrorData",
    "ExecutionInterruptedData",
    "ExecutionStartData",
    "ExecutionSuccessData",
    "FeatureFlagsData",
    "ImageFormat",
    "KnownMessage",
    "LogsData",
    "MalformedBinary",
    "MalformedMessage",
    "NodeProgress",
    "NodeState",
    "Number",
    "PreviewImage",
    "PreviewImageWithMetadata",
    "ProgressData",
    "ProgressStateMessageData",
    "ProgressText",
    "StatusData",
    "UnknownBinary",
    "UnknownMessage",
    "encode_preview_image",
    "encode_preview_with_metadata",
    "encode_progress_text",
    "encode_text",
    "parse_binary",
    "parse_text",
    "sniff_image_format",
]
