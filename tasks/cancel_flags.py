"""Where a cancel is recorded, for :class:`worker.fleet.cancel_board.CancelBoard` to find it.

* the worker's revoked set: ``app.control.revoke(id)``, with or without ``terminate``, fills it
  in every worker process that hears the broadcast, before Celery tries (and, in the threads
  pool, fails) to kill anything. In the threads and gevent pools the jobs run in that process;
* a Redis flag ``comfy-cancel:<id>`` in the result backend: it reaches prefork children (whose
  revoked set is a copy from the fork) and every machine. ``ComfyClient.cancel`` sets it, so
  does :func:`request_cancel`, and each worker's main process mirrors its revoked set into it.
  The board reads every flag of the process's jobs in one ``MGET`` per 0.25 s round.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable
from typing import Any

from celery import Celery
from celery.worker import state as worker_state

from tasks.client import CANCEL_KEY
from worker.fleet.cancel_board import CancelSource

__all__ = ["CANCEL_KEY", "cancel_sources", "request_cancel", "start_revoked_mirror"]

log = logging.getLogger(__name__)

# CANCEL_KEY (tasks.client): the key ``ComfyClient.cancel`` sets and publishes on
#: a flag outlives any job that could still read it (the longest job, plus its retries, is far shorter)
FLAG_TTL_SECONDS = 7 * 24 * 3600


def _redis(celery: Celery) -> Any | None:
    """The result backend's Redis client, or None with another backend (flags then do nothing)."""
    client = getattr(celery.backend, "client", None)
    return client if client is not None and hasattr(client, "mget") else None


def request_cancel(celery: Celery, task_id: str) -> None:
    """Cancel a job wherever it runs: a flag every worker's jobs check, and a revoke broadcast
    (which also drops the message if no worker has started it)."""
    client = _redis(celery)
    if client is not None:
        client.set(CANCEL_KEY.format(task_id), b"1", ex=FLAG_TTL_SECONDS)
    celery.control.revoke(task_id)


def _revoked(ids: Collection[str]) -> Iterable[str]:
    return [task_id for task_id in ids if task_id in worker_state.revoked]


def cancel_sources(celery: Celery) -> list[CancelSource]:
    """The sources one process's jobs are checked against: the revoked set, then the flags
    (one ``MGET`` for all the process's jobs per round)."""
    client = _redis(celery)
    if client is None:
        return [_revoked]

    def flags(ids: Collection[str]) -> Iterable[str]:
        ordered = list(ids)
        values = client.mget([CANCEL_KEY.format(task_id) for task_id in ordered])
        return [task_id for task_id, value in zip(ordered, values, strict=True) if value is not None]

    return [_revoked, flags]


def start_revoked_mirror(celery: Celery, stop: threading.Event, interval: float = 0.5) -> threading.Thread | None:
    """In the worker's main process: copy ids newly added to the revoked set into flags, so a
    ``revoke()`` also reaches jobs running in prefork children. None without a Redis backend."""
    client = _redis(celery)
    if client is None:
        return None

    def mirror() -> None:
        seen: set[str] = set(worker_state.revoked)
        while not stop.wait(interval):
            try:
                new = [task_id for task_id in list(worker_state.revoked) if task_id not in seen]
                if new:
                    with client.pipeline() as pipe:
                        for task_id in new:
                            pipe.set(CANCEL_KEY.format(task_id), b"1", ex=FLAG_TTL_SECONDS)
                        pipe.execute()
                    seen.update(new)
            except Exception as exc:  # noqa: BLE001 - Redis away: the next round tries again
                log.warning("could not mirror revoked tasks into cancel flags: %s", exc)

    thread = threading.Thread(target=mirror, name="revoked-mirror", daemon=True)
    thread.start()
    return thread
