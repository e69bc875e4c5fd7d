"""The ComfyUI 0.8 WebSocket protocol as typed, immutable values.

Parsing is *total*: whatever arrives on the wire (invalid JSON, wrong field types, truncated
binary headers, NaN, huge frames) becomes a value, never an exception. Unknown message types
become :class:`UnknownMessage`; broken known ones become :class:`MalformedMessage`. The
caller logs and skips those.

Every message class also knows how to encode itself in exactly the shape the real server
sends (``to_wire``). The simulator builds its frames with these, so client and simulator
cannot drift apart.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

__all__ = [
    "MAX_FRAME_BYTES",
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
    "LogsData",
    "MalformedBinary",
    "MalformedMessage",
    "NodeProgress",
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
    "parse_binary",
    "parse_text",
    "sniff_image_format",
]

#: Frames larger than this are not decoded (a configurable guard against memory blow-ups).
MAX_FRAME_BYTES = 64 * 1024 * 1024

Number = int | float
ImageFormat = Literal["jpeg", "png", "webp", "unknown"]


class _Invalid(Exception):
    """Raised inside field readers; always caught in :func:`parse_text`."""


def _obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(f"{what} is not an object")
    return value


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise _Invalid(f"{key!r} is not a string")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(f"{key!r} is not a string")
    return value


def _num(data: Mapping[str, Any], key: str) -> Number:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Invalid(f"{key!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Invalid(f"{key!r} is not finite")
    return value


def _opt_num(data: Mapping[str, Any], key: str) -> Number | None:
    return None if data.get(key) is None else _num(data, key)


def _str_list(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Invalid(f"{key!r} is not a list of strings")
    return tuple(value)


def _put(wire: dict[str, Any], key: str, value: object) -> None:
    """Add an optional key only when it has a value (older servers omit them)."""
    if value is not None:
        wire[key] = value


# ---------------------------------------------------------------- text messages


@dataclass(frozen=True, slots=True)
class StatusData:
    """Queue size broadcast; ``sid`` only in the copy sent right after connecting."""

    TYPE: ClassVar[str] = "status"
    queue_remaining: int
    sid: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> StatusData:
        info = _obj(_obj(data.get("status"), "status").get("exec_info"), "exec_info")
        return cls(int(_num(info, "queue_remaining")), _opt_str(data, "sid"))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": self.queue_remaining}}}
        _put(wire, "sid", self.sid)
        return wire


@dataclass(frozen=True, slots=True)
class FeatureFlagsData:
    """Server capabilities (open-ended), the reply to the client's own flags."""

    TYPE: ClassVar[str] = "feature_flags"
    flags: Mapping[str, Any]

    @property
    def supports_preview_metadata(self) -> bool:
        return self.flags.get("supports_preview_metadata") is True

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> FeatureFlagsData:
        return cls(dict(data))

    def to_wire(self) -> dict[str, Any]:
        return dict(self.flags)


@dataclass(frozen=True, slots=True)
class _PromptEvent:
    """``{prompt_id, timestamp}``: the shape of ``execution_start`` and ``execution_success``."""

    prompt_id: str
    timestamp: Number | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        return cls(_str(data, "prompt_id"), _opt_num(data, "timestamp"))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"prompt_id": self.prompt_id}
        _put(wire, "timestamp", self.timestamp)
        return wire


@dataclass(frozen=True, slots=True)
class ExecutionStartData(_PromptEvent):
    TYPE: ClassVar[str] = "execution_start"


@dataclass(frozen=True, slots=True)
class ExecutionCachedData:
    """Node ids served from the (global) cache: they get no ``executing``."""

    TYPE: ClassVar[str] = "execution_cached"
    nodes: tuple[str, ...]
    prompt_id: str
    timestamp: Number | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ExecutionCachedData:
        return cls(_str_list(data, "nodes"), _str(data, "prompt_id"), _opt_num(data, "timestamp"))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"nodes": list(self.nodes), "prompt_id": self.prompt_id}
        _put(wire, "timestamp", self.timestamp)
        return wire


