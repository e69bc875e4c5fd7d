"""``Balancer``: even pod choice for many jobs starting at once, and an optional queue limit.

Least-loaded choice by each pod's own report goes wrong when many jobs start together: they all
read the same loads before any of them submitted (9 to 15 jobs went to pods that should have had
10 each). Here a choice is counted at once in what this process has in flight per pod, and a
pod's load is the larger of that and what the pod reported (read once per ``max_age`` for the
whole process, not once per job per pod: 20 pods made every job cost 20 requests).

``max_queued_per_pod`` bounds the prompts one pod holds waiting in ComfyUI's own queue; a job
finding no pod with room waits here, before anything was submitted, where a cancel costs
nothing and the next free pod, whichever it is, takes it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from worker.comfyui.clock import Clock, Deadline, SystemClock
from worker.comfyui.errors import ConnectionFailedError, JobCancelledError, JobTimeoutError
from worker.fleet.pods import PodConfig, PodPool

__all__ = ["Balancer"]


class Balancer:
    def __init__(
        self,
        pool: PodPool,
        *,
        max_age: float = 1.0,
        max_queued_per_pod: int | None = None,
        wait_slice: float = 0.1,
        clock: Clock | None = None,
        rng: Callable[[], float] = random.random,
        logger: logging.Logger | None = None,
    ) -> None:
        if max_queued_per_pod is not None and max_queued_per_pod < 0:
            raise ValueError("max_queued_per_pod must be >= 0")
        self.pool = pool
        self.max_age = max_age
        self.max_queued_per_pod = max_queued_per_pod
        self._slice = wait_slice
        self._clock = clock or SystemClock()
        self._rng = rng
        self._log = logger or logging.getLogger(__name__)
        self._ours = {pod.name: 0 for pod in pool.pods}
        self._reported: Sequence[int | None] = ()
        self._read_at: float | None = None
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    def in_flight(self) -> dict[str, int]:
        with self._lock:
            return dict(self._ours)

    @contextmanager
    def lease(
        self, pod: PodConfig | None = None, *, cancel: threading.Event | None = None, timeout: float | None = None
    ) -> Iterator[PodConfig]:
        """A pod for one job, counted in flight until the block ends: ``pod`` itself when given
        (a pinned pod, or the one that already has the prompt), else the least loaded with room."""
        chosen = pod if pod is not None else self._choose(cancel, Deadline(self._clock, timeout))
        if pod is not None:
            with self._lock:
                self._ours[pod.name] += 1
        try:
            yield chosen
        finally:
            with self._lock:
                self._ours[chosen.name] -= 1
                self._freed.notify_all()

    def _choose(self, cancel: threading.Event | None, deadline: Deadline) -> PodConfig:
        waited = False
        while True:
            if cancel is not None and cancel.is_set():
                raise JobCancelledError("cancelled while waiting for a pod with room in its queue")
            if deadline.expired():
                raise JobTimeoutError(
                    f"no pod had room for another prompt within {deadline.seconds:g} s (limit {self.max_queued_per_pod} waiting per pod)",
                    seconds=deadline.seconds,
                )
            reported = self._reported_loads()
            with self._lock:
                candidates = [
                    (max(load, self._ours[pod.name]), self._rng(), index)
                    for index, (pod, load) in enumerate(zip(self.pool.pods, reported, strict=True))
                    if load is not None
                ]
                if not candidates:
                    raise ConnectionFailedError(f"none of the {len(self.pool.pods)} ComfyUI pods answered")
                # one prompt runs; the others wait in the pod's queue
                room = [c for c in candidates if self.max_queued_per_pod is None or c[0] - 1 < self.max_queued_per_pod]
                if room:
                    pod = self.pool.pods[min(room)[2]]
                    self._ours[pod.name] += 1
                    if waited:
                        self._log.info("pod %s has room again: the job goes on", pod.name)
                    return pod
                if not waited:
                    self._log.info("every pod holds %s prompts waiting: the job waits for room", self.max_queued_per_pod)
                    waited = True
                self._freed.wait(deadline.cap(self._slice))

    def _reported_loads(self) -> Sequence[int | None]:
        """Each pod's queue_remaining, read at most once per ``max_age`` for the whole process."""
        if len(self.pool.pods) == 1:
            return (0,)  # one pod: nothing to choose, nothing to ask (the limit counts ours)
        with self._refresh_lock:  # one reader at a time; the others use what it read
            now = self._clock.monotonic()
            if self._read_at is None or now - self._read_at >= self.max_age:
                self._reported = self.pool.loads()
                self._read_at = self._clock.monotonic()
            return self._reported
