"""``PromptJob``: the state of one prompt being followed on one pod, and what can be done to it.

The pod client decides the path (WebSocket, REST polling, a fallback between them); the job
holds what survives a fallback (the tracker, whether the prompt was submitted, the deadline,
the cancel event) and the steps every path shares: submit once, probe ``/history`` and
``/queue``, turn a history entry into a result or an error, stop on cancel or deadline (and
remove the prompt from the pod then). Every hook goes through the job's :class:`JobEvents`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from concurrent.futures import Executor, Future
from typing import Any, Literal

from worker.comfyui import protocol as p
from worker.comfyui.clock import Clock, Deadline
from worker.comfyui.errors import (
    ComfyUIError,
    HTTPStatusError,
    JobCancelledError,
    JobTimeoutError,
    PromptNotFoundError,
    TransportError,
    TransportTimeoutError,
)
from worker.comfyui.job_request import JobRequest, PodClientSettings
from worker.comfyui.observer import FallbackEvent, FallbackReason, JobEvents, JobFinished
from worker.comfyui.probe_schedule import ProbeTimes
from worker.comfyui.progress import JobStatus, ProgressTracker
from worker.comfyui.rest_client import ComfyUIRestClient, SubmittedPrompt
from worker.comfyui.results import WorkflowResult, check_result_size, error_from_history, files_from_outputs, history_outcome
from worker.comfyui.workflow import validate_workflow

#: How long a prompt that ended on its events waits for its ``POST /prompt`` reply (node_errors).
REPLY_GRACE_S = 0.25

__all__ = ["PromptJob"]


class PromptJob:
    """One prompt on one pod: its state and the steps every execution path shares."""

    def __init__(
        self,
        rest: ComfyUIRestClient,
        request: JobRequest,
        *,
        settings: PodClientSettings,
        events: JobEvents,
        cancel: threading.Event | None,
        clock: Clock,
        logger: logging.Logger,
    ) -> None:
        self.rest = rest
        self.settings = settings
        self.events = events
        self.clock = clock
        self.log = logger
        self.workflow = validate_workflow(request.workflow)
        self.prompt_id = events.prompt_id
        self.client_id = request.client_id or str(uuid.uuid4())
        self.extra_data = request.extra_data
        self.reattach = request.reattach
        self.cancel = cancel or threading.Event()
        self.deadline = Deadline(clock, request.timeout if request.timeout is not None else settings.job_timeout)
        self.submitted = not request.submit
        self.started = clock.monotonic()
        self.tracker = ProgressTracker(self.prompt_id, self.workflow, clock=clock, durations=request.durations)
        self.method: Literal["websocket", "rest_polling"] = "websocket"
        self.fallback_reason: str | None = None
        self.node_errors: dict[str, Any] = {}
        self.missing = 0
        #: the ``POST /prompt`` in flight on the WebSocket path (events may end the job before its reply)
        self.submitting: Future[SubmittedPrompt] | None = None
        #: stops that POST's retries and lost-reply recovery once the job is over (or cancelled)
        self.submit_cancel = threading.Event()
        self.probe_times = ProbeTimes(
            healthy_s=settings.history_probe_interval,
            down_min_s=min(settings.fault_probe_interval, settings.poll_interval),
            down_max_s=settings.poll_interval,
        )
        #: when the pod accepted the prompt (monotonic), and when the /queue snapshot this job last used was read
        self.submitted_at: float | None = None
        self.queue_seen_at: float | None = None

    @staticmethod
    def new_prompt_id(request: JobRequest) -> str:
        return request.prompt_id or str(uuid.uuid4())

    # ------------------------------------------------------------------ telling the observers

    def publish(self) -> None:
        self.events.progress(self.tracker.state())

    def tick(self) -> None:
        self.publish()  # the time estimate moves between events (unchanged states are not delivered)
        self.events.tick()

    def fall_back(self, reason: FallbackReason, error: ComfyUIError) -> None:
        self.fallback_reason = reason
        self.log.warning("comfyui prompt %s: WebSocket unusable (%s: %s), falling back to REST polling", self.prompt_id, reason, error)
        self.events.fallback(FallbackEvent(self.prompt_id, reason, str(error)))

    def finished(self, result: WorkflowResult | None, error: ComfyUIError | None) -> None:
        self.events.flush()
        duration = self.clock.monotonic() - self.started
        timings = tuple(self.tracker.observations()) if result is not None else ()
        self.events.finished(JobFinished(self.prompt_id, self.method, duration, self.events.published, result, error, timings))

    # ------------------------------------------------------------------ submitting

    def reattach_or_none(self) -> WorkflowResult | None:
        """With ``reattach``: a finished prompt gives its result (or error) now; a queued or
        running one is followed without a new submission."""
        if not self.reattach or self.submitted:
            return None
        entry = self.rest.get_history(self.prompt_id, cancel=self.cancel)
        if entry is not None:
            self.log.info("comfyui prompt %s already finished on %s: returning its result", self.prompt_id, self.rest.server_url)
            self.submitted = True
            return self.finish(entry)
        if self.rest.get_queue(cancel=self.cancel).contains(self.prompt_id):
            self.log.info("comfyui prompt %s already queued on %s: re-attaching", self.prompt_id, self.rest.server_url)
            self.submitted = True
            self.submitted_at = self.clock.monotonic()
        return None

    def submit(self, client_id: str | None) -> None:
        if self.submitting is not None:  # a fallback while the POST is in flight: its reply decides
            future, self.submitting = self.submitting, None
            self.accepted(future.result())
        if self.submitted:
            return
        self.check_stop()
        self.tracker.submitted()
        self.accepted(self.rest.queue_prompt(self.workflow, self.prompt_id, client_id, extra_data=self.extra_data, cancel=self.cancel))

    def submit_in_background(self, executor: Executor, client_id: str) -> None:
        """``POST /prompt`` on ``executor`` while the caller follows the socket, so a reply that
        comes after the prompt's end (a slow proxy) does not hold the result back: the prompt id
        is ours, and events carrying it are proof enough that the pod accepted it. Its error
        (validation, transport) still ends the job, through :meth:`take_reply`."""
        if self.submitted:
            return
        self.check_stop()
        self.tracker.submitted()
        self.submitting = executor.submit(
            self.rest.queue_prompt, self.workflow, self.prompt_id, client_id, extra_data=self.extra_data, cancel=self.submit_cancel
        )

    def take_reply(self) -> None:
        """The background POST's reply, once it is in (raises what ``queue_prompt`` raised)."""
        future = self.submitting
        if future is None or not future.done():
            return
        self.submitting = None
        self.accepted(future.result())

    def settle_reply(self) -> None:
        """A prompt that ended on its events may still have its ``POST /prompt`` reply in flight
        (our thread has not read it yet, or a slow proxy holds it). Only the reply carries
        ``node_errors`` (outputs ComfyUI dropped after a partial validation failure), so it gets
        :data:`REPLY_GRACE_S` to arrive; a reply later than that costs the result its
        ``node_errors``, never its latency beyond the grace."""
        future = self.submitting
        if future is None:
            return
        try:
            submitted = future.result(timeout=REPLY_GRACE_S)
        except TimeoutError:
            self.log.info("comfyui prompt %s ended before its POST /prompt reply: node_errors unknown", self.prompt_id)
            return
        except ComfyUIError as exc:  # the events proved the prompt ran: its result stands
            self.log.warning("comfyui prompt %s ran, but its POST /prompt reply failed: %s", self.prompt_id, exc)
            self.submitting = None
            return
        self.submitting = None
        self.accepted(submitted)

    def accepted(self, submitted: SubmittedPrompt) -> None:
        self.submitted = True
        self.submitted_at = self.clock.monotonic()
        self.node_errors = submitted.node_errors
        self.events.submitted(submitted)
        self.publish()

    # ------------------------------------------------------------------ REST polling

    def poll(self) -> WorkflowResult:
        """Follow the prompt by ``/history`` every ``poll_interval`` (submitting it first if needed)."""
        self.method = "rest_polling"
        self.tracker.set_method("rest_polling")
        self.submit(self.client_id)
        self.log.info(
            "comfyui prompt %s on %s: following by REST polling every %g s",
            self.prompt_id,
            self.rest.server_url,
            self.settings.poll_interval,
        )
        failures = 0
        while True:
            self.check_stop()
            try:
                result = self.probe()
                failures = 0
            except (TransportError, HTTPStatusError) as exc:
                failures += 1
                if failures > self.settings.max_poll_failures:
                    raise
                self.log.warning(
                    "comfyui poll %d/%d for prompt %s failed: %s", failures, self.settings.max_poll_failures, self.prompt_id, exc
                )
                result = None
            if result is not None:
                return result
            # after a fallback mid-job the end is watched closely as it nears; polling from the
            # start keeps its plain pace (and its request budget)
            mid_job = self.fallback_reason == "error"
            self.wait(self.probe_times.down_interval(self.tracker.state().eta_s) if mid_job else self.settings.poll_interval)

    def wait(self, seconds: float) -> None:
        end = self.clock.monotonic() + seconds
        while (left := end - self.clock.monotonic()) > 0:
            if self.clock.sleep(self.deadline.cap(min(left, self.settings.wait_slice)), self.cancel):
                return
            if self.deadline.expired():
                return
            self.tick()

    def history_or_none(self) -> dict[str, Any] | None:
        try:
            return self.rest.get_history(self.prompt_id, cancel=self.cancel)
        except (TransportError, HTTPStatusError) as exc:
            self.log.warning("comfyui history lookup for %s failed: %s", self.prompt_id, exc)
            return None

    def probe(self) -> WorkflowResult | None:
        """One look at /history, then /queue: a result, None (still going), or an error."""
        entry = self.rest.get_history(self.prompt_id, cancel=self.cancel)
        if entry is not None:
            return self.finish(entry)
        snapshot = self.rest.get_queue(cancel=self.cancel)
        if snapshot.contains(self.prompt_id):
            self.missing = 0
            if self.prompt_id in snapshot.running:
                self.tracker.apply(p.ExecutionStartData(self.prompt_id))
            else:
                self.tracker.set_queue_position(snapshot.position(self.prompt_id))
            self.publish()
            return None
        # not queued, not running, no history: finished just now, or lost. Look once more.
        entry = self.rest.get_history(self.prompt_id, cancel=self.cancel)
        if entry is not None:
            return self.finish(entry)
        self.missing += 1
        if self.missing >= self.settings.lost_prompt_checks:
            raise PromptNotFoundError(
                f"prompt {self.prompt_id} is neither queued nor in the history of {self.rest.server_url}: "
                "the server restarted or the prompt was deleted",
                prompt_id=self.prompt_id,
            )
        return None

    def finish(self, entry: Mapping[str, Any]) -> WorkflowResult:
        """The history entry decides: a result, or the error it records."""
        outcome = history_outcome(entry)
        if outcome != "success":
            self.end(JobStatus.INTERRUPTED if outcome == "interrupted" else JobStatus.FAILED)
            if self.cancel.is_set():
                raise self.cancelled()
            raise error_from_history(self.prompt_id, entry)
        self.settle_reply()
        self.tracker.complete()
        self.publish()
        outputs = entry.get("outputs") if isinstance(entry.get("outputs"), dict) else {}
        assert isinstance(outputs, dict)
        duration = self.clock.monotonic() - self.started
        self.log.info("comfyui prompt %s succeeded via %s in %.2f s", self.prompt_id, self.method, duration)
        self.events.flush()
        check_result_size(outputs)  # stored whole in the result backend: bounded before it is built
        return WorkflowResult(
            prompt_id=self.prompt_id,
            status="success",
            outputs=outputs,
            files=files_from_outputs(outputs),
            method=self.method,
            duration_s=round(duration, 3),
            progress_updates=self.events.published,
            server_url=self.rest.server_url,
            node_errors=self.node_errors,
            fallback_reason=self.fallback_reason,
        )

    # ------------------------------------------------------------------ stopping

    def end(self, status: JobStatus) -> None:
        self.tracker.end(status)
        self.publish()

    def cancelled(self) -> JobCancelledError:
        return JobCancelledError(f"prompt {self.prompt_id} was cancelled", prompt_id=self.prompt_id)

    def check_stop(self) -> None:
        if self.cancel.is_set():
            self.submit_cancel.set()
            self.abort("cancelled")
            self.end(JobStatus.CANCELLED)
            raise self.cancelled()
        if self.deadline.expired():
            self.abort("timed out")
            self.end(JobStatus.CANCELLED)
            raise JobTimeoutError(
                f"prompt {self.prompt_id} did not finish within {self.deadline.seconds:g} s",
                prompt_id=self.prompt_id,
                seconds=self.deadline.seconds,
            )

    def abort(self, why: str) -> None:
        """Best effort: delete a queued prompt, interrupt a running one (by its id only)."""
        if not self.submitted and self.submitting is None:
            return
        budget = Deadline(self.clock, self.settings.abort_timeout * 2)

        def limit() -> tuple[float, float]:
            left = budget.cap(self.settings.abort_timeout)
            if left <= 0:
                raise TransportTimeoutError(f"clean-up took over {budget.seconds:g} s", phase="request", seconds=budget.seconds)
            return (min(left, self.settings.http.connect_timeout), left)

        try:
            snapshot = self.rest.get_queue(timeout=limit())
            if self.prompt_id in snapshot.pending:
                self.rest.delete_queued([self.prompt_id], timeout=limit())
                snapshot = self.rest.get_queue(timeout=limit())
            if self.prompt_id in snapshot.running:
                self.rest.interrupt(self.prompt_id, timeout=limit())
            self.log.info("comfyui prompt %s %s: removed from the pod", self.prompt_id, why)
        except ComfyUIError as exc:  # HTTPStatusError included
            self.log.warning("comfyui prompt %s %s, but it could not be removed from the pod: %s", self.prompt_id, why, exc)
