"""Node ordering and cache keys, as ComfyUI 0.8 computes them.

Order: nodes are staged from the output nodes backwards in a depth-first walk; among the nodes
whose inputs are ready, ComfyUI prefers an output node, then a node feeding an output node,
then one two steps away, else the first pending one. The traces (e.g. 4, 5, 7, 6, 3, 8, 9 for
the default txt2img graph) follow exactly this rule.

Cache: a node's key is its class and constant inputs plus the keys of its linked inputs, so
changing a seed invalidates the sampler and everything downstream, but not the loaders.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from worker.simulator.nodes import NODE_CLASSES

__all__ = ["ExecutionOrder", "cache_keys"]


def _links(node: Mapping[str, Any]) -> list[tuple[str, str, int]]:
    out = []
    for name, value in node.get("inputs", {}).items():
        if isinstance(value, list) and len(value) == 2:
            out.append((name, str(value[0]), int(value[1])))
    return out


def cache_keys(prompt: Mapping[str, Any]) -> dict[str, str]:
    """A signature per node id: its class, its inputs, and its sources' signatures.

    Iterative, and each signature a fixed-length digest: nesting the sources' JSON text made a
    signature twice as long per link (each level escapes the quotes of the one before), so a
    50-node chain never finished, and recursion failed on a chain deeper than the stack."""
    keys: dict[str, str] = {}
    for root in prompt:
        stack = [root]
        while stack:
            node_id = stack[-1]
            if node_id in keys:
                stack.pop()
                continue
            node = prompt[node_id]
            inputs = sorted(node.get("inputs", {}).items())
            missing = [str(v[0]) for _, v in inputs if isinstance(v, list) and len(v) == 2 and str(v[0]) not in keys]
            missing = [m for m in missing if m in prompt and m not in stack]  # a cycle is left to validation
            if missing:
                stack.extend(missing)
                continue
            parts = {
                name: ["link", keys.get(str(value[0]), str(value[0])), value[1]] if isinstance(value, list) and len(value) == 2 else value
                for name, value in inputs
            }
            text = json.dumps([node["class_type"], parts], sort_keys=True, default=str)
            keys[node_id] = hashlib.sha256(text.encode()).hexdigest()
            stack.pop()
    return keys


class ExecutionOrder:
    """The staging of one prompt: which node runs next, given which are cached."""

    def __init__(self, prompt: Mapping[str, Any], outputs: list[str], is_cached: Callable[[str], bool]) -> None:
        self.prompt = prompt
        self.is_cached = is_cached
        self.pending: dict[str, None] = {}
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, None]] = {}
        for output in outputs:
            self._add(output)

    def _is_output(self, node_id: str) -> bool:
        return NODE_CLASSES[self.prompt[node_id]["class_type"]].output_node

    def _add(self, root: str) -> None:
        stack = [root]
        links: list[tuple[str, str]] = []
        while stack:
            node_id = stack.pop()
            if node_id in self.pending:
                continue
            self.pending[node_id] = None
            self.block_count[node_id] = 0
            self.blocking[node_id] = {}
            for _, source, _ in _links(self.prompt[node_id]):
                if not self.is_cached(source):
                    stack.append(source)
                links.append((source, node_id))
        for source, target in links:
            if self.is_cached(source):
                continue
            self._add(source)
            if target not in self.blocking[source]:
                self.blocking[source][target] = None
                self.block_count[target] += 1

    def next(self) -> str | None:
        """The node to run now, or None when all are done."""
        ready = [n for n in self.pending if self.block_count[n] == 0]
        if not ready:
            return None
        for node_id in ready:
            if self._is_output(node_id):
                return node_id
        for node_id in ready:
            if any(self._is_output(b) for b in self.blocking[node_id]):
                return node_id
        for node_id in ready:
            if any(self._is_output(c) for b in self.blocking[node_id] for c in self.blocking[b]):
                return node_id
        return ready[0]

    def done(self, node_id: str) -> None:
        self.pending.pop(node_id, None)
        for target in self.blocking.get(node_id, {}):
            self.block_count[target] -= 1
