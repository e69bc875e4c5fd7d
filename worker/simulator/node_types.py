"""The shape of a simulated node class: its input specs, what it returns, what it may do.

Apart from the catalogue (``nodes``) and the behaviour (``node_runs``) so that validation,
the engine and the node functions share one vocabulary without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["InputSpec", "NodeClass", "NodeContext", "NodeFailure", "NodeOutcome", "Runner", "SimImage", "SimLatent"]


@dataclass(frozen=True)
class SimImage:
    width: int
    height: int
    batch: int
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class SimLatent:
    width: int
    height: int
    batch: int


class NodeFailure(Exception):
    """A node raised while running; becomes ``execution_error``."""

    def __init__(self, exception_type: str, message: str) -> None:
        super().__init__(message)
        self.exception_type = exception_type


@dataclass(frozen=True)
class InputSpec:
    name: str
    kind: str | tuple[str, ...]  # a type name, or the allowed values of a combo
    options: Mapping[str, Any] = field(default_factory=dict)

    def config(self) -> list[Any]:
        """The ``[type, options]`` pair of ``/object_info`` (``input_config`` in errors)."""
        kind: Any = list(self.kind) if isinstance(self.kind, tuple) else self.kind
        return [kind, dict(self.options)] if self.options else [kind]


@dataclass(frozen=True)
class NodeOutcome:
    outputs: tuple[Any, ...] = ()
    ui: dict[str, Any] | None = None
    text: str | None = None  # a binary TEXT frame (broadcast, like GetImageSize)


class NodeContext:
    """What a running node may do besides computing: save files."""

    def save_image(self, image: SimImage, prefix: str, kind: str) -> list[dict[str, Any]]:  # pragma: no cover
        raise NotImplementedError

    def save_video(self, image: SimImage, prefix: str, frame_rate: float) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def load_image(self, name: str) -> SimImage | None:  # pragma: no cover
        """The uploaded image ``LoadImage`` names (its size and colour), or None."""
        raise NotImplementedError


Runner = Callable[[Mapping[str, Any], NodeContext], NodeOutcome]


@dataclass(frozen=True)
class NodeClass:
    class_type: str
    required: tuple[InputSpec, ...]
    return_types: tuple[str, ...]
    run: Runner
    optional: tuple[InputSpec, ...] = ()
    output_node: bool = False
    category: str = "simulator"
    #: name of the INT input giving the number of progress steps, if the node reports progress
    progress_input: str | None = None
    #: sampler-like nodes send a latent preview per step
    previews: bool = False
    #: per-step duration taken from an input (seconds), else the simulator's configured step time
    step_seconds_input: str | None = None
    #: custom validation (like ``VALIDATE_INPUTS``): input name -> check returning an error text
    custom_checks: Mapping[str, Callable[[Any, frozenset[str]], str | None]] = field(default_factory=dict)

    def spec(self, name: str) -> InputSpec | None:
        for item in self.required + self.optional:
            if item.name == name:
                return item
        return None

    def object_info(self) -> dict[str, Any]:
        return {
            "input": {
                "required": {s.name: s.config() for s in self.required},
                **({"optional": {s.name: s.config() for s in self.optional}} if self.optional else {}),
            },
            "input_order": {
                "required": [s.name for s in self.required],
                **({"optional": [s.name for s in self.optional]} if self.optional else {}),
            },
            "output": list(self.return_types),
            "output_is_list": [False] * len(self.return_types),
            "output_name": list(self.return_types),
            "name": self.class_type,
            "display_name": self.class_type,
            "description": "",
            "python_module": "nodes",
            "category": self.category,
            "output_node": self.output_node,
        }
