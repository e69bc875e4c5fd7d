"""``POST /prompt`` validation with ComfyUI 0.8's error shapes (protocol §8.1)."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.simulator.nodes import NODE_CLASSES, InputSpec

__all__ = ["PromptRejected", "Validated", "is_link", "validate_prompt"]


@dataclass(frozen=True)
class Validated:
    outputs: list[str]
    node_errors: dict[str, Any]


class PromptRejected(Exception):
    """HTTP 400: the body to send back."""

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body["error"]["message"])
        self.body = body


def _error(kind: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def is_link(value: Any) -> bool:
    return isinstance(value, list)


def _convert(spec: InputSpec, name: str, value: Any) -> tuple[Any, dict[str, Any] | None]:
    """Widget value conversion and range checks, as ``validate_inputs`` does them."""
    config = spec.config()
    kind = spec.kind
    try:
        if kind == "INT":
            value = int(value)
        elif kind == "FLOAT":
            value = float(value)
        elif kind == "STRING":
            value = str(value)
        elif kind == "BOOLEAN":
            value = bool(value)
    except (TypeError, ValueError) as exc:
        return value, {
            "type": "invalid_input_type",
            "message": f"Failed to convert an input value to a {kind} value",
            "details": f"{name}, {value}, {exc}",
            "extra_info": {"input_name": name, "input_config": config, "received_value": value, "exception_message": str(exc)},
        }
    options = spec.options
    if kind in ("INT", "FLOAT"):
        if "min" in options and value < options["min"]:
            return value, {
                "type": "value_smaller_than_min",
                "message": f"Value {value} smaller than min of {options['min']}",
                "details": name,
                "extra_info": {"input_name": name, "input_config": config, "received_value": value},
            }
        if "max" in options and value > options["max"]:
            return value, {
                "type": "value_bigger_than_max",
                "message": f"Value {value} bigger than max of {options['max']}",
                "details": name,
                "extra_info": {"input_name": name, "input_config": config, "received_value": value},
            }
    if isinstance(kind, tuple) and value not in kind:
        return value, {
            "type": "value_not_in_list",
            "message": "Value not in list",
            "details": f"{name}: '{value}' not in {list(kind)}",
            "extra_info": {"input_name": name, "input_config": config, "received_value": value},
        }
    return value, None


class _Validator:
    def __init__(self, prompt: Mapping[str, Any], input_files: frozenset[str]) -> None:
        self.prompt = prompt
        self.input_files = input_files
        self.validated: dict[str, tuple[bool, list[dict[str, Any]]]] = {}

    def node(self, node_id: str) -> bool:
        if node_id in self.validated:
            return self.validated[node_id][0]
        node = self.prompt[node_id]  # KeyError for a link to a missing node, as in ComfyUI
        cls = NODE_CLASSES[node["class_type"]]
        inputs = node.get("inputs", {})
        errors: list[dict[str, Any]] = []
        valid = True
        for spec in cls.required + cls.optional:
            name = spec.name
            if name not in inputs:
                if spec in cls.required:
                    errors.append(
                        {
                            "type": "required_input_missing",
                            "message": "Required input is missing",
                            "details": name,
                            "extra_info": {"input_name": name},
                        }
                    )
                continue
            value = inputs[name]
            if is_link(value):
                if len(value) != 2:
                    errors.append(
                        {
                            "type": "bad_linked_input",
                            "message": "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                            "details": name,
                            "extra_info": {"input_name": name, "input_config": spec.config(), "received_value": value},
                        }
                    )
                    continue
                source = value[0]
                _ = self.prompt[source]["class_type"]  # outside the try, as in ComfyUI: the caller reports it
                try:
                    if not self.node(source):
                        valid = False
                except Exception as exc:  # noqa: BLE001 - mirrors ComfyUI's inner-validation catch
                    valid = False
                    self.validated[str(source)] = (
                        False,
                        [
                            {
                                "type": "exception_during_inner_validation",
                                "message": "Exception when validating inner node",
                                "details": str(exc),
                                "extra_info": {
                                    "input_name": name,
                                    "input_config": spec.config(),
                                    "exception_message": str(exc),
                                    "exception_type": type(exc).__name__,
                                    "traceback": traceback.format_tb(exc.__traceback__),
                                    "linked_node": value,
                                },
                            }
                        ],
                    )
                continue
            check = cls.custom_checks.get(name)
            if check is not None:
                message = check(value, self.input_files)
                if message is not None:
                    errors.append(
                        {
                            "type": "custom_validation_failed",
                            "message": "Custom validation failed for node",
                            "details": f"{name} - {message}",
                            "extra_info": {"input_name": name},
                        }
                    )
                continue
            _, problem = _convert(spec, name, value)
            if problem is not None:
                errors.append(problem)
        ok = valid and not errors
        self.validated[node_id] = (ok, errors)
        return ok


def validate_prompt(body: Mapping[str, Any], input_files: frozenset[str] = frozenset()) -> Validated:
    """Validate a ``POST /prompt`` body; raise :class:`PromptRejected` for a 400."""
    if "prompt" not in body:
        raise PromptRejected({"error": _error("no_prompt", "No prompt provided", "No prompt provided"), "node_errors": {}})
    prompt = body["prompt"]
    if not isinstance(prompt, dict):
        raise PromptRejected({"error": _error("invalid_prompt", "Prompt is not an object"), "node_errors": {}})
    outputs: list[str] = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            raise PromptRejected(
                {
                    "error": _error(
                        "invalid_prompt",
                        "Cannot execute because a node is missing the class_type property.",
                        f"Node ID '#{node_id}'",
                    ),
                    "node_errors": {},
                }
            )
        cls = NODE_CLASSES.get(node["class_type"])
        if cls is None:
            raise PromptRejected(
                {
                    "error": _error(
                        "invalid_prompt",
                        f"Cannot execute because node {node['class_type']} does not exist.",
                        f"Node ID '#{node_id}'",
                    ),
                    "node_errors": {},
                }
            )
        if cls.output_node:
            outputs.append(node_id)
    targets = body.get("partial_execution_targets")
    if isinstance(targets, list):
        outputs = [o for o in outputs if o in targets]
    if not outputs:
        raise PromptRejected({"error": _error("prompt_no_outputs", "Prompt has no outputs"), "node_errors": {}})

    validator = _Validator(prompt, input_files)
    good: list[str] = []
    node_errors: dict[str, Any] = {}
    for output in outputs:
        try:
            ok = validator.node(output)
        except Exception as exc:  # noqa: BLE001 - ComfyUI reports, never crashes, here
            ok = False
            validator.validated[output] = (
                False,
                [
                    {
                        "type": "exception_during_validation",
                        "message": "Exception when validating node",
                        "details": str(exc),
                        "extra_info": {"exception_type": type(exc).__name__, "traceback": traceback.format_tb(exc.__traceback__)},
                    }
                ],
            )
        if ok:
            good.append(output)
            continue
        for node_id, (valid, reasons) in validator.validated.items():
            if valid or not reasons:
                continue
            entry = node_errors.setdefault(
                node_id, {"errors": reasons, "dependent_outputs": [], "class_type": prompt.get(node_id, {}).get("class_type")}
            )
            entry["dependent_outputs"].append(output)
    if not good:
        raise PromptRejected(
            {"error": _error("prompt_outputs_failed_validation", "Prompt outputs failed validation"), "node_errors": node_errors}
        )
    return Validated(good, node_errors)
