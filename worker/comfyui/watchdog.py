"""One thread per process that runs deadline callbacks: the body deadline of every HTTP read.

A ``threading.Timer`` per request starts a thread per request, on the hot path of every job a
worker follows (hundreds at once in the threads pool). The watchdog keeps the pending deadlines
in a heap and sleeps on a condition until the earliest is due or a new earlier one arrives, so
arming and disarming a deadline costs a heap push and a flag, not a thread.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable

__all__ = ["Deadline", "Watchdog", "watchdog"]


class Deadline:
    """A scheduled callback; :meth:`cancel` before it is due means it never runs.

    Cancelling drops the callback at once: a cancelled deadline waits in the heap until its time,
    and must not keep alive what its callback refers to (a response, and so its socket)."""

    __slots__ = ("_callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self._callback = None

    def _fire(self) -> None:
        callback = self._callback
        if callback is not None:
            callback()


class Watchdog:
    """Runs each callback once its delay has passed, on one daemon thread started on first use.

    A callback must be quick (shutting a socket down): the next deadlines wait for it. One that
    raises is ignored, like a ``threading.Timer``'s would end only its own thread."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def schedule(self, seconds: float, callback: Callable[[], None]) -> Deadline:
        deadline = Deadline(callback)
        with self._wake:
            heapq.heappush(self._heap, (self._monotonic() + seconds, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():  # also after a fork: threads do not survive it
                self._thread = threading.Thread(target=self._run, name="comfyui-watchdog", daemon=True)
                self._thread.start()
            self._wake.notify()
        return deadline

    def pending(self) -> int:
        """Deadlines not yet due (cancelled ones included until their time comes)."""
        with self._wake:
            return len(self._heap)

    def close(self) -> None:
        """Stop the thread; pending deadlines never run (the process's own watchdog is never closed)."""
        with self._wake:
            self._closed = True
            self._heap.clear()
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join(1.0)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._closed and (not self._heap or self._heap[0][0] > self._monotonic()):
                    self._wake.wait(None if not self._heap else self._heap[0][0] - self._monotonic())
                if self._closed:
                    return
                _, _, due = heapq.heappop(self._heap)
            try:
                due._fire()
            except Exception:  # noqa: BLE001 - a broken callback must not stop every later deadline
                continue


_shared = Watchdog()


def watchdog() -> Watchdog:
    """The process's watchdog."""
    return _shared
