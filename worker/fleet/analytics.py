"""The tracking plan's events, typed, through a pluggable sink that can never break a job.

Event and property names are exactly the tracking plan's. A sink implements
``capture(event, properties)``; the default writes one structured log line per event; a
PostHog sink is used when its key is configured (the ``posthog`` package stays optional).
Like dramatiq's middleware, a sink that raises is logged and ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from worker.comfyui.urls import redact_url

__all__ = [
    "Analytics",
    "AnalyticsEvent",
    "AnalyticsSink",
    "JobCompleted",
    "JobFailed",
    "LogSink",
    "MemorySink",
    "NullSink",
    "PostHogSink",
    "ProgressUpdate",
    "WebSocketConnected",
    "WebSocketDisconnected",
    "WebSocketFallback",
    "make_sink",
]


class AnalyticsSink(Protocol):
    def capture(self, event: str, properties: Mapping[str, Any]) -> None: ...


class AnalyticsEvent(Protocol):
    name: ClassVar[str]

    def properties(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class WebSocketConnected:
    name: ClassVar[str] = "comfyui_websocket_connected"
    client_id: str
    server_url: str
    connection_time_ms: float

    def properties(self) -> dict[str, Any]:
        return {"clientId": self.client_id, "serverUrl": redact_url(self.server_url), "connectionTime": round(self.connection_time_ms, 1)}


@dataclass(frozen=True)
class WebSocketDisconnected:
    name: ClassVar[str] = "comfyui_websocket_disconnected"
    client_id: str
    reason: str
    duration_s: float

    def properties(self) -> dict[str, Any]:
        return {"clientId": self.client_id, "reason": self.reason, "duration": round(self.duration_s, 3)}


@dataclass(frozen=True)
class WebSocketFallback:
    name: ClassVar[str] = "comfyui_websocket_fallback"
    prompt_id: str
    reason: Literal["connection_failed", "timeout", "error"]

    def properties(self) -> dict[str, Any]:
        return {"promptId": self.prompt_id, "reason": self.reason, "fallbackMethod": "rest_polling"}


@dataclass(frozen=True)
class ProgressUpdate:
    name: ClassVar[str] = "comfyui_progress_update"
    prompt_id: str
    progress: float
    job_type: str

    def properties(self) -> dict[str, Any]:
        return {"promptId": self.prompt_id, "progress": round(self.progress, 1), "jobType": self.job_type}


@dataclass(frozen=True)
class JobCompleted:
    name: ClassVar[str] = "comfyui_job_websocket_completed"
    prompt_id: str
    duration_s: float
    progress_updates: int
    method: str

    def properties(self) -> dict[str, Any]:
        return {
            "promptId": self.prompt_id,
            "duration": round(self.duration_s, 3),
            "progressUpdates": self.progress_updates,
            "method": self.method,
        }


@dataclass(frozen=True)
class JobFailed:
    name: ClassVar[str] = "comfyui_job_websocket_failed"
    prompt_id: str
    error: str
    method: str

    def properties(self) -> dict[str, Any]:
        return {"promptId": self.prompt_id, "error": self.error, "method": self.method}


class LogSink:
    """One JSON log line per event on the ``comfy_celery.analytics`` logger."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("comfy_celery.analytics")

    def capture(self, event: str, properties: Mapping[str, Any]) -> None:
        self._log.info("%s %s", event, json.dumps(dict(properties), sort_keys=True, default=str))


class NullSink:
    def capture(self, event: str, properties: Mapping[str, Any]) -> None:
        return None


class MemorySink:
    """Keeps events in a list: for tests and for users' own assertions."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def capture(self, event: str, properties: Mapping[str, Any]) -> None:
        self.events.append((event, dict(properties)))


class PostHogSink:
    """PostHog, imported only when configured (``pip install posthog``)."""

    def __init__(self, api_key: str, host: str, distinct_id: str = "comfy-celery-worker") -> None:
        try:
            from posthog import Posthog  # noqa: PLC0415 - optional dependency, imported only when configured
        except ImportError as exc:  # pragma: no cover - depends on an optional package
            raise RuntimeError("ANALYTICS_SINK=posthog needs the 'posthog' package: pip install posthog") from exc
        self._client = Posthog(project_api_key=api_key, host=host)
        self._distinct_id = distinct_id

    def capture(self, event: str, properties: Mapping[str, Any]) -> None:  # pragma: no cover - network
        self._client.capture(distinct_id=self._distinct_id, event=event, properties=dict(properties))


def make_sink(kind: str, *, posthog_api_key: str | None = None, posthog_host: str = "https://us.i.posthog.com") -> AnalyticsSink:
    if kind == "none":
        return NullSink()
    if kind == "posthog":
        if not posthog_api_key:
            raise ValueError("the PostHog sink needs an API key")
        return PostHogSink(posthog_api_key, posthog_host)
    return LogSink()


class Analytics:
    """Emits typed events to a sink; never raises."""

    def __init__(self, sink: AnalyticsSink | None = None, logger: logging.Logger | None = None) -> None:
        self.sink = sink or LogSink()
        self._log = logger or logging.getLogger(__name__)

    def emit(self, event: AnalyticsEvent) -> None:
        try:
            self.sink.capture(event.name, event.properties())
        except Exception:  # noqa: BLE001 - a sink never breaks a job
            self._log.exception("analytics sink failed on %s (the job goes on)", event.name)
