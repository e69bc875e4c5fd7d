"""Cancel and time limits whatever the pool: real worker processes, a private Redis, the simulator.

In the threads pool Celery cannot kill a job (``revoke(terminate=True)`` fails in ``kill_job``)
and has no soft time limit; prefork children never see a revoke that does not terminate. Every
job checks a cancel flag instead, so each of these ends the same way in every pool.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tasks.cancel_flags import CANCEL_KEY, request_cancel
from tasks.client import enqueue_workflow
from tests.conftest import slow_workflow
from tests.integration.celery_support import WorkerProcess, app_for, env_for, finished, running, wait_for
from tests.integration.sim_client import RawSocket, submit, wait_history
from worker.comfyui.errors import JobTimeoutError
from worker.simulator import ComfyUISimulator


def _worker(broker: str, sim: ComfyUISimulator, tmp_path: Path, pool: str, **env_extra: str) -> tuple[Any, WorkerProcess]:
    env = env_for(broker, sim.url, **env_extra)
    app = app_for(env)
    return app, WorkerProcess(app, env, pool=pool, concurrency=4, log_path=tmp_path / f"{pool}.log")


def _revoke(app: Any, task_id: str, how: str) -> None:
    if how == "terminate":
        app.control.revoke(task_id, terminate=True, signal="SIGUSR1")
    elif how == "revoke":
        app.control.revoke(task_id)
    else:
        request_cancel(app, task_id)


@pytest.mark.parametrize(
    ("pool", "how"),
    [("threads", "terminate"), ("threads", "revoke"), ("prefork", "revoke"), ("prefork", "flag")],
)
def test_a_cancel_interrupts_a_running_prompt(broker: str, sim: ComfyUISimulator, tmp_path: Path, pool: str, how: str) -> None:
    app, worker = _worker(broker, sim, tmp_path, pool)
    try:
        result = enqueue_workflow(app, slow_workflow(steps=2000))
        wait_for(result, running(step=True))
        cancelled = time.monotonic()
        _revoke(app, result.id, how)
        wait_for(result, finished)
        assert time.monotonic() - cancelled < 3
        assert wait_history(sim.url, result.id)["status"]["messages"][-1][0] == "execution_interrupted"
        time.sleep(0.3)
        assert str(result.state) == "REVOKED", worker.log()[-2000:]  # and it stays so
    finally:
        worker.stop()


@pytest.mark.parametrize("how", ["terminate", "revoke"])
def test_a_revoke_deletes_a_prompt_queued_on_the_pod_in_the_threads_pool(
    broker: str, sim: ComfyUISimulator, tmp_path: Path, how: str
) -> None:
    blocker = RawSocket(sim.url)
    submit(sim.url, slow_workflow(steps=2000, salt=1), blocker.client_id, "blocker")
    app, worker = _worker(broker, sim, tmp_path, "threads")
    try:
        result = enqueue_workflow(app, slow_workflow(steps=2, salt=2))
        wait_for(result, running(status="queued"))
        _revoke(app, result.id, how)
        wait_for(result, finished)
        time.sleep(0.3)
        assert str(result.state) == "REVOKED", worker.log()[-2000:]
        queue = requests.get(f"{sim.url}/queue", timeout=5).json()
        assert result.id not in [item[1] for item in queue["queue_pending"]]
        assert requests.get(f"{sim.url}/history/{result.id}", timeout=5).json() == {}
    finally:
        worker.stop()
        requests.post(f"{sim.url}/interrupt", timeout=5)


def test_a_cancel_flag_set_before_the_job_starts_submits_nothing(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    app, worker = _worker(broker, sim, tmp_path, "threads")
    try:
        task_id = "flagged-early"
        redis.Redis.from_url(broker).set(CANCEL_KEY.format(task_id), b"1")
        result = enqueue_workflow(app, slow_workflow(steps=2), task_id=task_id)
        wait_for(result, finished)
        assert str(result.state) == "REVOKED"
        assert sim.request_counts().get("POST /prompt", 0) == 0
    finally:
        worker.stop()


def test_the_soft_time_limit_interrupts_the_prompt_in_the_threads_pool(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    app, worker = _worker(broker, sim, tmp_path, "threads", JOB_TIME_LIMIT="1", JOB_HARD_TIME_LIMIT="30")
    try:
        started = time.monotonic()
        result = enqueue_workflow(app, slow_workflow(steps=2000))
        wait_for(result, finished)
        assert time.monotonic() - started < 5  # the soft limit, not the hard one (30 s)
        error = result.result
        assert isinstance(error, JobTimeoutError), worker.log()[-2000:]
        assert error.to_dict()["code"] == "timeout"
        assert wait_history(sim.url, result.id)["status"]["messages"][-1][0] == "execution_interrupted"
    finally:
        worker.stop()
