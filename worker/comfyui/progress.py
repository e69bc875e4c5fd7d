"""Job progress from ComfyUI's events: a real, monotonic 0 to 100 %.

The naive formula — sum(value) / sum(max) over the nodes of the latest ``progress_state`` —
jumps around because a snapshot lists only the nodes that have *started*: on the traced
txt2img run it reads 0 %, 100 % after the first node, then 50 %, 67 % … Here the denominator is
fixed when the job starts: every node of the submitted graph minus the cached ones, each with
a weight (a node with a numeric ``steps`` input weighs its steps, the others 1). A node not yet
started counts as 0 of its weight. Progress never decreases, stays below 100 until completion
is confirmed, and is exactly 100 at success.

Servers without ``progress_state`` (before 0.3.45) get the same result from ``executing``,
``progress`` and ``executed``.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from typing import Any, Literal

from worker.comfyui import protocol as p
from worker.comfyui.clock import Clock
from worker.comfyui.eta import Estimate, EtaEstimator, Observation
from worker.comfyui.node_costs import DurationModel

__all__ = ["JobProgressState", "JobStatus", "ProgressTracker", "naive_progress", "node_weights"]

#: Progress shown while the job runs never reaches 100: that is reserved for confirmed success.
RUNNING_CAP = 99.9


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class JobProgressState:
    """What a poller sees about one prompt."""

    prompt_id: str
    progress: float
    status: JobStatus
    current_node_id: str | None = None
    current_node_type: str | None = None
    node_value: float | None = None
    node_max: float | None = None
    nodes_done: int = 0
    nodes_total: int = 0
    queue_position: int | None = None
    method: str = "websocket"
    updated_at: float = 0.0
    #: seconds left by the time estimate (None: not running, or unknown)
    eta_s: float | None = None
    #: seconds since the prompt started running on the pod (None: not started)
    elapsed_s: float | None = None
    #: seconds the prompt waited in the pod's queue (so far, while queued)
    queued_s: float | None = None

    def same_as(self, other: JobProgressState | None) -> bool:
        """Equal in everything but the clocks: the throttle's notion of 'no change' (time passing
        alone is not news; progress that moved with it is)."""
        return other is not None and self._untimed() == other._untimed()

    def _untimed(self) -> JobProgressState:
        return replace(self, updated_at=0.0, eta_s=None, elapsed_s=None, queued_s=None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = self.status.value
        data["progress"] = round(self.progress, 1)
        for key in ("eta_s", "elapsed_s", "queued_s"):
            data[key] = None if data[key] is None else round(data[key], 1)
        return data


def node_weights(workflow: Mapping[str, Any], overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """A weight per node id: ``overrides`` by node id or class type, else ``steps`` if numeric, else 1."""
    overrides = overrides or {}
    weights: dict[str, float] = {}
    for node_id, raw in workflow.items():
        node = raw if isinstance(raw, dict) else {}
        class_type = node.get("class_type")
        if node_id in overrides:
            weights[node_id] = float(overrides[node_id])
            continue
        if isinstance(class_type, str) and class_type in overrides:
            weights[node_id] = float(overrides[class_type])
            continue
        steps = (node.get("inputs") or {}).get("steps")
        weights[node_id] = float(steps) if isinstance(steps, int | float) and not isinstance(steps, bool) and steps > 0 else 1.0
    return weights


def naive_progress(snapshot: p.ProgressStateMessageData) -> float:
    """The seed's formula, kept for comparison in reports and tests: not monotonic."""
    total = sum(float(n.max) for n in snapshot.nodes.values())
    return 100.0 * sum(float(n.value) for n in snapshot.nodes.values()) / total if total else 0.0


def _fraction(value: float, maximum: float) -> float:
    if maximum <= 0:
        return 0.0
    return min(1.0, max(0.0, value / maximum))


