"""The time estimate: elapsed-weighted progress, seconds left, live step timing, and what it learns."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.traces import TRACE_DIR, load_trace
from worker.comfyui import protocol as p
from worker.comfyui.eta import EtaEstimator
from worker.comfyui.node_costs import NodeCost, NodeSpec
from worker.fleet.node_timings import MemoryTimingStore, NodeTimings

WORKFLOW: dict[str, Any] = {
    "1": {"class_type": "Load", "inputs": {}},
    "2": {"class_type": "Sample", "inputs": {"steps": 10, "x": ["1", 0]}},
    "3": {"class_type": "Save", "inputs": {"x": ["2", 0]}},
}


class Costs:
    """Known durations by class, all 'learned' (so no speed factor applies)."""

    def __init__(self, **costs: NodeCost) -> None:
        self.costs = costs

    def expect(self, spec: NodeSpec) -> NodeCost:
        return self.costs[spec.class_type]


KNOWN = Costs(Load=NodeCost(2.0, learned=True), Sample=NodeCost(0.0, 0.1, 10, learned=True), Save=NodeCost(1.0, learned=True))


def _started(model: Any = KNOWN, at: float = 0.0) -> EtaEstimator:
    eta = EtaEstimator("p", WORKFLOW, model)
    eta.submitted(at - 3.0)
    eta.cached([], at)
    return eta


def test_before_the_start_nothing_is_known_but_the_queue_wait() -> None:
    eta = EtaEstimator("p", WORKFLOW, KNOWN)
    eta.submitted(10.0)
    estimate = eta.estimate(12.5)
    assert (estimate.progress, estimate.eta_s, estimate.elapsed_s, estimate.queued_s) == (0.0, None, None, 2.5)
    eta.started(13.0)
    assert eta.estimate(20.0).queued_s == 3.0  # the wait stops growing once the prompt runs


def test_progress_is_the_elapsed_share_of_the_expected_run_time() -> None:
    eta = _started()
    eta.node_started("1", 0.0)
    estimate = eta.estimate(1.0)  # 1 s into a 2 s load; then 1 s of steps and a 1 s save
    assert estimate.eta_s == pytest.approx(3.0)
    assert estimate.progress == pytest.approx(25.0)
    assert estimate.elapsed_s == pytest.approx(1.0)


def test_a_running_sampler_is_timed_live_not_by_its_expected_step_time() -> None:
    eta = _started()
    eta.node_started("1", 0.0)
    eta.node_finished("1", 2.0)
    eta.node_started("2", 2.0)
    for step in range(1, 4):
        eta.node_step("2", step, 10, 2.0 + 0.3 * step)  # 0.3 s a step, three times the expected 0.1
    estimate = eta.estimate(2.9)
    assert estimate.eta_s == pytest.approx(7 * 0.3 + 1.0)
    assert estimate.progress == pytest.approx(100 * 2.9 / (2.9 + 3.1))


def test_an_overdue_node_keeps_a_share_of_its_time_so_progress_stays_below_100() -> None:
    eta = _started()
    eta.node_started("1", 0.0)
    eta.node_finished("1", 2.0)
    eta.node_started("2", 2.0)
    for step in range(1, 11):
        eta.node_step("2", step, 10, 2.0 + 0.1 * step)
    eta.node_finished("2", 3.0)
    eta.node_started("3", 3.0)
    late = eta.estimate(60.0)  # the 1 s save still runs after a minute
    assert late.eta_s is not None and 0 < late.eta_s <= 0.1 + 1e-9
    assert late.progress < 100.0


def test_success_reads_exactly_100_and_nothing_left() -> None:
    eta = _started()
    eta.node_started("1", 0.0)
    eta.finished(4.5)
    estimate = eta.estimate(9.0)
    assert (estimate.progress, estimate.eta_s, estimate.elapsed_s) == (100.0, 0.0, 4.5)


def test_prior_costs_are_scaled_by_how_fast_this_pod_runs_them() -> None:
    priors = Costs(Load=NodeCost(2.0), Sample=NodeCost(0.0, 0.1, 10), Save=NodeCost(1.0))
    eta = _started(priors)
    eta.node_started("1", 0.0)
    eta.node_finished("1", 6.0)  # three times the prior
    # (6 + 1) / (2 + 1) with the pseudo-second that keeps one early node from swinging it all
    assert eta.remaining(6.0) == pytest.approx((1.0 + 1.0) * 7 / 3)
    learned = _started()
    learned.node_started("1", 0.0)
    learned.node_finished("1", 6.0)
    assert learned.remaining(6.0) == pytest.approx(2.0)  # learned figures are trusted as they are


def test_cached_nodes_cost_nothing() -> None:
    eta = EtaEstimator("p", WORKFLOW, KNOWN)
    eta.cached(["1"], 0.0)
    assert eta.remaining(0.0) == pytest.approx(2.0)


def test_observations_split_a_sampler_into_fixed_time_and_step_time() -> None:
    eta = _started()
    eta.node_started("1", 0.0)
    eta.node_started("2", 2.0)  # a server without per-node 'finished': the next node ends the previous one
    for step in range(1, 11):
        eta.node_step("2", step, 10, 2.5 + 0.2 * step)
    eta.node_started("3", 5.0)
    eta.finished(5.5)
    seen = {o.spec.node_id: o for o in eta.observations()}
    assert seen["1"].duration_s == pytest.approx(2.0) and seen["1"].per_step_s is None
    assert seen["2"].per_step_s == pytest.approx(0.2)
    assert seen["2"].fixed_s == pytest.approx(3.0 - 10 * 0.2)
    assert seen["3"].duration_s == pytest.approx(0.5)


def test_messages_of_other_prompts_are_ignored() -> None:
    eta = EtaEstimator("p", WORKFLOW, KNOWN)
    eta.apply(p.ExecutionStartData("other"), 1.0)
    eta.apply(p.ExecutingData("1", "other", "1"), 1.0)
    assert eta.started_at is None and eta.estimate(2.0).eta_s is None


def _traced(name: str) -> list[tuple[str, dict[str, Any], list[tuple[float, p.ComfyUIMessage]]]]:
    records = load_trace(TRACE_DIR / f"{name}.jsonl")
    messages = [(r["t_ms"] / 1000, p.parse_text(json.dumps(r["msg"]))) for r in records if r["kind"] == "ws_text"]
    posts = [r for r in records if r["kind"] == "http" and r["path"] == "/prompt" and r["status"] == 200]
    found = []
    for post in posts:
        prompt_id = post["response"]["prompt_id"]
        found.append((prompt_id, post["request"]["prompt"], [(t, m) for t, m in messages if getattr(m, "prompt_id", None) == prompt_id]))
    return found


def _mad(eta: EtaEstimator, messages: list[tuple[float, p.ComfyUIMessage]]) -> float:
    """Mean |shown progress - elapsed share of the run| sampled every 50 ms, shown as the tracker does."""
    start = next(t for t, m in messages if isinstance(m, p.ExecutionStartData))
    end = next(t for t, m in messages if isinstance(m, p.ExecutionSuccessData))
    pending, shown, errors, now = list(messages), 0.0, [], start
    while now <= end:
        while pending and pending[0][0] <= now:
            eta.apply(pending[0][1], pending[0][0])
            pending.pop(0)
        shown = max(shown, min(eta.estimate(now).progress, 99.9))
        errors.append(abs(shown - 100 * (now - start) / (end - start)))
        now += 0.05
    for at, message in pending:
        eta.apply(message, at)
    return sum(errors) / len(errors)


def test_on_a_real_servers_rerun_the_learned_estimate_tracks_time_within_5_points() -> None:
    """cached-rerun: a cold txt2img on a real ComfyUI 0.8 (CPU), an all-cached rerun, then a new seed."""
    (first_id, workflow, first), _, (third_id, third_workflow, third) = _traced("cached-rerun")
    timings = NodeTimings(MemoryTimingStore())
    cold = EtaEstimator(first_id, workflow, timings.model_for(workflow))
    _mad(cold, first)
    assert timings.learn(cold.observations()) == 7
    warm = EtaEstimator(third_id, third_workflow, timings.model_for(third_workflow))
    assert _mad(warm, third) <= 5.0
    assert warm.estimate(0.0).progress == 100.0


def test_without_events_the_estimate_counts_down_from_where_it_was() -> None:
    """REST polling: the probes only say 'running', so the nodes never report their start."""
    eta = EtaEstimator("p", WORKFLOW, KNOWN)
    eta.blind(0.0)
    eta.started(1.0)  # seen running by a probe; 4 s of work expected
    assert eta.remaining(1.0) == pytest.approx(4.0)
    assert eta.estimate(3.0).progress == pytest.approx(50.0)  # 2 s of the 4 s expected
    assert eta.remaining(6.0) == pytest.approx(0.4)  # overdue: still a share left, below 100 %
    live = _started()
    live.node_started("1", 0.0)
    live.node_finished("1", 2.0)
    live.blind(2.0)  # a fallback mid-job: the sampler's 1 s and the save's 1 s are left
    assert live.remaining(3.5) == pytest.approx(0.5)


def test_nodes_seen_across_a_gap_in_the_events_are_not_learned() -> None:
    eta = _started()
    eta.node_started("1", 0.0)
    eta.gap()  # the socket dropped while the load ran: its end comes late
    eta.apply(p.ExecutingData("2"), 5.0)  # the reconnect replay names the node running now
    eta.node_started("3", 6.0)
    eta.finished(7.0)
    assert [o.spec.node_id for o in eta.observations()] == ["3"]
