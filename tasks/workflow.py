"""The ``comfy.run_workflow`` task: a thin adapter from Celery to :class:`ComfyUIJobRunner`.

* prompt id = the Celery task id (the id a web backend holds is also ComfyUI's), and the
  WebSocket clientId derives from it;
* before submitting, the prompt id is looked up on the pod, so a redelivered task re-attaches
  instead of submitting twice;
* progress goes to ``update_state("PROGRESS")`` and a ``task-progress`` event (Flower), at most
  once per ``PROGRESS_THROTTLE_SECONDS``;
* SIGUSR1 (the soft time limit, and ``revoke(terminate=True, signal="SIGUSR1")``) becomes a
  cancel event: the prompt is deleted from the pod's queue or interrupted, then the task ends as
  FAILURE ``timeout`` (time limit) or REVOKED (revoke), deterministically.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore

from config.settings import Settings
from config.wiring import pod_pool
from worker.comfyui.errors import JobCancelledError, JobTimeoutError, TransportError, WorkflowValidationError
from worker.comfyui.progress import JobProgressState
from worker.comfyui.rest_client import SubmittedPrompt
from worker.fleet.analytics import Analytics, make_sink
from worker.fleet.job_runner import JOB_TYPES, ComfyUIJobRunner
from worker.fleet.pods import PodConfig

__all__ = ["TASK_NAME", "TaskOptions", "progress_meta", "register"]

TASK_NAME = "comfy.run_workflow"
log = logging.getLogger(__name__)

_FORBIDDEN_OPTION_HINTS = ("key", "token", "secret", "password", "auth", "header", "url", "credential")


@dataclass(frozen=True)
class TaskOptions:
    """What a caller may choose per job. Credentials are settings, never task arguments:
    Flower and the result backend show arguments."""

    pod: str | None = None
    job_type: str = "image_generation"
    timeout: float | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None) -> TaskOptions:
        options = dict(options or {})
        for key in options:
            if any(hint in key.lower() for hint in _FORBIDDEN_OPTION_HINTS):
                raise WorkflowValidationError(
                    f"option {key!r} is not accepted: credentials and URLs are worker settings, not task arguments"
                )
        unknown = set(options) - {"pod", "job_type", "timeout"}
        if unknown:
            raise WorkflowValidationError(f"unknown options: {', '.join(sorted(unknown))}")
        job_type = options.get("job_type", "image_generation")
        if job_type not in JOB_TYPES:
            raise WorkflowValidationError(f"job_type must be one of {', '.join(JOB_TYPES)}, got {job_type!r}")
        timeout = options.get("timeout")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0):
            raise WorkflowValidationError("timeout must be a positive number of seconds")
        pod = options.get("pod")
        if pod is not None and not isinstance(pod, str):
            raise WorkflowValidationError("pod must be a pod name")
        return cls(pod, job_type, float(timeout) if timeout is not None else None)


def progress_meta(state: JobProgressState, *, pod: PodConfig, attempt: int, job_type: str, published_at: float) -> dict[str, Any]:
    """The documented PROGRESS meta (README): plain JSON for any poller.

    ``updated_at`` is when the worker wrote the record, not when the state last changed: a
    trailing throttle may publish a state observed up to one window earlier, and what a poller
    needs to judge is the record's freshness (a stale one means a stuck or dead worker).
    """
    return {
        "prompt_id": state.prompt_id,
        "progress": round(state.progress, 1),
        "status": state.status.value,
        "node_id": state.current_node_id,
        "node_type": state.current_node_type,
        "step": state.node_value,
        "step_max": state.node_max,
        "nodes_done": state.nodes_done,
        "nodes_total": state.nodes_total,
        "queue_position": state.queue_position,
        "method": state.method,
        "pod": pod.name,
        "server_url": pod.safe_url,
        "job_type": job_type,
        "attempt": attempt,
        "updated_at": published_at,
    }


class _Runtime:
    """Per-process state, created lazily after the pool forked."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = pod_pool(settings)
        self.analytics = Analytics(
            make_sink(settings.analytics_sink, posthog_api_key=settings.posthog_api_key, posthog_host=settings.posthog_host)
        )


_runtimes: dict[tuple[int, int], _Runtime] = {}
_runtimes_lock = threading.Lock()


