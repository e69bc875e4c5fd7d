"""What each node of a workflow is expected to cost in time, before it runs.

A node's duration depends on its class and on a few inputs: the resolution and the number of
frames flowing through it, the sampler's steps, and whether the models it uses are already on
the GPU. :func:`node_specs` reads those from the graph (resolution and frames are inherited
from upstream nodes, so a ``VAEDecode`` knows the size of the latent it decodes) and gives each
node a stable :attr:`NodeSpec.key` under which the fleet learns its durations. A node whose
key was never seen gets :func:`prior_cost`: rough figures for an SD-class model on one GPU,
good to a factor of two or so, which the live measurements correct as soon as the job runs.

"Cold" means a model loader runs in the same prompt (it is not cached) and this node is the
first to use one of its outputs: ComfyUI moves models to the GPU lazily, so the first text
encoder, sampler and VAE after a (re)load pay for that transfer, a second sampler on the same
model and a warm rerun do not. Of several users of one output, the one with the fewest
upstream nodes is taken as the first (a refiner comes after its base sampler); between two
independent ones (two text encoders) the guess may be wrong, but the total stays right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["DurationModel", "NodeCost", "NodeSpec", "PriorDurations", "node_specs", "prior_cost"]

#: the area every per-pixel prior is quoted for (512 x 512)
BASE_PIXELS = 512 * 512
#: inputs read as the number of frames (or images) a node processes
_FRAME_INPUTS = ("batch_size", "frames", "length", "video_frames", "frame_count", "amount")
#: longest model name kept in a key (keys are stored; names are not secrets, but may be long)
_MAX_NAME = 80


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node as the time estimate sees it."""

    node_id: str
    class_type: str
    pixels: int  # width x height flowing through the node (0: unknown)
    frames: int  # batch or frame count (1 when unknown)
    steps: int  # progress steps the node will report (0: none expected)
    cold: bool
    model: str = ""  # a loader's model name: what it loads decides how long it takes

    @property
    def key(self) -> str:
        """The learned-duration key: class and the inputs that drive cost, never the node id.

        Steps are not part of it: a stepping node is learned per step, so 20 and 30 steps share
        one record."""
        parts = [self.class_type, f"px={self.pixels}", f"n={self.frames}", "cold" if self.cold else "warm"]
        if self.model:
            parts.append(f"m={self.model}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class NodeCost:
    """Expected duration: ``fixed_s`` plus ``per_step_s`` for each of ``steps`` steps."""

    fixed_s: float
    per_step_s: float = 0.0
    steps: int = 0
    learned: bool = False  # from earlier runs on the fleet, not a prior

    @property
    def total_s(self) -> float:
        return self.fixed_s + self.per_step_s * self.steps


class DurationModel(Protocol):
    """Where expected node durations come from (learned ones in the fleet, priors here)."""

    def expect(self, spec: NodeSpec) -> NodeCost: ...


class PriorDurations:
    """Only the priors: what a fresh worker with no history knows."""

    def expect(self, spec: NodeSpec) -> NodeCost:
        return prior_cost(spec)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _raw_links(inputs: Mapping[str, Any]) -> Iterable[tuple[str, tuple[str, str]]]:
    """(input name, (upstream node id, output slot)) for each linked input."""
    for name, value in inputs.items():
        if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str | int) and _number(value[1]) is not None:
            yield name, (str(value[0]), str(value[1]))


