"""What a web backend does: enqueue a workflow, then read its state from ``AsyncResult``.

A backend does not need this module (``app.send_task("comfy.run_workflow", ...)`` is enough);
it documents the contract in code and serves the command line and the demo.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from tasks.options import TaskOptions
from tasks.workflow import TASK_NAME
from worker.comfyui.errors import ComfyUIError
from worker.comfyui.workflow import validate_workflow

__all__ = ["enqueue_workflow", "job_status", "task_state"]


def enqueue_workflow(
    celery: Celery,
    workflow: Mapping[str, Any],
    *,
    job_type: str = "image_generation",
    pod: str | None = None,
    timeout: float | None = None,
    queue: str | None = None,
    task_id: str | None = None,
    inputs: Mapping[str, Any] | None = None,
) -> AsyncResult:  # type: ignore[type-arg]
    """Check the workflow, then enqueue it; the task id is also the ComfyUI prompt id."""
    options: dict[str, Any] = {"job_type": job_type}
    if pod is not None:
        options["pod"] = pod
    if timeout is not None:
        options["timeout"] = timeout
    TaskOptions.parse(options)  # NaN, infinity or a wrong type fail here, not on a worker
    result: AsyncResult = celery.send_task(  # type: ignore[type-arg]
        TASK_NAME,
        args=[validate_workflow(workflow)],
        kwargs={"options": options, **({"inputs": dict(inputs)} if inputs else {})},
        queue=queue,
        task_id=task_id,
        priority=celery.conf.task_default_priority,  # behind retries, with Redis (tasks/priority.py)
    )
    return result


def task_state(result: AsyncResult) -> tuple[str, Any]:  # type: ignore[type-arg]
    """(state, info) from one read of the result backend.

    ``result.state`` then ``result.info`` are two reads: a task that ends between them pairs the
    state PROGRESS with the final result. One stored record gives a consistent pair.
    """
    meta = result.backend.get_task_meta(result.id)
    return str(meta["status"]), meta.get("result")  # custom states such as PROGRESS are outside Celery's typed set


def job_status(result: AsyncResult) -> dict[str, Any]:  # type: ignore[type-arg]
    """A JSON view of a task for a poller: state, PROGRESS meta, result or structured error."""
    state, info = task_state(result)
    view: dict[str, Any] = {"task_id": result.id, "state": state}
    if state == "PROGRESS" and isinstance(info, dict):
        view["progress"] = info
    elif state == "SUCCESS":
        view["result"] = info
    elif state == "FAILURE":
        view["error"] = _error_view(info)
    elif state == "REVOKED":
        view["error"] = {"code": "cancelled", "message": str(info)}
    return view


def _error_view(info: Any) -> dict[str, Any]:
    """The structured error: ours carry ``code`` in ``args[1]`` even when Celery rebuilt them
    as a generic exception (our module not imported by the reading process)."""
    if isinstance(info, ComfyUIError):
        return info.to_dict()
    fields = info.args[1] if isinstance(info, BaseException) and len(info.args) > 1 else None
    if isinstance(fields, dict) and isinstance(fields.get("code"), str):
        return dict(fields)
    return {"code": "task_error", "message": repr(info)}
