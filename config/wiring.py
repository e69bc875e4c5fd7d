"""From settings to objects: the fleet's pod pool and its clients, built from :class:`Settings`.

The fleet layer never reads settings itself (it takes plain objects); this is the one place
that turns the environment's values into them, used by the Celery adapter and the app layer.
"""

from __future__ import annotations

from config.settings import Settings
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.pod_client import ComfyUIPodClient, PodClientSettings
from worker.comfyui.websocket_client import WebSocketSettings
from worker.fleet.pods import PodConfig, PodPool

__all__ = ["pod_client_settings", "pod_pool"]


def pod_client_settings(settings: Settings) -> PodClientSettings:
    return PodClientSettings(
        http=HTTPSettings(
            connect_timeout=settings.http_connect_timeout, read_timeout=settings.http_read_timeout, retries=settings.http_retries
        ),
        websocket=WebSocketSettings(
            connect_timeout=settings.ws_connect_timeout,
            reconnect_attempts=settings.ws_reconnect_attempts,
            reconnect_delay=settings.ws_reconnect_delay,
            ping_interval=settings.ws_ping_interval,
            idle_timeout=settings.ws_idle_timeout,
        ),
        poll_interval=settings.poll_interval,
        history_probe_interval=settings.history_probe_interval,
        job_timeout=settings.job_hard_time_limit,
        health_timeout=min(5.0, settings.http_connect_timeout + 1),
    )


def pod_pool(settings: Settings) -> PodPool:
    """One pool per process: a client per configured pod, created on first use."""
    client_settings = pod_client_settings(settings)

    def factory(pod: PodConfig) -> ComfyUIPodClient:
        return ComfyUIPodClient(
            pod.server,
            headers=settings.auth_headers(),
            token=settings.ws_token(),
            token_param=settings.token_param,
            settings=client_settings,
        )

    return PodPool(settings.pods, factory)
