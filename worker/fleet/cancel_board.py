"""``CancelBoard``: one cancel event per running job, set from wherever a cancel is recorded.

Signals reach a job only in a prefork child's main thread; in the threads (or gevent) pool a
``revoke(terminate=True)`` fails in Celery (``kill_job`` is not implemented) and the job ran
on to its own deadline. So a cancel is data, not a signal: every job registers here, and one
watcher thread per process asks every source, for all the process's jobs in one call, every
``interval`` seconds (the worker's revoked set; a shared store of cancel flags, which reaches
prefork children and other machines). A job checks its event within every wait slice, so a
cancel reaches it within ``interval`` plus one slice, whatever the pool.

The board knows no framework: sources are plain callables, given by the adapter layer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import contextmanager

from worker.comfyui.clock import Clock, SystemClock

__all__ = ["CancelBoard", "CancelSource"]

#: given the ids of the jobs running now, the ones to cancel (may raise: logged, retried next round)
CancelSource = Callable[[Collection[str]], Iterable[str]]


class CancelBoard:
    def __init__(
        self,
        sources: Iterable[CancelSource],
        *,
        interval: float = 0.25,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self._sources = list(sources)
        self._interval = interval
        self._clock = clock or SystemClock()
        self._log = logger or logging.getLogger(__name__)
        self._jobs: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def job(self, job_id: str, cancel: threading.Event | None = None) -> Iterator[threading.Event]:
        """Register ``job_id`` for the duration of the block; yields its cancel event.

        The sources are asked at once for a new job (a cancel recorded while it was queued in
        the broker stops it before it submits anything), then every ``interval``."""
        event = cancel or threading.Event()
        with self._lock:
            self._jobs[job_id] = event
            self._ensure_thread()
        try:
            self._check({job_id: event})
            yield event
        finally:
            with self._lock:
                if self._jobs.get(job_id) is event:
                    del self._jobs[job_id]

    def cancel(self, job_id: str) -> bool:
        """Cancel a registered job now (e.g. from a signal handler); False if it is not running here."""
        with self._lock:
            event = self._jobs.get(job_id)
        if event is not None:
            event.set()
        return event is not None

    def running(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)

    def _ensure_thread(self) -> None:
        # the caller holds the lock; a forked child starts its own thread (threads do not survive fork)
        if (self._thread is None or not self._thread.is_alive()) and not self._stopped.is_set():
            self._thread = threading.Thread(target=self._watch, name="cancel-board", daemon=True)
            self._thread.start()

    def _watch(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._interval)
            with self._lock:
                jobs = {job_id: event for job_id, event in self._jobs.items() if not event.is_set()}
            if jobs:
                self._check(jobs)

    def _check(self, jobs: dict[str, threading.Event]) -> None:
        for source in self._sources:
            try:
                hits = set(source(jobs.keys())) & jobs.keys()
            except Exception as exc:  # noqa: BLE001 - one failing source never stops the others
                name = getattr(source, "__name__", source)
                self._log.warning("cancel source %s failed (asked again in %.2g s): %s", name, self._interval, exc)
                continue
            for job_id in hits:
                if not jobs[job_id].is_set():
                    self._log.info("job %s: cancel requested", job_id)
                    jobs[job_id].set()
