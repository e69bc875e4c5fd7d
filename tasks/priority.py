"""Retries jump ahead of new jobs: a retried job may have its prompt already on a pod.

After a pool child dies, Celery sends the job again (``task_retry_on_worker_lost``); after a
transient failure the task retries itself. Both go through ``signature_from_request``, and by
default to the back of the queue: a job whose prompt finished on the pod seconds after the kill
waited behind every job queued meanwhile, shown as RETRY. With Redis, priority 0 is consumed
first (kombu keeps one list per priority step, 0, 3, 6, 9), so new jobs are sent at
:data:`NEW_JOB_PRIORITY` and every retry at :data:`RETRY_PRIORITY`.

A job sent without a priority (a bare ``send_task`` that does not pass ``priority=3``) is at 0,
like a retry: it is served in order with them, as before. Other brokers order priorities the
other way (AMQP: higher first, and only on queues declared with a maximum): there, the app sets
no default priority and retries keep theirs.
"""

from __future__ import annotations

from typing import Any

from celery import Task

__all__ = ["NEW_JOB_PRIORITY", "RETRY_PRIORITY", "RetryFirstTask"]

#: new jobs: kombu's Redis transport files 1..3 under its step 3, behind step 0
NEW_JOB_PRIORITY = 3
RETRY_PRIORITY = 0


class RetryFirstTask(Task):  # type: ignore[type-arg]
    """A task whose retries (its own, and Celery's after a lost pool child) go first."""

    def signature_from_request(self, request: Any = None, args: Any = None, kwargs: Any = None, queue: Any = None, **extra: Any) -> Any:
        signature = super().signature_from_request(request, args, kwargs, queue, **extra)
        if self.app.conf.task_default_priority is not None:  # Redis (tasks/app.py)
            signature.set(priority=RETRY_PRIORITY)
        return signature
