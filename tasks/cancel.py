"""Cancelling a running task, and why it was cancelled.

Celery delivers both the soft time limit and ``revoke(terminate=True, signal="SIGUSR1")`` as the
same SIGUSR1 to the pool process; they must end differently (FAILURE ``timeout`` vs REVOKED). The
signal handler records a :class:`CancelReason` next to the cancel event, decided by the task's
:class:`TimeLimit`; the task reads the reason instead of guessing from the elapsed time. Other
ways to cancel (a cancel flag in Redis, a web request) set their own reason the same way.
"""

from __future__ import annotations

import contextlib
import enum
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["CancelReason", "Cancellation", "TimeLimit", "cancel_on_sigusr1"]


class CancelReason(enum.Enum):
    REVOKED = "revoked"
    TIME_LIMIT = "time_limit"


@dataclass(frozen=True)
class TimeLimit:
    """The task's soft time limit, counted from when the task body started.

    Celery starts its own timer when the pool accepts the job, a little before the body runs,
    so its SIGUSR1 can come up to that start-up lag before ``seconds`` of the body have passed:
    ``startup_allowance`` covers it (never more than half the limit).
    """

    seconds: float
    started: float = field(default_factory=time.monotonic)
    startup_allowance: float = 1.0
    monotonic: Callable[[], float] = time.monotonic

    def reached(self) -> bool:
        allowance = min(self.startup_allowance, self.seconds / 2)
        return self.monotonic() - self.started >= self.seconds - allowance


class Cancellation:
    """The job's cancel event plus the reason of the first cancel (later ones do not change it)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: CancelReason | None = None
        self._lock = threading.Lock()

    def cancel(self, reason: CancelReason) -> None:
        with self._lock:
            if self.reason is None:
                self.reason = reason
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


@contextlib.contextmanager
def cancel_on_sigusr1(cancellation: Cancellation, limit: TimeLimit) -> Iterator[None]:
    """Turn SIGUSR1 into a cancel while the task runs (main thread of a pool process only):
    TIME_LIMIT once the soft limit is reached, REVOKED before."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGUSR1"):
        yield
        return

    def handler(signum: int, frame: object) -> None:
        cancellation.cancel(CancelReason.TIME_LIMIT if limit.reached() else CancelReason.REVOKED)

    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)