@dataclass(frozen=True, slots=True)
class ExecutingData:
    """A node starts (``node`` set); the prompt is over (``node`` None); or, on reconnect,
    the reduced replay ``{"node": id}`` without a prompt id."""

    TYPE: ClassVar[str] = "executing"
    node: str | None
    prompt_id: str | None = None
    display_node: str | None = None

    @property
    def is_completion(self) -> bool:
        return self.node is None and self.prompt_id is not None

    @property
    def is_reconnect_replay(self) -> bool:
        return self.node is not None and self.prompt_id is None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ExecutingData:
        if "node" not in data:
            raise _Invalid("'node' is missing")
        return cls(_opt_str(data, "node"), _opt_str(data, "prompt_id"), _opt_str(data, "display_node"))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"node": self.node}
        _put(wire, "display_node", self.display_node)
        _put(wire, "prompt_id", self.prompt_id)
        return wire


@dataclass(frozen=True, slots=True)
class ProgressData:
    """Legacy per-node progress bar (one per sampler step)."""

    TYPE: ClassVar[str] = "progress"
    value: Number
    max: Number
    prompt_id: str | None = None
    node: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ProgressData:
        return cls(_num(data, "value"), _num(data, "max"), _opt_str(data, "prompt_id"), _opt_str(data, "node"))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"value": self.value, "max": self.max}
        _put(wire, "prompt_id", self.prompt_id)
        _put(wire, "node", self.node)
        return wire


NodeState = Literal["pending", "running", "finished", "error"]
_NODE_STATES: frozenset[str] = frozenset({"pending", "running", "finished", "error"})


@dataclass(frozen=True, slots=True)
class NodeProgress:
    """One node's entry in a ``progress_state`` snapshot."""

    node_id: str
    value: Number
    max: Number
    state: NodeState
    prompt_id: str
    display_node_id: str
    parent_node_id: str | None = None
    real_node_id: str | None = None

    @classmethod
    def from_data(cls, key: str, data: Mapping[str, Any]) -> NodeProgress:
        state = _str(data, "state")
        if state not in _NODE_STATES:
            raise _Invalid(f"unknown node state {state!r}")
        return cls(
            node_id=_opt_str(data, "node_id") or key,
            value=_num(data, "value"),
            max=_num(data, "max"),
            state=state,  # type: ignore[arg-type]  # checked against _NODE_STATES above
            prompt_id=_opt_str(data, "prompt_id") or "",
            display_node_id=_opt_str(data, "display_node_id") or key,
            parent_node_id=_opt_str(data, "parent_node_id"),
            real_node_id=_opt_str(data, "real_node_id"),
        )

    def to_wire(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "max": self.max,
            "state": self.state,
            "node_id": self.node_id,
            "prompt_id": self.prompt_id,
            "display_node_id": self.display_node_id,
            "parent_node_id": self.parent_node_id,
            "real_node_id": self.real_node_id if self.real_node_id is not None else self.node_id,
        }


@dataclass(frozen=True, slots=True)
class ProgressStateMessageData:
    """Cumulative snapshot of every node that has started in the prompt (not a delta)."""

    TYPE: ClassVar[str] = "progress_state"
    prompt_id: str
    nodes: Mapping[str, NodeProgress]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ProgressStateMessageData:
        raw = _obj(data.get("nodes"), "nodes")
        nodes = {str(k): NodeProgress.from_data(str(k), _obj(v, f"node {k!r}")) for k, v in raw.items()}
        return cls(_str(data, "prompt_id"), nodes)

    def to_wire(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, "nodes": {k: v.to_wire() for k, v in self.nodes.items()}}


