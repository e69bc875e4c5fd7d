"""A hostile task message cannot take down a worker's main process (issue 15, part 1).

Raw messages are published as a client that skips ``enqueue_workflow``'s checks would: a list
nested 500 deep (small, decodes fine, used to kill the main process while it was pickled for the
pool child) and 100,000 deep (deeper than any recursive decoder). After each, the next ordinary
job must succeed on the same worker.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from tasks.client import enqueue_workflow
from tests.integration.celery_support import WorkerProcess, app_for, env_for, finished, wait_for
from worker.comfyui.errors import WorkflowValidationError
from worker.simulator import ComfyUISimulator


def _raw_message(app: Any, body: str) -> str:
    """Publish a ``comfy.run_workflow`` message (protocol 2) whose JSON body is ``body``, as is."""
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py",
        "task": "comfy.run_workflow",
        "id": task_id,
        "root_id": task_id,
        "retries": 0,
        "argsrepr": "...",
        "kwargsrepr": "{}",
    }
    with Connection(app.conf.broker_url) as conn:
        producer = conn.Producer(serializer="json")
        producer.publish(
            body.encode(),
            routing_key=app.conf.task_default_queue,
            exchange="",
            headers=headers,
            content_type="application/json",
            content_encoding="utf-8",
            correlation_id=task_id,
            delivery_mode=2,
        )
    return task_id


def _deep_body(depth: int, image_only: dict[str, Any]) -> str:
    workflow = json.dumps(image_only)
    deep = "[" * depth + "1" + "]" * depth
    # one input of the first node becomes the deep list
    node_id = next(iter(image_only))
    workflow = workflow.replace('"inputs": {', '"inputs": {"hostile": ' + deep + ", ", 1)
    assert node_id in workflow and deep in workflow
    return f'[[{workflow}], {{"options": {{}}}}, {{"callbacks": null, "errbacks": null, "chain": null, "chord": null}}]'


def _wait(result: Any, worker: WorkerProcess, timeout: float) -> None:
    try:
        wait_for(result, finished, timeout=timeout)
    except AssertionError as exc:
        raise AssertionError(worker.log()[-4000:]) from exc


@pytest.mark.parametrize("depth", [500, 100_000])
def test_a_deep_message_fails_typed_and_the_next_job_succeeds(
    depth: int, broker: str, sim: ComfyUISimulator, image_only: dict[str, Any], tmp_path: Path
) -> None:
    env = env_for(broker, sim.url)
    app = app_for(env)
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    try:
        hostile_id = _raw_message(app, _deep_body(depth, image_only))
        good = enqueue_workflow(app, image_only)
        _wait(good, worker, 30)
        assert str(good.state) == "SUCCESS", worker.log()[-3000:]
        assert worker.process.poll() is None, worker.log()[-3000:]
        hostile = app.AsyncResult(hostile_id)
        _wait(hostile, worker, 10)
        assert isinstance(hostile.result, WorkflowValidationError), worker.log()[-3000:]
        assert "RecursionError" not in worker.log()
    finally:
        worker.stop()
