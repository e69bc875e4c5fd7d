"""Injectable time: a monotonic clock, a wall clock, and a wait that can be cancelled.

Everything that waits in this project waits through a :class:`Clock`, so tests can run on a
:class:`FakeClock` in microseconds and every wait can be cut short by a cancel event.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

__all__ = ["Clock", "Deadline", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for durations and deadlines)."""
        ...

    def time(self) -> float:
        """Wall-clock seconds since the epoch (for timestamps shown to people)."""
        ...

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        """Wait ``seconds``; return True at once if ``cancel`` is (or becomes) set."""
        ...


class SystemClock:
    """The real clock. A cancellable sleep is ``Event.wait``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        if cancel is None:
            if seconds > 0:
                time.sleep(seconds)
            return False
        return cancel.wait(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when told to (or when someone sleeps on it).

    ``sleep`` advances time instantly, which turns retry loops and throttles into fast,
    deterministic unit tests. Thread-safe.
    """

    def __init__(self, start: float = 1000.0, wall_start: float = 1_800_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_start - start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def time(self) -> float:
        with self._lock:
            return self._now + self._wall_offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        if cancel is not None and cancel.is_set():
            return True
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)
        return cancel is not None and cancel.is_set()


class Deadline:
    """One deadline shared by the steps of a multi-step wait (connect, handshake, first frame …)."""

    def __init__(self, clock: Clock, seconds: float | None) -> None:
        self._clock = clock
        self.seconds = seconds
        self._end = None if seconds is None else clock.monotonic() + seconds

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None when there is no deadline."""
        if self._end is None:
            return None
        return max(0.0, self._end - self._clock.monotonic())

    def expired(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0.0

    def cap(self, seconds: float) -> float:
        """``seconds`` or what is left of the deadline, whichever is smaller."""
        remaining = self.remaining()
        return seconds if remaining is None else min(seconds, remaining)
