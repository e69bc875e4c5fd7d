"""Checks on a workflow before any request: a bad graph fails here, with node details, not on the pod."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from worker.comfyui.errors import WorkflowValidationError
from worker.comfyui.json_bounds import JSONBounds, JSONBoundsError, check_value, raw_json_depth

__all__ = ["MAX_WORKFLOW_BYTES", "MAX_WORKFLOW_NODES", "WORKFLOW_BOUNDS", "parse_workflow", "validate_workflow"]

#: a 10,000-node graph is legal (and tested); a graph this large is a mistake or an attack
MAX_WORKFLOW_NODES = 20_000
#: the encoded workflow; a Celery message and a POST /prompt body both carry it whole
MAX_WORKFLOW_BYTES = 8 * 1024 * 1024
#: workflow (1) > node (2) > inputs (3) > value (4): 32 leaves room for JSON-valued inputs
WORKFLOW_BOUNDS = JSONBounds(max_depth=32, max_items=1_000_000, max_string_chars=MAX_WORKFLOW_BYTES)


def _check_bounds(workflow: Mapping[str, Any]) -> None:
    """Depth, size, count and types first, iteratively: nothing below may recurse into a hostile value."""
    if len(workflow) > MAX_WORKFLOW_NODES:
        raise WorkflowValidationError(
            f"the workflow has {len(workflow)} nodes, more than the {MAX_WORKFLOW_NODES} allowed", error_type="too_many_nodes"
        )
    try:
        check_value(dict(workflow), WORKFLOW_BOUNDS, where="the workflow")
    except JSONBoundsError as exc:
        raise WorkflowValidationError(str(exc), error_type=exc.kind) from None


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

    Checked first, without recursion: at most :data:`MAX_WORKFLOW_NODES` nodes, nesting at most
    ``WORKFLOW_BOUNDS.max_depth`` deep, plain JSON values (str, int, finite float, bool, None,
    lists, objects with string keys), at most :data:`MAX_WORKFLOW_BYTES` encoded. Then: a non-empty
    dict of nodes; each with a string ``class_type`` and a dict of
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
    _check_bounds(workflow)
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
                        received_value=value[:4],  # a long list stays out of the error
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
        size = len(json.dumps(workflow, allow_nan=False))  # bounded depth by now: safe to recurse
    except (TypeError, ValueError) as exc:
        raise WorkflowValidationError(f"the workflow is not JSON-serialisable: {exc}", error_type="invalid_workflow") from None
    if size > MAX_WORKFLOW_BYTES:
        raise WorkflowValidationError(
            f"the workflow is {size} bytes as JSON, more than the {MAX_WORKFLOW_BYTES} allowed", error_type="too_large"
        )
    return dict(workflow)


def parse_workflow(text: str | bytes) -> dict[str, Any]:
    """A workflow from JSON text (a file, a request body), bounded *before* the recursive decoder runs.

    ``json.loads`` raises ``RecursionError`` on text nested about 1,000 deep; here such text,
    or text beyond :data:`MAX_WORKFLOW_BYTES`, is a :class:`WorkflowValidationError` with one
    clear message, like invalid JSON.
    """
    if len(text) > MAX_WORKFLOW_BYTES:
        raise WorkflowValidationError(f"the workflow file is larger than {MAX_WORKFLOW_BYTES} bytes", error_type="too_large")
    if raw_json_depth(text, WORKFLOW_BOUNDS.max_depth) > WORKFLOW_BOUNDS.max_depth:
        raise WorkflowValidationError(f"the workflow is nested more than {WORKFLOW_BOUNDS.max_depth} levels deep", error_type="too_deep")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad UTF-8 or bad JSON; RecursionError cannot happen past the check above
        raise WorkflowValidationError(f"not JSON: {exc}", error_type="invalid_json") from None
    return validate_workflow(value)
