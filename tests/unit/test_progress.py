"""The progress engine on the recorded traces, in legacy mode, and under random event orders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.traces import load_trace, trace_files
from worker.comfyui import protocol as p
from worker.comfyui.clock import FakeClock
from worker.comfyui.progress import JobStatus, ProgressTracker, naive_progress, node_weights


def _prompts(path: Path) -> list[tuple[str, dict[str, Any], list[p.ComfyUIMessage]]]:
    """Each prompt of a trace: its id, its workflow, and the messages of the socket(s) that saw it."""
    records = load_trace(path)
    prompts: list[tuple[str, dict[str, Any], list[p.ComfyUIMessage]]] = []
    for record in records:
        if record["kind"] == "http" and record["path"] == "/prompt" and record["status"] == 200 and record["request"].get("client_id"):
            prompt_id = record["response"]["prompt_id"]
            conns = {r["conn"] for r in records if r["kind"] == "ws_open" and r["client_id"] == record["request"]["client_id"]}
            messages = [p.parse_text(json.dumps(r["msg"])) for r in records if r["kind"] == "ws_text" and r["conn"] in conns]
            prompts.append((prompt_id, record["request"]["prompt"], messages))
    return prompts


TRACED_PROMPTS = [(path.stem, *prompt) for path in trace_files() for prompt in _prompts(path)]


@pytest.mark.parametrize(
    ("scenario", "prompt_id", "workflow", "messages"), TRACED_PROMPTS, ids=[f"{t[0]}-{t[1][:8]}" for t in TRACED_PROMPTS]
)
def test_progress_is_monotonic_below_100_and_100_only_when_confirmed(
    scenario: str, prompt_id: str, workflow: dict[str, Any], messages: list[p.ComfyUIMessage]
) -> None:
    tracker = ProgressTracker(prompt_id, workflow, clock=FakeClock())
    curve = []
    for message in messages:
        tracker.apply(message)
        curve.append(tracker.state().progress)
    assert curve == sorted(curve), f"{scenario}: progress went down: {curve}"
    assert max(curve) < 100.0
    if tracker.status is JobStatus.RUNNING:
        tracker.complete()
        assert tracker.state().progress == 100.0
        assert tracker.state().nodes_done == tracker.state().nodes_total


def test_txt2img_curve_ours_against_the_naive_formula() -> None:
    (prompt_id, workflow, messages) = _prompts(next(f for f in trace_files() if f.stem == "success-ksampler"))[0]
    tracker = ProgressTracker(prompt_id, workflow, clock=FakeClock(), estimate="steps")
    naive, ours = [], []
    for message in messages:
        tracker.apply(message)
        if isinstance(message, p.ProgressStateMessageData):
            naive.append(round(naive_progress(message), 1))
            ours.append(round(tracker.state().progress, 1))
    # The seed's formula: 0 %, then 100 % after the first node, then down to 50 % …
    assert naive[:4] == [0.0, 100.0, 50.0, 100.0]
    assert naive != sorted(naive)
    # Ours: the denominator is the whole graph (6 nodes of weight 1, KSampler weighs its 6 steps).
    assert ours == sorted(ours)
    assert ours[:4] == [0.0, 8.3, 8.3, 16.7]
    assert ours[-1] == 99.9
    assert len(ours) == 20  # the trace's 20 progress_state messages


def test_cached_nodes_leave_the_denominator() -> None:
    path = next(f for f in trace_files() if f.stem == "cached-rerun")
    _, (p2, w2, m2), (p3, w3, m3) = _prompts(path)
    partial = ProgressTracker(p3, w3, clock=FakeClock(), estimate="steps")
    for message in m3:
        partial.apply(message)
        if isinstance(message, p.ProgressData) and message.prompt_id == p3 and message.value == 3:
            state = partial.state()
            # 4 of 7 nodes cached: KSampler (6) + VAEDecode + SaveImage = 8 units; 3 steps done
            assert (state.nodes_total, round(state.progress, 1)) == (3, 37.5)
    full = ProgressTracker(p2, w2, clock=FakeClock())
    for message in m2:
        full.apply(message)
    assert full.state().nodes_total == 0
    full.complete()
    assert full.state().progress == 100.0


def test_legacy_servers_without_progress_state_reach_the_same_result() -> None:
    (prompt_id, workflow, messages) = _prompts(next(f for f in trace_files() if f.stem == "success-ksampler"))[0]
    legacy = ProgressTracker(prompt_id, workflow, clock=FakeClock())
    modern = ProgressTracker(prompt_id, workflow, clock=FakeClock())
    curve = []
    for message in messages:
        modern.apply(message)
        if not isinstance(message, p.ProgressStateMessageData):
            legacy.apply(message)
            curve.append(legacy.state().progress)
    assert curve == sorted(curve)
    assert legacy.state().progress == modern.state().progress == 99.9
    assert legacy.state().current_node_id is None


def test_state_names_the_node_and_step() -> None:
    (prompt_id, workflow, messages) = _prompts(next(f for f in trace_files() if f.stem == "success-ksampler"))[0]
    tracker = ProgressTracker(prompt_id, workflow, clock=FakeClock())
    for message in messages:
        tracker.apply(message)
        if isinstance(message, p.ProgressData) and message.value == 2:
            break
    state = tracker.state()
    assert (state.current_node_id, state.current_node_type, state.node_value, state.node_max) == ("3", "KSampler", 2.0, 6.0)
    assert (state.nodes_done, state.nodes_total, state.status) == (4, 7, JobStatus.RUNNING)
    assert state.to_dict()["status"] == "running"


def test_errors_and_interrupts_end_the_job_without_100() -> None:
    for stem, status in (("execution-error", JobStatus.FAILED), ("interrupted", JobStatus.INTERRUPTED)):
        (prompt_id, workflow, messages) = _prompts(next(f for f in trace_files() if f.stem == stem))[0]
        tracker = ProgressTracker(prompt_id, workflow, clock=FakeClock())
        for message in messages:
            tracker.apply(message)
        assert tracker.status is status
        assert tracker.state().progress < 100.0


def test_queue_position_only_while_queued() -> None:
    tracker = ProgressTracker("p", {"1": {"class_type": "X", "inputs": {}}}, clock=FakeClock())
    tracker.set_queue_position(3)
    assert tracker.state().queue_position == 3
    tracker.apply(p.ExecutionStartData("p"))
    assert tracker.state().queue_position is None
    tracker.set_queue_position(2)
    assert tracker.state().queue_position is None


def test_weights() -> None:
    workflow = {
        "1": {"class_type": "KSampler", "inputs": {"steps": 30}},
        "2": {"class_type": "VAEDecode", "inputs": {}},
        "3": {"class_type": "Upscale", "inputs": {"steps": ["1", 0]}},
        "4": {"class_type": "Odd", "inputs": {"steps": True}},
    }
    assert node_weights(workflow) == {"1": 30.0, "2": 1.0, "3": 1.0, "4": 1.0}
    assert node_weights(workflow, {"VAEDecode": 5, "1": 10}) == {"1": 10.0, "2": 5.0, "3": 1.0, "4": 1.0}


# ------------------------------------------------------------------ property: random event orders

WORKFLOW = {
    "1": {"class_type": "Loader", "inputs": {}},
    "2": {"class_type": "KSampler", "inputs": {"steps": 5, "model": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0]}},
}


def _node_progress(node: str, value: float, maximum: float, state: str) -> p.NodeProgress:
    return p.NodeProgress(node, value, maximum, state, "P", node)  # type: ignore[arg-type]


events = st.one_of(
    st.builds(lambda n: p.ExecutingData(n, "P", n), st.sampled_from(["1", "2", "3", "9"])),
    st.just(p.ExecutingData(None, "P")),
    st.builds(p.ExecutingData, st.sampled_from(["1", "2", "3"])),
    st.builds(lambda v, m: p.ProgressData(v, m, "P", "2"), st.integers(0, 8), st.integers(0, 8)),
    st.builds(lambda n: p.ExecutedMessageData(n, {"images": []}, "P", n), st.sampled_from(["1", "2", "3"])),
    st.builds(lambda ns: p.ExecutionCachedData(tuple(ns), "P"), st.lists(st.sampled_from(["1", "2", "3"]), max_size=3)),
    st.builds(
        lambda entries: p.ProgressStateMessageData("P", {n: _node_progress(n, v, m, s) for n, v, m, s in entries}),
        st.lists(
            st.tuples(
                st.sampled_from(["1", "2", "3", "2.0.1"]), st.integers(0, 6), st.integers(0, 6), st.sampled_from(["running", "finished"])
            ),
            max_size=4,
        ),
    ),
    st.builds(lambda v: p.ProgressData(v, 5, "OTHER", "2"), st.integers(0, 5)),
    st.just(p.ExecutionSuccessData("P")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(events, max_size=40))
def test_progress_stays_in_range_and_never_decreases(sequence: list[p.KnownMessage]) -> None:
    tracker = ProgressTracker("P", WORKFLOW, clock=FakeClock())
    last = 0.0
    for message in sequence:
        tracker.apply(message)
        progress = tracker.state().progress
        assert 0.0 <= progress < 100.0
        assert progress >= last
        last = progress
    tracker.complete()
    assert tracker.state().progress == 100.0
