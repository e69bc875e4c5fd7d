"""From settings to objects: the fleet's pod pool and its clients, built from :class:`Settings`.

The fleet layer never reads settings itself (it takes plain objects); this is the one place
that turns the environment's values into them, used by the Celery adapter and the app layer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from config.settings import Settings
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.pod_client import ComfyUIPodClient, PodClientSettings
from worker.comfyui.websocket_client import WebSocketSettings
from worker.fleet.media import (
    AddressGuard,
    FetchSettings,
    FileStore,
    MediaPipeline,
    MediaSettings,
    OutputPolicy,
    OutputStore,
    S3Store,
    URLFetcher,
)
from worker.fleet.node_timings import MemoryTimingStore, NodeTimings, RedisTimingStore, TimingStore
from worker.fleet.pods import PodConfig, PodPool

__all__ = ["media_pipeline", "node_timings", "output_store", "pod_client_settings", "pod_pool"]


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
            pong_timeout=settings.ws_pong_timeout,
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


def s3_client(settings: Settings) -> Any:
    """A boto3 S3 client: endpoint and region from our settings, credentials from boto3's own
    chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, profiles, instance roles)."""
    import boto3  # noqa: PLC0415 - 0.2 s: loaded only by a worker with an S3 store, not by every CLI start
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        signature_version="s3v4",
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"} if settings.output_s3_endpoint_url else None,
    )
    return boto3.client("s3", endpoint_url=settings.output_s3_endpoint_url, region_name=settings.output_s3_region, config=config)


def output_store(settings: Settings) -> OutputStore | None:
    """The configured store (``OUTPUT_STORE``), or None: outputs stay on the pod, as before."""
    if not settings.output_store:
        return None
    parts = urlsplit(settings.output_store)
    if parts.scheme == "file":
        return FileStore(Path(unquote(parts.path)))
    return S3Store(s3_client(settings), parts.netloc, parts.path)


def media_pipeline(settings: Settings) -> MediaPipeline:
    fetch = FetchSettings(
        connect_timeout=settings.http_connect_timeout,
        read_timeout=settings.http_read_timeout,
        total_timeout=settings.input_fetch_timeout,
        max_bytes=settings.input_max_bytes,
    )
    media = MediaSettings(
        outputs=OutputPolicy(
            max_bytes=settings.output_max_bytes,
            presign_seconds=settings.output_presign_seconds,
            inline_max_bytes=settings.output_inline_max_bytes,
        ),
        store_attempts=settings.output_store_attempts,
        store_backoff=settings.task_retry_backoff / 2,
        cleanup=settings.output_cleanup,
    )
    return MediaPipeline(output_store(settings), URLFetcher(AddressGuard(settings.input_url_allow), fetch), media)


def node_timings(settings: Settings) -> NodeTimings | None:
    """The fleet's learned node durations: in Redis when the URL is Redis (shared by every
    worker), else in this process only (a ``memory://`` broker in tests); None when disabled."""
    url = settings.node_timings_url
    if url is None:
        return None
    max_age_s = settings.node_timings_max_age_days * 86400.0
    store: TimingStore
    if urlsplit(url).scheme in ("redis", "rediss", "unix"):
        store = RedisTimingStore.from_url(url, timeout=2.0, max_entries=settings.node_timings_max_entries, max_age_s=max_age_s)
    else:
        store = MemoryTimingStore(max_entries=settings.node_timings_max_entries, max_age_s=max_age_s)
    return NodeTimings(store)
