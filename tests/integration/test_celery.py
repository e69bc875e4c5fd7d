"""The Celery task with real components: a private Redis, the simulator, real workers, Flower."""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from celery.contrib.testing.worker import start_worker
from celery.result import AsyncResult

from tests.conftest import FAST, slow_workflow
from tests.integration.celery_support import ROOT, WorkerProcess, app_for, env_for, finished, running, wait_for
from tests.integration.sim_client import RawSocket, submit, wait_history
from worker.app.processes import stop_process
from worker.comfyui.errors import ConnectionFailedError, ExecutionError, JobTimeoutError, WorkflowValidationError
from worker.simulator import ComfyUISimulator, SimulatorTiming

META_KEYS = {
    "prompt_id",
    "progress",
    "status",
    "node_id",
    "node_type",
    "step",
    "step_max",
    "nodes_done",
    "nodes_total",
    "queue_position",
    "method",
    "pod",
    "server_url",
    "job_type",
    "attempt",
    "updated_at",
}
VISIBLE = SimulatorTiming(node_seconds=0.01, sampler_step_seconds=0.1, input_time_scale=0.25)


@pytest.fixture
def visible_sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    """Steps slow enough for a poller to see progress (0.1 s per sampler step)."""
    with ComfyUISimulator(timing=VISIBLE, root=tmp_path / "visible") as simulator:
        yield simulator


def posts(sim: ComfyUISimulator) -> int:
    return sim.request_counts().get("POST /prompt", 0)


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


# ------------------------------------------------------------------ worker processes


def test_kill_9_of_the_pool_child_redelivers_and_follows_the_same_prompt(
    broker: str, visible_sim: ComfyUISimulator, tmp_path: Path
) -> None:
    from tasks.client import enqueue_workflow

    env = env_for(broker, visible_sim.url)
    app = app_for(env)
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    try:
        result = enqueue_workflow(app, slow_workflow(steps=120))  # about 6 s on the simulator
        wait_for(result, running(step=True))
        os.kill(worker.pool_pid_of(result.id), signal.SIGKILL)
        killed = time.monotonic()
        seen = wait_for(result, finished, timeout=30)
        attempts = {info["attempt"] for state, info in seen if state == "PROGRESS"}
        assert str(result.state) == "SUCCESS", worker.log()[-2000:]
        assert 2 in attempts
        assert time.monotonic() - killed < 15
        assert posts(visible_sim) == 1  # re-attached, never resubmitted
        assert wait_history(visible_sim.url, result.id)["status"]["status_str"] == "success"
    finally:
        worker.stop()


