"""One job observer: what a job tells the world, and the one place that tells it.

A caller watches a job through :class:`JobObserver`, a base class whose hooks all do nothing
(middleware style: override the ones you need). The pod client never calls an observer
directly: it goes through :class:`JobEvents`, which

* isolates observers: one that raises is logged and the job goes on, and the other observers
  still hear the event (written once, here, instead of around every callback);
* owns "did progress change?": a state equal to the last one delivered is not delivered again,
  and with ``progress_interval`` at most one update per interval goes out (the final at once,
  the latest never lost: :class:`~worker.comfyui.throttle.Throttle`);
* counts the updates delivered: the ``progress_updates`` of the result.

Hooks run on the job's own thread, except ``on_connection_event``: the WebSocket's thread reports a
disconnect or reconnect the moment it happens (the job's thread may be waiting on a request).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from worker.comfyui import protocol as p
from worker.comfyui.clock import Clock
from worker.comfyui.progress import JobProgressState, JobStatus
from worker.comfyui.throttle import Throttle

if TYPE_CHECKING:
    from worker.comfyui.errors import ComfyUIError
    from worker.comfyui.eta import Observation
    from worker.comfyui.rest_client import SubmittedPrompt
    from worker.comfyui.results import WorkflowResult
    from worker.comfyui.websocket_client import ConnectionEvent

__all__ = ["FallbackEvent", "FallbackReason", "JobEvents", "JobFinished", "JobObserver", "Preview"]

FallbackReason = Literal["connection_failed", "timeout", "error"]
Method = Literal["websocket", "rest_polling"]
_FINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.INTERRUPTED, JobStatus.CANCELLED})


@dataclass(frozen=True)
class FallbackEvent:
    """The job left the WebSocket for REST polling, and why."""

    prompt_id: str
    reason: FallbackReason
    detail: str
    fallback_method: Literal["rest_polling"] = "rest_polling"


@dataclass(frozen=True)
class Preview:
    """A live preview image a node sent while the prompt ran (a binary WebSocket frame).

    ``format`` is sniffed from the bytes (the server's code is not trusted); ``node_id`` is the
    frame's own for metadata previews, else the node running when it came; ``step`` and
    ``step_max`` are that node's progress then (None when unknown)."""

    prompt_id: str
    image: bytes = field(repr=False)
    format: p.ImageFormat
    node_id: str | None
    step: float | None
    step_max: float | None


@dataclass(frozen=True)
class JobFinished:
    """How a job ended: exactly one of ``result`` and ``error`` is set."""

    prompt_id: str
    method: Method
    duration_s: float
    progress_updates: int
    result: WorkflowResult | None = None
    error: ComfyUIError | None = None
    #: after a success, each node's measured timing (what the fleet learns durations from)
    timings: tuple[Observation, ...] = ()


class JobObserver:
    """Hooks for one job; every default does nothing. Override what you need."""

    def on_submitted(self, submitted: SubmittedPrompt) -> None:
        """The pod accepted the prompt (not called when re-attaching to one already there)."""

    def on_progress(self, state: JobProgressState) -> None:
        """A changed progress state (throttled when the job asks for it)."""

    def on_connection_event(self, event: ConnectionEvent) -> None:
        """The job's WebSocket connected, disconnected, reconnected or failed."""

    def on_fallback(self, event: FallbackEvent) -> None:
        """The job continues by REST polling."""

    def on_preview(self, preview: Preview) -> None:
        """A live preview image (only on the WebSocket path)."""

    def on_tick(self) -> None:
        """Called at least every ``wait_slice`` seconds while the job waits."""

    def on_finished(self, finished: JobFinished) -> None:
        """The job ended (success or error); the last hook called."""


class JobEvents:
    """The single dispatcher from a job to its observers (see the module docstring)."""

    def __init__(
        self,
        observers: Iterable[JobObserver],
        *,
        clock: Clock,
        logger: logging.Logger,
        prompt_id: str,
        progress_interval: float = 0.0,
    ) -> None:
        self.observers = tuple(observers)
        self.prompt_id = prompt_id
        self._log = logger
        self._throttle: Throttle[JobProgressState] = Throttle(
            self._deliver, clock=clock, interval=progress_interval, same=lambda a, b: a.same_as(b)
        )

    @property
    def published(self) -> int:
        """Progress updates delivered to the observers so far."""
        return self._throttle.delivered

    def progress(self, state: JobProgressState) -> None:
        self._throttle.submit(state, final=state.status in _FINAL)

    def tick(self) -> None:
        self._throttle.poll()
        self._each("on_tick", lambda o: o.on_tick())

    def flush(self) -> None:
        self._throttle.flush()

    def submitted(self, submitted: SubmittedPrompt) -> None:
        self._each("on_submitted", lambda o: o.on_submitted(submitted))

    def connection(self, event: ConnectionEvent) -> None:
        self._each("on_connection_event", lambda o: o.on_connection_event(event))

    def fallback(self, event: FallbackEvent) -> None:
        self._each("on_fallback", lambda o: o.on_fallback(event))

    def preview(self, preview: Preview) -> None:
        self._each("on_preview", lambda o: o.on_preview(preview))

    def finished(self, finished: JobFinished) -> None:
        self._each("on_finished", lambda o: o.on_finished(finished))

    def _deliver(self, state: JobProgressState) -> None:
        self._each("on_progress", lambda o: o.on_progress(state))

    def _each(self, hook: str, call: Callable[[JobObserver], None]) -> None:
        for observer in self.observers:
            try:
                call(observer)
            except Exception:  # noqa: BLE001 - an observer never breaks a job (nor the other observers)
                self._log.exception("%s.%s failed for prompt %s (the job goes on)", type(observer).__name__, hook, self.prompt_id)
