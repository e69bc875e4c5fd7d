"""ComfyUIJobRunner: throttled progress, analytics events, and sinks that cannot break a job."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import slow_workflow
from tests.integration.pod_support import SETTINGS
from tests.observers import ProgressLog
from worker.comfyui.errors import ExecutionError
from worker.comfyui.observer import JobObserver
from worker.comfyui.pod_client import ComfyUIPodClient
from worker.comfyui.progress import JobProgressState, JobStatus
from worker.fleet.analytics import Analytics, MemorySink
from worker.fleet.job_runner import ComfyUIJobRunner
from worker.fleet.node_timings import MemoryTimingStore, NodeTimings
from worker.simulator import ComfyUISimulator


class ExplodingSink:
    def capture(self, event: str, properties: Any) -> None:
        raise RuntimeError("analytics backend down")


def test_throttled_progress_and_events(sim: ComfyUISimulator) -> None:
    sink = MemorySink()
    runner = ComfyUIJobRunner(ComfyUIPodClient(sim.url, settings=SETTINGS), analytics=Analytics(sink), throttle_interval=0.1)
    seen: list[JobProgressState] = []
    result = runner.run(slow_workflow(steps=40, seconds_per_step=0.2), prompt_id="r1", job_type="lora_training", observer=ProgressLog(seen))
    assert result.status == "success"
    assert seen[-1].status is JobStatus.COMPLETED and seen[-1].progress == 100.0
    assert 3 <= len(seen) < 40  # ~0.4 s of steps at most one per 0.1 s, plus the final one
    assert result.progress_updates == len(seen)
    names = [name for name, _ in sink.events]
    assert names[0] == "comfyui_websocket_connected"
    assert names.count("comfyui_progress_update") == len(seen)
    assert names[-1] == "comfyui_job_websocket_completed"
    completed = sink.events[-1][1]
    assert (completed["promptId"], completed["progressUpdates"], completed["method"]) == ("r1", len(seen), "websocket")
    assert {p["jobType"] for n, p in sink.events if n == "comfyui_progress_update"} == {"lora_training"}


def test_failure_event_and_fallback_event(sim: ComfyUISimulator) -> None:
    sink = MemorySink()
    runner = ComfyUIJobRunner(ComfyUIPodClient(sim.url, settings=SETTINGS), analytics=Analytics(sink), throttle_interval=0.1)
    sim.faults.refuse_websocket(times=1)
    with pytest.raises(ExecutionError):
        runner.run({"1": {"class_type": "LabRaiseError", "inputs": {"message": "x"}}}, prompt_id="r2")
    names = [name for name, _ in sink.events]
    assert names[0] == "comfyui_websocket_fallback"
    assert sink.events[0][1] == {"promptId": "r2", "reason": "connection_failed", "fallbackMethod": "rest_polling"}
    failed = sink.events[-1]
    assert failed[0] == "comfyui_job_websocket_failed"
    assert failed[1]["method"] == "rest_polling" and failed[1]["error"].startswith("execution:")


def test_a_raising_sink_and_progress_consumer_never_break_the_job(sim: ComfyUISimulator, caplog: pytest.LogCaptureFixture) -> None:
    runner = ComfyUIJobRunner(ComfyUIPodClient(sim.url, settings=SETTINGS), analytics=Analytics(ExplodingSink()), throttle_interval=0.0)

    class Broken(JobObserver):
        def on_progress(self, state: JobProgressState) -> None:
            raise ValueError("consumer bug")

    result = runner.run(slow_workflow(steps=3), prompt_id="r3", observer=Broken())
    assert result.status == "success"
    assert "analytics backend down" in caplog.text and "consumer bug" in caplog.text


def test_the_runner_learns_node_timings_and_the_next_job_starts_from_them(sim: ComfyUISimulator) -> None:
    store = MemoryTimingStore()
    timings = NodeTimings(store)
    runner = ComfyUIJobRunner(ComfyUIPodClient(sim.url, settings=SETTINGS), timings=timings)
    workflow = slow_workflow(steps=10, seconds_per_step=0.2)
    runner.run(workflow, prompt_id="learn-1")
    timings.close()  # the write happens in the background, after the result
    assert len(store) == 2  # LabSlowProgress and LabTextOutput
    model = NodeTimings(store).model_for(workflow)
    assert len(model) == 2
