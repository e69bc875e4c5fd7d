from __future__ import annotations

import pytest

from config.settings import ENV_VARS, Settings, SettingsError
from tasks.workflow import TaskOptions
from worker.comfyui.errors import WorkflowValidationError


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.broker_url == settings.result_backend == "redis://127.0.0.1:6379/0"
    assert [(p.name, p.url) for p in settings.pods] == [("pod0", "http://127.0.0.1:8188")]
    assert (settings.ws_connect_timeout, settings.ws_reconnect_attempts, settings.ws_reconnect_delay) == (10.0, 3, 5.0)
    assert (settings.poll_interval, settings.progress_throttle) == (2.0, 1.0)
    assert settings.job_hard_time_limit == settings.job_time_limit + 60


def test_visibility_timeout_exceeds_the_longest_job() -> None:
    for soft in ("60", "3600", "86400"):
        settings = Settings.from_env({"JOB_TIME_LIMIT": soft})
        assert settings.visibility_timeout > settings.job_hard_time_limit + settings.task_retry_backoff * 2**settings.task_max_retries


def test_named_pods_and_redis_url_fallback() -> None:
    settings = Settings.from_env(
        {"REDIS_URL": "redis://cache:6379/3", "COMFYUI_SERVERS": "a=https://pod-a.example/x, b=http://10.0.0.2:8188"}
    )
    assert settings.broker_url == "redis://cache:6379/3"
    assert [(p.name, p.queue) for p in settings.pods] == [("a", "comfyui.a"), ("b", "comfyui.b")]
    assert settings.pod("b").url == "http://10.0.0.2:8188"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"COMFYUI_POLL_INTERVAL": "soon"}, "COMFYUI_POLL_INTERVAL"),
        ({"COMFYUI_WS_RECONNECT_ATTEMPTS": "-1"}, "COMFYUI_WS_RECONNECT_ATTEMPTS"),
        ({"JOB_TIME_LIMIT": "100", "JOB_HARD_TIME_LIMIT": "50"}, "JOB_HARD_TIME_LIMIT"),
        ({"COMFYUI_SERVERS": "pod:8188"}, "COMFYUI_SERVERS"),
        ({"COMFYUI_SERVERS": "a=http://x,a=http://y"}, "COMFYUI_SERVERS"),
        ({"COMFYUI_AUTH_MODE": "magic"}, "COMFYUI_AUTH_MODE"),
        ({"ANALYTICS_SINK": "posthog"}, "POSTHOG_API_KEY"),
        ({"CELERY_BROKER_URL": "nonsense"}, "CELERY_BROKER_URL"),
        ({"COMFYUI_WS_IDLE_TIMEOUT": "5", "COMFYUI_WS_PING_INTERVAL": "10"}, "COMFYUI_WS_IDLE_TIMEOUT"),
        ({"PROGRESS_THROTTLE_SECONDS": "nan"}, "PROGRESS_THROTTLE_SECONDS"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings.from_env(env)


def test_secrets_never_show() -> None:
    settings = Settings.from_env(
        {
            "CELERY_BROKER_URL": "redis://:brokerpw@redis:6379/0",
            "COMFYUI_API_KEY": "sk-live-123",
            "ANALYTICS_SINK": "posthog",
            "POSTHOG_API_KEY": "phc_456",
        }
    )
    text = repr(settings) + str(settings.describe())
    for secret in ("brokerpw", "sk-live-123", "phc_456"):
        assert secret not in text
    assert settings.auth_headers() == {"Authorization": "Bearer sk-live-123"}
    assert settings.ws_token() is None
    assert Settings.from_env({"COMFYUI_API_KEY": "k", "COMFYUI_AUTH_MODE": "query"}).ws_token() == "k"
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"COMFYUI_SERVERS": "http://user:hunter2@pod"})
    assert "hunter2" not in str(info.value)


def test_every_variable_is_read() -> None:
    import inspect

    from config import settings as module

    source = (
        inspect.getsource(Settings.from_env)
        + inspect.getsource(module._broker_and_backend)
        + inspect.getsource(module._media)  # the media block is parsed apart
    )
    assert all(f'"{var.name}"' in source for var in ENV_VARS)


@pytest.mark.parametrize(
    "options",
    [{"api_key": "x"}, {"headers": {}}, {"server_url": "http://x"}, {"job_type": "video"}, {"timeout": -1}, {"colour": "red"}, {"pod": 3}],
)
def test_task_options_refuse_credentials_and_nonsense(options: dict[str, object]) -> None:
    with pytest.raises(WorkflowValidationError):
        TaskOptions.parse(options)


def test_task_options() -> None:
    assert TaskOptions.parse(None) == TaskOptions()
    assert TaskOptions.parse({"pod": "a", "job_type": "lora_training", "timeout": 30}) == TaskOptions("a", "lora_training", 30.0)


def test_a_malformed_url_names_the_variable_the_user_set() -> None:
    with pytest.raises(SettingsError, match=r"^REDIS_URL is not a URL"):
        Settings.from_env({"REDIS_URL": "localhost:6379"})
    with pytest.raises(SettingsError, match=r"^CELERY_BROKER_URL is not a URL"):
        Settings.from_env({"CELERY_BROKER_URL": "localhost:6379", "REDIS_URL": "redis://r:6379/0"})
    with pytest.raises(SettingsError, match=r"^CELERY_RESULT_BACKEND is not a URL"):
        Settings.from_env({"CELERY_RESULT_BACKEND": "localhost:6379"})


def test_a_rabbitmq_broker_without_a_backend_says_what_to_set() -> None:
    with pytest.raises(SettingsError, match=r"CELERY_BROKER_URL is a amqp:// broker.*set CELERY_RESULT_BACKEND"):
        Settings.from_env({"CELERY_BROKER_URL": "amqp://guest:guest@rabbit:5672//"})
    with pytest.raises(SettingsError, match="CELERY_RESULT_BACKEND cannot be a amqp://"):
        Settings.from_env({"CELERY_RESULT_BACKEND": "amqp://rabbit//"})
    settings = Settings.from_env({"CELERY_BROKER_URL": "amqp://rabbit//", "CELERY_RESULT_BACKEND": "redis://r:6379/0"})
    assert (settings.broker_url, settings.result_backend) == ("amqp://rabbit//", "redis://r:6379/0")


def test_one_url_scheme_broker_and_results_on_the_same_url() -> None:
    settings = Settings.from_env({"REDIS_URL": "redis://r:6379/0"})
    assert settings.broker_url == settings.result_backend == "redis://r:6379/0"


def test_an_empty_variable_counts_as_unset() -> None:
    """docker-compose's ``${NAME:-}`` passes every unset variable as an empty string."""
    assert Settings.from_env({var.name: "" for var in ENV_VARS}) == Settings.from_env({})
