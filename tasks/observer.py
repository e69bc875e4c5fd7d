"""``TaskObserver``: one job's events as Celery task states and events.

PROGRESS goes to ``update_state`` (the result backend, what pollers read) and a
``task-progress`` event (Flower). A feature that reacts to a job (a webhook, live previews,
media uploads) adds its own :class:`~worker.comfyui.observer.JobObserver` next to this one
rather than a new callback: the pod client's dispatcher isolates each observer's failures.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Task

from tasks.cancel import Cancellation
from tasks.live import WebObserver, flower_summary
from tasks.meta import progress_meta
from worker.comfyui.observer import JobObserver
from worker.comfyui.progress import JobProgressState
from worker.comfyui.rest_client import SubmittedPrompt
from worker.fleet.pods import PodConfig

__all__ = ["TaskObserver"]

log = logging.getLogger("tasks.workflow")


class TaskObserver(JobObserver):
    def __init__(
        self,
        task: Task[Any, Any],
        *,
        pod: PodConfig,
        attempt: int,
        job_type: str,
        cancellation: Cancellation,
        accepted: threading.Event | None = None,
        web: WebObserver | None = None,
    ) -> None:
        self.task = task
        #: the job's webhooks and previews: its preview pointer goes into the meta, the meta to its webhook
        self.web = web
        self.pod = pod
        self.attempt = attempt
        self.job_type = job_type
        self.cancellation = cancellation
        #: set once the pod accepted the prompt: a transport error after it is not retried
        #: (the task passes its own: it judges errors raised before this observer existed too)
        self.accepted = accepted or threading.Event()

    def on_submitted(self, submitted: SubmittedPrompt) -> None:
        self.accepted.set()

    def on_progress(self, state: JobProgressState) -> None:
        if self.cancellation.is_set():
            return  # never overwrite a REVOKED record with PROGRESS
        meta = progress_meta(
            state,
            pod=self.pod.name,
            server_url=self.pod.safe_url,
            attempt=self.attempt,
            job_type=self.job_type,
            published_at=time.time(),
            preview=self.web.preview_pointer() if self.web is not None else None,
        )
        self.task.update_state(state="PROGRESS", meta=dict(meta))
        if self.web is not None:
            self.web.progress_published(meta)
        try:
            # Flower shows the event's ``result`` field as the running task's Result
            self.task.send_event("task-progress", **meta, result=flower_summary(meta))
        except Exception:  # events are best effort (no dispatcher when run eagerly)
            log.debug("task-progress event not sent", exc_info=True)
