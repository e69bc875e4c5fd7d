"""How a workflow names a task's input files, and rewriting those names to what the pod stored.

A loader input (``LoadImage``'s ``image``, ``VHS_LoadVideo``'s ``video`` …) refers to an input
of the task as ``"input:<name>"``. Anything else is left alone (a file already on the pod is a
legitimate value). Every reference must name a given input and every given input must be
referenced: either mistake is a ``validation`` error before anything is fetched or submitted.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from worker.comfyui.errors import WorkflowValidationError

__all__ = ["LOADER_INPUTS", "REFERENCE_PREFIX", "find_references", "rewrite_references"]

REFERENCE_PREFIX = "input:"

#: node class -> its inputs that name a file in the pod's input directory
LOADER_INPUTS: dict[str, tuple[str, ...]] = {
    "LoadImage": ("image",),
    "LoadImageMask": ("image",),
    "LoadImageOutput": ("image",),
    "LoadVideo": ("file",),
    "LoadAudio": ("audio",),
    "VHS_LoadVideo": ("video",),
    "VHS_LoadVideoFFmpeg": ("video",),
    "VHS_LoadAudioUpload": ("audio",),
    "VHS_LoadImages": ("directory",),
}


def find_references(workflow: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """input name -> the (node id, input) pairs that refer to it."""
    found: dict[str, list[tuple[str, str]]] = {}
    for node_id, node in workflow.items():
        if not isinstance(node, Mapping):
            continue
        inputs = node.get("inputs")
        names = LOADER_INPUTS.get(str(node.get("class_type")), ())
        if not isinstance(inputs, Mapping):
            continue
        for field_name in names:
            value = inputs.get(field_name)
            if isinstance(value, str) and value.startswith(REFERENCE_PREFIX):
                found.setdefault(value[len(REFERENCE_PREFIX) :], []).append((str(node_id), field_name))
    return found


def check_references(workflow: Mapping[str, Any], given: set[str]) -> dict[str, list[tuple[str, str]]]:
    """The references, after checking they match the given inputs one to one."""
    references = find_references(workflow)
    unknown = sorted(set(references) - given)
    if unknown:
        where = {name: [f"node {n}.{f}" for n, f in references[name]] for name in unknown}
        node_errors = {
            node: {"errors": [{"type": "unknown_input", "message": f"no task input named {name!r}", "details": field}]}
            for name in unknown
            for node, field in references[name]
        }
        raise WorkflowValidationError(
            f"the workflow refers to inputs the task does not carry: {where}", error_type="unknown_input", node_errors=node_errors
        )
    unused = sorted(given - set(references))
    if unused:
        raise WorkflowValidationError(
            f'inputs {unused} are not referenced by any loader node (write "{REFERENCE_PREFIX}<name>" in e.g. LoadImage\'s image)',
            error_type="unused_input",
        )
    return references


def rewrite_references(workflow: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``workflow`` whose references point at the pod's names (``subfolder/name``)."""
    rewritten = copy.deepcopy(dict(workflow))
    for name, places in find_references(workflow).items():
        for node_id, field_name in places:
            rewritten[node_id]["inputs"][field_name] = names[name]
    return rewritten
