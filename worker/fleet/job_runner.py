"""``ComfyUIJobRunner``: run one workflow on a pod, with throttled progress and analytics.

Framework-free on purpose: the Celery task is a thin adapter around it, and anything else (a
script, another queue) can use it the same way. Progress reaches the caller's observer at most
once per ``throttle_interval`` (the final update at once), on the caller's own thread; the
throttle, the de-duplication and the count of updates belong to the pod client's one
dispatcher (:class:`~worker.comfyui.observer.JobEvents`), so the result's ``progress_updates``
is the number the caller saw.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from worker.comfyui.errors import ComfyUIError
from worker.comfyui.job_request import JobRequest
from worker.comfyui.observer import FallbackEvent, JobFinished, JobObserver
from worker.comfyui.pod_client import ComfyUIPodClient
from worker.comfyui.progress import JobProgressState
from worker.comfyui.results import WorkflowResult
from worker.comfyui.websocket_client import ConnectionEvent
from worker.fleet.analytics import (
    Analytics,
    JobCompleted,
    JobFailed,
    ProgressUpdate,
    WebSocketConnected,
    WebSocketDisconnected,
    WebSocketFallback,
)
from worker.fleet.job_types import JOB_TYPES
from worker.fleet.node_timings import NodeTimings

__all__ = ["JOB_TYPES", "AnalyticsObserver", "ComfyUIJobRunner", "LearningObserver"]


class AnalyticsObserver(JobObserver):
    """A job's events as analytics events (what the runner adds to every job)."""

    def __init__(self, analytics: Analytics, job_type: str) -> None:
        self.analytics = analytics
        self.job_type = job_type

    def on_progress(self, state: JobProgressState) -> None:
        self.analytics.emit(ProgressUpdate(state.prompt_id, state.progress, self.job_type))

    def on_fallback(self, event: FallbackEvent) -> None:
        self.analytics.emit(WebSocketFallback(event.prompt_id, event.reason))

    def on_connection_event(self, event: ConnectionEvent) -> None:
        if event.kind in ("connected", "reconnected") and event.connection_time_ms is not None:
            self.analytics.emit(WebSocketConnected(event.client_id, event.server_url, event.connection_time_ms))
        elif event.kind == "disconnected":
            self.analytics.emit(WebSocketDisconnected(event.client_id, event.reason or "unknown", event.duration_s or 0.0))

    def on_finished(self, finished: JobFinished) -> None:
        if finished.error is not None:
            self.analytics.emit(JobFailed(finished.prompt_id, f"{finished.error.code}: {finished.error.message}", finished.method))
        elif finished.result is not None:
            self.analytics.emit(JobCompleted(finished.prompt_id, finished.duration_s, finished.progress_updates, finished.result.method))


class LearningObserver(JobObserver):
    """After a success, the job's node timings go to the fleet's learned durations (in the
    background: the write never delays the result)."""

    def __init__(self, timings: NodeTimings) -> None:
        self.timings = timings

    def on_finished(self, finished: JobFinished) -> None:
        if finished.result is not None and finished.timings:
            self.timings.learn_later(finished.timings)


class ComfyUIJobRunner:
    def __init__(
        self,
        pod: ComfyUIPodClient,
        *,
        analytics: Analytics | None = None,
        throttle_interval: float = 1.0,
        logger: logging.Logger | None = None,
        timings: NodeTimings | None = None,
    ) -> None:
        self.pod = pod
        #: learned node durations: read before each job (its time estimate), written after a success
        self.timings = timings
        self.analytics = analytics or Analytics()
        self.throttle_interval = throttle_interval
        self._log = logger or logging.getLogger(__name__)

    def run(
        self,
        workflow: Mapping[str, Any],
        *,
        prompt_id: str,
        client_id: str | None = None,
        job_type: str = "image_generation",
        observer: JobObserver | Sequence[JobObserver] | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
        reattach: bool = True,
    ) -> WorkflowResult:
        """Run (or, after a redelivery, re-attach to) the prompt ``prompt_id`` and return its result.

        ``reattach=False`` (a first delivery: the prompt cannot be on the pod yet) skips the lookup.

        Raises the :mod:`worker.comfyui.errors` hierarchy; the failure is also reported to analytics.
        """
        observers: list[JobObserver] = [AnalyticsObserver(self.analytics, job_type)]
        if self.timings is not None:
            observers.append(LearningObserver(self.timings))
        observers += [observer] if isinstance(observer, JobObserver) else list(observer or ())
        request = JobRequest(
            workflow,
            prompt_id=prompt_id,
            client_id=client_id,
            timeout=timeout,
            reattach=reattach,
            progress_interval=self.throttle_interval,
            durations=self.timings.model_for(workflow) if self.timings is not None else None,
        )
        try:
            result = self.pod.run(request, observers=observers, cancel=cancel)
        except ComfyUIError as exc:
            self._log.warning("job %s (%s) failed on %s: %s: %s", prompt_id, job_type, self.pod.server_url, exc.code, exc.message)
            raise
        self._log.info("job %s (%s) completed on %s via %s", prompt_id, job_type, self.pod.server_url, result.method)
        return result
