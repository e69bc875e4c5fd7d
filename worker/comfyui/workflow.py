"""Checks on a workflow before any request: a bad graph fails here, with node details, not on the pod."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from worker.comfyui.errors import WorkflowValidationError

__all__ = ["validate_workflow"]


def _node_error(node_id: str, class_type: Any, kind: str, message: str, details: str = "", **extra: Any) -> dict[str, Any]:
    return {
        node_id: {
            "errors": [{"type": kind, "message": message, "details": details, "extra_info": extra}],
            "dependent_outputs": [],
            "class_type": class_type if isinstance(class_type, str) else None,
        }
    }


# complexity 16: the hostile-input rewrite of this function (another helper) removes this noqa
def validate_workflow(workflow: Any) -> dict[str, Any]:  # noqa: C901
    """Return the workflow if it is an API-format graph; raise :class:`WorkflowValidationError` otherwise.

    Checked: a non-empty dict of nodes; each with a string ``class_type`` and a dict of
    ``inputs``; every link ``[node_id, index]`` pointing at a node of the graph (ids are
    strings: ``[4, 0]`` is a classic mistake, protocol §3); JSON-serialisable, finite values.
    The UI format (``nodes``/``links`` arrays) is recognised and refused with a hint.
    """
    if not isinstance(workflow, Mapping):
        raise WorkflowValidationError(f"a workflow is a JSON object of nodes, not {type(workflow).__name__}", error_type="invalid_workflow")
    if "nodes" in workflow and "links" in workflow:
        raise WorkflowValidationError(
            "this is a UI-format workflow; export it with 'Save (API Format)' for the API", error_type="invalid_workflow"
        )
    if not workflow:
        raise WorkflowValidationError("the workflow has no nodes", error_type="invalid_workflow")
    node_errors: dict[str, Any] = {}
    for node_id, node in workflow.items():
        if not isinstance(node_id, str):
            node_errors.update(_node_error(str(node_id), None, "invalid_node_id", "node ids must be strings"))
            continue
        if not isinstance(node, Mapping):
            node_errors.update(_node_error(node_id, None, "invalid_node", "a node is a JSON object"))
            continue
        class_type = node.get("class_type")
        if not isinstance(class_type, str) or not class_type:
            node_errors.update(_node_error(node_id, class_type, "missing_class_type", "the node has no class_type"))
            continue
        inputs = node.get("inputs", {})
        if not isinstance(inputs, Mapping):
            node_errors.update(_node_error(node_id, class_type, "invalid_inputs", "inputs must be a JSON object"))
            continue
        for name, value in inputs.items():
            if not isinstance(value, list):
                continue
            if len(value) != 2 or not isinstance(value[1], int) or isinstance(value[1], bool):
                node_errors.update(
                    _node_error(
                        node_id,
                        class_type,
                        "bad_linked_input",
                        "a link is [node_id, output_index]",
                        name,
                        input_name=name,
                        received_value=value,
                    )
                )
            elif not isinstance(value[0], str):
                node_errors.update(
                    _node_error(
                        node_id,
                        class_type,
                        "bad_linked_input",
                        'link node ids must be strings, e.g. ["4", 0]',
                        name,
                        input_name=name,
                        received_value=value,
                    )
                )
            elif value[0] not in workflow:
                node_errors.update(
                    _node_error(
                        node_id,
                        class_type,
                        "link_to_missing_node",
                        f"input {name!r} links to node {value[0]!r}, which is not in the workflow",
                        name,
                        input_name=name,
                        linked_node=value,
                    )
                )
    if node_errors:
        raise WorkflowValidationError(
            "the workflow is not a valid API-format graph", error_type="invalid_workflow", node_errors=node_errors
        )
    try:
        json.dumps(workflow, allow_nan=False)  # also refuses NaN and infinity
    except (TypeError, ValueError) as exc:
        raise WorkflowValidationError(f"the workflow is not JSON-serialisable: {exc}", error_type="invalid_workflow") from None
    return dict(workflow)