def test_revoke_while_queued_on_the_pod_deletes_the_prompt(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    from tasks.client import enqueue_workflow

    blocker = RawSocket(sim.url)
    submit(sim.url, slow_workflow(steps=2000, salt=1), blocker.client_id, "blocker")
    env = env_for(broker, sim.url)
    app = app_for(env)
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    try:
        result = enqueue_workflow(app, slow_workflow(steps=2, salt=2))
        wait_for(result, running(status="queued"))
        app.control.revoke(result.id, terminate=True, signal="SIGUSR1")
        wait_for(result, finished)
        time.sleep(0.3)
        assert str(result.state) == "REVOKED"  # and it stays so
        queue = requests.get(f"{sim.url}/queue", timeout=5).json()
        assert result.id not in [item[1] for item in queue["queue_pending"]]
        assert requests.get(f"{sim.url}/history/{result.id}", timeout=5).json() == {}
    finally:
        worker.stop()
        requests.post(f"{sim.url}/interrupt", timeout=5)


def test_revoke_while_running_interrupts_the_prompt(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    from tasks.client import enqueue_workflow

    env = env_for(broker, sim.url)
    app = app_for(env)
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    try:
        result = enqueue_workflow(app, slow_workflow(steps=2000))
        wait_for(result, running(step=True))
        app.control.revoke(result.id, terminate=True, signal="SIGUSR1")
        wait_for(result, finished)
        entry = wait_history(sim.url, result.id)
        assert entry["status"]["messages"][-1][0] == "execution_interrupted"
        time.sleep(0.3)
        assert str(result.state) == "REVOKED"
    finally:
        worker.stop()


def test_soft_time_limit_interrupts_the_prompt_and_fails_with_timeout(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    from tasks.client import enqueue_workflow

    env = env_for(broker, sim.url, JOB_TIME_LIMIT="1", JOB_HARD_TIME_LIMIT="10")
    app = app_for(env)
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    try:
        started = time.monotonic()
        result = enqueue_workflow(app, slow_workflow(steps=2000))
        wait_for(result, finished)
        assert time.monotonic() - started < 5
        error = result.result
        assert isinstance(error, JobTimeoutError), worker.log()[-2000:]
        assert error.to_dict()["code"] == "timeout"
        assert wait_history(sim.url, result.id)["status"]["messages"][-1][0] == "execution_interrupted"
    finally:
        worker.stop()


def test_two_pods_share_the_load(broker: str, tmp_path: Path) -> None:
    from tasks.client import enqueue_workflow

    with ComfyUISimulator(timing=FAST, root=tmp_path / "a") as pod_a, ComfyUISimulator(timing=FAST, root=tmp_path / "b") as pod_b:
        env = env_for(broker, f"a={pod_a.url},b={pod_b.url}")
        app = app_for(env)
        worker = WorkerProcess(app, env, concurrency=2, log_path=tmp_path / "worker.log")
        try:
            # the first job occupies one pod; the second, started once the first is running, sees
            # that pod's queue_remaining at 1 and the other at 0
            first = enqueue_workflow(app, slow_workflow(steps=100, salt=1))
            wait_for(first, running(status="running"))
            busy = first.info["pod"]
            second = enqueue_workflow(app, slow_workflow(steps=2, salt=2))
            second_pods = {info["pod"] for state, info in wait_for(second, finished) if state == "PROGRESS"}
            wait_for(first, finished, timeout=30)
            assert [str(first.state), str(second.state)] == ["SUCCESS", "SUCCESS"], worker.log()[-2000:]
            assert second_pods == {"a", "b"} - {busy}
            assert (posts(pod_a), posts(pod_b)) == (1, 1)
        finally:
            worker.stop()


def _mark_redelivered(broker: str, queue: str) -> None:
    """Do to the queued message what kombu's Redis transport does when it restores an unacked one
    (a whole worker lost): set ``redelivered`` in its headers and delivery info."""
    client = redis.Redis.from_url(broker)
    raw = client.rpop(queue)
    assert isinstance(raw, bytes), "no message queued"
    payload = json.loads(raw)
    payload["headers"]["redelivered"] = True
    payload["properties"]["delivery_info"]["redelivered"] = True
    client.rpush(queue, json.dumps(payload))


def test_a_message_restored_by_the_broker_follows_its_prompt_on_the_pod_that_has_it(broker: str, tmp_path: Path) -> None:
    """Pod b already runs the prompt (the lost worker's submission); a is idle, so the least-loaded
    choice alone would submit it a second time on a."""
    from tasks.client import enqueue_workflow

    with ComfyUISimulator(timing=FAST, root=tmp_path / "a") as pod_a, ComfyUISimulator(timing=FAST, root=tmp_path / "b") as pod_b:
        env = env_for(broker, f"a={pod_a.url},b={pod_b.url}")
        app = app_for(env)
        workflow = slow_workflow(steps=40)
        result = enqueue_workflow(app, workflow)  # no worker yet: the message waits in Redis
        submit(pod_b.url, workflow, "the-lost-worker", result.id)
        _mark_redelivered(broker, "comfyui")
        worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
        try:
            wait_for(result, finished)
            assert str(result.state) == "SUCCESS", worker.log()[-2000:]
            assert result.get(timeout=5)["pod"] == "b"  # found there (the prompt may have ended meanwhile)
            assert (posts(pod_a), posts(pod_b)) == (0, 1)  # only the lost worker's POST
        finally:
            worker.stop()


def test_a_first_delivery_asks_no_other_pod_for_its_prompt(broker: str, tmp_path: Path) -> None:
    """Looking a prompt up on every pod costs each pod's timeout: only a task that ran before does it."""
    from tasks.client import enqueue_workflow

    with ComfyUISimulator(timing=FAST, root=tmp_path / "a") as pod_a, ComfyUISimulator(timing=FAST, root=tmp_path / "b") as pod_b:
        app = app_for(env_for(broker, f"a={pod_a.url},b={pod_b.url}"))
        with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
            result = enqueue_workflow(app, slow_workflow(steps=2))
            wait_for(result, finished)
        chosen = result.get(timeout=5)["pod"]
        other = pod_b if chosen == "a" else pod_a
        assert other.request_counts().get("GET /history/{prompt_id}", 0) == 0
        assert other.request_counts().get("GET /queue", 0) == 0


def test_one_queue_per_pod(broker: str, tmp_path: Path) -> None:
    from tasks.client import enqueue_workflow

    with ComfyUISimulator(timing=FAST, root=tmp_path / "a") as pod_a, ComfyUISimulator(timing=FAST, root=tmp_path / "b") as pod_b:
        env = env_for(broker, f"a={pod_a.url},b={pod_b.url}")
        app = app_for(env)
        worker = WorkerProcess(app, env, queues="comfyui.b", log_path=tmp_path / "worker.log")
        try:
            result = enqueue_workflow(app, slow_workflow(steps=2), pod="b", queue="comfyui.b")
            wait_for(result, finished)
            assert str(result.state) == "SUCCESS"
            assert (posts(pod_a), posts(pod_b)) == (0, 1)
        finally:
            worker.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_flower(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """Flower as a process; returns it, its port, and the status of ``/api/workers`` once up."""
    port = _free_port()
    with log.open("w") as output:  # the child writes through its own copy of the descriptor
        flower = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks.app", "flower", "--address=127.0.0.1", f"--port={port}"],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while True:
        try:
            return flower, port, requests.get(f"http://127.0.0.1:{port}/api/workers", timeout=1).status_code
        except requests.ConnectionError:
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)


def test_flower_lists_the_task_as_progress_then_success(broker: str, visible_sim: ComfyUISimulator, tmp_path: Path) -> None:
    from tasks.client import enqueue_workflow

    env = env_for(broker, visible_sim.url)
    app = app_for(env)
    flower, port, status = start_flower(dict(env, FLOWER_UNAUTHENTICATED_API="true"), tmp_path / "flower.log")  # opened for this test only
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    try:
        assert status == 200

        def flower_states(task_id: str) -> list[str]:
            """Every state Flower's API shows for the task, in order, until SUCCESS."""
            states: list[str] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and states[-1:] != ["SUCCESS"]:
                response = requests.get(f"http://127.0.0.1:{port}/api/task/info/{task_id}", timeout=2)
                if response.status_code == 200 and states[-1:] != [state := response.json().get("state")]:
                    states.append(state)
                time.sleep(0.05)
            return states

        def flower_knows(task_id: str, within: float) -> bool:
            until = time.monotonic() + within
            while time.monotonic() < until:
                if requests.get(f"http://127.0.0.1:{port}/api/task/info/{task_id}", timeout=2).status_code == 200:
                    return True
                time.sleep(0.02)
            return False

        # Flower sees only events sent after its consumer attached: send probe tasks until it
        # knows one (from its task-sent event), instead of sleeping and hoping
        for salt in range(40):
            probe = enqueue_workflow(app, slow_workflow(steps=1, salt=salt))
            if flower_knows(probe.id, within=0.5):
                break
        else:
            pytest.fail("Flower saw none of 40 probe tasks in 20 s")
        assert flower_states(probe.id)[-1:] == ["SUCCESS"]
        result = enqueue_workflow(app, slow_workflow(steps=30))
        states = flower_states(result.id)
        assert "PROGRESS" in states, states
        assert states[-1] == "SUCCESS", states
        assert states.index("PROGRESS") < states.index("SUCCESS")
    finally:
        worker.stop()
        stop_process(flower, grace=10)


def test_flower_api_is_locked_without_the_explicit_opt_in(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    env = env_for(broker, sim.url)
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
    flower, _, status = start_flower(env, tmp_path / "flower.log")
    try:
        assert status == 401
    finally:
        stop_process(flower, grace=10)


def test_async_result_type_is_celerys(broker: str) -> None:
    from tasks.client import job_status

    app = app_for(env_for(broker, "http://127.0.0.1:9"))
    pending: AsyncResult = AsyncResult("no-such-task", app=app)  # type: ignore[type-arg]
    assert job_status(pending) == {"task_id": "no-such-task", "state": "PENDING"}
