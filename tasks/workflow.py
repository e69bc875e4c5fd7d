"""The ``comfy.run_workflow`` task: a thin adapter from Celery to :class:`ComfyUIJobRunner`.

* prompt id = the Celery task id (the id a web backend holds is also ComfyUI's), and the
  WebSocket clientId derives from it;
* a task that ran before (a retry, a redelivery) looks its prompt id up on the pods before
  submitting, so it re-attaches instead of submitting twice (a first delivery skips that);
* the pod comes from the process's :class:`~worker.fleet.balance.Balancer` (what this process
  has in flight, and the optional per-pod queue limit), and the job registers on the process's
  :class:`~worker.fleet.cancel_board.CancelBoard` (revokes and cancel flags, in every pool);
* a transient failure before the prompt was accepted
  (:func:`~worker.comfyui.errors.is_transient`) is retried with backoff, ahead of queued jobs
  (:mod:`tasks.priority`);
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
import threading
import time
from typing import Any, NoReturn, cast

from celery import Celery, Task
from celery.exceptions import Ignore, SoftTimeLimitExceeded

from config.settings import Settings
from tasks import live
from tasks.arguments import task_arguments
from tasks.cancel import Cancellation, CancelReason, TimeLimit, cancel_on_sigusr1
from tasks.meta import TaskResult, progress_meta, task_result
from tasks.observer import TaskObserver
from tasks.options import TaskOptions
from tasks.priority import RetryFirstTask
from tasks.runtime import Runtime, runtime
from worker.comfyui.errors import ComfyUIError, JobCancelledError, JobTimeoutError, StorageError, WorkflowValidationError, is_transient
from worker.fleet.job_runner import ComfyUIJobRunner
from worker.fleet.pods import PodConfig

__all__ = ["TASK_NAME", "TaskOptions", "progress_meta", "register"]

TASK_NAME = "comfy.run_workflow"
log = logging.getLogger(__name__)


def _ran_before(task: Task[Any, Any], attempt: int) -> bool:
    """Only a task that ran before can have its prompt on a pod already: a retry, a worker lost
    (Celery retries it) or a message restored by the broker (``redelivered``)."""
    return attempt > 1 or bool((task.request.delivery_info or {}).get("redelivered"))


def _given_pod(rt: Runtime, opts: TaskOptions, prompt_id: str, ran_before: bool) -> PodConfig | None:
    """The pod this job must use (asked for, or the one holding its prompt); None: the balancer chooses."""
    pool = rt.pool
    if opts.pod is not None:
        try:
            return pool.get(opts.pod)
        except KeyError as exc:
            raise WorkflowValidationError(str(exc.args[0])) from None  # str(KeyError) quotes it again
    return pool.find_prompt(prompt_id) if ran_before and len(pool.pods) > 1 else None


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


def _retry_if_transient(task: Task[Any, Any], exc: ComfyUIError, accepted: bool, settings: Settings) -> NoReturn:
    """One rule before acceptance: a transient failure (transport, 5xx, 429) is retried with
    backoff, and the retry looks the prompt id up before it submits anything."""
    if not is_transient(exc) or accepted or task.request.retries >= settings.task_max_retries:
        raise exc
    countdown = settings.task_retry_backoff * 2 ** int(task.request.retries or 0)
    log.warning("task %s: %s before the prompt was accepted (%s); retrying in %.1f s", task.request.id, exc.code, exc, countdown)
    raise task.retry(exc=exc, countdown=countdown) from None


def register(celery: Celery, settings: Settings) -> Task[Any, Any]:
    # shared=False: a shared task would be added to every app created later, with *these* settings
    # default_retry_delay is only the delay of a retry after a lost pool child (Celery: 180 s; our
    # own retries give a countdown): 0, since its prompt is likely on a pod, where it re-attaches
    # at once; RetryFirstTask sends it ahead of the queued jobs
    @celery.task(
        bind=True,
        base=RetryFirstTask,
        name=TASK_NAME,
        max_retries=settings.task_max_retries,
        default_retry_delay=0,
        acks_late=True,
        shared=False,
        Strategy="tasks.arguments:guarded_strategy",  # a hostile message must not reach a decoder or the pickler
    )
    def run_workflow(self: Task[Any, Any], *args: Any, **kwargs: Any) -> TaskResult:
        workflow, options, inputs = task_arguments(args, kwargs)  # first: bounded, typed, before anything walks it
        limit = TimeLimit(settings.job_time_limit)
        cancellation = Cancellation()
        accepted = threading.Event()
        try:
            return run(self, workflow, options, inputs, limit=limit, cancellation=cancellation, accepted=accepted)
        except SoftTimeLimitExceeded:
            # the soft limit (or a SIGUSR1 revoke) fired outside the job runner's cancel window:
            # choosing the pod, or building the result
            cancellation.cancel(CancelReason.TIME_LIMIT if limit.reached() else CancelReason.REVOKED)
            _end_cancelled(self, cancellation, settings, str(self.request.id))
        except ComfyUIError as exc:
            _retry_if_transient(self, exc, accepted.is_set(), settings)

    def run(
        self: Task[Any, Any],
        workflow: dict[str, Any],
        options: Any,
        inputs: Any,
        *,
        limit: TimeLimit,
        cancellation: Cancellation,
        accepted: threading.Event,
    ) -> TaskResult:
        opts = TaskOptions.parse(options)
        live.check_webhook(settings, opts.web)
        rt = runtime(celery, settings)
        prompt_id = str(self.request.id)
        attempt = int(self.request.retries or 0) + 1
        ran_before = _ran_before(self, attempt)
        given = _given_pod(rt, opts, prompt_id, ran_before)
        redis = live.redis_of(celery)
        web = live.WebObserver(settings, opts.web, prompt_id, redis)
        # JOB_TIME_LIMIT is also the job's own deadline, so it holds in every pool, not only where
        # Celery's soft limit (a signal) exists: the prompt is interrupted, the task fails `timeout`
        seconds = min(opts.timeout or math.inf, settings.job_time_limit)
        try:
            recalled = rt.media.recall(prompt_id)  # a redelivery after every output was stored
            if recalled is not None:
                return cast(TaskResult, recalled)
            # a revoke (the revoked set) or a flag sets the same event as the web client's cancel
            with (
                rt.cancels.job(prompt_id, cancellation.event),
                rt.balancer.lease(given, cancel=cancellation.event, timeout=seconds) as pod,
            ):
                observer = TaskObserver(
                    self, pod=pod, attempt=attempt, job_type=opts.job_type, cancellation=cancellation, accepted=accepted, web=web
                )
                runner = ComfyUIJobRunner(
                    rt.pool.client(pod), analytics=rt.analytics, throttle_interval=settings.progress_throttle, timings=rt.timings
                )
                log.info("task %s (attempt %d): running on pod %s (%s)", prompt_id, attempt, pod.name, pod.safe_url)
                with cancel_on_sigusr1(cancellation, limit):
                    # inputs onto the pod first (validation errors before anything is submitted)
                    workflow = rt.media.prepare_inputs(workflow, inputs, runner.pod.rest, prompt_id, cancel=cancellation.event)
                    result = runner.run(
                        workflow,
                        prompt_id=prompt_id,
                        client_id=f"comfy-celery-{prompt_id}",
                        job_type=opts.job_type,
                        observer=[observer, web],
                        cancel=cancellation.event,
                        timeout=max(0.001, seconds - (time.monotonic() - limit.started)),
                        reattach=ran_before,
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
        return task_result(result, pod=pod.name, media=stored.get("media"))

    live.connect_final_webhooks(celery, settings)
    task: Task[Any, Any] = run_workflow
    return task
