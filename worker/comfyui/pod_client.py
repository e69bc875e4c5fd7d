"""``ComfyUIPodClient``: run one workflow on a ComfyUI pod and return its result.

``execute_workflow`` listens on the WebSocket *before* submitting (events can beat the
``POST /prompt`` reply), follows the prompt, and falls back to REST polling by itself: at once
when the socket cannot be opened, and mid-job when reconnection gives up. Whatever the path,
one prompt gives one result: never a second POST, never two completions, and a completion
that happened while disconnected is found through ``/history``. A periodic history probe
catches a socket that stays open but hears nothing (the same-clientId hazard, a silent
proxy). Every wait is bounded by the job's deadline and cut short by its cancel event.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import requests

from worker.comfyui import protocol as p
from worker.comfyui.clock import Clock, Deadline
from worker.comfyui.errors import (
    ComfyUIError,
    ConnectionFailedError,
    ConnectionLostError,
    ExecutionError,
    HTTPStatusError,
    JobCancelledError,
    JobTimeoutError,
    PromptInterruptedError,
    PromptNotFoundError,
    TransportError,
    TransportTimeoutError,
)
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.progress import JobProgressState, JobStatus, ProgressTracker
from worker.comfyui.rest_client import ComfyUIRestClient, SubmittedPrompt
from worker.comfyui.results import WorkflowResult, error_from_history, files_from_outputs, history_outcome
from worker.comfyui.urls import ServerURL
from worker.comfyui.websocket_client import ComfyUIWebSocketClient, ConnectionEvent, PromptCompletion, WebSocketFactory, WebSocketSettings
from worker.comfyui.workflow import validate_workflow

__all__ = ["ComfyUIPodClient", "FallbackEvent", "PodClientSettings", "PodEvent"]

FallbackReason = Literal["connection_failed", "timeout", "error"]


@dataclass(frozen=True)
class PodClientSettings:
    http: HTTPSettings = field(default_factory=HTTPSettings)
    websocket: WebSocketSettings = field(default_factory=WebSocketSettings)
    #: REST polling period (today's behaviour: 2 s)
    poll_interval: float = 2.0
    #: while on the WebSocket, how often history is probed in case the socket went deaf
    history_probe_interval: float = 5.0
    #: a prompt not started this long after its submission gets its queue position from /queue
    queued_probe_delay: float = 0.5
    #: after a completion event, how long ``{}`` from /history is retried (it is written just after)
    history_confirm_timeout: float = 3.0
    #: a job's own deadline when the caller gives none (None: no deadline)
    job_timeout: float | None = 3600.0
    #: the longest a wait goes without checking cancel and deadline
    wait_slice: float = 0.25
    #: probes finding the prompt neither queued nor in history before it is declared lost
    lost_prompt_checks: int = 2
    #: consecutive failed polls (5xx, transport) tolerated before the job fails
    max_poll_failures: int = 5
    health_timeout: float = 5.0


@dataclass(frozen=True)
class FallbackEvent:
    prompt_id: str
    reason: FallbackReason
    detail: str
    fallback_method: Literal["rest_polling"] = "rest_polling"


PodEvent = ConnectionEvent | FallbackEvent


class _Job:
    """The state of one prompt being followed."""

    def __init__(
        self,
        client: ComfyUIPodClient,
        *,
        workflow: dict[str, Any],
        prompt_id: str,
        client_id: str,
        on_progress: Callable[[JobProgressState], None] | None,
        on_tick: Callable[[], None] | None,
        cancel: threading.Event | None,
        timeout: float | None,
        extra_data: Mapping[str, Any] | None,
        submit: bool,
        reattach: bool,
        on_submitted: Callable[[SubmittedPrompt], None] | None,
        listener: Callable[[PodEvent], None] | None,
    ) -> None:
        self.client = client
        self.workflow = workflow
        self.prompt_id = prompt_id
        self.client_id = client_id
        self.on_progress = on_progress
        self.on_tick = on_tick
        self.cancel = cancel or threading.Event()
        self.deadline = Deadline(client.clock, timeout)
        self.extra_data = extra_data
        self.submitted = not submit
        self.reattach = reattach
        self.on_submitted = on_submitted
        self.listener = listener
        self.started = client.clock.monotonic()
        self.tracker = ProgressTracker(prompt_id, workflow, clock=client.clock)
        self.method: Literal["websocket", "rest_polling"] = "websocket"
        self.fallback_reason: str | None = None
        self.node_errors: dict[str, Any] = {}
        self.progress_updates = 0
        self.missing = 0
        self.last: JobProgressState | None = None

    def publish(self) -> None:
        state = self.tracker.state()
        if state.same_as(self.last):
            return
        self.last = state
        self.progress_updates += 1
        if self.on_progress is not None:
            try:
                self.on_progress(state)
            except Exception:
                self.client.log.exception("progress callback failed for prompt %s", self.prompt_id)

    def tick(self) -> None:
        if self.on_tick is not None:
            try:
                self.on_tick()
            except Exception:
                self.client.log.exception("tick callback failed for prompt %s", self.prompt_id)


class ComfyUIPodClient(ComfyUIRestClient):
    """REST API plus the three execution paths. Safe to use from several threads at once:
    each job gets its own WebSocket; HTTP sessions are per thread."""

    def __init__(
        self,
        server_url: str | ServerURL,
        *,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        token_param: str = "token",
        settings: PodClientSettings | None = None,
        clock: Clock | None = None,
        session_factory: Any = requests.Session,
        ws_factory: WebSocketFactory | None = None,
        logger: logging.Logger | None = None,
        listener: Callable[[PodEvent], None] | None = None,
    ) -> None:
        self.settings = settings or PodClientSettings()
        super().__init__(
            server_url,
            headers=headers,
            http=self.settings.http,
            session_factory=session_factory,
            clock=clock,
            logger=logger,
            health_timeout=self.settings.health_timeout,
        )
        self.clock: Clock = self._clock  # the one the REST layer already uses
        self.log = self._log
        self._headers = dict(headers or {})
        self._token = token
        self._token_param = token_param
        self._ws_factory = ws_factory
        self._listener = listener

    # ------------------------------------------------------------------ public paths

    def execute_workflow(self, workflow: Mapping[str, Any], **options: Any) -> WorkflowResult:
        """WebSocket first, REST polling when the socket cannot be used (at start or mid-job).

        Options: ``prompt_id``, ``client_id``, ``on_progress``, ``on_tick`` (called at least every
        ``wait_slice`` seconds, e.g. for a throttle's trailing delivery), ``cancel`` (an Event),
        ``timeout`` (seconds), ``extra_data``, ``submit`` (False: follow a prompt already on the
        pod), ``reattach`` (look the prompt id up first: after a redelivery, follow the prompt
        already there or return its result instead of submitting again), ``on_submitted``
        (called once the pod accepted the prompt), ``listener`` (connection and fallback events).
        """
        job = self._job(workflow, **options)
        self._require_healthy()
        if (early := self._reattach(job)) is not None:
            return early
        ws = self._websocket(job)
        try:
            try:
                ws.connect()
            except TransportError as exc:
                self._fall_back(job, "timeout" if isinstance(exc, TransportTimeoutError) else "connection_failed", exc)
                return self._poll(job)
            try:
                return self._follow(job, ws)
            except ConnectionLostError as exc:
                self._fall_back(job, "error", exc)
                return self._poll(job)
        finally:
            ws.close()

    def execute_workflow_with_websocket(self, workflow: Mapping[str, Any], **options: Any) -> WorkflowResult:
        """The WebSocket only: raises a :class:`TransportError` when the socket cannot be used."""
        job = self._job(workflow, **options)
        if (early := self._reattach(job)) is not None:
            return early
        ws = self._websocket(job)
        try:
            ws.connect()
            return self._follow(job, ws)
        finally:
            ws.close()

    def execute_workflow_with_polling(self, workflow: Mapping[str, Any], **options: Any) -> WorkflowResult:
        """Today's behaviour: ``POST /prompt``, then ``/history`` every ``poll_interval``."""
        job = self._job(workflow, **options)
        if (early := self._reattach(job)) is not None:
            return early
        return self._poll(job)

    # ------------------------------------------------------------------ set-up

    def _job(
        self,
        workflow: Mapping[str, Any],
        *,
        prompt_id: str | None = None,
        client_id: str | None = None,
        on_progress: Callable[[JobProgressState], None] | None = None,
        on_tick: Callable[[], None] | None = None,
        cancel: threading.Event | None = None,
        timeout: float | None = None,
        extra_data: Mapping[str, Any] | None = None,
        submit: bool = True,
        reattach: bool = False,
        on_submitted: Callable[[SubmittedPrompt], None] | None = None,
        listener: Callable[[PodEvent], None] | None = None,
    ) -> _Job:
        graph = validate_workflow(workflow)
        prompt_id = prompt_id or str(uuid.uuid4())
        return _Job(
            self,
            workflow=graph,
            prompt_id=prompt_id,
            client_id=client_id or str(uuid.uuid4()),
            on_progress=on_progress,
            on_tick=on_tick,
            cancel=cancel,
            timeout=timeout if timeout is not None else self.settings.job_timeout,
            extra_data=extra_data,
            submit=submit,
            reattach=reattach,
            on_submitted=on_submitted,
            listener=listener or self._listener,
        )

    def _require_healthy(self) -> None:
        report = self.health_check()
        if not report.ok:
            raise ConnectionFailedError(f"ComfyUI at {self.server_url} is not healthy: {report.reason}", url=self.server_url)

    def _reattach(self, job: _Job) -> WorkflowResult | None:
        """With ``reattach``: a finished prompt gives its result (or error) now; a queued or
        running one is followed without a new submission."""
        if not job.reattach or job.submitted:
            return None
        entry = self.get_history(job.prompt_id, cancel=job.cancel)
        if entry is not None:
            self.log.info("comfyui prompt %s already finished on %s: returning its result", job.prompt_id, self.server_url)
            job.submitted = True
            return self._finish(job, entry)
        if self.get_queue(cancel=job.cancel).contains(job.prompt_id):
            self.log.info("comfyui prompt %s already queued on %s: re-attaching", job.prompt_id, self.server_url)
            job.submitted = True
        return None

    def _websocket(self, job: _Job) -> ComfyUIWebSocketClient:
        ws = ComfyUIWebSocketClient(
            self.server,
            client_id=job.client_id,
            headers=self._headers,
            token=self._token,
            token_param=self._token_param,
            settings=self.settings.websocket,
            clock=self.clock,
            ws_factory=self._ws_factory,
            logger=self.log,
        )
        ws.on_connection(lambda event: self._emit(job, event))
        return ws

    def _emit(self, job: _Job, event: PodEvent) -> None:
        if job.listener is None:
            return
        try:
            job.listener(event)
        except Exception:
            self.log.exception("pod event listener failed")

    def _fall_back(self, job: _Job, reason: FallbackReason, error: ComfyUIError) -> None:
        job.fallback_reason = reason
        self.log.warning("comfyui prompt %s: WebSocket unusable (%s: %s), falling back to REST polling", job.prompt_id, reason, error)
        self._emit(job, FallbackEvent(job.prompt_id, reason, str(error)))

    def _submit(self, job: _Job, client_id: str | None) -> None:
        if job.submitted:
            return
        self._check_stop(job)
        submitted = self.queue_prompt(job.workflow, job.prompt_id, client_id, extra_data=job.extra_data, cancel=job.cancel)
        job.submitted = True
        job.node_errors = submitted.node_errors
        if job.on_submitted is not None:
            try:
                job.on_submitted(submitted)
            except Exception:
                self.log.exception("on_submitted callback failed for prompt %s", job.prompt_id)
        job.publish()

    # ------------------------------------------------------------------ following on the socket

    def _follow(self, job: _Job, ws: ComfyUIWebSocketClient) -> WorkflowResult:
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        # the socket feeds the job's own tracker (thread-safe), so a fallback continues from it
        ws.watch(job.prompt_id, job.workflow, tracker=job.tracker)
        subscriptions = [
            ws.on_progress(lambda s: events.put(("progress", s)), job.prompt_id),
            ws.on_completion(lambda c: events.put(("completion", c)), job.prompt_id),
            ws.on_error(lambda e: events.put(("error", e)), job.prompt_id),
            ws.on_connection(lambda c: events.put(("connection", c))),
        ]
        try:
            self._submit(job, ws.client_id)
            self.log.info("comfyui prompt %s submitted to %s, following over WebSocket", job.prompt_id, self.server_url)
            # a prompt behind others hears nothing on the socket until it starts: an early look at
            # /queue gives the caller its position at once (skipped if it has started by then)
            next_probe = self.clock.monotonic() + min(self.settings.queued_probe_delay, self.settings.history_probe_interval)
            early_look = True
            while True:
                self._check_stop(job)
                wait = job.deadline.cap(max(0.0, min(self.settings.wait_slice, next_probe - self.clock.monotonic())))
                try:
                    kind, value = events.get(timeout=max(0.001, wait))
                except queue.Empty:
                    kind, value = "idle", None
                if kind == "progress":
                    job.publish()
                elif kind == "completion":
                    return self._on_completion(job, value)
                elif kind == "error" and isinstance(value, ConnectionLostError):
                    raise value
                elif kind == "connection" and value.kind == "reconnected":
                    # events sent while we were away are lost: ask history what happened meanwhile
                    next_probe, early_look = self.clock.monotonic(), False
                if self.clock.monotonic() >= next_probe:
                    if not early_look or job.tracker.state().status is JobStatus.QUEUED:
                        result = self._safety_probe(job)
                        if result is not None:
                            return result
                    early_look = False
                    next_probe = self.clock.monotonic() + self.settings.history_probe_interval
                job.tick()
        finally:
            for unsubscribe in subscriptions:
                unsubscribe()
            ws.unwatch(job.prompt_id)

    def _safety_probe(self, job: _Job) -> WorkflowResult | None:
        """:meth:`_probe` while the socket is followed: a REST failure is logged, not fatal.

        The probe only covers for a deaf or reconnected socket; failing the job because /history
        hiccuped while the socket works would turn a safety net into a new way to fail. A broken
        pod still ends the job: its socket drops, and REST polling has its own failure limit."""
        try:
            return self._probe(job)
        except (TransportError, HTTPStatusError) as exc:
            self.log.warning("comfyui history probe for prompt %s failed (still following the WebSocket): %s", job.prompt_id, exc)
            return None

    def _on_completion(self, job: _Job, completion: PromptCompletion) -> WorkflowResult:
        if job.cancel.is_set():
            raise JobCancelledError(f"prompt {job.prompt_id} was cancelled", prompt_id=job.prompt_id)
        message = completion.message
        if isinstance(message, p.ExecutionErrorData):
            job.tracker.end(JobStatus.FAILED)
            job.publish()
            raise ExecutionError.from_event(message)
        if isinstance(message, p.ExecutionInterruptedData):
            job.tracker.end(JobStatus.INTERRUPTED)
            job.publish()
            raise PromptInterruptedError.from_event(message)
        # success, or the final `executing` alone: history is the judge (written just after)
        confirm = Deadline(self.clock, self.settings.history_confirm_timeout)
        delay = 0.005  # ComfyUI writes history just after execution_success: look again soon, then less often
        while True:
            entry = self._history_or_none(job)
            if entry is not None:
                return self._finish(job, entry)
            if confirm.expired():
                raise PromptNotFoundError(
                    f"prompt {job.prompt_id} completed on the WebSocket but has no history entry after "
                    f"{self.settings.history_confirm_timeout:g} s (deleted, or the server restarted)",
                    prompt_id=job.prompt_id,
                )
            self._check_stop(job)
            self.clock.sleep(confirm.cap(delay), job.cancel)
            delay = min(delay * 2, self.settings.wait_slice)

    # ------------------------------------------------------------------ REST

    def _poll(self, job: _Job) -> WorkflowResult:
        job.method = "rest_polling"
        job.tracker.set_method("rest_polling")
        self._submit(job, job.client_id)
        self.log.info(
            "comfyui prompt %s on %s: following by REST polling every %g s", job.prompt_id, self.server_url, self.settings.poll_interval
        )
        failures = 0
        while True:
            self._check_stop(job)
            try:
                result = self._probe(job)
                failures = 0
            except (TransportError, HTTPStatusError) as exc:
                failures += 1
                if failures > self.settings.max_poll_failures:
                    raise
                self.log.warning(
                    "comfyui poll %d/%d for prompt %s failed: %s", failures, self.settings.max_poll_failures, job.prompt_id, exc
                )
                result = None
            if result is not None:
                return result
            self._wait(job, self.settings.poll_interval)

    def _wait(self, job: _Job, seconds: float) -> None:
        end = self.clock.monotonic() + seconds
        while (left := end - self.clock.monotonic()) > 0:
            if self.clock.sleep(job.deadline.cap(min(left, self.settings.wait_slice)), job.cancel):
                return
            if job.deadline.expired():
                return
            job.tick()

    def _history_or_none(self, job: _Job) -> dict[str, Any] | None:
        try:
            return self.get_history(job.prompt_id, cancel=job.cancel)
        except (TransportError, HTTPStatusError) as exc:
            self.log.warning("comfyui history lookup for %s failed: %s", job.prompt_id, exc)
            return None

    def _probe(self, job: _Job) -> WorkflowResult | None:
        """One look at /history, then /queue: a result, None (still going), or an error."""
        entry = self.get_history(job.prompt_id, cancel=job.cancel)
        if entry is not None:
            return self._finish(job, entry)
        snapshot = self.get_queue(cancel=job.cancel)
        if snapshot.contains(job.prompt_id):
            job.missing = 0
            if job.prompt_id in snapshot.running:
                job.tracker.apply(p.ExecutionStartData(job.prompt_id))
            else:
                job.tracker.set_queue_position(snapshot.position(job.prompt_id))
            job.publish()
            return None
        # not queued, not running, no history: finished just now, or lost. Look once more.
        entry = self.get_history(job.prompt_id, cancel=job.cancel)
        if entry is not None:
            return self._finish(job, entry)
        job.missing += 1
        if job.missing >= self.settings.lost_prompt_checks:
            raise PromptNotFoundError(
                f"prompt {job.prompt_id} is neither queued nor in the history of {self.server_url}: "
                "the server restarted or the prompt was deleted",
                prompt_id=job.prompt_id,
            )
        return None

    def _finish(self, job: _Job, entry: Mapping[str, Any]) -> WorkflowResult:
        outcome = history_outcome(entry)
        if outcome != "success":
            job.tracker.end(JobStatus.INTERRUPTED if outcome == "interrupted" else JobStatus.FAILED)
            job.publish()
            if job.cancel.is_set():
                raise JobCancelledError(f"prompt {job.prompt_id} was cancelled", prompt_id=job.prompt_id)
            raise error_from_history(job.prompt_id, entry)
        job.tracker.complete()
        job.publish()
        outputs = entry.get("outputs") if isinstance(entry.get("outputs"), dict) else {}
        assert isinstance(outputs, dict)
        duration = self.clock.monotonic() - job.started
        self.log.info("comfyui prompt %s succeeded via %s in %.2f s", job.prompt_id, job.method, duration)
        return WorkflowResult(
            prompt_id=job.prompt_id,
            status="success",
            outputs=outputs,
            files=files_from_outputs(outputs),
            method=job.method,
            duration_s=round(duration, 3),
            progress_updates=job.progress_updates,
            server_url=self.server_url,
            node_errors=job.node_errors,
            fallback_reason=job.fallback_reason,
        )

    # ------------------------------------------------------------------ stopping

    def _check_stop(self, job: _Job) -> None:
        if job.cancel.is_set():
            self._abort(job, "cancelled")
            job.tracker.end(JobStatus.CANCELLED)
            job.publish()
            raise JobCancelledError(f"prompt {job.prompt_id} was cancelled", prompt_id=job.prompt_id)
        if job.deadline.expired():
            self._abort(job, "timed out")
            job.tracker.end(JobStatus.CANCELLED)
            job.publish()
            raise JobTimeoutError(
                f"prompt {job.prompt_id} did not finish within {job.deadline.seconds:g} s",
                prompt_id=job.prompt_id,
                seconds=job.deadline.seconds,
            )

    def _abort(self, job: _Job, why: str) -> None:
        """Best effort: delete a queued prompt, interrupt a running one (by its id only)."""
        if not job.submitted:
            return
        try:
            snapshot = self.get_queue()
            if job.prompt_id in snapshot.pending:
                self.delete_queued([job.prompt_id])
                snapshot = self.get_queue()
            if job.prompt_id in snapshot.running:
                self.interrupt(job.prompt_id)
            self.log.info("comfyui prompt %s %s: removed from the pod", job.prompt_id, why)
        except ComfyUIError as exc:  # HTTPStatusError included
            self.log.warning("comfyui prompt %s %s, but it could not be removed from the pod: %s", job.prompt_id, why, exc)