class ProgressTracker:
    """Folds one prompt's events into a :class:`JobProgressState`. Pure: no I/O, injected clock.

    ``estimate="time"`` (the default) shows the elapsed share of the estimated run time
    (:mod:`worker.comfyui.eta`, with ``durations`` learned on the fleet, else priors), so it
    moves with time, also between events; ``"steps"`` the step-weighted fraction of the graph.
    Either way the value shown is monotonic, below 100 until success and exactly 100 at success.

    Thread-safe: a WebSocket thread may feed it while the job's thread reads and completes it.
    """

    def __init__(
        self,
        prompt_id: str,
        workflow: Mapping[str, Any],
        *,
        clock: Clock,
        method: str = "websocket",
        weights: Mapping[str, float] | None = None,
        durations: DurationModel | None = None,
        estimate: Literal["time", "steps"] = "time",
    ) -> None:
        self.prompt_id = prompt_id
        self.method = method
        self._clock = clock
        self._estimate = estimate
        self._eta = EtaEstimator(prompt_id, workflow, durations)
        self._types = {k: str(v.get("class_type")) for k, v in workflow.items() if isinstance(v, dict)}
        self._weights = node_weights(workflow, weights)
        self._fraction: dict[str, float] = {}
        self._cached: set[str] = set()
        self._finished: set[str] = set()
        self._status = JobStatus.QUEUED
        self._progress = 0.0
        self._raw_progress: float | None = None  # the time estimate at the last look (see _glide)
        self._current: str | None = None
        self._node_value: float | None = None
        self._node_max: float | None = None
        self._queue_position: int | None = None
        self._seen_progress_state = False
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ inputs

    def apply(self, message: p.ComfyUIMessage) -> bool:
        """Fold one message in; messages of other prompts are ignored. True if anything changed."""
        with self._lock:
            before = self.state(stamp=False)
            self._eta.apply(message, self._clock.monotonic())
            self._apply(message)
            return not self.state(stamp=False).same_as(before)

    def submitted(self) -> None:
        """The prompt is being submitted: its queue wait starts."""
        with self._lock:
            self._eta.submitted(self._clock.monotonic())

    def _apply(self, message: p.ComfyUIMessage) -> None:
        if isinstance(message, p.ExecutingData) and message.is_reconnect_replay:
            # ``{"node": id}`` after a reconnect: only sent for the prompt running under our client id
            if self._status in (JobStatus.QUEUED, JobStatus.RUNNING):
                self._start_node(message.node)
            return
        if getattr(message, "prompt_id", None) != self.prompt_id:
            return
        match message:
            case p.ExecutionStartData():
                self._set_running()
            case p.ExecutionCachedData():
                self._set_running()
                self._cached.update(n for n in message.nodes if n in self._weights)
            case p.ProgressStateMessageData():
                self._on_progress_state(message)
            case p.ProgressData():
                self._on_progress(message)
            case p.ExecutingData():
                self._on_executing(message)
            case p.ExecutedMessageData():
                self._finish(message.node)
            case p.ExecutionErrorData() if message.is_fatal:
                self._status = JobStatus.FAILED
            case p.ExecutionInterruptedData():
                self._status = JobStatus.INTERRUPTED
            case _:
                pass  # no bearing on progress (status, logs, success: history decides that)
        self._recompute()

    def _on_progress_state(self, message: p.ProgressStateMessageData) -> None:
        self._set_running()
        self._seen_progress_state = True
        for node_id, node in message.nodes.items():
            if node_id not in self._weights:
                continue
            if node.state == "finished":
                self._finish(node_id)
            else:
                self._raise(node_id, _fraction(float(node.value), float(node.max)))
                self._current = node_id
                self._node_value, self._node_max = float(node.value), float(node.max)

    def _on_progress(self, message: p.ProgressData) -> None:
        self._set_running()
        reporting = message.node or self._current
        if reporting is not None and reporting in self._weights:
            self._raise(reporting, _fraction(float(message.value), float(message.max)))
            self._current = reporting
        self._node_value, self._node_max = float(message.value), float(message.max)

    def _on_executing(self, message: p.ExecutingData) -> None:
        self._set_running()
        if message.node is None:
            for node_id in self._weights:
                if node_id not in self._cached:
                    self._finish(node_id)
            self._current = None
            self._node_value = self._node_max = None
            return
        if not self._seen_progress_state and self._current is not None and self._current != message.node:
            self._finish(self._current)  # older servers: the next node starting ends the previous one
        self._start_node(message.node)

    def _start_node(self, node_id: str | None) -> None:
        self._set_running()
        if node_id is not None and node_id != self._current:
            self._current = node_id
            self._node_value, self._node_max = None, None

    def _set_running(self) -> None:
        if self._status is JobStatus.QUEUED:
            self._status = JobStatus.RUNNING
            self._queue_position = None

    def _raise(self, node_id: str, fraction: float) -> None:
        self._fraction[node_id] = max(self._fraction.get(node_id, 0.0), fraction)

    def _finish(self, node_id: str) -> None:
        if node_id in self._weights:
            self._fraction[node_id] = 1.0
            self._finished.add(node_id)

    def _recompute(self) -> None:
        if self._status is JobStatus.COMPLETED:
            return
        if self._estimate == "time":
            if self._status is not JobStatus.RUNNING or self._eta.started_at is None:
                return  # queued: 0; failed or interrupted: where it stopped
            raw = self._glide(self._eta.estimate(self._clock.monotonic()))
        else:
            live = [n for n in self._weights if n not in self._cached]
            total = sum(self._weights[n] for n in live)
            done = sum(self._weights[n] * self._fraction.get(n, 0.0) for n in live)
            raw = 100.0 * done / total if total else 0.0
        self._progress = max(self._progress, min(raw, RUNNING_CAP))

    def _glide(self, estimate: Estimate) -> float:
        """The shown value for a time estimate: the estimate, or more when it was revised down.

        A plain ``max(shown, estimate)`` freezes the bar whenever the estimate learns the run is
        longer than it thought (a first run on priors meets a sampler slower than they say: the
        bar sat at 78.6 % for 7 of 10 steps). Instead the bar's unfilled part shrinks by the
        factor the estimate's own unfilled part shrank since the last look. While the estimate
        holds that is the estimate itself (``1 - dt / eta_s`` either way); after a revision the
        bar goes on at the estimate's pace from where it is, never faster, so a node running
        past its expected end (whose ``eta_s`` stops counting down) does not rush it to 99.9."""
        before, self._raw_progress = self._raw_progress, estimate.progress
        if before is None or before >= 100.0 or estimate.progress <= before:
            return estimate.progress  # the first look, or no headway: the caller keeps what is shown
        shrink = (100.0 - estimate.progress) / (100.0 - before)
        return max(estimate.progress, 100.0 - (100.0 - self._progress) * shrink)

    def set_queue_position(self, position: int | None) -> None:
        """From ``GET /queue`` (0 = next to run); only meaningful while queued."""
        with self._lock:
            if self._status is JobStatus.QUEUED:
                self._queue_position = position

    def complete(self) -> None:
        """Success confirmed (history says so): exactly 100 %."""
        with self._lock:
            self._eta.finished(self._clock.monotonic())
            self._status = JobStatus.COMPLETED
            self._progress = 100.0
            self._finished.update(n for n in self._weights if n not in self._cached)
            self._current = None
            self._node_value = self._node_max = None

    def end(self, status: JobStatus) -> None:
        """The job ended otherwise (failed, interrupted, cancelled): progress stays where it was."""
        with self._lock:
            if self._status is not JobStatus.COMPLETED:
                self._status = status

    def set_method(self, method: str) -> None:
        """``rest_polling``: no more events; the time estimate counts down from where it is."""
        with self._lock:
            self.method = method
            if method == "rest_polling":
                self._eta.blind(self._clock.monotonic())

    def stream_gap(self) -> None:
        """The socket dropped: events are lost until it is back (the time estimate goes on, but
        the nodes running now are not learned from)."""
        with self._lock:
            self._eta.gap()

    def observations(self) -> list[Observation]:
        """The measured node timings, for the fleet to learn from (after success)."""
        with self._lock:
            return self._eta.observations()

    # ------------------------------------------------------------------ output

    @property
    def status(self) -> JobStatus:
        return self._status

    def state(self, *, stamp: bool = True) -> JobProgressState:
        with self._lock:
            self._recompute()  # time moves progress between events too
            return self._snapshot(stamp)

    def _snapshot(self, stamp: bool) -> JobProgressState:
        live = [n for n in self._weights if n not in self._cached]
        timing = self._eta.estimate(self._clock.monotonic())
        return JobProgressState(
            prompt_id=self.prompt_id,
            progress=self._progress,
            status=self._status,
            current_node_id=self._current,
            current_node_type=self._types.get(self._current) if self._current else None,
            node_value=self._node_value,
            node_max=self._node_max,
            nodes_done=sum(1 for n in live if n in self._finished),
            nodes_total=len(live),
            queue_position=self._queue_position,
            method=self.method,
            updated_at=self._clock.time() if stamp else 0.0,
            eta_s=timing.eta_s if self._status in (JobStatus.RUNNING, JobStatus.COMPLETED) else None,
            elapsed_s=timing.elapsed_s,
            queued_s=timing.queued_s,
        )
