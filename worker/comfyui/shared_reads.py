"""``SharedReads``: what every job of a process asks one pod, asked once for all of them.

Before, each followed job sent its own health check, and each queued job its own ``GET /queue``
(about 0.94 KB per pending prompt, so 200 queued jobs read the whole queue 200 times). A pod's
health and queue are the same for every job, so one answer serves all the jobs that ask within
``max_age``: concurrent askers wait for the read in progress instead of sending their own. A
failed health check is never kept (the next job asks again), and any transport error seen on
the pod forgets a good one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from worker.comfyui.clock import Clock
from worker.comfyui.rest_client import HealthReport, QueueSnapshot

__all__ = ["SharedReads"]

T = TypeVar("T")


class _Shared(Generic[T]):
    """One value, read by at most one caller at a time, kept ``max_age`` seconds."""

    def __init__(self, clock: Clock, read: Callable[[], T], keep: Callable[[T], bool] = lambda value: True) -> None:
        self._clock = clock
        self._read = read
        self._keep = keep
        self._lock = threading.Lock()
        self._value: T | None = None
        self._at = 0.0

    def get(self, max_age: float) -> tuple[T, float]:
        """The value and when it was read (monotonic: when its request was sent)."""
        # the lock is held while reading: concurrent askers wait for that answer (bounded by the
        # request's own timeouts) instead of sending the same request
        with self._lock:
            if self._value is not None and self._clock.monotonic() - self._at < max_age:
                return self._value, self._at
            asked_at = self._clock.monotonic()
            value = self._read()
            if self._keep(value):
                self._value, self._at = value, asked_at
            else:
                self._value = None
            return value, asked_at

    def forget(self) -> None:
        with self._lock:
            self._value = None

    def put(self, value: T) -> None:
        """A value learnt another way, kept as if just read."""
        with self._lock:
            self._value, self._at = value, self._clock.monotonic()


class SharedReads:
    """Health and ``/queue`` of one pod, shared by every job of the process on that pod."""

    def __init__(
        self,
        clock: Clock,
        health: Callable[[], HealthReport],
        queue: Callable[[], QueueSnapshot],
        *,
        health_max_age: float = 10.0,
    ) -> None:
        self.health_max_age = health_max_age
        self._health = _Shared(clock, health, keep=lambda report: report.ok)
        self._queue = _Shared(clock, queue)

    def health(self) -> HealthReport:
        return self._health.get(self.health_max_age)[0]

    def queue(self, max_age: float) -> tuple[QueueSnapshot, float]:
        """A ``/queue`` snapshot at most ``max_age`` seconds old, and when it was asked for
        (monotonic): a caller that needs a snapshot newer than some event compares the two."""
        return self._queue.get(max_age)

    def pod_answered(self) -> None:
        """The pod just answered a ComfyUI request (e.g. the load check before a job): that is
        as good as a health check, and saves the job one."""
        self._health.put(HealthReport(True, "ok: answered a request just now"))

    def pod_failed(self) -> None:
        """A transport error on this pod: the next job checks its health again."""
        self._health.forget()
        self._queue.forget()
