"""Learned node durations: merging runs, cold and warm siblings, bounded stores, and failing stores."""

from __future__ import annotations

import logging

import pytest

from tests.traces import load_workflow
from worker.comfyui.clock import FakeClock
from worker.comfyui.eta import Observation
from worker.comfyui.node_costs import NodeSpec, prior_cost
from worker.fleet.node_timings import LearnedDurations, MemoryTimingStore, NodeTimings, TimingRecord

SAMPLER = NodeSpec("3", "KSampler", 512 * 512, 1, 20, cold=True)
DECODE = NodeSpec("8", "VAEDecode", 512 * 512, 1, 0, cold=True)


def _seen(spec: NodeSpec, fixed: float, per_step: float | None = None) -> Observation:
    return Observation(spec, fixed + (per_step or 0.0) * spec.steps, fixed, per_step, spec.steps)


def test_what_was_learned_is_what_the_next_job_expects() -> None:
    timings = NodeTimings(MemoryTimingStore(clock=FakeClock()), clock=FakeClock())
    assert timings.model_for({}).expect(SAMPLER) == prior_cost(SAMPLER)
    assert timings.learn([_seen(SAMPLER, 0.6, 0.03), _seen(DECODE, 0.2)]) == 2
    workflow = load_workflow("txt2img-sd15-random.json")
    workflow["5"]["inputs"].update(width=512, height=512)
    model = timings.model_for(workflow)  # one read: every key the workflow may need
    cost = model.expect(SAMPLER)
    assert (cost.fixed_s, cost.per_step_s, cost.steps, cost.learned) == (0.6, 0.03, 20, True)
    assert model.expect(DECODE).total_s == pytest.approx(0.2)


def test_a_running_mean_first_then_recent_runs_count_more() -> None:
    timings = NodeTimings(MemoryTimingStore(clock=FakeClock()), clock=FakeClock(), horizon=4)
    for seconds in (1.0, 2.0, 3.0):
        timings.learn([_seen(DECODE, seconds)])
    assert LearnedDurations(timings._store.get_many([DECODE.key])).expect(DECODE).fixed_s == pytest.approx(2.0)
    for _ in range(20):
        timings.learn([_seen(DECODE, 10.0)])
    assert LearnedDurations(timings._store.get_many([DECODE.key])).expect(DECODE).fixed_s == pytest.approx(10.0, abs=0.05)


def test_seen_only_cold_a_warm_node_keeps_the_step_time_and_scales_the_fixed_part_by_the_priors() -> None:
    model = LearnedDurations({SAMPLER.key: TimingRecord(0.6, 0.03, 1, 0.0), DECODE.key: TimingRecord(0.2, None, 1, 0.0)})
    warm_sampler = NodeSpec("3", "KSampler", 512 * 512, 1, 20, cold=False)
    cost = model.expect(warm_sampler)
    ratio = prior_cost(warm_sampler).fixed_s / prior_cost(SAMPLER).fixed_s
    assert cost.per_step_s == 0.03 and cost.fixed_s == pytest.approx(0.6 * ratio) and cost.learned
    warm_decode = NodeSpec("8", "VAEDecode", 512 * 512, 1, 0, cold=False)
    assert model.expect(warm_decode).fixed_s == pytest.approx(0.2 * prior_cost(warm_decode).fixed_s / prior_cost(DECODE).fixed_s)


def test_the_memory_store_evicts_the_oldest_beyond_its_size_and_hides_expired_records() -> None:
    clock = FakeClock()
    store = MemoryTimingStore(max_entries=2, max_age_s=100.0, clock=clock)
    for key in ("a", "b", "c"):
        store.put_many({key: TimingRecord(1.0, None, 1, clock.time())})
        clock.advance(10)
    assert len(store) == 2 and set(store.get_many(["a", "b", "c"])) == {"b", "c"}
    clock.advance(85)  # b is now 105 s old, c 95 s
    assert set(store.get_many(["b", "c"])) == {"c"}


def test_records_that_are_malformed_oversized_or_negative_read_as_unknown() -> None:
    good = TimingRecord(0.5, 0.02, 3, 1.0)
    assert TimingRecord.from_json(good.to_json()) == good
    for raw in ("{", "[]", '{"f": 1}', '{"f": -1, "s": null, "n": 1, "t": 0}', '{"f": 1, "s": null, "n": 0, "t": 0}', "x" * 600):
        assert TimingRecord.from_json(raw) is None, raw


class BrokenStore:
    def __init__(self) -> None:
        self.calls = 0

    def get_many(self, keys: object) -> dict[str, TimingRecord]:
        self.calls += 1
        raise ConnectionError("redis is down")

    def put_many(self, records: object) -> None:
        self.calls += 1
        raise ConnectionError("redis is down")


def test_a_failing_store_means_priors_and_a_warning_never_a_failed_job(caplog: pytest.LogCaptureFixture) -> None:
    store, clock = BrokenStore(), FakeClock()
    timings = NodeTimings(store, clock=clock, retry_after_s=30.0)
    with caplog.at_level(logging.WARNING):
        assert timings.model_for({"3": {"class_type": "KSampler", "inputs": {}}}).expect(SAMPLER) == prior_cost(SAMPLER)
        assert timings.learn([_seen(DECODE, 0.2)]) == 0
    assert [r.message for r in caplog.records if "redis is down" in r.message] != []
    assert store.calls == 1  # a dead store costs one timeout, not one per job
    clock.advance(31.0)
    timings.model_for({})
    assert store.calls == 2


def test_learning_in_the_background_writes_in_order_and_close_waits_for_it() -> None:
    store = MemoryTimingStore(clock=FakeClock())
    timings = NodeTimings(store, clock=FakeClock())
    futures = [timings.learn_later([_seen(DECODE, seconds)]) for seconds in (1.0, 3.0)]
    timings.close()
    assert [f.result() for f in futures] == [1, 1]
    assert LearnedDurations(store.get_many([DECODE.key])).expect(DECODE).fixed_s == pytest.approx(2.0)


def test_keys_for_a_workflow_cover_its_nodes_cold_and_warm() -> None:
    workflow = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
        "3": {"class_type": "KSampler", "inputs": {"model": ["4", 0], "steps": 5}},
    }
    keys = NodeTimings.keys_for(workflow)
    assert "KSampler px=0 n=1 cold" in keys and "KSampler px=0 n=1 warm" in keys
    assert "CheckpointLoaderSimple px=0 n=1 cold m=a.safetensors" in keys
    assert NodeTimings.keys_for({"1": {"class_type": "X" * 300, "inputs": {}}}) == []  # too long to learn
