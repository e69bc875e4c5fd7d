"""Settings and wiring of the learned node timings and of the socket liveness check."""

from __future__ import annotations

import pytest

from config.settings import Settings, SettingsError
from config.wiring import node_timings, pod_client_settings
from worker.fleet.node_timings import MemoryTimingStore, RedisTimingStore


def test_timings_live_on_the_result_backend_unless_told_otherwise() -> None:
    assert Settings.from_env({"REDIS_URL": "redis://cache:6379/3"}).node_timings_url == "redis://cache:6379/3"
    assert Settings.from_env({"NODE_TIMINGS_URL": "redis://other:6379/5"}).node_timings_url == "redis://other:6379/5"
    assert Settings.from_env({"NODE_TIMINGS_URL": "none"}).node_timings_url is None


BAD = [{"NODE_TIMINGS_MAX_ENTRIES": "0"}, {"NODE_TIMINGS_MAX_AGE_DAYS": "-1"}, {"NODE_TIMINGS_URL": "cache:6379"}]


@pytest.mark.parametrize("env", BAD)
def test_bad_timing_settings_name_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=next(iter(env))):
        Settings.from_env(env)


def test_the_store_follows_the_url() -> None:
    assert node_timings(Settings.from_env({"NODE_TIMINGS_URL": "none"})) is None
    local = node_timings(Settings.from_env({"CELERY_BROKER_URL": "memory://"}))
    assert local is not None and isinstance(local._store, MemoryTimingStore)
    shared = node_timings(Settings.from_env({"REDIS_URL": "redis://:secret@cache:6379/3", "NODE_TIMINGS_MAX_ENTRIES": "7"}))
    assert shared is not None and isinstance(shared._store, RedisTimingStore) and shared._store.max_entries == 7
    assert "secret" not in repr(Settings.from_env({"NODE_TIMINGS_URL": "redis://:secret@cache:6379/3"}))


def test_the_pong_timeout_reaches_the_socket_settings() -> None:
    assert pod_client_settings(Settings.from_env({})).websocket.pong_timeout == 1.0
    assert pod_client_settings(Settings.from_env({"COMFYUI_WS_PONG_TIMEOUT": "2.5"})).websocket.pong_timeout == 2.5
    assert pod_client_settings(Settings.from_env({"COMFYUI_WS_PONG_TIMEOUT": "0"})).websocket.pong_timeout == 0.0
