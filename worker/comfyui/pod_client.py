"""``ComfyUIPodClient``: run one workflow on a ComfyUI pod and return its result.

:meth:`~ComfyUIPodClient.run` listens on the WebSocket *before* submitting (events can beat the
``POST /prompt`` reply), follows the prompt, and falls back to REST polling by itself: at once
when the socket cannot be opened, and mid-job when reconnection gives up. Whatever the path,
one prompt gives one result: never a second POST, never two completions, and a completion
that happened while disconnected is found through ``/history``. A history probe after a
silence catches a socket that stays open but hears nothing (the same-clientId hazard, a
silent proxy); a healthy socket costs no probe. Every wait is bounded by the job's deadline
and cut short by its cancel event.

The client *holds* a :class:`ComfyUIRestClient` (``rest``) for the REST API; the per-job state
and the steps all paths share live in :class:`~worker.comfyui.job.PromptJob`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from worker.comfyui import protocol as p
from worker.comfyui.clock import Clock, Deadline, SystemClock
from worker.comfyui.errors import (
    ComfyUIError,
    ConnectionFailedError,
    ConnectionLostError,
    ExecutionError,
    HTTPStatusError,
    PromptInterruptedError,
    PromptNotFoundError,
    TransportError,
    TransportTimeoutError,
)
from worker.comfyui.job import PromptJob
from worker.comfyui.job_request import ExecutionPath, JobRequest, PodClientSettings
from worker.comfyui.observer import FallbackEvent, FallbackReason, JobEvents, JobObserver, Preview
from worker.comfyui.probe_schedule import ProbeSchedule
from worker.comfyui.progress import JobStatus
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.comfyui.results import WorkflowResult
from worker.comfyui.shared_reads import SharedReads
from worker.comfyui.urls import ServerURL
from worker.comfyui.websocket_client import ComfyUIWebSocketClient, ConnectionEvent, PromptCompletion, WebSocketFactory

__all__ = ["ComfyUIPodClient", "FallbackEvent", "FallbackReason", "JobRequest", "PodClientSettings", "PodEvent"]

PodEvent = ConnectionEvent | FallbackEvent


class _Heard:
    """What one socket heard: when its last message came, and its pod's last queue change."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.at = clock.monotonic()
        self.queue_changed_at = self.at

    def __call__(self, message: p.ComfyUIMessage | p.BinaryFrame) -> None:
        self.at = self._clock.monotonic()
        if isinstance(message, p.StatusData):
            self.queue_changed_at = self.at


