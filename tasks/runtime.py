"""The per-process runtime of the task: the pod pool and analytics, built once per pool process.

Created lazily on the first task, after Celery's prefork pool forked: sessions and sockets are
never shared across a fork. Keyed by (pid, app) so two apps in one process (tests) keep their
own settings. Something a task needs once per process (a storage client, a webhook sender)
belongs here.
"""

from __future__ import annotations

import os
import threading

from celery import Celery

from config.settings import Settings
from config.wiring import media_pipeline, node_timings, pod_pool
from tasks.cancel_flags import cancel_sources
from worker.fleet.analytics import Analytics, make_sink
from worker.fleet.balance import Balancer
from worker.fleet.cancel_board import CancelBoard

__all__ = ["Runtime", "runtime"]


class Runtime:
    """Per-process state, created lazily after the pool forked."""

    def __init__(self, settings: Settings, celery: Celery | None = None) -> None:
        self.settings = settings
        self.pool = pod_pool(settings)
        self.media = media_pipeline(settings)
        #: the fleet's learned node durations (None: disabled, priors only)
        self.timings = node_timings(settings)
        #: pod choice by what this process has in flight, and the optional per-pod queue limit
        self.balancer = Balancer(self.pool, max_queued_per_pod=settings.max_queued_per_pod)
        #: one cancel event per running job, set from the revoked set and the cancel flags
        self.cancels = CancelBoard(cancel_sources(celery) if celery is not None else [])
        self.analytics = Analytics(
            make_sink(settings.analytics_sink, posthog_api_key=settings.posthog_api_key, posthog_host=settings.posthog_host)
        )


_runtimes: dict[tuple[int, int], Runtime] = {}
_runtimes_lock = threading.Lock()


def runtime(celery: Celery, settings: Settings) -> Runtime:
    key = (os.getpid(), id(celery))
    with _runtimes_lock:
        if key not in _runtimes:
            _runtimes[key] = Runtime(settings, celery)
        return _runtimes[key]
