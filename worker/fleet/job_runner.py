"""``ComfyUIJobRunner``: run one workflow on a pod, with throttled progress and analytics.

Framework-free on purpose: the Celery task is a thin adapter around it, and anything else (a
script, another queue) can use it the same way. Progress reaches the caller at most once per
``throttle_interval`` (the final update at once), on the caller's own thread.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from worker.comfyui.clock import Clock, SystemClock
from worker.comfyui.errors import ComfyUIError
from worker.comfyui.pod_client import ComfyUIPodClient, FallbackEvent, PodEvent
from worker.comfyui.progress import JobProgressState, JobStatus
from worker.comfyui.rest_client import SubmittedPrompt
from worker.comfyui.results import WorkflowResult
from worker.comfyui.throttle import Throttle
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

__all__ = ["JOB_TYPES", "ComfyUIJobRunner"]

JOB_TYPES = ("image_generation", "lora_training", "face_swap")
_FINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.INTERRUPTED, JobStatus.CANCELLED)


class ComfyUIJobRunner:
    def __init__(
        self,
        pod: ComfyUIPodClient,
        *,
        analytics: Analytics | None = None,
        throttle_interval: float = 1.0,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.pod = pod
        self.analytics = analytics or Analytics()
        self.throttle_interval = throttle_interval
        self._clock = clock or SystemClock()
        self._log = logger or logging.getLogger(__name__)

    def run(
        self,
        workflow: Mapping[str, Any],
        *,
        prompt_id: str,
        client_id: str | None = None,
        job_type: str = "image_generation",
        on_progress: Callable[[JobProgressState], None] | None = None,
        on_submitted: Callable[[SubmittedPrompt], None] | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
    ) -> WorkflowResult:
        """Run (or, after a redelivery, re-attach to) the prompt ``prompt_id`` and return its result.

        Raises the :mod:`worker.comfyui.errors` hierarchy; the failure is also reported to analytics.
        """
        delivered = 0
        method = "websocket"  # until a fallback event says otherwise

        def deliver(state: JobProgressState) -> None:
            nonlocal delivered
            delivered += 1
            self.analytics.emit(ProgressUpdate(prompt_id, state.progress, job_type))
            if on_progress is not None:
                try:
                    on_progress(state)
                except Exception:  # noqa: BLE001 - a progress consumer never breaks a job
                    self._log.exception("progress consumer failed for prompt %s (the job goes on)", prompt_id)

        throttle: Throttle[JobProgressState] = Throttle(
            deliver, clock=self._clock, interval=self.throttle_interval, same=lambda a, b: a.same_as(b)
        )

        def progress(state: JobProgressState) -> None:
            throttle.submit(state, final=state.status in _FINAL)

        def listen(event: PodEvent) -> None:
            nonlocal method
            if isinstance(event, FallbackEvent):
                method = event.fallback_method
                self.analytics.emit(WebSocketFallback(event.prompt_id, event.reason))
            elif isinstance(event, ConnectionEvent):
                if event.kind in ("connected", "reconnected") and event.connection_time_ms is not None:
                    self.analytics.emit(WebSocketConnected(event.client_id, event.server_url, event.connection_time_ms))
                elif event.kind == "disconnected":
                    self.analytics.emit(WebSocketDisconnected(event.client_id, event.reason or "unknown", event.duration_s or 0.0))

        started = self._clock.monotonic()
        try:
            result = self.pod.execute_workflow(
                workflow,
                prompt_id=prompt_id,
                client_id=client_id,
                on_progress=progress,
                on_tick=throttle.poll,
                on_submitted=on_submitted,
                cancel=cancel,
                timeout=timeout,
                reattach=True,
                listener=listen,
            )
        except ComfyUIError as exc:
            throttle.flush()
            self.analytics.emit(JobFailed(prompt_id, f"{exc.code}: {exc.message}", method))
            self._log.warning("job %s (%s) failed on %s: %s: %s", prompt_id, job_type, self.pod.server_url, exc.code, exc.message)
            raise
        throttle.flush()
        # the number the caller saw (throttled), not every state change the pod client observed
        result = dataclasses.replace(result, progress_updates=delivered)
        self.analytics.emit(JobCompleted(prompt_id, self._clock.monotonic() - started, delivered, result.method))
        self._log.info("job %s (%s) completed on %s via %s", prompt_id, job_type, self.pod.server_url, result.method)
        return result
