"""The ``comfy.run_workflow`` task: a thin adapter from Celery to :class:`ComfyUIJobRunner`.

* prompt id = the Celery task id (the id a web backend holds is also ComfyUI's), and the
  WebSocket clientId derives from it;
* before submitting, the prompt id is looked up on the pod, so a redelivered task re-attaches
  instead of submitting twice;
* progress goes to ``update_state("PROGRESS")`` and a ``task-progress`` event (Flower), at most
  once per ``PROGRESS_THROTTLE_SECONDS``;
* SIGUSR1 (the soft time limit, and ``revoke(terminate=True, signal="SIGUSR1")``) becomes a
  cancel with its reason (:mod:`tasks.cancel`): the prompt is deleted from the pod's queue or
  interrupted, then the task ends as FAILURE ``timeout`` (time limit) or REVOKED (revoke).

Where things go: per-job options in :mod:`tasks.options`, the PROGRESS/SUCCESS contract in
:mod:`tasks.meta`, per-process state in :mod:`tasks.runtime`, cancel reasons in
:mod:`tasks.cancel`, what a job tells Celery in :mod:`tasks.observer` (add observers
there for new reactions to a job); this module only wires one job's steps together.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NoReturn, cast

from celery import Celery, Task
from celery.exceptions import Ignore

from config.settings import Settings
from tasks.arguments import task_arguments
from tasks.cancel import Cancellation, CancelReason, TimeLimit, cancel_on_sigusr1
from tasks.meta import TaskResult, progress_meta, task_result
from tasks.observer import TaskObserver
from tasks.options import TaskOptions
from tasks.runtime import Runtime, runtime
from worker.comfyui.errors import JobCancelledError, JobTimeoutError, StorageError, TransportError, WorkflowValidationError
from worker.fleet.job_runner import ComfyUIJobRunner
from worker.fleet.pods import PodConfig

__all__ = ["TASK_NAME", "TaskOptions", "progress_meta", "register"]

TASK_NAME = "comfy.run_workflow"
log = logging.getLogger(__name__)


def _choose_pod(task: Task[Any, Any], rt: Runtime, opts: TaskOptions, prompt_id: str, attempt: int) -> PodConfig:
    pool = rt.pool
    if opts.pod is not None:
        try:
            return pool.get(opts.pod)
        except KeyError as exc:
            raise WorkflowValidationError(str(exc.args[0])) from None  # str(KeyError) quotes it again
    # only a task that ran before can have its prompt on a pod already: a retry, a worker
    # lost (Celery retries it) or a message restored by the broker (``redelivered``)
    ran_before = attempt > 1 or bool((task.request.delivery_info or {}).get("redelivered"))
    return (pool.find_prompt(prompt_id) if ran_before and len(pool.pods) > 1 else None) or pool.least_loaded()


def _end_cancelled(task: Task[Any, Any], cancellation: Cancellation, settings: Settings, prompt_id: str) -> NoReturn:
    if cancellation.reason is CancelReason.TIME_LIMIT:
        raise JobTimeoutError(
            f"job {prompt_id} exceeded its time limit of {settings.job_time_limit:g} s; the prompt was interrupted",
            prompt_id=prompt_id,
            seconds=settings.job_time_limit,
        ) from None
    # revoked: write REVOKED ourselves, last, so the final state does not race
    task.backend.mark_as_revoked(prompt_id, "cancelled: the prompt was removed from the pod", request=task.request)
    raise Ignore() from None


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
        Strategy="tasks.arguments:guarded_strategy",  # a hostile message must not reach a decoder or the pickler
    )
    def run_workflow(self: Task[Any, Any], *args: Any, **kwargs: Any) -> TaskResult:
        workflow, options, inputs = task_arguments(args, kwargs)  # first: bounded, typed, before anything walks it
        opts = TaskOptions.parse(options)
        rt = runtime(celery, settings)
        prompt_id = str(self.request.id)
        attempt = int(self.request.retries or 0) + 1
        pod = _choose_pod(self, rt, opts, prompt_id, attempt)
        cancellation = Cancellation()
        observer = TaskObserver(self, pod=pod, attempt=attempt, job_type=opts.job_type, cancellation=cancellation)
        limit = TimeLimit(settings.job_time_limit)
        runner = ComfyUIJobRunner(
            rt.pool.client(pod), analytics=rt.analytics, throttle_interval=settings.progress_throttle, timings=rt.timings
        )
        log.info("task %s (attempt %d): running on pod %s (%s)", prompt_id, attempt, pod.name, pod.safe_url)
        try:
            with cancel_on_sigusr1(cancellation, limit):
                recalled = rt.media.recall(prompt_id)  # a redelivery after every output was stored
                if recalled is not None:
                    return cast(TaskResult, recalled)
                # inputs onto the pod first (validation errors before anything is submitted)
                workflow = rt.media.prepare_inputs(workflow, inputs, runner.pod.rest, prompt_id, cancel=cancellation.event)
                result = runner.run(
                    workflow,
                    prompt_id=prompt_id,
                    client_id=f"comfy-celery-{prompt_id}",
                    job_type=opts.job_type,
                    observer=observer,
                    cancel=cancellation.event,
                    timeout=opts.timeout,
                )
                stored = rt.media.store_outputs(runner.pod.rest, result, cancel=cancellation.event, also={"pod": pod.name})
        except StorageError as exc:
            # the prompt is done: a retry re-attaches to its history entry and streams again
            if not exc.retryable or self.request.retries >= settings.task_max_retries:
                raise
            countdown = settings.task_retry_backoff * 2 ** int(self.request.retries or 0)
            log.warning("task %s: storing the outputs failed (%s); retrying in %.1f s", prompt_id, exc, countdown)
            raise self.retry(exc=exc, countdown=countdown) from None
        except JobCancelledError:
            _end_cancelled(self, cancellation, settings, prompt_id)
        except TransportError as exc:
            if observer.accepted.is_set() or self.request.retries >= settings.task_max_retries:
                raise
            countdown = settings.task_retry_backoff * 2 ** int(self.request.retries or 0)
            log.warning("task %s: transport error before the prompt was accepted (%s); retrying in %.1f s", prompt_id, exc, countdown)
            raise self.retry(exc=exc, countdown=countdown) from None
        return task_result(result, pod=pod.name, media=stored.get("media"))

    task: Task[Any, Any] = run_workflow
    return task