@dataclass(frozen=True, slots=True)
class ExecutedMessageData:
    """A node produced UI output (files, text); ``output`` is None only for cached nodes without UI."""

    TYPE: ClassVar[str] = "executed"
    node: str
    output: Mapping[str, Any] | None
    prompt_id: str
    display_node: str | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ExecutedMessageData:
        output = data.get("output")
        if output is not None:
            output = _obj(output, "output")
        return cls(_str(data, "node"), output, _str(data, "prompt_id"), _opt_str(data, "display_node"))

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"node": self.node}
        _put(wire, "display_node", self.display_node)
        wire["output"] = None if self.output is None else dict(self.output)
        wire["prompt_id"] = self.prompt_id
        return wire


@dataclass(frozen=True, slots=True)
class ExecutionSuccessData(_PromptEvent):
    TYPE: ClassVar[str] = "execution_success"


@dataclass(frozen=True, slots=True)
class ExecutionErrorData:
    """A node raised. ``ExecutionBlocked`` notices share the event but are not fatal."""

    TYPE: ClassVar[str] = "execution_error"
    prompt_id: str
    node_id: str
    node_type: str
    exception_message: str
    exception_type: str
    executed: tuple[str, ...] = ()
    traceback: tuple[str, ...] = ()
    current_inputs: Mapping[str, Any] | list[Any] = field(default_factory=dict)
    current_outputs: tuple[str, ...] = ()
    timestamp: Number | None = None

    @property
    def is_fatal(self) -> bool:
        return self.exception_type != "ExecutionBlocked"

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ExecutionErrorData:
        inputs = data.get("current_inputs", {})
        if not isinstance(inputs, dict | list):
            raise _Invalid("'current_inputs' is neither an object nor a list")
        return cls(
            prompt_id=_str(data, "prompt_id"),
            node_id=_str(data, "node_id"),
            node_type=_str(data, "node_type"),
            exception_message=_str(data, "exception_message"),
            exception_type=_str(data, "exception_type"),
            executed=_str_list(data, "executed") if "executed" in data else (),
            traceback=_str_list(data, "traceback") if "traceback" in data else (),
            current_inputs=inputs,
            current_outputs=_str_list(data, "current_outputs") if "current_outputs" in data else (),
            timestamp=_opt_num(data, "timestamp"),
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "prompt_id": self.prompt_id,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "executed": list(self.executed),
            "exception_message": self.exception_message,
            "exception_type": self.exception_type,
            "traceback": list(self.traceback),
            "current_inputs": self.current_inputs if isinstance(self.current_inputs, list) else dict(self.current_inputs),
            "current_outputs": list(self.current_outputs),
        }
        _put(wire, "timestamp", self.timestamp)
        return wire


@dataclass(frozen=True, slots=True)
class ExecutionInterruptedData:
    TYPE: ClassVar[str] = "execution_interrupted"
    prompt_id: str
    node_id: str
    node_type: str
    executed: tuple[str, ...] = ()
    timestamp: Number | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> ExecutionInterruptedData:
        return cls(
            prompt_id=_str(data, "prompt_id"),
            node_id=_str(data, "node_id"),
            node_type=_str(data, "node_type"),
            executed=_str_list(data, "executed") if "executed" in data else (),
            timestamp=_opt_num(data, "timestamp"),
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "prompt_id": self.prompt_id,
            "node_id": self.node_id,
            "node_type": self.node_type,
            "executed": list(self.executed),
        }
        _put(wire, "timestamp", self.timestamp)
        return wire