class ComfyUIPodClient:
    """The REST API (``rest``) plus the execution paths. Safe to use from several threads at
    once: each job gets its own WebSocket; one bounded HTTP session serves them all, and the
    pod's health and queue are read once for all the jobs that ask at once (``shared``)."""

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
        observers: Iterable[JobObserver] = (),
    ) -> None:
        self.settings = settings or PodClientSettings()
        self.clock = clock or SystemClock()
        self.log = logger or logging.getLogger(__name__)
        self.rest = ComfyUIRestClient(
            server_url,
            headers=headers,
            http=self.settings.http,
            session_factory=session_factory,
            clock=self.clock,
            logger=logger,
            health_timeout=self.settings.health_timeout,
        )
        self._headers = dict(headers or {})
        self._token = token
        self._token_param = token_param
        self._ws_factory = ws_factory
        #: observers of every job run by this client (a job's own come after them)
        self.observers = tuple(observers)
        #: threads for the ``POST /prompt`` of jobs on the WebSocket path: started on demand and
        #: reused (idle ones first), at most 32, so their HTTP sessions stay bounded too
        self._submitter: ThreadPoolExecutor | None = None
        self._submitter_lock = threading.Lock()
        self.shared = SharedReads(self.clock, self.rest.health_check, self.rest.get_queue, health_max_age=self.settings.health_max_age)

    @property
    def server(self) -> ServerURL:
        return self.rest.server

    @property
    def server_url(self) -> str:
        """The server's URL with credentials redacted: the only form that is logged or returned."""
        return self.rest.server_url

    def close(self) -> None:
        with self._submitter_lock:
            submitter, self._submitter = self._submitter, None
        if submitter is not None:
            submitter.shutdown(wait=False, cancel_futures=True)
        self.rest.close()

    def _submit_executor(self) -> ThreadPoolExecutor:
        with self._submitter_lock:
            if self._submitter is None:
                self._submitter = ThreadPoolExecutor(max_workers=32, thread_name_prefix="comfyui-submit")
            return self._submitter

    # ------------------------------------------------------------------ the entry point

    def run(
        self,
        request: JobRequest,
        *,
        path: ExecutionPath = "auto",
        observers: Iterable[JobObserver] = (),
        cancel: threading.Event | None = None,
    ) -> WorkflowResult:
        """Run (or re-attach to) one prompt by ``path`` and return its result.

        Raises the :mod:`worker.comfyui.errors` hierarchy; ``observers`` hear the job's events
        (after the client's own), ``cancel`` stops it (the prompt is then removed from the pod)."""
        events = JobEvents(
            (*self.observers, *observers),
            clock=self.clock,
            logger=self.log,
            prompt_id=PromptJob.new_prompt_id(request),
            progress_interval=request.progress_interval,
        )
        job = PromptJob(self.rest, request, settings=self.settings, events=events, cancel=cancel, clock=self.clock, logger=self.log)
        try:
            result = self._run(job, path)
        except ComfyUIError as exc:
            job.finished(None, exc)
            raise
        job.finished(result, None)
        return result

    def execute_workflow(
        self,
        workflow: Mapping[str, Any],
        *,
        path: ExecutionPath = "auto",
        prompt_id: str | None = None,
        client_id: str | None = None,
        timeout: float | None = None,
        extra_data: Mapping[str, Any] | None = None,
        submit: bool = True,
        reattach: bool = False,
        progress_interval: float = 0.0,
        observer: JobObserver | None = None,
        cancel: threading.Event | None = None,
    ) -> WorkflowResult:
        """:meth:`run` with the :class:`JobRequest` fields as keywords (see there for each)."""
        request = JobRequest(workflow, prompt_id, client_id, timeout, extra_data, submit, reattach, progress_interval)
        return self.run(request, path=path, observers=() if observer is None else (observer,), cancel=cancel)

    # ------------------------------------------------------------------ the paths

    def _run(self, job: PromptJob, path: ExecutionPath) -> WorkflowResult:
        if path == "auto":
            self._require_healthy()
        if (early := job.reattach_or_none()) is not None:
            return early
        if path == "polling":
            return job.poll()
        ws = self._websocket(job)
        try:
            if path == "websocket":
                ws.connect()
                return self._follow(job, ws)
            try:
                ws.connect()
            except TransportError as exc:
                self.shared.pod_failed()
                job.fall_back("timeout" if isinstance(exc, TransportTimeoutError) else "connection_failed", exc)
                return job.poll()
            try:
                return self._follow(job, ws)
            except ConnectionLostError as exc:
                self.shared.pod_failed()
                job.fall_back("error", exc)
                return job.poll()
        finally:
            job.submit_cancel.set()  # a POST reply still in flight is no longer needed
            ws.close()

    def _require_healthy(self) -> None:
        report = self.shared.health()
        if not report.ok:
            raise ConnectionFailedError(f"ComfyUI at {self.server_url} is not healthy: {report.reason}", url=self.server_url)

    def _websocket(self, job: PromptJob) -> ComfyUIWebSocketClient:
        ws = ComfyUIWebSocketClient(
            self.server,
            client_id=job.client_id,
            # query auth: the token in the URL is the socket's only credential (README), no header
            headers=self._headers if self._token is None else {k: v for k, v in self._headers.items() if k.lower() != "authorization"},
            token=self._token,
            token_param=self._token_param,
            settings=self.settings.websocket,
            clock=self.clock,
            ws_factory=self._ws_factory,
            logger=self.log,
        )
        ws.on_connection(job.events.connection)
        return ws

    # ------------------------------------------------------------------ following on the socket

    def _follow(self, job: PromptJob, ws: ComfyUIWebSocketClient) -> WorkflowResult:
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        # the socket feeds the job's own tracker (thread-safe), so a fallback continues from it
        ws.watch(job.prompt_id, job.workflow, tracker=job.tracker)
        put: Callable[[str], Callable[[Any], None]] = lambda kind: lambda value: events.put((kind, value))  # noqa: E731
        heard = _Heard(self.clock)
        subscriptions = [
            ws.on_message(heard),
            ws.on_progress(put("progress"), job.prompt_id),
            ws.on_completion(put("completion"), job.prompt_id),
            ws.on_error(put("error"), job.prompt_id),
            ws.on_preview(put("preview"), job.prompt_id),
            ws.on_connection(put("connection")),
        ]
        try:
            job.submit_in_background(self._submit_executor(), ws.client_id)
            self.log.info("comfyui prompt %s submitted to %s, following over WebSocket", job.prompt_id, self.server_url)
            return self._follow_loop(job, events, heard)
        finally:
            for unsubscribe in subscriptions:
                unsubscribe()
            ws.unwatch(job.prompt_id)

    def _follow_loop(self, job: PromptJob, events: queue.Queue[tuple[str, Any]], heard: _Heard) -> WorkflowResult:
        schedule = ProbeSchedule(job.probe_times, self.clock.monotonic() + job.probe_times.healthy_s)
        forced = False
        while True:
            job.check_stop()
            job.take_reply()
            wait = job.deadline.cap(max(0.0, min(self.settings.wait_slice, schedule.wait(self.clock.monotonic()))))
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
            elif kind == "preview":
                self._on_preview(job, value)
            elif kind == "connection" and value.kind in ("disconnected", "reconnected"):
                # events sent while the socket is away are lost: history tells what happens meanwhile,
                # at once and then often while it is down (see probe_schedule)
                (schedule.down if value.kind == "disconnected" else schedule.up)(self.clock.monotonic())
                if value.kind == "disconnected":
                    job.tracker.stream_gap()
                forced = True
            # no look while the POST is in flight: the pod may not know the prompt yet
            if job.submitting is None:
                result, forced = self._look(job, heard, schedule, forced)
                if result is not None:
                    return result
            job.tick()

    def _look(self, job: PromptJob, heard: _Heard, schedule: ProbeSchedule, forced: bool) -> tuple[WorkflowResult | None, bool]:
        """A look at the pod while the socket is followed, only when the socket may have missed
        something; returns (a result or None, still forced).

        After a drop or a reconnect (``forced``) events were lost: history is asked on the
        schedule (at once, then often while the socket is down). A queued prompt hears nothing
        of its own until it starts, but every socket hears the pod's queue change (``status``):
        its position is read again then, from the process's ``/queue`` read shared by all its
        jobs on the pod. A running prompt on a connected socket is looked up only after the
        socket was silent for ``healthy_s`` (a deaf socket): a healthy socket costs no request."""
        now = self.clock.monotonic()
        if job.tracker.state().status is JobStatus.QUEUED and schedule.connected and not forced:
            if schedule.due(now):
                schedule.probed(now, None)  # the schedule moves on, or every wait computed from it would be 0
            return self._queued_look(job, heard, now), False
        if not schedule.due(now):
            return None, forced
        deaf = now - heard.at >= job.probe_times.healthy_s
        result = self._safety_probe(job) if forced or not schedule.connected or deaf else None
        schedule.probed(self.clock.monotonic(), job.tracker.state().eta_s)
        return result, False

    def _queued_look(self, job: PromptJob, heard: _Heard, now: float) -> WorkflowResult | None:
        submitted_at = job.submitted_at if job.submitted_at is not None else now
        if now - submitted_at < self.settings.queued_probe_delay:
            return None  # most prompts start at once: a first look only for one that did not
        seen = job.queue_seen_at
        if seen is not None and now - seen < self.settings.queued_refresh_interval:
            if heard.queue_changed_at <= seen:
                return None  # nothing changed since our last look
            if now - heard.queue_changed_at < self.settings.queued_probe_delay:
                return None  # changed just now: our own start, if it is that, comes on the socket first
        try:
            snapshot, read_at = self.shared.queue(max_age=self.settings.queue_read_interval)
        except (TransportError, HTTPStatusError) as exc:
            self.log.warning("comfyui queue read for prompt %s failed (still following the WebSocket): %s", job.prompt_id, exc)
            job.queue_seen_at = now  # try again at the next change or refresh
            return None
        if read_at < submitted_at:
            return None  # read before our prompt was there: a newer read comes within queue_read_interval
        job.queue_seen_at = read_at
        if job.prompt_id in snapshot.pending:
            job.missing = 0
            job.tracker.set_queue_position(snapshot.position(job.prompt_id))
            job.publish()
            return None
        if job.tracker.state().status is not JobStatus.QUEUED:
            return None  # the socket saw it start meanwhile
        if job.prompt_id in snapshot.running:
            job.tracker.apply(p.ExecutionStartData(job.prompt_id))  # started unheard: a silent socket is probed from now on
            job.publish()
            return None
        return self._safety_probe(job)  # finished unheard, or lost: history knows

    def _on_preview(self, job: PromptJob, frame: p.PreviewImage | p.PreviewImageWithMetadata) -> None:
        state = job.tracker.state()
        node_id = frame.node_id if isinstance(frame, p.PreviewImageWithMetadata) and frame.node_id else state.current_node_id
        job.events.preview(Preview(job.prompt_id, frame.image, frame.format, node_id, state.node_value, state.node_max))

    def _safety_probe(self, job: PromptJob) -> WorkflowResult | None:
        """:meth:`PromptJob.probe` while the socket is followed: a REST failure is logged, not fatal.

        The probe only covers for a deaf or reconnected socket; failing the job because /history
        hiccuped while the socket works would turn a safety net into a new way to fail. A broken
        pod still ends the job: its socket drops, and REST polling has its own failure limit."""
        try:
            return job.probe()
        except (TransportError, HTTPStatusError) as exc:
            self.log.warning("comfyui history probe for prompt %s failed (still following the WebSocket): %s", job.prompt_id, exc)
            return None

    def _on_completion(self, job: PromptJob, completion: PromptCompletion) -> WorkflowResult:
        if job.cancel.is_set():
            raise job.cancelled()
        message = completion.message
        if isinstance(message, p.ExecutionErrorData):
            job.end(JobStatus.FAILED)
            raise ExecutionError.from_event(message)
        if isinstance(message, p.ExecutionInterruptedData):
            job.end(JobStatus.INTERRUPTED)
            raise PromptInterruptedError.from_event(message)
        # success, or the final `executing` alone: history is the judge (written just after)
        confirm = Deadline(self.clock, self.settings.history_confirm_timeout)
        delay = 0.005  # ComfyUI writes history just after execution_success: look again soon, then less often
        while True:
            entry = job.history_or_none()
            if entry is not None:
                return job.finish(entry)
            if confirm.expired():
                raise PromptNotFoundError(
                    f"prompt {job.prompt_id} completed on the WebSocket but has no history entry after "
                    f"{self.settings.history_confirm_timeout:g} s (deleted, or the server restarted)",
                    prompt_id=job.prompt_id,
                )
            job.check_stop()
            self.clock.sleep(confirm.cap(delay), job.cancel)
            delay = min(delay * 2, self.settings.wait_slice)
