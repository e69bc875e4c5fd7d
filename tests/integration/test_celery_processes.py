"""The Celery task in real worker processes: kill -9, revoke, time limits, several pods and queues."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from celery.contrib.testing.worker import start_worker

from tests.conftest import FAST, slow_workflow
from tests.integration.celery_support import (
    VISIBLE,
    WorkerProcess,
    app_for,
    env_for,
    finished,
    posts,
    running,
    wait_for,
)
from tests.integration.sim_client import RawSocket, submit, wait_history
from worker.comfyui.errors import JobTimeoutError
from worker.simulator import ComfyUISimulator


@pytest.fixture
def visible_sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    """Steps slow enough for a poller to see progress (0.1 s per sampler step)."""
    with ComfyUISimulator(timing=VISIBLE, root=tmp_path / "visible") as simulator:
        yield simulator


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
    key = f"{queue}\x06\x163"  # kombu's list for priority step 3 (new jobs, tasks/priority.py)
    raw = client.rpop(key)
    assert isinstance(raw, bytes), "no message queued"
    payload = json.loads(raw)
    payload["headers"]["redelivered"] = True
    payload["properties"]["delivery_info"]["redelivered"] = True
    client.rpush(key, json.dumps(payload))


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
