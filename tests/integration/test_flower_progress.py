"""Flower shows a running task's percent and node: its task page displays the ``result`` field of
the task's latest event, and our ``task-progress`` events carry a one-line summary there."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from tasks.client import ComfyClient
from tests.conftest import slow_workflow
from tests.integration.celery_support import WorkerProcess, app_for, env_for
from tests.integration.test_celery_flower import start_flower
from tests.integration.webapp_support import chromium
from worker.app.processes import stop_process
from worker.simulator import ComfyUISimulator, SimulatorTiming

SUMMARY = re.compile(r"(\d+(?:\.\d+)?) % · LabSlowProgress \(node 1\): step \d+/400 · pod pod0")


def test_flower_task_page_shows_percent_and_node(broker: str, tmp_path: Path) -> None:
    timing = SimulatorTiming(node_seconds=0.01, sampler_step_seconds=0.05, input_time_scale=0.25)
    with ComfyUISimulator(timing=timing, root=tmp_path / "sim") as sim:
        env = env_for(broker, sim.url)
        app = app_for(env)
        client = ComfyClient(app)
        flower, port, _ = start_flower(dict(env, FLOWER_UNAUTHENTICATED_API="true"), tmp_path / "flower.log")
        worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
        try:
            page = ""
            # Flower sees only events sent after its consumer attached: retry with a new job until it does
            for salt in range(10):
                job_id = client.submit(slow_workflow(steps=400, salt=salt))
                deadline = time.monotonic() + 6
                while time.monotonic() < deadline:
                    answer = requests.get(f"http://127.0.0.1:{port}/task/{job_id}", timeout=2)
                    if answer.status_code == 200 and SUMMARY.search(answer.text):
                        page = answer.text
                        break
                    time.sleep(0.05)
                if page:
                    break
                client.cancel(job_id)
            else:
                pytest.fail("Flower never showed a task's progress")
            assert "PROGRESS" in page
            info = requests.get(f"http://127.0.0.1:{port}/api/task/info/{job_id}", timeout=2).json()
            assert SUMMARY.search(str(info["result"])), info
            with chromium(tmp_path / "profile") as browser:
                browser.get(f"http://127.0.0.1:{port}/task/{job_id}")
                shown = browser.find_element("tag name", "body").text
                screenshot = tmp_path / "flower-task.png"
                browser.save_screenshot(str(screenshot))
                print(f"screenshot: {screenshot}")
            assert SUMMARY.search(shown), shown[:2000]
            client.cancel(job_id)
            assert client.wait(job_id, timeout=20)["state"] == "REVOKED"
        finally:
            worker.stop()
            stop_process(flower, grace=10)
