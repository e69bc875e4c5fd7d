"""What the simulated server keeps and reports about one prompt: its queue entry, the
``execution_error`` a failing node becomes, and its history entry.

Apart from the engine, which decides when these are made; their exact shapes are the
protocol's (``/queue``, ``/history``, the traces in ``tests/data/comfyui-traces``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.comfyui.protocol import ExecutionErrorData
from worker.simulator.node_types import NodeFailure

__all__ = ["QueueItem", "history_entry", "node_error", "now_ms"]


@dataclass
class QueueItem:
    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_list(self) -> list[Any]:
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


def now_ms() -> int:
    return int(time.time() * 1000)


def node_error(
    item: QueueItem, *, node_id: str, class_type: str, exc: NodeFailure, executed: list[str], inputs: Mapping[str, Any]
) -> ExecutionErrorData:
    """The ``execution_error`` a node's failure becomes (its inputs as ComfyUI shows them)."""
    return ExecutionErrorData(
        prompt_id=item.prompt_id,
        node_id=node_id,
        node_type=class_type,
        exception_message=f"{exc}\n",
        exception_type=exc.exception_type,
        executed=tuple(executed),
        traceback=(f'  File "<simulator>/nodes.py", in {class_type}\n    raise {exc.exception_type}({str(exc)!r})\n',),
        current_inputs={k: [v if isinstance(v, int | float | str | bool) or v is None else str(v)] for k, v in inputs.items()},
        current_outputs=tuple(item.prompt),
        timestamp=now_ms(),
    )


def history_entry(item: QueueItem, outputs_ui: dict[str, dict[str, Any]], messages: list[list[Any]], *, failed: bool) -> dict[str, Any]:
    """The ``/history`` entry of a prompt that ran to its end (success, error or interruption)."""
    return {
        "prompt": item.as_list(),
        "outputs": outputs_ui,
        "status": {"status_str": "error" if failed else "success", "completed": not failed, "messages": messages},
        "meta": {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n} for n in outputs_ui},
    }
