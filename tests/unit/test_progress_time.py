"""The tracker's time estimate on a real server's recorded run: moves with time, monotonic, 100 only at
success, with eta_s, elapsed_s and queued_s in the state."""

from __future__ import annotations

import json
from typing import Any

from tests.traces import TRACE_DIR, load_trace
from worker.comfyui import protocol as p
from worker.comfyui.clock import FakeClock
from worker.comfyui.progress import JobProgressState, JobStatus, ProgressTracker


def _recorded(name: str) -> tuple[str, dict[str, Any], list[tuple[float, p.ComfyUIMessage]]]:
    records = load_trace(TRACE_DIR / f"{name}.jsonl")
    post = next(r for r in records if r["kind"] == "http" and r["path"] == "/prompt" and r["status"] == 200)
    messages = [(r["t_ms"] / 1000, p.parse_text(json.dumps(r["msg"]))) for r in records if r["kind"] == "ws_text"]
    return post["response"]["prompt_id"], post["request"]["prompt"], messages


def _replay(tracker: ProgressTracker, clock: FakeClock, messages: list[tuple[float, p.ComfyUIMessage]]) -> list[JobProgressState]:
    """Feed each message at its recorded time, looking at the state every 100 ms in between."""
    states = []
    for at, message in messages:
        while clock.monotonic() + 0.1 < at:
            clock.advance(0.1)
            states.append(tracker.state())
        clock.advance(max(0.0, at - clock.monotonic()))
        tracker.apply(message)
        states.append(tracker.state())
    return states


def test_time_progress_moves_between_events_is_monotonic_and_100_only_at_success() -> None:
    prompt_id, workflow, messages = _recorded("success-ksampler")
    clock = FakeClock(start=0.0)
    tracker = ProgressTracker(prompt_id, workflow, clock=clock)
    tracker.submitted()
    states = _replay(tracker, clock, messages)
    curve = [s.progress for s in states]
    assert curve == sorted(curve) and max(curve) < 100.0
    # the 2.4 s checkpoint load brings no event, yet progress moves (steps read 0 % all along)
    during_load = [s.progress for s in states if s.current_node_type == "CheckpointLoaderSimple"]
    assert during_load[-1] > during_load[0] > 0.0
    running = [s for s in states if s.status is JobStatus.RUNNING]
    assert all(s.eta_s is not None and s.elapsed_s is not None for s in running)
    # once every node reported finished, ComfyUI still writes history: 0 s left, 99.9 % until confirmed
    assert all((s.eta_s or 0.0) > 0 for s in running if s.progress < 99.0)
    assert running[-1].elapsed_s is not None and running[-1].elapsed_s > 13.0
    tracker.complete()
    final = tracker.state()
    assert (final.progress, final.eta_s) == (100.0, 0.0)
    assert final.queued_s is not None and final.queued_s < 0.05  # nothing ahead of it on that server
    data = final.to_dict()
    assert data["eta_s"] == 0.0 and isinstance(data["elapsed_s"], float) and round(data["elapsed_s"], 1) == data["elapsed_s"]


def test_queued_time_grows_while_queued_and_eta_is_unknown_until_the_start() -> None:
    clock = FakeClock(start=0.0)
    tracker = ProgressTracker("p", {"1": {"class_type": "X", "inputs": {}}}, clock=clock)
    tracker.submitted()
    clock.advance(4.0)
    state = tracker.state()
    assert (state.status, state.progress, state.eta_s, state.elapsed_s, state.queued_s) == (JobStatus.QUEUED, 0.0, None, None, 4.0)
    clock.advance(1.0)
    later = tracker.state()
    assert later.same_as(state)  # time passing alone is not a change worth publishing
    tracker.apply(p.ExecutionStartData("p"))
    started = tracker.state()
    assert started.queued_s == 5.0 and started.eta_s is not None and started.elapsed_s == 0.0


def test_a_failure_keeps_progress_where_it_stopped_and_drops_the_eta() -> None:
    prompt_id, workflow, messages = _recorded("execution-error")
    clock = FakeClock(start=0.0)
    tracker = ProgressTracker(prompt_id, workflow, clock=clock)
    _replay(tracker, clock, messages)
    assert tracker.status is JobStatus.FAILED
    stopped = tracker.state()
    clock.advance(60.0)
    assert tracker.state().progress == stopped.progress < 100.0
    assert stopped.eta_s is None
