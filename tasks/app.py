"""The Celery application: ``celery -A tasks.app worker``.

Creating it reads the settings (a bad value stops the worker at start, naming the variable, in
one line) but connects to nothing: Celery's prefork pool forks after import.

Workers consume the configured queue (``COMFYUI_QUEUE``, ``comfyui``) *and* Celery's default
queue ``celery``: a web backend's plain ``Celery(broker=…).send_task("comfy.run_workflow", …)``
goes there, and a task nobody consumes would stay PENDING forever, silently.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

from celery import Celery, signals
from kombu import Queue

from config.settings import Settings, SettingsError
from tasks.cancel_flags import start_revoked_mirror
from tasks.priority import NEW_JOB_PRIORITY
from tasks.workflow import register

__all__ = ["CELERY_DEFAULT_QUEUE", "app", "create_app", "settings_of"]

#: Where ``send_task`` puts a task when neither the caller nor the app routes it.
CELERY_DEFAULT_QUEUE = "celery"

log = logging.getLogger(__name__)

#: seconds between the broker sweeps that restore a lost worker's jobs (one Redis scan each)
UNACKED_RESTORE_INTERVAL = 10


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    celery = Celery("comfy_celery", broker=settings.broker_url, backend=settings.result_backend, set_as_current=False)
    celery.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # A job is acknowledged only when it ended; a lost worker gets it redelivered (bounded by
        # max_retries, so a job that keeps crashing its worker cannot loop forever).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_retry_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # with Redis, new jobs behind retries: a retried job may have its prompt on a pod already
        # (tasks/priority.py)
        task_default_priority=NEW_JOB_PRIORITY if settings.broker_is_redis else None,
        task_soft_time_limit=settings.job_time_limit,
        task_time_limit=settings.job_hard_time_limit,
        task_track_started=True,
        worker_send_task_events=True,
        task_send_sent_event=True,
        # result_extended would rewrite the whole workflow into the backend on every progress tick
        result_extended=False,
        result_expires=settings.result_expires,
        task_default_queue=settings.default_queue,
        # consumed by a worker started without -Q: ours, and the one a plain send_task uses
        task_queues=[Queue(name) for name in dict.fromkeys((settings.default_queue, CELERY_DEFAULT_QUEUE))],
        # Celery prefers the CELERY_BROKER_URL / CELERY_RESULT_BACKEND environment variables over
        # Celery(broker=…, backend=…): the settings passed here must win (the demo replaces an
        # unreachable broker by a private one), so connections use these and the backend below
        broker_read_url=settings.broker_url,
        broker_write_url=settings.broker_url,
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # a stopping worker (SIGQUIT, or SIGTERM with REMAP_SIGTERM=SIGQUIT) gives running jobs
        # this long, then requeues them: acks_late means nothing is lost
        worker_soft_shutdown_timeout=settings.soft_shutdown_timeout,
        worker_enable_soft_shutdown_on_idle=True,
        worker_hijack_root_logger=False,
    )
    celery.backend_cls = settings.result_backend  # read before conf.result_backend (which the environment overrides)
    if settings.broker_is_redis:
        celery.conf.broker_transport_options = {
            "visibility_timeout": settings.visibility_timeout,
            # a whole worker lost: its unacked jobs are restored by a sweep every interval *
            # throttle seconds (kombu: 10 * 10), so up to 100 s after the visibility timeout;
            # sweeping every 10 s bounds that at 10 s (README, Reliability)
            "unacked_restore_interval": UNACKED_RESTORE_INTERVAL,
            "unacked_restore_throttle": 1,
        }
    celery.conf.comfy_settings = settings
    register(celery, settings)
    return celery


def settings_of(celery: Celery) -> Settings:
    settings = celery.conf.comfy_settings
    assert isinstance(settings, Settings)
    return settings


@signals.worker_init.connect
def _log_settings(sender: Any = None, **_: Any) -> None:
    celery = getattr(sender, "app", None)
    if celery is not None and isinstance(getattr(celery.conf, "comfy_settings", None), Settings):
        log.info("comfy-celery worker settings: %s", settings_of(celery).describe())


_mirror_stop = threading.Event()


@signals.worker_ready.connect
def _mirror_revokes(sender: Any = None, **_: Any) -> None:
    """In the worker's main process: revokes become cancel flags, which prefork children read."""
    celery = getattr(sender, "app", None)
    if celery is not None and isinstance(getattr(celery.conf, "comfy_settings", None), Settings):
        start_revoked_mirror(celery, _mirror_stop)


@signals.worker_shutdown.connect
def _stop_mirror(**_: Any) -> None:
    _mirror_stop.set()


def _started_by_celery_command() -> bool:
    return "celery.bin.celery" in sys.modules


try:
    app = create_app()
except SettingsError as _exc:
    if not _started_by_celery_command():
        raise
    # `celery -A tasks.app worker` would bury the one line that matters under a long traceback
    sys.stderr.write(f"comfy-celery: configuration error: {_exc}\n")
    raise SystemExit(2) from None
