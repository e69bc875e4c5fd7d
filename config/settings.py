"""Every setting, read from the environment in one place.

``ENV_VARS`` is the single source of truth: :meth:`Settings.from_env` parses it and README's
configuration table is checked against it by a test. A bad value fails when the worker starts,
naming the variable; secrets never appear in a ``repr``, a log line or an error message.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from config import web_settings
from worker.comfyui.urls import ServerURL, redact_url
from worker.fleet.pods import PodConfig

__all__ = ["ENV_VARS", "EnvVar", "PodConfig", "Settings", "SettingsError"]


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable (never its secret value)."""


@dataclass(frozen=True)
class EnvVar:
    name: str
    default: str
    meaning: str
    secret: bool = False


ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0", "Broker URL (falls back to `REDIS_URL`)."),
    EnvVar("CELERY_RESULT_BACKEND", "(the broker URL)", "Result backend URL."),
    EnvVar("REDIS_URL", "", "Used for broker and backend when the two above are unset."),
    EnvVar(
        "COMFYUI_SERVERS",
        "http://127.0.0.1:8188",
        "Comma-separated ComfyUI base URLs, optionally named: `a=https://pod-a/,b=https://pod-b/`.",
    ),
    EnvVar("COMFYUI_API_KEY", "", "Credential for the pods' proxy (e.g. RunPod). Never logged.", secret=True),
    EnvVar(
        "COMFYUI_AUTH_MODE",
        "bearer",
        "`bearer` (Authorization header), `query` (`?token=` on the WebSocket URL, header on REST) or `none`.",
    ),
    EnvVar("COMFYUI_TOKEN_PARAM", "token", "Query parameter name for `COMFYUI_AUTH_MODE=query`."),
    EnvVar("COMFYUI_HTTP_CONNECT_TIMEOUT", "5", "Seconds to open an HTTP connection."),
    EnvVar("COMFYUI_HTTP_READ_TIMEOUT", "30", "Seconds to wait for an HTTP answer."),
    EnvVar("COMFYUI_HTTP_RETRIES", "3", "Extra attempts for idempotent requests (never for `POST /prompt`)."),
    EnvVar("COMFYUI_WS_CONNECT_TIMEOUT", "10", "Seconds for WebSocket connect + handshake."),
    EnvVar("COMFYUI_WS_RECONNECT_ATTEMPTS", "3", "Reconnect attempts after a drop before falling back to polling."),
    EnvVar("COMFYUI_WS_RECONNECT_DELAY", "5", "Seconds between reconnect attempts."),
    EnvVar("COMFYUI_WS_PING_INTERVAL", "10", "Seconds between client pings (ComfyUI never pings)."),
    EnvVar("COMFYUI_WS_IDLE_TIMEOUT", "30", "Seconds without any frame (pongs included) before a socket counts as dead."),
    EnvVar(
        "COMFYUI_WS_PONG_TIMEOUT",
        "1",
        "While a job runs, a quiet socket is pinged; no frame this many seconds after a ping means dead (0: off).",
    ),
    EnvVar("COMFYUI_POLL_INTERVAL", "2", "Seconds between REST polls on the fallback path."),
    EnvVar(
        "COMFYUI_HISTORY_PROBE_INTERVAL",
        "5",
        "Seconds of silence on the WebSocket before history is probed (a deaf socket); also how often queued jobs' places are refreshed.",
    ),
    EnvVar(
        "COMFYUI_MAX_QUEUED_PER_POD",
        "0",
        "Most prompts one worker process leaves waiting in a pod's own queue (0: no limit); more jobs wait in the worker, unsubmitted.",
    ),
    EnvVar("PROGRESS_THROTTLE_SECONDS", "1", "At most one PROGRESS update per this many seconds (the last one always delivered)."),
    EnvVar("JOB_TIME_LIMIT", "3600", "Soft time limit of a job in seconds: the prompt is interrupted and the task fails with `timeout`."),
    EnvVar("JOB_HARD_TIME_LIMIT", "(soft + 60)", "Hard time limit: the pool process is killed."),
    EnvVar("TASK_MAX_RETRIES", "3", "Retries of a task for transport errors before its prompt was accepted, and for lost workers."),
    EnvVar("TASK_RETRY_BACKOFF", "2", "Base of the exponential retry delay in seconds."),
    EnvVar("RESULT_EXPIRES", "86400", "Seconds results are kept in the backend."),
    EnvVar("COMFYUI_QUEUE", "comfyui", "The default Celery queue."),
    EnvVar(
        "WORKER_SOFT_SHUTDOWN_TIMEOUT",
        "10",
        "On a cold shutdown (SIGQUIT, or SIGTERM with `REMAP_SIGTERM=SIGQUIT`), seconds running jobs get before they are requeued.",
    ),
    EnvVar("ANALYTICS_SINK", "log", "`log` (structured log lines), `posthog` (needs the posthog package) or `none`."),
    EnvVar("POSTHOG_API_KEY", "", "PostHog project key for `ANALYTICS_SINK=posthog`.", secret=True),
    EnvVar("POSTHOG_HOST", "https://us.i.posthog.com", "PostHog host."),
    # --- media pipeline (issue 12): inputs onto the pod, outputs into a store
    EnvVar("OUTPUT_STORE", "", "Where outputs go: `file:///path`, `s3://bucket/prefix`, or empty (they stay on the pod)."),
    EnvVar(
        "OUTPUT_S3_ENDPOINT_URL",
        "",
        "S3-compatible endpoint (MinIO, R2 …); empty for AWS. Credentials: boto3's chain (`AWS_ACCESS_KEY_ID` …).",
    ),
    EnvVar("OUTPUT_S3_REGION", "", "S3 region; empty for boto3's default (`AWS_DEFAULT_REGION`)."),
    EnvVar("OUTPUT_PRESIGN_SECONDS", "3600", "Lifetime of the presigned HTTPS URL of each stored output (S3)."),
    EnvVar("OUTPUT_MAX_BYTES", "1073741824", "Largest output file streamed into the store."),
    EnvVar("OUTPUT_INLINE_MAX_BYTES", "0", "Outputs up to this size also come inline as base64 in the result (0: never; at most 10 MB)."),
    EnvVar("OUTPUT_STORE_ATTEMPTS", "4", "Attempts to store an output (with backoff) before the task fails with `storage`."),
    EnvVar("OUTPUT_CLEANUP", "none", "`history`: delete the prompt's history entry on the pod once its files are stored; `none`."),
    EnvVar("INPUT_MAX_BYTES", "52428800", "Largest input file (URL, base64 or store), enforced while reading."),
    EnvVar("INPUT_FETCH_TIMEOUT", "120", "Seconds an input URL may take in all (connect and read timeouts are the HTTP ones)."),
    EnvVar("INPUT_URL_ALLOW", "", "Comma-separated hosts or networks input URLs may reach although private/loopback (e.g. `10.0.0.0/8`)."),
    EnvVar(
        "NODE_TIMINGS_URL",
        "(the result backend URL)",
        "Redis where the fleet shares the node durations it learns for progress and `eta_s`; `none`: priors only.",
    ),
    EnvVar("NODE_TIMINGS_MAX_ENTRIES", "5000", "Learned node-duration records kept (the least recently updated go first)."),
    EnvVar("NODE_TIMINGS_MAX_AGE_DAYS", "14", "Learned node durations not updated for this many days are ignored and dropped."),
    # web backends: webhooks and live previews
    EnvVar("WEBHOOK_SECRET", "", "Webhook signing secret (`whsec_` + base64 of 24+ random bytes); needed for `webhook_url`.", secret=True),
    EnvVar("WEBHOOK_ALLOWED_NETWORKS", "", "Networks a webhook URL may reach besides public addresses (`127.0.0.1/32,10.0.0.0/8`)."),
    EnvVar("WEBHOOK_PROGRESS_SECONDS", "5", "At most one progress webhook per job per this many seconds (`webhook_progress: true`)."),
    EnvVar("PREVIEWS", "off", "`on`: keep the latest sampler preview of every job in Redis; `off`: only for jobs with `previews: true`."),
    EnvVar("PREVIEW_TTL_SECONDS", "60", "Seconds a job's latest preview (`comfy-preview:<id>`) stays in Redis."),
)


