"""The first run's bar (no learned timings, priors only) at the demo's pace: it must move on
every sampler step, not sit still while the estimate catches up with a sampler slower than
the priors say."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from worker.comfyui import protocol as p
from worker.comfyui.clock import FakeClock
from worker.comfyui.progress import JobProgressState, ProgressTracker

SAMPLE = Path(__file__).resolve().parents[2] / "worker" / "app" / "samples" / "txt2img.json"
#: ``python3 -m worker demo``: 0.8 s a sampler step and for the checkpoint, 0.8 / 3 s any other node
STEP_S = 0.8
NODE_S = STEP_S / 3
#: the order ComfyUI runs the sample in, and each node's duration (None: the sampler's steps)
RUN = [("4", STEP_S), ("6", NODE_S), ("7", NODE_S), ("5", NODE_S), ("3", None), ("8", NODE_S), ("9", NODE_S)]


def _first_run() -> tuple[list[JobProgressState], ProgressTracker]:
    """Feed the demo's events on a fake clock, reading the state every 0.2 s (the demo's poll)."""
    clock = FakeClock(start=0.0)
    tracker = ProgressTracker("p", json.loads(SAMPLE.read_text()), clock=clock)
    states: list[JobProgressState] = []

    def wait(seconds: float) -> None:
        for _ in range(round(seconds / 0.2)):
            clock.advance(0.2)
            states.append(tracker.state())
        clock.advance(seconds - 0.2 * round(seconds / 0.2))

    tracker.apply(p.ExecutionStartData("p"))
    tracker.apply(p.ExecutionCachedData((), "p"))
    for node, seconds in RUN:
        tracker.apply(p.ExecutingData(node, "p"))
        if seconds is not None:
            wait(seconds)
            continue
        for step in range(1, 11):
            wait(STEP_S)
            tracker.apply(p.ProgressData(step, 10, "p", node))
            states.append(tracker.state())
    tracker.apply(p.ExecutingData(None, "p"))
    states.append(tracker.state())
    return states, tracker


def test_the_first_runs_bar_rises_on_every_sampler_step_and_reaches_100_only_at_success() -> None:
    states, tracker = _first_run()
    curve = [s.progress for s in states]
    assert curve == sorted(curve) and curve[-1] < 100.0
    at_step: dict[int, float] = {}
    for state in states:
        if state.current_node_type == "KSampler" and state.node_value:
            at_step.setdefault(int(state.node_value), state.progress)  # as the step is reported
    assert sorted(at_step) == list(range(1, 11))
    rises = [at_step[k + 1] - at_step[k] for k in range(1, 10)]
    assert min(rises) > 1.0, rises  # each step (8 % of the run) moves the bar visibly; it sat still for 7
    after = [s.progress for s in states if s.current_node_type in ("VAEDecode", "SaveImage")]
    assert at_step[10] < after[0] < after[-1] < 100.0  # the decode and the save still move it
    tracker.complete()
    assert tracker.state().progress == 100.0


def test_between_steps_the_bar_keeps_moving_too() -> None:
    states, _ = _first_run()
    sampling = [(s.elapsed_s, s.progress) for s in states if s.current_node_type == "KSampler"]
    stalls = [(t, v) for (t0, v0), (t, v) in itertools.pairwise(sampling) if t != t0 and v <= v0]
    assert stalls == [], sampling


def test_a_node_far_past_its_expected_end_does_not_rush_the_bar_to_the_end() -> None:
    # the checkpoint's prior is 3 s; this one takes 30 s: its ``eta_s`` stops counting down, and
    # a bar filling at the pace of ``eta_s`` would sit at 99.9 % long before the sampler starts
    clock = FakeClock(start=0.0)
    tracker = ProgressTracker("p", json.loads(SAMPLE.read_text()), clock=clock)
    tracker.apply(p.ExecutionStartData("p"))
    tracker.apply(p.ExecutionCachedData((), "p"))
    tracker.apply(p.ExecutingData("4", "p"))
    curve = []
    for _ in range(150):
        clock.advance(0.2)
        curve.append(tracker.state().progress)
    assert curve == sorted(curve) and curve[-1] > curve[75]  # still moving, slower and slower
    assert curve[-1] < 92.0, curve[-1]  # 88.6 % (a bar paced by eta_s alone: 99.9 %)