def _links(inputs: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """(input name, upstream node id) for each linked input."""
    for name, (node_id, _) in _raw_links(inputs):
        yield name, node_id


def _is_loader(class_type: str) -> bool:
    return "Loader" in class_type


def _model_name(inputs: Mapping[str, Any]) -> str:
    for name in sorted(inputs):
        value = inputs[name]
        if name.endswith("_name") and isinstance(value, str):
            return value[:_MAX_NAME].replace(" ", "_")
    return ""


class _Graph:
    """Memoised upstream look-ups over one workflow (cycles end in 'unknown')."""

    def __init__(self, workflow: Mapping[str, Any]) -> None:
        self.nodes = {str(k): v for k, v in workflow.items() if isinstance(v, dict)}
        self._pixels: dict[str, int] = {}
        self._frames: dict[str, int] = {}
        self._ancestors: dict[str, set[str]] = {}

    def inputs(self, node_id: str) -> Mapping[str, Any]:
        raw = self.nodes.get(node_id, {}).get("inputs")
        return raw if isinstance(raw, dict) else {}

    def pixels(self, node_id: str) -> int:
        if node_id not in self._pixels:
            self._pixels[node_id] = 0  # guards against cycles while we look
            inputs = self.inputs(node_id)
            width, height = _number(inputs.get("width")), _number(inputs.get("height"))
            if width and height and width > 0 and height > 0:
                self._pixels[node_id] = int(width * height)
            else:
                self._pixels[node_id] = max((self.pixels(up) for _, up in _links(inputs) if up in self.nodes), default=0)
        return self._pixels[node_id]

    def ancestors(self, node_id: str) -> set[str]:
        if node_id not in self._ancestors:
            self._ancestors[node_id] = set()  # guards against cycles while we look
            found: set[str] = set()
            for _, up in _links(self.inputs(node_id)):
                if up in self.nodes:
                    found |= {up, *self.ancestors(up)}
            self._ancestors[node_id] = found
        return self._ancestors[node_id]

    def first_users(self, loaders: set[str], skipped: set[str]) -> set[str]:
        """For each output of each loader in ``loaders``, the node that uses it first (see the module doc)."""
        users: dict[tuple[str, str], list[str]] = {}
        for node_id in self.nodes:
            if node_id in skipped:
                continue
            for _, link in _raw_links(self.inputs(node_id)):
                if link[0] in loaders:
                    users.setdefault(link, []).append(node_id)
        return {min(group, key=lambda n: (len(self.ancestors(n)), n)) for group in users.values()}

    def frames(self, node_id: str) -> int:
        if node_id not in self._frames:
            self._frames[node_id] = 1
            inputs = self.inputs(node_id)
            own = [int(n) for name in _FRAME_INPUTS if (n := _number(inputs.get(name))) is not None and n >= 1]
            if own:
                self._frames[node_id] = own[0]
            else:
                self._frames[node_id] = max((self.frames(up) for _, up in _links(inputs) if up in self.nodes), default=1)
        return self._frames[node_id]


def node_specs(workflow: Mapping[str, Any], cached: Iterable[str] = ()) -> dict[str, NodeSpec]:
    """A :class:`NodeSpec` per node that will run (``cached`` ones are left out)."""
    graph = _Graph(workflow)
    skipped = {str(n) for n in cached}
    running_loaders = {n for n, node in graph.nodes.items() if n not in skipped and _is_loader(str(node.get("class_type", "")))}
    first_users = graph.first_users(running_loaders, skipped)
    specs: dict[str, NodeSpec] = {}
    for node_id, node in graph.nodes.items():
        if node_id in skipped:
            continue
        class_type = str(node.get("class_type", ""))
        inputs = graph.inputs(node_id)
        steps = _number(inputs.get("steps"))
        loader = _is_loader(class_type)
        specs[node_id] = NodeSpec(
            node_id=node_id,
            class_type=class_type,
            pixels=graph.pixels(node_id),
            frames=graph.frames(node_id),
            steps=int(steps) if steps is not None and steps >= 1 else 0,
            cold=loader or node_id in first_users,
            model=_model_name(inputs) if loader else "",
        )
    return specs


def prior_cost(spec: NodeSpec) -> NodeCost:
    """A node never seen on the fleet: seconds on one mid-range GPU for an SD-class model.

    Only the shape matters much (a loader or a sampler dwarfs a latent or a save); the fleet's
    own measurements replace these after one run, and a running sampler is timed live."""
    area = max(spec.pixels, 64 * 64) / BASE_PIXELS * spec.frames
    name = spec.class_type
    if _is_loader(name):
        return NodeCost(3.0)
    if spec.steps:
        return NodeCost(1.5 if spec.cold else 0.1, 0.06 * area**1.1, spec.steps)
    if "TextEncode" in name:
        return NodeCost(0.8 if spec.cold else 0.03)
    if "VAEDecode" in name or "VAEEncode" in name:
        return NodeCost((0.4 if spec.cold else 0.0) + 0.12 * area)
    if name.startswith("Empty"):
        return NodeCost(0.005)
    if name.startswith(("Save", "Preview", "VHS_")):
        return NodeCost(0.05 + 0.04 * area)
    if name.startswith("Image"):
        return NodeCost(0.02 + 0.03 * area)
    return NodeCost(0.1)