def _runtime(celery: Celery, settings: Settings) -> _Runtime:
    key = (os.getpid(), id(celery))
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = _Runtime(settings)
        return _runtimes[key]


@contextlib.contextmanager
def _cancel_on_sigusr1(cancel: threading.Event) -> Iterator[None]:
    """Turn SIGUSR1 into ``cancel`` while the task runs (main thread of a pool process only)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
        yield
        return
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: cancel.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


def register(celery: Celery, settings: Settings) -> Task[Any, Any]:
    # shared=False: a shared task would be added to every app created later, with *these* settings
    # default_retry_delay is also the delay of a redelivery after a lost worker (Celery: 180 s)
    @celery.task(
        bind=True,
        name=TASK_NAME,
        max_retries=settings.task_max_retries,
        default_retry_delay=math.ceil(settings.task_retry_backoff),
        acks_late=True,
        shared=False,
    )
    def run_workflow(self: Task[Any, Any], workflow: dict[str, Any], options: dict[str, Any] | None = None) -> dict[str, Any]:
        opts = TaskOptions.parse(options)
        runtime = _runtime(celery, settings)
        prompt_id = str(self.request.id)
        attempt = int(self.request.retries or 0) + 1
        pool = runtime.pool
        if opts.pod is not None:
            try:
                pod = pool.get(opts.pod)
            except KeyError as exc:
                raise WorkflowValidationError(str(exc.args[0])) from None  # str(KeyError) quotes it again
        else:
            # only a task that ran before can have its prompt on a pod already: a retry, a worker
            # lost (Celery retries it) or a message restored by the broker (``redelivered``)
            ran_before = attempt > 1 or bool((self.request.delivery_info or {}).get("redelivered"))
            pod = (pool.find_prompt(prompt_id) if ran_before and len(pool.pods) > 1 else None) or pool.least_loaded()
        cancel = threading.Event()
        accepted = threading.Event()
        started = time.monotonic()

        def on_progress(state: JobProgressState) -> None:
            if cancel.is_set():
                return  # never overwrite a REVOKED record with PROGRESS
            meta = progress_meta(state, pod=pod, attempt=attempt, job_type=opts.job_type, published_at=time.time())
            self.update_state(state="PROGRESS", meta=meta)
            try:
                self.send_event("task-progress", **meta)
            except Exception:  # events are best effort (no dispatcher when run eagerly)
                log.debug("task-progress event not sent", exc_info=True)

        def on_submitted(submitted: SubmittedPrompt) -> None:
            accepted.set()

        runner = ComfyUIJobRunner(pool.client(pod), analytics=runtime.analytics, throttle_interval=settings.progress_throttle)
        log.info("task %s (attempt %d): running on pod %s (%s)", prompt_id, attempt, pod.name, pod.safe_url)
        try:
            with _cancel_on_sigusr1(cancel):
                result = runner.run(
                    workflow,
                    prompt_id=prompt_id,
                    client_id=f"comfy-celery-{prompt_id}",
                    job_type=opts.job_type,
                    on_progress=on_progress,
                    on_submitted=on_submitted,
                    cancel=cancel,
                    timeout=opts.timeout,
                )
        except JobCancelledError:
            if time.monotonic() - started >= settings.job_time_limit * 0.98:
                raise JobTimeoutError(
                    f"job {prompt_id} exceeded its time limit of {settings.job_time_limit:g} s; the prompt was interrupted",
                    prompt_id=prompt_id,
                    seconds=settings.job_time_limit,
                ) from None
            # revoked: write REVOKED ourselves, last, so the final state does not race
            self.backend.mark_as_revoked(prompt_id, "cancelled: the prompt was removed from the pod", request=self.request)
            raise Ignore() from None
        except TransportError as exc:
            if accepted.is_set() or self.request.retries >= settings.task_max_retries:
                raise
            countdown = settings.task_retry_backoff * 2 ** int(self.request.retries or 0)
            log.warning("task %s: transport error before the prompt was accepted (%s); retrying in %.1f s", prompt_id, exc, countdown)
            raise self.retry(exc=exc, countdown=countdown) from None
        return {**result.to_dict(), "pod": pod.name}

    task: Task[Any, Any] = run_workflow
    return task
