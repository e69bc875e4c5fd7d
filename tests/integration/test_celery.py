"""The Celery task with real components, in-process worker: a private Redis, the simulator, real Celery."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.result import AsyncResult

from tests.conftest import slow_workflow
from tests.integration.celery_support import (
    META_KEYS,
    VISIBLE,
    app_for,
    env_for,
    finished,
    posts,
    wait_for,
)
from worker.comfyui.errors import ConnectionFailedError, ExecutionError, WorkflowValidationError
from worker.simulator import ComfyUISimulator


@pytest.fixture
def visible_sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    """Steps slow enough for a poller to see progress (0.1 s per sampler step)."""
    with ComfyUISimulator(timing=VISIBLE, root=tmp_path / "visible") as simulator:
        yield simulator


# ------------------------------------------------------------------ in-process worker


def test_poller_sees_progress_then_success(broker: str, visible_sim: ComfyUISimulator, txt2img: dict[str, Any]) -> None:
    from tasks.client import enqueue_workflow, job_status

    app = app_for(env_for(broker, visible_sim.url))
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        result = enqueue_workflow(app, txt2img, job_type="image_generation")
        seen = wait_for(result, finished)
    states = [s for s, _ in seen]
    assert states[-1] == "SUCCESS", states
    progress = [info for state, info in seen if state == "PROGRESS"]
    assert len(progress) >= 3
    assert all(set(meta) == META_KEYS for meta in progress)
    running = [meta for meta in progress if meta["status"] == "running"]
    assert running and all(isinstance(meta["eta_s"], float) and isinstance(meta["elapsed_s"], float) for meta in running)
    values = [meta["progress"] for meta in progress]
    assert values == sorted(values) and max(values) <= 100.0
    assert any(meta["node_type"] == "KSampler" and meta["step"] for meta in progress)
    assert {meta["prompt_id"] for meta in progress} == {result.id}  # the task id is the prompt id
    assert {meta["method"] for meta in progress} == {"websocket"}
    # at most one update per throttle window (0.2 s here), while the state changes every 0.1 s or
    # faster: 0.15 s tells the two apart and leaves room for the jitter between the throttle's
    # decision and the stamp (a Redis write, a log line, a GC pause)
    stamps = [meta["updated_at"] for meta in progress][:-1]  # the final update goes at once
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(stamps)), stamps
    final = result.get(timeout=5)
    assert final["status"] == "success" and final["prompt_id"] == result.id
    assert [f["filename"] for f in final["files"]] == ["ComfyUI_00001_.png"]
    assert job_status(result)["result"]["method"] == "websocket"
    assert posts(visible_sim) == 1


def _raw_result(broker: str, task_id: str) -> dict[str, Any]:
    raw = redis.Redis.from_url(broker).get(f"celery-task-meta-{task_id}")
    assert raw is not None
    data: dict[str, Any] = json.loads(raw)
    return data


def test_failures_keep_their_structure_for_python_and_json_pollers(broker: str, sim: ComfyUISimulator, txt2img: dict[str, Any]) -> None:
    from tasks.client import enqueue_workflow, job_status

    app = app_for(env_for(broker, sim.url))
    txt2img["3"]["inputs"]["steps"] = 0
    failing = {
        "1": {"class_type": "LabSlowProgress", "inputs": {"steps": 2, "seconds_per_step": 0.1, "salt": 0}},
        "2": {"class_type": "LabRaiseError", "inputs": {"message": "celery-boom", "value": ["1", 0]}},
    }
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        invalid = enqueue_workflow(app, txt2img)
        broken = enqueue_workflow(app, failing)
        for result in (invalid, broken):
            wait_for(result, finished)
    assert invalid.state == "FAILURE"
    error = invalid.result
    assert isinstance(error, WorkflowValidationError)
    assert error.node_errors["3"]["errors"][0]["type"] == "value_smaller_than_min"
    raw = _raw_result(broker, invalid.id)
    assert (raw["status"], raw["result"]["exc_type"], raw["result"]["exc_module"]) == (
        "FAILURE",
        "WorkflowValidationError",
        "worker.comfyui.errors",
    )
    _, details = raw["result"]["exc_message"]
    assert details["node_errors"]["3"]["class_type"] == "KSampler"
    assert job_status(invalid)["error"]["code"] == "validation"

    assert broken.state == "FAILURE"
    execution = broken.result
    assert isinstance(execution, ExecutionError)
    assert (execution.node_id, execution.node_type, execution.exception_type) == ("2", "LabRaiseError", "RuntimeError")
    raw = _raw_result(broker, broken.id)
    assert raw["result"]["exc_type"] == "ExecutionError"
    assert raw["result"]["exc_message"][1]["node_id"] == "2"
    assert "celery-boom" in raw["result"]["exc_message"][0]


def test_analytics_events_have_the_tracking_plan_names(
    broker: str, visible_sim: ComfyUISimulator, caplog: pytest.LogCaptureFixture
) -> None:
    from tasks.client import enqueue_workflow

    caplog.set_level(logging.INFO, logger="comfy_celery.analytics")
    app = app_for(env_for(broker, visible_sim.url))
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        result = enqueue_workflow(app, slow_workflow(steps=8), job_type="face_swap")
        wait_for(result, finished)
    events = [
        (r.getMessage().split(" ", 1)[0], json.loads(r.getMessage().split(" ", 1)[1]))
        for r in caplog.records
        if r.name == "comfy_celery.analytics"
    ]
    names = [name for name, _ in events]
    assert names[0] == "comfyui_websocket_connected"
    assert names[-1] == "comfyui_job_websocket_completed"
    assert "comfyui_progress_update" in names
    props = dict(events)
    assert set(props["comfyui_websocket_connected"]) == {"clientId", "serverUrl", "connectionTime"}
    assert props["comfyui_websocket_connected"]["clientId"] == f"comfy-celery-{result.id}"
    assert set(props["comfyui_progress_update"]) == {"promptId", "progress", "jobType"}
    assert props["comfyui_progress_update"]["jobType"] == "face_swap"
    assert props["comfyui_job_websocket_completed"] == {
        "promptId": result.id,
        "duration": props["comfyui_job_websocket_completed"]["duration"],
        "progressUpdates": props["comfyui_job_websocket_completed"]["progressUpdates"],
        "method": "websocket",
    }
    assert props["comfyui_job_websocket_completed"]["progressUpdates"] == names.count("comfyui_progress_update")


def test_credentials_in_task_arguments_are_refused(broker: str, sim: ComfyUISimulator, image_only: dict[str, Any]) -> None:
    app = app_for(env_for(broker, sim.url))
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        result = app.send_task("comfy.run_workflow", args=[image_only], kwargs={"options": {"api_key": "s3cret"}})
        wait_for(result, finished)
    assert isinstance(result.result, WorkflowValidationError)
    assert "s3cret" not in str(result.result)
    assert posts(sim) == 0


def test_transport_errors_before_acceptance_are_retried_then_fail(
    broker: str, image_only: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tasks.workflow")
    app = app_for(env_for(broker, "http://127.0.0.1:9", TASK_MAX_RETRIES="2"))
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        from tasks.client import enqueue_workflow

        result = enqueue_workflow(app, image_only)
        wait_for(result, finished)
    assert isinstance(result.result, ConnectionFailedError)
    assert sum("retrying" in r.getMessage() for r in caplog.records) == 2


def test_async_result_type_is_celerys(broker: str) -> None:
    from tasks.client import job_status

    app = app_for(env_for(broker, "http://127.0.0.1:9"))
    pending: AsyncResult = AsyncResult("no-such-task", app=app)  # type: ignore[type-arg]
    assert job_status(pending) == {"task_id": "no-such-task", "state": "PENDING"}
