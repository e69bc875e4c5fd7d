"""Hostile workflows and task arguments (issue 15, part 1 and the small ones): bounded, typed, never a RecursionError."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.arguments import MAX_MESSAGE_DEPTH, REJECTED_KEY, _refusal, task_arguments
from tasks.workflow import TaskOptions
from worker.app.cli import main as cli_main
from worker.comfyui.errors import WorkflowValidationError
from worker.comfyui.json_bounds import JSONBounds, JSONBoundsError, check_value, raw_json_depth
from worker.comfyui.workflow import MAX_WORKFLOW_BYTES, MAX_WORKFLOW_NODES, parse_workflow, validate_workflow


def nested(depth: int) -> list[Any]:
    """A list ``depth`` deep, built without recursion."""
    value: list[Any] = [1]
    for _ in range(depth - 1):
        value = [value]
    return value


def workflow_with(value: Any) -> dict[str, Any]:
    return {"1": {"class_type": "LabTextOutput", "inputs": {"text": "x", "extra": value}}}


@pytest.mark.parametrize("depth", [40, 500, 10_000, 100_000])
def test_a_deep_input_is_refused_without_recursion(depth: int) -> None:
    with pytest.raises(WorkflowValidationError) as caught:
        validate_workflow(workflow_with(nested(depth)))
    assert caught.value.error_type == "too_deep"


def test_a_self_referencing_value_is_refused() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(WorkflowValidationError, match="nested more than"):
        validate_workflow(workflow_with(cycle))


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (math.nan, "not_finite"),
        (math.inf, "not_finite"),
        (b"bytes", "bad_type"),
        ({1, 2}, "bad_type"),
        (object(), "bad_type"),
        ({1: "int key"}, "bad_type"),
        (10**100, "int_too_large"),
        ("x" * (MAX_WORKFLOW_BYTES + 1), "too_large"),
        ([0] * 1_000_001, "too_many_values"),
    ],
)
def test_values_that_are_not_bounded_json_are_refused(value: Any, kind: str) -> None:
    with pytest.raises(WorkflowValidationError) as caught:
        validate_workflow(workflow_with(value))
    assert caught.value.error_type == kind


def test_too_many_nodes_are_refused_and_a_10000_node_chain_is_not() -> None:
    def chain(n: int) -> dict[str, Any]:
        return {str(i): {"class_type": "LabTextOutput", "inputs": {"text": "x"}} for i in range(n)}

    assert len(validate_workflow(chain(10_000))) == 10_000
    with pytest.raises(WorkflowValidationError) as caught:
        validate_workflow(chain(MAX_WORKFLOW_NODES + 1))
    assert caught.value.error_type == "too_many_nodes"


def test_a_workflow_over_the_byte_bound_is_refused() -> None:
    workflow = {str(i): {"class_type": "LabTextOutput", "inputs": {"text": "y" * 1000}} for i in range(9000)}
    with pytest.raises(WorkflowValidationError) as caught:
        validate_workflow(workflow)
    assert caught.value.error_type == "too_large"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=40,
)


def true_depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict | list):
            deepest = max(deepest, depth)
            stack.extend((c, depth + 1) for c in (current.values() if isinstance(current, dict) else current))
    return deepest


@settings(max_examples=300, deadline=None)
@given(json_values, st.integers(0, 60))
def test_validation_of_any_value_at_any_depth_returns_or_raises_validation(value: Any, wrap: int) -> None:
    for _ in range(wrap):
        value = [value]
    scalars = _scalars(value)
    # workflow > node > inputs > {"v": ...}: the value's outermost container is level 5
    expected_ok = 4 + true_depth(value) <= 32 and all(
        not (isinstance(v, float) and not math.isfinite(v)) and not (isinstance(v, int) and abs(v) > 2**64) for v in scalars
    )
    try:
        validate_workflow(workflow_with({"v": value}))
    except WorkflowValidationError:
        assert not expected_ok
    else:
        assert expected_ok


def _scalars(value: Any) -> list[Any]:
    out, stack = [], [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict | list):
            stack.extend(current.values() if isinstance(current, dict) else current)
        else:
            out.append(current)
    return out


@settings(max_examples=300, deadline=None)
@given(json_values.filter(lambda v: "NaN" not in json.dumps(v) and "Infinity" not in json.dumps(v)))
def test_the_raw_depth_of_json_text_is_its_true_depth(value: Any) -> None:
    text = json.dumps(value)
    assert raw_json_depth(text, 1000) == true_depth(value)
    assert check_value(value, JSONBounds(max_int=2**80)) >= 1


@given(st.text(alphabet='[]{}",:\\ a1', max_size=200))
def test_the_raw_depth_scanner_never_fails_on_garbage(text: str) -> None:
    assert raw_json_depth(text, 50) >= 0


def test_raw_depth_stops_counting_past_the_limit() -> None:
    assert raw_json_depth("[" * 100_000 + "]" * 100_000, 10) == 11
    assert raw_json_depth('["[[[[[[[[[[", {"k": "{{{{"}]', 10) == 2


def test_check_value_says_which_bound() -> None:
    with pytest.raises(JSONBoundsError) as caught:
        check_value(nested(5), JSONBounds(max_depth=4))
    assert caught.value.kind == "too_deep"


# ------------------------------------------------------------------ the task's arguments


def test_wrong_argument_counts_and_names_are_validation_errors() -> None:
    workflow = workflow_with(1)
    assert task_arguments((workflow,), {})[0] == workflow
    assert task_arguments((), {"workflow": workflow, "options": {"pod": "a"}})[1] == {"pod": "a"}
    assert task_arguments((workflow, None, {"img": {"url": "https://x/a.png"}}), {})[2] == {"img": {"url": "https://x/a.png"}}
    cases: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
        ((), {}),
        ((workflow, {}, {}, 3), {}),
        ((workflow,), {"workflow": workflow}),
        ((workflow,), {"other": 1}),
    ]
    for args, kwargs in cases:
        with pytest.raises(WorkflowValidationError) as caught:
            task_arguments(args, kwargs)
        assert caught.value.error_type == "bad_arguments"


def test_a_refused_message_marker_becomes_its_reason() -> None:
    with pytest.raises(WorkflowValidationError, match="too deep for you"):
        task_arguments(({REJECTED_KEY: "too deep for you"},), {})


@pytest.mark.parametrize("depth", [500, 100_000])
def test_the_main_process_refuses_a_deep_raw_body_before_decoding(depth: int) -> None:
    body = '[[{"1": {"class_type": "X", "inputs": {"v": ' + "[" * depth + "]" * depth + "}}}], {}, {}]"
    assert _refusal(body, decoded=False) is not None
    assert _refusal(body.encode(), decoded=False) is not None
    assert _refusal('[[{"1": {"class_type": "X", "inputs": {}}}], {}, {}]', decoded=False) is None
    assert _refusal(nested(MAX_MESSAGE_DEPTH + 1), decoded=True) is not None


@pytest.mark.parametrize(
    "options",
    [{"timeout": math.nan}, {"timeout": math.inf}, {"timeout": -1}, {"timeout": 10**400}, {"timeout": "5"}, ["timeout", 3], "x", 5],
)
def test_bad_options_are_validation_errors(options: Any) -> None:
    with pytest.raises(WorkflowValidationError):
        TaskOptions.parse(options)


@given(st.dictionaries(st.text(max_size=8) | st.integers(), json_values, max_size=4) | json_values)
def test_any_options_value_parses_or_raises_validation(options: Any) -> None:
    with contextlib.suppress(WorkflowValidationError):
        TaskOptions.parse(options)


# ------------------------------------------------------------------ the CLI's reader


def test_the_cli_refuses_a_10000_deep_file_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"1": {"class_type": "X", "inputs": {"v": ' + "[" * 10_000 + "]" * 10_000 + "}}}")
    assert cli_main(["submit", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nested more than" in err and "Traceback" not in err


def test_parse_workflow_reports_bad_json_as_validation() -> None:
    with pytest.raises(WorkflowValidationError) as caught:
        parse_workflow("{not json")
    assert caught.value.error_type == "invalid_json"
    assert parse_workflow(json.dumps(workflow_with({"v": [1, 2, 3]})))["1"]["class_type"] == "LabTextOutput"
