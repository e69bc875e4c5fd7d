"""The Celery app's reliability settings, as the brief requires them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import Settings
from tasks.app import create_app
from tasks.workflow import TASK_NAME

ROOT = Path(__file__).resolve().parents[2]


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
    assert (task.max_retries, task.default_retry_delay, task.acks_late) == (2, 0, True)  # a lost child: at once


def test_workers_consume_our_queue_and_celerys_default_one() -> None:
    app = create_app(Settings.from_env({}))
    assert list(app.amqp.queues) == ["comfyui", "celery"]
    assert app.conf.task_default_queue == "comfyui"


def test_the_settings_passed_win_over_celerys_own_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("CELERY_RESULT_BACKEND", "redis://127.0.0.1:1/0")
    app = create_app(Settings.from_env({"REDIS_URL": "redis://private:6400/0"}))
    assert app.connection_for_write().as_uri().endswith("@private:6400/0")
    assert app.connection_for_read().as_uri().endswith("@private:6400/0")
    params = app.backend.connparams  # type: ignore[attr-defined]
    assert (params["host"], params["port"]) == ("private", 6400)


def test_a_worker_with_a_bad_setting_says_it_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "COMFYUI_", "JOB_"))}
    env.update(JOB_TIME_LIMIT="abc", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "celery", "-A", "tasks.app", "worker"]
    done = subprocess.run(command, env=env, cwd=ROOT, check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == ["comfy-celery: configuration error: JOB_TIME_LIMIT must be a number of seconds, got 'abc'"]


def test_importing_the_app_with_a_bad_setting_raises_the_settings_error() -> None:
    """A web backend importing tasks.app gets the exception (with its traceback), not a bare exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "COMFYUI_", "JOB_"))}
    env.update(JOB_TIME_LIMIT="abc", PYTHONPATH=str(ROOT))
    command = [sys.executable, "-c", "import tasks.app"]
    done = subprocess.run(command, env=env, cwd=ROOT, check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "config.settings.SettingsError: JOB_TIME_LIMIT" in done.stderr