@dataclass(frozen=True, slots=True)
class LogsData:
    TYPE: ClassVar[str] = "logs"
    entries: tuple[tuple[str, str], ...]
    size: Mapping[str, Any] | None = None

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> LogsData:
        raw = data.get("entries")
        if not isinstance(raw, list):
            raise _Invalid("'entries' is not a list")
        entries = tuple((_str(_obj(e, "entry"), "t"), _str(_obj(e, "entry"), "m")) for e in raw)
        size = data.get("size")
        return cls(entries, None if size is None else _obj(size, "size"))

    def to_wire(self) -> dict[str, Any]:
        return {"entries": [{"t": t, "m": m} for t, m in self.entries], "size": self.size}


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A well-formed message of a type we do not know (custom nodes, extensions)."""

    type: str
    data: Any


@dataclass(frozen=True, slots=True)
class MalformedMessage:
    """A frame that could not be read as the message it claims to be."""

    reason: str
    excerpt: str
    type: str | None = None


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


# ---------------------------------------------------------------- binary frames

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
FORMAT_JPEG = 1
FORMAT_PNG = 2


def sniff_image_format(image: bytes) -> ImageFormat:
    """The format from magic bytes; the server's format code is not to be trusted (§6.2)."""
    if image.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if image.startswith(b"\x89PNG"):
        return "png"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "webp"
    return "unknown"


@dataclass(frozen=True, slots=True)
class PreviewImage:
    """Type 1: no node id, no prompt id — attribute it to the last node seen."""

    format_code: int
    format: ImageFormat
    image: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PreviewImageWithMetadata:
    """Type 4: the preview with its node and prompt ids."""

    metadata: Mapping[str, Any]
    format: ImageFormat
    image: bytes = field(repr=False)

    @property
    def prompt_id(self) -> str | None:
        value = self.metadata.get("prompt_id")
        return value if isinstance(value, str) else None

    @property
    def node_id(self) -> str | None:
        value = self.metadata.get("node_id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class ProgressText:
    """Type 3: text a node shows on itself; broadcast, with no prompt id."""

    node_id: str
    text: str


@dataclass(frozen=True, slots=True)
class UnknownBinary:
    event_type: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MalformedBinary:
    reason: str
    length: int


BinaryFrame = PreviewImage | PreviewImageWithMetadata | ProgressText | UnknownBinary | MalformedBinary


def parse_binary(frame: bytes | bytearray | memoryview, *, max_bytes: int = MAX_FRAME_BYTES) -> BinaryFrame:
    """Decode one binary frame. Never raises."""
    data = bytes(frame)
    if len(data) > max_bytes:
        return MalformedBinary(f"frame exceeds {max_bytes} bytes", len(data))
    if len(data) < 4:
        return MalformedBinary("shorter than 4 bytes", len(data))
    (kind,) = struct.unpack_from(">I", data, 0)
    if kind not in (PREVIEW_IMAGE, TEXT, PREVIEW_IMAGE_WITH_METADATA):
        return UnknownBinary(kind, data[4:])
    if len(data) < 8:
        return MalformedBinary(f"type {kind}: shorter than 8 bytes", len(data))
    (word,) = struct.unpack_from(">I", data, 4)
    if kind == PREVIEW_IMAGE:
        image = data[8:]
        return PreviewImage(word, sniff_image_format(image), image)
    end = 8 + word
    if end > len(data):
        return MalformedBinary(f"type {kind}: length {word} runs past the end", len(data))
    head, rest = data[8:end], data[end:]
    try:
        if kind == TEXT:
            return ProgressText(head.decode("utf-8"), rest.decode("utf-8"))
        meta = json.loads(head.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        return MalformedBinary(f"type {kind}: {exc.__class__.__name__}", len(data))
    if not isinstance(meta, dict):
        return MalformedBinary("type 4: metadata is not a JSON object", len(data))
    return PreviewImageWithMetadata(meta, sniff_image_format(rest), rest)


def encode_preview_image(image: bytes, format_code: int = FORMAT_JPEG) -> bytes:
    return struct.pack(">II", PREVIEW_IMAGE, format_code) + image


def encode_progress_text(node_id: str, text: str) -> bytes:
    node = node_id.encode("utf-8")
    return struct.pack(">II", TEXT, len(node)) + node + text.encode("utf-8")


def encode_preview_with_metadata(metadata: Mapping[str, Any], image: bytes) -> bytes:
    meta = json.dumps(dict(metadata)).encode("utf-8")
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + image
