"""Flower over the real task: PROGRESS then SUCCESS in its API, and the API locked by default."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import slow_workflow
from tests.integration.celery_support import (
    ROOT,
    VISIBLE,
    WorkerProcess,
    app_for,
    env_for,
)
from worker.app.processes import stop_process
from worker.simulator import ComfyUISimulator


@pytest.fixture
def visible_sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    """Steps slow enough for a poller to see progress (0.1 s per sampler step)."""
    with ComfyUISimulator(timing=VISIBLE, root=tmp_path / "visible") as simulator:
        yield simulator


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
