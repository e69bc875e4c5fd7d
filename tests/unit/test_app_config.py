"""The Celery app's reliability settings, as the brief requires them."""

from __future__ import annotations

from config.settings import Settings
from tasks.app import create_app
from tasks.workflow import TASK_NAME


def test_reliability_settings() -> None:
    settings = Settings.from_env({"JOB_TIME_LIMIT": "600", "TASK_MAX_RETRIES": "4", "TASK_RETRY_BACKOFF": "3"})
    conf = create_app(settings).conf
    assert (conf.task_serializer, conf.result_serializer, conf.accept_content) == ("json", "json", ["json"])
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.task_retry_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert (conf.task_soft_time_limit, conf.task_time_limit) == (600.0, 660.0)
    assert conf.task_track_started and conf.worker_send_task_events and conf.task_send_sent_event
    assert conf.result_extended is False
    assert conf.broker_transport_options["visibility_timeout"] > 660 + 3 * 2**4
    assert conf.worker_soft_shutdown_timeout == 10.0


def test_redis_only_options_only_for_redis() -> None:
    conf = create_app(
        Settings.from_env({"CELERY_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//", "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6379/1"})
    ).conf
    assert "visibility_timeout" not in (conf.broker_transport_options or {})


def test_the_task_is_registered_by_name_with_its_retry_cap() -> None:
    app = create_app(Settings.from_env({"TASK_MAX_RETRIES": "2", "TASK_RETRY_BACKOFF": "1.5"}))
    task = app.tasks[TASK_NAME]
    assert (task.max_retries, task.default_retry_delay, task.acks_late) == (2, 2, True)