def _float(name: str, raw: str, *, minimum: float = 0.0, allow_zero: bool = False) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not math.isfinite(value) or value < minimum or (value == 0 and not allow_zero):
        raise SettingsError(f"{name} must be {'>=' if allow_zero else '>'} {minimum:g}, got {raw!r}")
    return value


def _int(name: str, raw: str, *, minimum: int = 0) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {raw!r}")
    return value


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}; got {raw!r}")
    return raw


def _broker(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if not parts.scheme or (parts.scheme not in ("memory", "filesystem") and not parts.netloc and "sqlite" not in parts.scheme):
        raise SettingsError(f"{name} is not a URL (e.g. redis://host:6379/0): {redact_url(raw)!r}")
    return raw


#: Brokers that cannot also store results (Celery has no result backend of these schemes).
_NOT_A_RESULT_BACKEND = ("amqp", "amqps", "pyamqp", "librabbitmq", "sqs", "qpid")


def _broker_and_backend(get: Callable[[str, str], str]) -> tuple[str, str]:
    """One URL scheme for every entry point: the broker also stores results unless
    ``CELERY_RESULT_BACKEND`` says otherwise. Errors name the variable the user actually set."""
    broker_var = "CELERY_BROKER_URL" if get("CELERY_BROKER_URL", "") else "REDIS_URL" if get("REDIS_URL", "") else "CELERY_BROKER_URL"
    broker = _broker(broker_var, get(broker_var, "redis://127.0.0.1:6379/0"))
    if get("CELERY_RESULT_BACKEND", ""):
        backend = _broker("CELERY_RESULT_BACKEND", get("CELERY_RESULT_BACKEND", ""))
    elif urlsplit(broker).scheme in _NOT_A_RESULT_BACKEND:
        raise SettingsError(
            f"{broker_var} is a {urlsplit(broker).scheme}:// broker, which cannot store results: set CELERY_RESULT_BACKEND "
            "too (e.g. redis://host:6379/0; pollers read PROGRESS from it, so it must be shared storage, not rpc://)"
        )
    else:
        backend = broker
    if urlsplit(backend).scheme in _NOT_A_RESULT_BACKEND:
        raise SettingsError(f"CELERY_RESULT_BACKEND cannot be a {urlsplit(backend).scheme}:// URL: use e.g. redis://host:6379/0")
    return broker, backend


def _pods(name: str, raw: str) -> tuple[PodConfig, ...]:
    pods: list[PodConfig] = []
    for index, item in enumerate(p.strip() for p in raw.split(",")):
        if not item:
            continue
        label, _, url = item.partition("=") if "=" in item.split("://", 1)[0] else ("", "", item)
        label = label.strip() or f"pod{index}"
        if not label.replace("-", "").replace("_", "").isalnum():
            raise SettingsError(f"{name}: pod name {label!r} must be letters, digits, '-' or '_'")
        try:
            server = ServerURL.parse(url)
        except ValueError as exc:
            raise SettingsError(f"{name}: {exc}") from None
        pods.append(PodConfig(label, server))
    if not pods:
        raise SettingsError(f"{name} lists no ComfyUI server")
    if len({p.name for p in pods}) != len(pods):
        raise SettingsError(f"{name}: pod names must be unique")
    return tuple(pods)


def _output_store(name: str, raw: str) -> str:
    parts = urlsplit(raw)
    if raw and not (
        (parts.scheme == "file" and parts.path.startswith("/") and parts.netloc in ("", "localhost"))
        or (parts.scheme == "s3" and parts.netloc and "@" not in parts.netloc and not parts.query)
    ):
        raise SettingsError(f"{name} must be file:///absolute/path or s3://bucket/prefix, got {redact_url(raw)!r}")
    return raw


def _media(get: Any) -> dict[str, Any]:
    """The media pipeline's settings (issue 12), parsed as one block."""
    inline = _int("OUTPUT_INLINE_MAX_BYTES", get("OUTPUT_INLINE_MAX_BYTES", "0"))
    if inline > 10 * 1024 * 1024:
        raise SettingsError("OUTPUT_INLINE_MAX_BYTES is at most 10485760 (results live in the broker's backend)")
    allow = tuple(a.strip() for a in get("INPUT_URL_ALLOW", "").split(",") if a.strip())
    return {
        "output_store": _output_store("OUTPUT_STORE", get("OUTPUT_STORE", "")),
        "output_s3_endpoint_url": get("OUTPUT_S3_ENDPOINT_URL", "") or None,
        "output_s3_region": get("OUTPUT_S3_REGION", "") or None,
        "output_presign_seconds": _int("OUTPUT_PRESIGN_SECONDS", get("OUTPUT_PRESIGN_SECONDS", "3600"), minimum=1),
        "output_max_bytes": _int("OUTPUT_MAX_BYTES", get("OUTPUT_MAX_BYTES", "1073741824"), minimum=1),
        "output_inline_max_bytes": inline,
        "output_store_attempts": _int("OUTPUT_STORE_ATTEMPTS", get("OUTPUT_STORE_ATTEMPTS", "4"), minimum=1),
        "output_cleanup": _choice("OUTPUT_CLEANUP", get("OUTPUT_CLEANUP", "none"), ("none", "history")),
        "input_max_bytes": _int("INPUT_MAX_BYTES", get("INPUT_MAX_BYTES", "52428800"), minimum=1),
        "input_fetch_timeout": _float("INPUT_FETCH_TIMEOUT", get("INPUT_FETCH_TIMEOUT", "120")),
        "input_url_allow": allow,
    }


@dataclass(frozen=True)
class Settings:
    broker_url: str = field(repr=False)
    result_backend: str = field(repr=False)
    pods: tuple[PodConfig, ...]
    api_key: str | None = field(default=None, repr=False)
    auth_mode: Literal["bearer", "query", "none"] = "bearer"
    token_param: str = "token"
    http_connect_timeout: float = 5.0
    http_read_timeout: float = 30.0
    http_retries: int = 3
    ws_connect_timeout: float = 10.0
    ws_reconnect_attempts: int = 3
    ws_reconnect_delay: float = 5.0
    ws_ping_interval: float = 10.0
    ws_idle_timeout: float = 30.0
    ws_pong_timeout: float = 1.0
    poll_interval: float = 2.0
    history_probe_interval: float = 5.0
    max_queued_per_pod: int | None = None
    progress_throttle: float = 1.0
    job_time_limit: float = 3600.0
    job_hard_time_limit: float = 3660.0
    task_max_retries: int = 3
    task_retry_backoff: float = 2.0
    result_expires: int = 86400
    default_queue: str = "comfyui"
    soft_shutdown_timeout: float = 10.0
    analytics_sink: Literal["log", "posthog", "none"] = "log"
    posthog_api_key: str | None = field(default=None, repr=False)
    posthog_host: str = "https://us.i.posthog.com"
    # media pipeline (issue 12)
    output_store: str = ""
    output_s3_endpoint_url: str | None = None
    output_s3_region: str | None = None
    output_presign_seconds: int = 3600
    output_max_bytes: int = 1024 * 1024 * 1024
    output_inline_max_bytes: int = 0
    output_store_attempts: int = 4
    output_cleanup: Literal["none", "history"] = "none"
    input_max_bytes: int = 50 * 1024 * 1024
    input_fetch_timeout: float = 120.0
    input_url_allow: tuple[str, ...] = ()
    #: None: learned node timings are off (priors only)
    node_timings_url: str | None = field(default=None, repr=False)
    node_timings_max_entries: int = 5000
    node_timings_max_age_days: float = 14.0
    webhook_secret: str | None = field(default=None, repr=False)
    webhook_allowed_networks: str = ""
    webhook_progress_interval: float = 5.0
    previews: bool = False
    preview_ttl: int = 60

    @property
    def visibility_timeout(self) -> int:
        """Redis redelivers an unacked message after this: it must exceed the longest job,
        or a long job runs twice. Derived from the hard limit, with the retry backoff on top."""
        return math.ceil(self.job_hard_time_limit + self.task_retry_backoff * 2.0**self.task_max_retries + 60)

    @property
    def broker_is_redis(self) -> bool:
        return urlsplit(self.broker_url).scheme in ("redis", "rediss", "redis+socket")

    def auth_headers(self) -> dict[str, str]:
        if self.api_key and self.auth_mode in ("bearer", "query"):
            return {"Authorization": f"Bearer {self.api_key}"}
        return {}

    def ws_token(self) -> str | None:
        return self.api_key if self.api_key and self.auth_mode == "query" else None

    def pod(self, name: str) -> PodConfig:
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise KeyError(name)

    def describe(self) -> dict[str, Any]:
        """Everything, secrets redacted: for start-up logs."""
        return {
            "broker_url": redact_url(self.broker_url),
            "result_backend": redact_url(self.result_backend),
            "pods": {p.name: p.safe_url for p in self.pods},
            "api_key": "***" if self.api_key else None,
            "auth_mode": self.auth_mode,
            "job_time_limit": self.job_time_limit,
            "job_hard_time_limit": self.job_hard_time_limit,
            "visibility_timeout": self.visibility_timeout,
            "analytics_sink": self.analytics_sink,
            "node_timings_url": redact_url(self.node_timings_url) if self.node_timings_url else None,
        }

    def __repr__(self) -> str:
        return f"Settings({self.describe()})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value if value else default

        broker, backend = _broker_and_backend(get)
        soft = _float("JOB_TIME_LIMIT", get("JOB_TIME_LIMIT", "3600"))
        hard = _float("JOB_HARD_TIME_LIMIT", get("JOB_HARD_TIME_LIMIT", str(soft + 60)))
        if hard <= soft:
            raise SettingsError(f"JOB_HARD_TIME_LIMIT ({hard:g}) must be longer than JOB_TIME_LIMIT ({soft:g})")
        ping = _float("COMFYUI_WS_PING_INTERVAL", get("COMFYUI_WS_PING_INTERVAL", "10"))
        idle = _float("COMFYUI_WS_IDLE_TIMEOUT", get("COMFYUI_WS_IDLE_TIMEOUT", "30"))
        if idle <= ping:
            raise SettingsError("COMFYUI_WS_IDLE_TIMEOUT must be longer than COMFYUI_WS_PING_INTERVAL")
        sink = _choice("ANALYTICS_SINK", get("ANALYTICS_SINK", "log"), ("log", "posthog", "none"))
        posthog_key = get("POSTHOG_API_KEY", "") or None
        if sink == "posthog" and not posthog_key:
            raise SettingsError("ANALYTICS_SINK=posthog needs POSTHOG_API_KEY")
        timings = get("NODE_TIMINGS_URL", backend)
        token_param = get("COMFYUI_TOKEN_PARAM", "token")
        if not token_param.isidentifier():
            raise SettingsError(f"COMFYUI_TOKEN_PARAM must be a plain name, got {token_param!r}")
        return cls(
            broker_url=broker,
            result_backend=backend,
            pods=_pods("COMFYUI_SERVERS", get("COMFYUI_SERVERS", "http://127.0.0.1:8188")),
            api_key=get("COMFYUI_API_KEY", "") or None,
            auth_mode=_choice("COMFYUI_AUTH_MODE", get("COMFYUI_AUTH_MODE", "bearer"), ("bearer", "query", "none")),  # type: ignore[arg-type]
            token_param=token_param,
            http_connect_timeout=_float("COMFYUI_HTTP_CONNECT_TIMEOUT", get("COMFYUI_HTTP_CONNECT_TIMEOUT", "5")),
            http_read_timeout=_float("COMFYUI_HTTP_READ_TIMEOUT", get("COMFYUI_HTTP_READ_TIMEOUT", "30")),
            http_retries=_int("COMFYUI_HTTP_RETRIES", get("COMFYUI_HTTP_RETRIES", "3")),
            ws_connect_timeout=_float("COMFYUI_WS_CONNECT_TIMEOUT", get("COMFYUI_WS_CONNECT_TIMEOUT", "10")),
            ws_reconnect_attempts=_int("COMFYUI_WS_RECONNECT_ATTEMPTS", get("COMFYUI_WS_RECONNECT_ATTEMPTS", "3")),
            ws_reconnect_delay=_float("COMFYUI_WS_RECONNECT_DELAY", get("COMFYUI_WS_RECONNECT_DELAY", "5"), allow_zero=True),
            ws_ping_interval=ping,
            ws_idle_timeout=idle,
            ws_pong_timeout=_float("COMFYUI_WS_PONG_TIMEOUT", get("COMFYUI_WS_PONG_TIMEOUT", "1"), allow_zero=True),
            poll_interval=_float("COMFYUI_POLL_INTERVAL", get("COMFYUI_POLL_INTERVAL", "2")),
            history_probe_interval=_float("COMFYUI_HISTORY_PROBE_INTERVAL", get("COMFYUI_HISTORY_PROBE_INTERVAL", "5")),
            max_queued_per_pod=_int("COMFYUI_MAX_QUEUED_PER_POD", get("COMFYUI_MAX_QUEUED_PER_POD", "0")) or None,
            progress_throttle=_float("PROGRESS_THROTTLE_SECONDS", get("PROGRESS_THROTTLE_SECONDS", "1"), allow_zero=True),
            job_time_limit=soft,
            job_hard_time_limit=hard,
            task_max_retries=_int("TASK_MAX_RETRIES", get("TASK_MAX_RETRIES", "3")),
            task_retry_backoff=_float("TASK_RETRY_BACKOFF", get("TASK_RETRY_BACKOFF", "2"), allow_zero=True),
            result_expires=_int("RESULT_EXPIRES", get("RESULT_EXPIRES", "86400"), minimum=1),
            default_queue=get("COMFYUI_QUEUE", "comfyui"),
            soft_shutdown_timeout=_float("WORKER_SOFT_SHUTDOWN_TIMEOUT", get("WORKER_SOFT_SHUTDOWN_TIMEOUT", "10"), allow_zero=True),
            analytics_sink=sink,  # type: ignore[arg-type]
            posthog_api_key=posthog_key,
            posthog_host=get("POSTHOG_HOST", "https://us.i.posthog.com"),
            **_media(get),
            node_timings_url=None if timings.lower() == "none" else _broker("NODE_TIMINGS_URL", timings),
            node_timings_max_entries=_int("NODE_TIMINGS_MAX_ENTRIES", get("NODE_TIMINGS_MAX_ENTRIES", "5000"), minimum=1),
            node_timings_max_age_days=_float("NODE_TIMINGS_MAX_AGE_DAYS", get("NODE_TIMINGS_MAX_AGE_DAYS", "14")),
            webhook_secret=web_settings.webhook_secret("WEBHOOK_SECRET", get("WEBHOOK_SECRET", "")),
            webhook_allowed_networks=web_settings.networks("WEBHOOK_ALLOWED_NETWORKS", get("WEBHOOK_ALLOWED_NETWORKS", "")),
            webhook_progress_interval=_float("WEBHOOK_PROGRESS_SECONDS", get("WEBHOOK_PROGRESS_SECONDS", "5"), allow_zero=True),
            previews=_choice("PREVIEWS", get("PREVIEWS", "off"), ("on", "off")) == "on",
            preview_ttl=_int("PREVIEW_TTL_SECONDS", get("PREVIEW_TTL_SECONDS", "60"), minimum=1),
        )
