"""The text (JSON) messages of the ComfyUI 0.8 WebSocket, one frozen class each, with
``from_data`` (parse a message's ``data``) and ``to_wire`` (the exact shape the server sends)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Self

from worker.comfyui.protocol._fields import Number, _Invalid, _num, _obj, _opt_num, _opt_str, _put, _str, _str_list


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
