"""The web-backend client against a real worker, a private Redis and the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery_progress.backend import Progress

from tasks.client import ComfyClient, JobView, WatchTimeout
from tests.conftest import slow_workflow
from tests.integration.celery_support import ROOT, app_for, env_for
from tests.integration.sim_client import wait_history
from tests.schema_support import check
from worker.comfyui.errors import WorkflowValidationError
from worker.simulator import ComfyUISimulator, SimulatorTiming

VISIBLE = SimulatorTiming(node_seconds=0.01, sampler_step_seconds=0.05, input_time_scale=0.25)


@pytest.fixture
def visible_sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(timing=VISIBLE, root=tmp_path / "visible") as simulator:
        yield simulator


@pytest.fixture
def client(broker: str) -> Iterator[ComfyClient]:
    """A client as a web backend builds it: its own bare Celery app, from the URL alone."""
    made = ComfyClient.from_url(broker)
    yield made
    made.close()


def raw_record(broker: str, job_id: str) -> Any:
    """What a backend in another language reads: the JSON stored under celery-task-meta-<id>."""
    value = redis.Redis.from_url(broker).get(f"celery-task-meta-{job_id}")
    return json.loads(value) if value is not None else None


def test_importing_the_client_pulls_in_no_worker_stack() -> None:
    worker_stack = ("requests", "websocket", "aiohttp", "config", "tasks.workflow")
    code = f"import sys, tasks.client; print(sorted(m for m in {worker_stack!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip() == "[]"


def test_task_name_is_the_tasks_one() -> None:
    from tasks.client import TASK_NAME
    from tasks.workflow import TASK_NAME as REAL

    assert TASK_NAME == REAL


def test_submit_watch_wait_and_every_record_matches_the_schema(
    broker: str, client: ComfyClient, visible_sim: ComfyUISimulator, txt2img: dict[str, Any]
) -> None:
    app = app_for(env_for(broker, visible_sim.url))
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        job_id = client.submit(txt2img, options={"job_type": "image_generation"})
        views: list[JobView] = []
        raws: list[Any] = []
        celery_progress: list[dict[str, Any]] = []
        for view in client.watch(job_id, timeout=30):
            views.append(view)
            raws.append(raw_record(broker, job_id))
            if view["state"] == "PROGRESS" and not celery_progress:
                # celery-progress's own backend code reading the same task
                celery_progress.append(Progress(client.celery.AsyncResult(job_id)).get_info())
        final = client.wait(job_id, timeout=5)
    states = [v["state"] for v in views]
    assert states[-1] == "SUCCESS" and final == views[-1] == client.status(job_id), states
    progress = [v["progress"] for v in views if v["state"] == "PROGRESS"]
    assert len(progress) >= 3
    percents = [meta["percent"] for meta in progress]
    assert percents == sorted(percents) and all(meta["current"] == meta["percent"] == meta["progress"] for meta in progress)
    assert any(meta["description"].startswith("KSampler (node 3): step") for meta in progress)
    for view in views:
        check("jobView", view)
    for raw in raws:
        if raw is not None:
            check("rawRecord", raw)
    assert raws[-1]["status"] == "SUCCESS"
    info = celery_progress[0]
    assert info["state"] == "PROGRESS" and info["complete"] is False
    assert info["progress"]["total"] == 100 and 0 <= info["progress"]["percent"] < 100 and info["progress"]["description"]


def test_watch_does_not_poll_the_backend(broker: str, client: ComfyClient, visible_sim: ComfyUISimulator) -> None:
    """A watcher of a job that is queued and silent sends Redis nothing but its subscription."""
    job_id = client.submit(slow_workflow(steps=2))  # no worker: it stays PENDING
    server = redis.Redis.from_url(broker)
    before = server.info("commandstats")
    with pytest.raises(WatchTimeout) as caught:
        for _ in client.watch(job_id, timeout=1.5, refresh=60):
            pass
    after = server.info("commandstats")
    gets = after.get("cmdstat_get", {}).get("calls", 0) - before.get("cmdstat_get", {}).get("calls", 0)
    assert gets == 1  # the initial read only
    assert caught.value.last["state"] == "PENDING"


def test_watch_survives_a_dropped_redis_connection(broker: str, client: ComfyClient) -> None:
    """CLIENT KILL cuts the watcher's subscription: it subscribes again, re-reads, and still ends."""
    seen: list[str] = []
    watching = threading.Thread(target=lambda: seen.extend(v["state"] for v in client.watch("job-k", timeout=10, refresh=60)))
    watching.start()
    admin = redis.Redis.from_url(broker)
    deadline = time.monotonic() + 5
    while not admin.pubsub_numsub("celery-task-meta-job-k")[0][1]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1  # type: ignore[no-untyped-call]
    client.celery.backend.store_result("job-k", {"prompt_id": "job-k"}, "SUCCESS")
    watching.join(10)
    admin.close()
    assert seen == ["PENDING", "SUCCESS"]


def test_failure_view_has_the_code(broker: str, client: ComfyClient, visible_sim: ComfyUISimulator) -> None:
    app = app_for(env_for(broker, visible_sim.url))
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        with pytest.raises(WorkflowValidationError, match="unknown options"):
            client.submit(slow_workflow(steps=2), options={"no_such_option": 1})  # refused before it is sent
        job_id = client.submit({"1": {"class_type": "NoSuchNode", "inputs": {}}})  # refused by the pod
        final = client.wait(job_id, timeout=20)
    assert final["state"] == "FAILURE" and final["error"]["code"] == "validation", final
    check("jobView", final)
    check("rawRecord", raw_record(broker, job_id))


def test_cancel_works_on_a_threads_pool(broker: str, client: ComfyClient, sim: ComfyUISimulator) -> None:
    """revoke(terminate=True) does nothing on a threads pool: the flag is what stops the job."""
    app = app_for(env_for(broker, sim.url))
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        job_id = client.submit(slow_workflow(steps=2000))
        for view in client.watch(job_id, timeout=20):
            if view["state"] == "PROGRESS" and view["progress"]["step"]:
                break
        started = time.monotonic()
        client.cancel(job_id)
        final = client.wait(job_id, timeout=10)
        took = time.monotonic() - started
    assert final["state"] == "REVOKED" and final["error"]["code"] == "cancelled", final
    assert took < 5
    check("jobView", final)
    assert wait_history(sim.url, job_id)["status"]["messages"][-1][0] == "execution_interrupted"


def test_cancel_before_a_worker_runs_it(broker: str, client: ComfyClient, sim: ComfyUISimulator) -> None:
    """A worker started after the cancel never heard the revoke: it reads the flag, never submits."""
    job_id = client.submit(slow_workflow(steps=2))
    client.cancel(job_id)
    app = app_for(env_for(broker, sim.url))
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        final = client.wait(job_id, timeout=20)
    assert final["state"] == "REVOKED", final
    assert sim.request_counts().get("POST /prompt", 0) == 0


def test_routes_send_a_job_type_to_its_queue(broker: str, sim: ComfyUISimulator) -> None:
    client = ComfyClient.from_url(broker, routes={"lora_training": "comfyui.train"})
    try:
        env = env_for(broker, sim.url, COMFYUI_QUEUE="comfyui.train")
        app = app_for(env)
        with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
            job_id = client.submit(slow_workflow(steps=2), options={"job_type": "lora_training"})
            final = client.wait(job_id, timeout=20)
        assert final["state"] == "SUCCESS", final
        assert client.queue_for({"job_type": "image_generation"}) == "comfyui"
    finally:
        client.close()
