"""Progress as a time estimate: how much of the run has elapsed, and how many seconds are left.

Weighing a sampler by its steps and every other node as 1 reads 33 % while a cold checkpoint is
still loading and sits at 75 % while the VAE decodes. Here progress is ``elapsed / (elapsed +
remaining)``, where *remaining* is an estimate in seconds:

* the running node: a sampler is timed **live** once it has reported two steps (steps are
  regular, so ``(max - k) x`` the measured step time is close); before that, and for a node
  without steps, its expected duration minus the time it has already run;
* every node still to run: its expected duration from a :class:`DurationModel` (durations the
  fleet learned for its class and cost-driving inputs, else priors, see ``node_costs``). Prior
  figures are scaled by how fast this pod ran the prior-estimated nodes of this job so far.

Pure: no clock, no I/O. The caller passes each event's arrival time and ``now``; the
:class:`ProgressTracker` keeps the shown value monotonic and below 100 until success.
:meth:`EtaEstimator.observations` gives the measured node timings back for the fleet to learn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from worker.comfyui import protocol as p
from worker.comfyui.node_costs import DurationModel, NodeCost, NodeSpec, PriorDurations, node_specs

__all__ = ["Estimate", "EtaEstimator", "Observation"]

#: a node past its expected duration is still given this share of it as remaining (it is running)
_OVERDUE_SHARE = 0.1
#: pseudo-seconds that keep the speed factor near 1 until real prior-estimated work was timed
_SPEED_PRIOR_S = 1.0


@dataclass(frozen=True, slots=True)
class Estimate:
    """``progress`` 0-100 (not yet made monotonic); seconds are None while unknown."""

    progress: float
    eta_s: float | None
    elapsed_s: float | None
    queued_s: float | None


@dataclass(frozen=True, slots=True)
class Observation:
    """One node's measured timing: what the fleet learns from (see ``NodeCost``)."""

    spec: NodeSpec
    duration_s: float
    fixed_s: float
    per_step_s: float | None  # None: fewer than two steps were seen
    steps: int


class _NodeRun:
    __slots__ = ("end", "first_step", "last_step", "maximum", "start", "tainted")

    def __init__(self, start: float) -> None:
        self.start = start
        #: seen across a gap in the events (a reconnect): its times are not its own, never learned
        self.tainted = False
        self.end: float | None = None
        self.first_step: tuple[float, float] | None = None  # (step, time)
        self.last_step: tuple[float, float] | None = None
        self.maximum = 0.0

    def step(self, value: float, maximum: float, at: float) -> None:
        if value <= 0 or (self.last_step is not None and value <= self.last_step[0]):
            return
        self.maximum = max(self.maximum, maximum)
        if self.first_step is None:
            self.first_step = (value, at)
        self.last_step = (value, at)

    def step_time(self) -> float | None:
        """Seconds per step measured between the first and the last step seen."""
        if self.first_step is None or self.last_step is None or self.last_step[0] <= self.first_step[0]:
            return None
        return (self.last_step[1] - self.first_step[1]) / (self.last_step[0] - self.first_step[0])


