"""The task's public contract: the PROGRESS meta and the SUCCESS result, as types.

These are what a poller reads from ``AsyncResult.info`` (README "PROGRESS" and "SUCCESS"); the
README's JSON examples are instances of these types. Plain JSON values only: any client in any
language reads them from the result backend. A field added here is a contract change: add it
to README's example in the same commit.
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict, cast

from worker.comfyui.progress import JobProgressState, JobStatus
from worker.comfyui.results import WorkflowResult

__all__ = ["PreviewPointer", "ProgressMeta", "TaskResult", "describe", "progress_meta", "task_result"]


class PreviewPointer(TypedDict):
    """Where the job's latest live preview is (:mod:`worker.fleet.previews`), never the image itself."""

    #: the Redis key holding the image bytes (``comfy-preview:<id>``, TTL ``PREVIEW_TTL_SECONDS``)
    key: str
    #: the sampler step the job was at when the image came, and the node that sent it
    step: int | None
    node_id: str | None
    #: ``jpeg`` or ``png``
    format: str
    #: 1, 2, … : changes with every new image (a browser's cache buster)
    seq: int


class ProgressMeta(TypedDict):
    """``result.info`` while the task is PROGRESS (and the ``task-progress`` event's fields)."""

    #: the Celery task id, which is also ComfyUI's prompt id
    prompt_id: str
    #: 0 to 100, one decimal; never goes down, below 100 while running, exactly 100 at success
    progress: float
    #: ``queued`` | ``running`` | ``completed`` | ``failed`` | ``interrupted`` | ``cancelled``
    status: str
    #: the node executing now and its type (None between nodes)
    node_id: str | None
    node_type: str | None
    #: the running node's own progress (e.g. the sampler step) and its maximum
    step: float | None
    step_max: float | None
    nodes_done: int
    nodes_total: int
    #: 0 = next to run; None when not waiting in the pod's queue
    queue_position: int | None
    #: estimated seconds left (None while queued, when unknown or after a failure; 0 at success)
    eta_s: float | None
    #: seconds since the prompt started running on the pod (None before)
    elapsed_s: float | None
    #: seconds the prompt waited in the pod's queue (growing while queued)
    queued_s: float | None
    #: how the worker follows the prompt: ``websocket``, or ``rest_polling`` after a fallback
    method: str
    #: the pod's name and its URL with credentials redacted
    pod: str
    server_url: str
    job_type: str
    #: 1, then one more per redelivery or retry
    attempt: int
    #: Unix seconds when the worker wrote this record (its freshness, not the last change)
    updated_at: float
    #: celery-progress's keys (and the usual Flask/Celery progress bars'): ``current`` and
    #: ``percent`` equal ``progress``, ``total`` is 100
    current: float
    total: int
    percent: float
    #: one line for people: ``KSampler (node 3): step 5/10``, ``queued (position 2)``
    description: str
    #: the latest live preview, with ``previews`` on; None otherwise or before the first
    preview: PreviewPointer | None


class TaskResult(TypedDict):
    """``result.info`` / ``result.get()`` at SUCCESS: :class:`WorkflowResult` plus the pod's name."""

    prompt_id: str
    status: Literal["success"]
    #: the history entry's outputs, per node id, as ComfyUI wrote them
    outputs: dict[str, Any]
    #: every output file and text (``OutputFile`` as a dict); fetch files with ``GET /view``
    files: list[dict[str, Any]]
    method: Literal["websocket", "rest_polling"]
    duration_s: float
    #: PROGRESS updates the caller saw (throttled)
    progress_updates: int
    server_url: str
    #: outputs ComfyUI dropped after a partial validation failure
    node_errors: dict[str, Any]
    #: why the WebSocket was left for REST polling, if it was
    fallback_reason: str | None
    pod: str
    #: with an output store: ``{"store": url, "files": [...]}`` (README, input files and durable outputs)
    media: NotRequired[dict[str, Any]]


def describe(state: JobProgressState) -> str:
    """One line a person reads: ``KSampler (node 3): step 12/20``, ``queued (position 2)``."""
    if state.status is JobStatus.QUEUED:
        return "queued" if state.queue_position is None else f"queued (position {state.queue_position})"
    if state.status is not JobStatus.RUNNING:
        return state.status.value
    if state.current_node_type is None:
        return "running"
    where = f"{state.current_node_type} (node {state.current_node_id})"
    if state.node_value is not None and state.node_max:
        return f"{where}: step {state.node_value:g}/{state.node_max:g}"
    return where


def progress_meta(
    state: JobProgressState,
    *,
    pod: str,
    server_url: str,
    attempt: int,
    job_type: str,
    published_at: float,
    preview: PreviewPointer | None = None,
) -> ProgressMeta:
    """The documented PROGRESS meta (README): plain JSON for any poller.

    ``updated_at`` is when the worker wrote the record, not when the state last changed: a
    trailing throttle may publish a state observed up to one window earlier, and what a poller
    needs to judge is the record's freshness (a stale one means a stuck or dead worker).
    """
    percent = round(state.progress, 1)
    return {
        "prompt_id": state.prompt_id,
        "progress": percent,
        "status": state.status.value,
        "node_id": state.current_node_id,
        "node_type": state.current_node_type,
        "step": state.node_value,
        "step_max": state.node_max,
        "nodes_done": state.nodes_done,
        "nodes_total": state.nodes_total,
        "queue_position": state.queue_position,
        "eta_s": _tenths(state.eta_s),
        "elapsed_s": _tenths(state.elapsed_s),
        "queued_s": _tenths(state.queued_s),
        "method": state.method,
        "pod": pod,
        "server_url": server_url,
        "job_type": job_type,
        "attempt": attempt,
        "updated_at": published_at,
        "current": percent,
        "total": 100,
        "percent": percent,
        "description": describe(state),
        "preview": preview,
    }


def _tenths(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def task_result(result: WorkflowResult, *, pod: str, media: dict[str, Any] | None = None) -> TaskResult:
    """The SUCCESS result: every field of the workflow result, plus the pod that ran it (and
    where its files were stored, with an output store)."""
    return cast(TaskResult, {**result.to_dict(), "pod": pod, **({"media": media} if media is not None else {})})
