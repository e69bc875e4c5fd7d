"""Partitions and retries (issue 15): transient failures before acceptance, a pod that cannot be
asked, clean-up after a cancel on a hung pod, retries ahead of queued jobs."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker

from tests.conftest import FAST, slow_workflow
from tests.integration.celery_support import WorkerProcess, app_for, env_for, finished, running, wait_for
from tests.integration.sim_client import wait_history
from worker.comfyui.errors import HTTPStatusError, JobCancelledError, JobTimeoutError
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.observer import JobObserver
from worker.comfyui.pod_client import ComfyUIPodClient, PodClientSettings
from worker.comfyui.progress import JobProgressState
from worker.simulator import ComfyUISimulator, SimulatorTiming

VISIBLE = SimulatorTiming(node_seconds=0.01, sampler_step_seconds=0.1, input_time_scale=0.25)


def posts(sim: ComfyUISimulator) -> int:
    return sim.request_counts().get("POST /prompt", 0)


def runs(sim: ComfyUISimulator, prompt_id: str) -> int:
    """How often the pod ran the prompt: a run leaves one history entry (or one queue item)."""
    entry = wait_history(sim.url, prompt_id, timeout=10)
    return 1 if entry else 0


@pytest.mark.parametrize(
    "fault",
    [
        ("POST", "/prompt", 1),  # was: FAILURE http at once, 0 retries
        ("GET", "/history", 2),  # the reattach lookup, past the HTTP retries (COMFYUI_HTTP_RETRIES=1)
        ("GET", "/system_stats", 1),  # the health check (was already retried: the same rule)
    ],
)
def test_a_5xx_before_acceptance_is_retried_and_runs_once(
    broker: str, sim: ComfyUISimulator, image_only: dict[str, Any], fault: tuple[str, str, int]
) -> None:
    from tasks.client import enqueue_workflow

    method, path, times = fault

    app = app_for(env_for(broker, sim.url))
    sim.faults.fail_route(method, path, status=502, times=times)
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        result = enqueue_workflow(app, image_only)
        wait_for(result, finished)
    assert str(result.state) == "SUCCESS", result.result
    assert posts(sim) == (2 if path == "/prompt" else 1)  # the refused POST queued nothing
    assert runs(sim, result.id) == 1


def test_a_4xx_before_acceptance_is_not_retried(broker: str, sim: ComfyUISimulator, image_only: dict[str, Any]) -> None:
    from tasks.client import enqueue_workflow

    app = app_for(env_for(broker, sim.url))
    sim.faults.fail_route("POST", "/prompt", status=403, times=1)
    with start_worker(app, pool="threads", concurrency=1, perform_ping_check=False, shutdown_timeout=10):
        result = enqueue_workflow(app, image_only)
        wait_for(result, finished)
    assert str(result.state) == "FAILURE"
    assert isinstance(result.result, HTTPStatusError)
    assert result.result.status == 403
    assert posts(sim) == 1


def test_a_redelivered_job_is_not_submitted_elsewhere_while_its_pod_cannot_be_asked(broker: str, tmp_path: Path) -> None:
    """The pool child dies; at retry time its pod's /history and /queue fail. The old lookup took
    that for 'not there' and ran the prompt a second time on the other pod."""
    from tasks.client import enqueue_workflow

    with (
        ComfyUISimulator(timing=VISIBLE, root=tmp_path / "a") as pod_a,
        ComfyUISimulator(timing=VISIBLE, root=tmp_path / "b") as pod_b,
    ):
        env = env_for(broker, f"a={pod_a.url},b={pod_b.url}", TASK_RETRY_BACKOFF="1", TASK_MAX_RETRIES="5")
        app = app_for(env)
        worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
        try:
            result = enqueue_workflow(app, slow_workflow(steps=120))  # about 6 s
            wait_for(result, running(step=True))
            home_name = result.info["pod"]
            home = pod_a if home_name == "a" else pod_b
            other = pod_b if home is pod_a else pod_a
            home.faults.fail_route("GET", "/history", status=503)
            home.faults.fail_route("GET", "/queue", status=503)
            os.kill(worker.pool_pid_of(result.id), signal.SIGKILL)
            # the pod answers again once a retry has failed to ask it (the old code never waited:
            # it submitted elsewhere); the worker may take seconds to notice the dead child
            deadline = time.monotonic() + 15
            while "may be on pod" not in worker.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            home.faults.clear()
            wait_for(result, finished, timeout=30)
            assert str(result.state) == "SUCCESS", worker.log()[-3000:]
            assert result.get(timeout=5)["pod"] == home_name
            assert (posts(home), posts(other)) == (1, 0), worker.log()[-3000:]
        finally:
            worker.stop()


def test_the_soft_time_limit_while_choosing_a_pod_fails_typed(broker: str, tmp_path: Path) -> None:
    """Pod a hangs on its load check (2 s); the soft limit (1 s) fires while the task waits for it,
    outside the job runner: it was an untyped SoftTimeLimitExceeded."""
    from tasks.client import enqueue_workflow

    with ComfyUISimulator(timing=FAST, root=tmp_path / "a") as pod_a, ComfyUISimulator(timing=FAST, root=tmp_path / "b") as pod_b:
        pod_a.faults.fail_route("GET", "/prompt", delay=5)
        env = env_for(broker, f"a={pod_a.url},b={pod_b.url}", JOB_TIME_LIMIT="1", JOB_HARD_TIME_LIMIT="10")
        app = app_for(env)
        worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
        try:
            result = enqueue_workflow(app, slow_workflow(steps=2))
            wait_for(result, finished, timeout=15)
            assert isinstance(result.result, JobTimeoutError), worker.log()[-3000:]
            assert result.result.to_dict()["code"] == "timeout"
        finally:
            worker.stop()


def test_the_soft_time_limit_on_a_hung_pod_fails_typed_before_the_hard_limit(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    """The pod hangs on every REST call once the job runs. The clean-up's GET /queue used the full
    HTTP retries (here 5 s + 0.5 s + 5 s): the hard limit, 9 s after the soft one, killed the
    process first (an untyped TimeLimitExceeded). Now: the request in flight (at most 5 s), then
    a clean-up of at most 4 s."""
    from tasks.client import enqueue_workflow

    env = env_for(broker, sim.url, JOB_TIME_LIMIT="2", JOB_HARD_TIME_LIMIT="11", COMFYUI_HTTP_READ_TIMEOUT="5")
    app = app_for(env)
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    try:
        result = enqueue_workflow(app, slow_workflow(steps=2000))
        wait_for(result, running(step=True))
        for method, path in (("GET", "/history"), ("GET", "/queue"), ("POST", "/interrupt"), ("POST", "/queue")):
            sim.faults.fail_route(method, path, delay=60)
        wait_for(result, finished, timeout=20)
        assert isinstance(result.result, JobTimeoutError), worker.log()[-3000:]
    finally:
        sim.faults.clear()
        worker.stop()


def test_the_clean_up_after_a_cancel_is_bounded_on_a_hung_pod(tmp_path: Path) -> None:
    """Cancelled while running; the pod now hangs on /queue and /interrupt. The clean-up used the
    full HTTP retries (here 4 x 5 s, at the defaults 4 x 30 s): longer than the soft-to-hard gap."""
    with ComfyUISimulator(timing=VISIBLE, root=tmp_path / "sim") as sim:
        settings = PodClientSettings(
            http=HTTPSettings(connect_timeout=1, read_timeout=5, retries=3, retry_backoff=0.1),
            history_probe_interval=60,  # no probe in flight when the cancel comes
            abort_timeout=0.5,
        )
        client = ComfyUIPodClient(sim.url, settings=settings)
        cancel = threading.Event()
        stepping = threading.Event()
        outcome: list[BaseException] = []

        class Stepping(JobObserver):
            def on_progress(self, state: JobProgressState) -> None:
                if state.node_value:
                    stepping.set()

        def run() -> None:
            try:
                client.execute_workflow(slow_workflow(steps=200), cancel=cancel, observer=Stepping())
            except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
                outcome.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        try:
            assert stepping.wait(10)
            sim.faults.fail_route("GET", "/queue", delay=30)
            sim.faults.fail_route("POST", "/interrupt", delay=30)
            cancelled = time.monotonic()
            cancel.set()
            worker.join(timeout=20)
            took = time.monotonic() - cancelled
        finally:
            sim.faults.clear()
            client.rest.interrupt()
            worker.join(timeout=30)
            client.close()
        assert outcome and isinstance(outcome[0], JobCancelledError), outcome
        assert took < 2 * 0.5 + 1.0, took  # the clean-up's budget (twice abort_timeout) plus slack


def test_settings_of_the_broker_sweep_and_priorities(broker: str) -> None:
    from tasks.priority import NEW_JOB_PRIORITY, RETRY_PRIORITY

    app = app_for(env_for(broker, "http://127.0.0.1:9"))
    options = app.conf.broker_transport_options
    assert options["unacked_restore_interval"] * options["unacked_restore_throttle"] <= 10
    assert app.conf.task_default_priority == NEW_JOB_PRIORITY > RETRY_PRIORITY


def test_a_retry_after_a_pool_child_died_goes_ahead_of_queued_jobs(broker: str, tmp_path: Path) -> None:
    """One pool process; A runs, B C D are queued behind it (B already reserved by the worker).
    A's child is killed: its retry used to run after D; now right after B."""
    from tasks.client import enqueue_workflow

    with ComfyUISimulator(timing=dataclasses.replace(VISIBLE), root=tmp_path / "sim") as sim:
        env = env_for(broker, sim.url)
        app = app_for(env)
        worker = WorkerProcess(app, env, concurrency=1, log_path=tmp_path / "worker.log")
        try:
            first = enqueue_workflow(app, slow_workflow(steps=40, salt=0))  # about 2 s
            wait_for(first, running(step=True))
            queued = [enqueue_workflow(app, slow_workflow(steps=10, salt=i)) for i in (1, 2, 3)]  # about 0.5 s each
            time.sleep(0.3)
            os.kill(worker.pool_pid_of(first.id), signal.SIGKILL)
            for result in (first, *queued):
                wait_for(result, finished, timeout=30)
            assert [str(r.state) for r in (first, *queued)] == ["SUCCESS"] * 4, worker.log()[-3000:]
            done = {r.id: app.backend.get_task_meta(r.id)["date_done"] for r in (first, *queued)}
            order = sorted(done, key=lambda task_id: done[task_id])
            assert order.index(first.id) <= 1, (order.index(first.id), worker.log()[-3000:])
            assert posts(sim) == 4  # A re-attached, never resubmitted
        finally:
            worker.stop()