class EtaEstimator:
    """Folds one prompt's node timings into an :class:`Estimate`. Not thread-safe by itself."""

    def __init__(self, prompt_id: str, workflow: Mapping[str, Any], model: DurationModel | None = None) -> None:
        self.prompt_id = prompt_id
        self._workflow = workflow
        self._model: DurationModel = model or PriorDurations()
        self._specs: dict[str, NodeSpec] | None = None
        self._costs: dict[str, NodeCost] = {}
        self._runs: dict[str, _NodeRun] = {}
        self._current: str | None = None
        self.submitted_at: float | None = None
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._blind_at: float | None = None
        self._blind_rest: float | None = None

    # ------------------------------------------------------------------ events

    def submitted(self, at: float) -> None:
        if self.submitted_at is None:
            self.submitted_at = at

    def started(self, at: float) -> None:
        if self.started_at is None:
            self.started_at = at

    def cached(self, nodes: Iterable[str], at: float) -> None:
        """``execution_cached``: the nodes that will not run. Fixes which nodes are costed."""
        self.started(at)
        if self._specs is None:
            self._resolve(nodes)

    def node_started(self, node_id: str, at: float) -> None:
        self.started(at)
        self._resolve(())
        if self._current is not None and self._current != node_id:
            self.node_finished(self._current, at)  # servers without per-node 'finished' states
        if node_id not in self._runs:
            self._runs[node_id] = _NodeRun(at)
        if self._runs[node_id].end is None:
            self._current = node_id

    def node_step(self, node_id: str, value: float, maximum: float, at: float) -> None:
        if node_id not in self._runs:
            self.node_started(node_id, at)
        self._runs[node_id].step(value, maximum, at)

    def node_finished(self, node_id: str, at: float) -> None:
        run = self._runs.get(node_id)
        if run is None:
            self.node_started(node_id, at)
            run = self._runs[node_id]
        if run.end is None:
            run.end = at
        if self._current == node_id:
            self._current = None

    def finished(self, at: float) -> None:
        if self._current is not None:
            self.node_finished(self._current, at)
        if self.ended_at is None:
            self.ended_at = at

    def gap(self) -> None:
        """Events were lost (the socket dropped): the nodes running now are not timed truly."""
        for run in self._runs.values():
            if run.end is None:
                run.tainted = True

    def apply(self, message: p.ComfyUIMessage, at: float) -> None:
        """The same, read from one WebSocket message (other prompts' messages are ignored)."""
        if isinstance(message, p.ExecutingData) and message.is_reconnect_replay:
            if message.node is not None and self.started_at is not None:
                self.node_started(message.node, at)
                self._runs[message.node].tainted = True  # it started while we were away
            return
        if getattr(message, "prompt_id", None) != self.prompt_id:
            return
        if isinstance(message, p.ExecutionStartData):
            self.started(at)
        elif isinstance(message, p.ExecutionCachedData):
            self.cached(message.nodes, at)
        elif isinstance(message, p.ProgressStateMessageData):
            for node_id, node in message.nodes.items():
                if node.state == "finished":
                    if node_id in self._runs:
                        self.node_finished(node_id, at)
                elif node_id not in self._runs or self._runs[node_id].end is None:
                    self.node_step(node_id, float(node.value), float(node.max), at)
        elif isinstance(message, p.ProgressData) and message.node is not None:
            self.node_step(message.node, float(message.value), float(message.max), at)
        elif isinstance(message, p.ExecutingData):
            if message.node is None:
                self.finished(at)
            else:
                self.node_started(message.node, at)
        elif isinstance(message, p.ExecutionSuccessData):
            self.finished(at)

    # ------------------------------------------------------------------ estimate

    def _resolve(self, cached: Iterable[str]) -> None:
        if self._specs is None:
            self._specs = node_specs(self._workflow, cached)
            self._costs = self._expect(self._specs)

    def _expect(self, specs: Mapping[str, NodeSpec]) -> dict[str, NodeCost]:
        return {node_id: self._model.expect(spec) for node_id, spec in specs.items()}

    def estimate(self, now: float) -> Estimate:
        queued = None if self.submitted_at is None else max(0.0, (self.started_at or now) - self.submitted_at)
        if self.started_at is None:
            return Estimate(0.0, None, None, queued)
        end = self.ended_at if self.ended_at is not None else now
        elapsed = max(0.0, end - self.started_at)
        if self.ended_at is not None:
            return Estimate(100.0, 0.0, elapsed, queued)
        remaining = self.remaining(now)
        total = elapsed + remaining
        progress = 100.0 * elapsed / total if total > 0 else 0.0
        return Estimate(progress, remaining, elapsed, queued)

    def blind(self, at: float) -> None:
        """No more events will come (REST polling): from here the estimate counts down in time
        from what it was, instead of waiting for nodes to report their start and end."""
        if self._blind_at is None:
            self._blind_at = at

    def remaining(self, now: float) -> float:
        """Seconds left: the running node's rest plus every node not yet started."""
        if self._blind_at is None or self.started_at is None:
            return self._remaining_at(now)
        since = max(self._blind_at, self.started_at)
        if self._blind_rest is None:
            self._blind_rest = self._remaining_at(since)
        return max(self._blind_rest - (now - since), _OVERDUE_SHARE * self._blind_rest)

    def _remaining_at(self, now: float) -> float:
        # before ``execution_cached`` says what is cached, a provisional guess: nothing is
        costs = self._costs if self._specs is not None else self._expect(node_specs(self._workflow))
        speed = self._speed()
        left = 0.0
        for node_id, cost in costs.items():
            run = self._runs.get(node_id)
            expected = cost.total_s if cost.learned else cost.total_s * speed
            if run is None:
                left += expected
            elif run.end is None:
                left += self._running_rest(run, cost, expected, now)
        return left

    def _running_rest(self, run: _NodeRun, cost: NodeCost, expected: float, now: float) -> float:
        if run.last_step is not None:
            step = run.step_time()
            if step is None:  # one step seen: the learned step time, else an upper bound
                step = cost.per_step_s if cost.learned and cost.per_step_s > 0 else (run.last_step[1] - run.start) / run.last_step[0]
            maximum = max(run.maximum, float(cost.steps))
            rest = (maximum - run.last_step[0]) * step - (now - run.last_step[1])
            return max(rest, _OVERDUE_SHARE * step)
        ran = now - run.start
        return max(expected - ran, _OVERDUE_SHARE * expected)

    def _speed(self) -> float:
        """How much slower (>1) or faster than the priors this pod ran the prior-costed nodes."""
        actual = expected = _SPEED_PRIOR_S
        for node_id, cost in self._costs.items():
            run = self._runs.get(node_id)
            if not cost.learned and run is not None and run.end is not None:
                actual += run.end - run.start
                expected += cost.total_s
        return actual / expected

    # ------------------------------------------------------------------ learning

    def observations(self) -> list[Observation]:
        """The timings of the nodes that ran to their end (call after success)."""
        found: list[Observation] = []
        for node_id, spec in (self._specs or {}).items():
            run = self._runs.get(node_id)
            if run is None or run.end is None or run.tainted:
                continue
            duration = max(0.0, run.end - run.start)
            step = run.step_time()
            steps = int(max(run.maximum, spec.steps))
            fixed = max(0.0, duration - step * steps) if step is not None else duration
            found.append(Observation(spec, duration, fixed, step, steps))
        return found
