"""The ComfyUI REST API (protocol §8) as typed methods.

``POST /prompt`` is never retried blindly: after a transport failure or a 5xx the prompt id
(always ours) is looked up in ``/queue`` and ``/history`` first, so a prompt is never submitted
twice.
"""

from __future__ import annotations

import io
import logging
import reprlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import quote

import requests

from worker.comfyui.clock import Clock, SystemClock
from worker.comfyui.errors import (
    ComfyUIError,
    ProtocolError,
    WorkflowValidationError,
    is_transient,
)
from worker.comfyui.http_transport import HTTPSettings, HTTPTransport
from worker.comfyui.urls import ServerURL

__all__ = ["ComfyUIRestClient", "HealthReport", "QueueSnapshot", "SubmittedPrompt"]


@dataclass(frozen=True)
class SubmittedPrompt:
    prompt_id: str
    number: float
    #: outputs that failed validation and were dropped (a 200 can still carry some)
    node_errors: dict[str, Any] = field(default_factory=dict)
    #: True when a lost reply was recovered by finding the prompt on the server
    recovered: bool = False


@dataclass(frozen=True)
class QueueSnapshot:
    running: list[str]
    #: pending prompt ids in execution order (the server lists them in heap order, §8.3)
    pending: list[str]

    def position(self, prompt_id: str) -> int | None:
        """0 = next to run; None when not pending."""
        return self.pending.index(prompt_id) if prompt_id in self.pending else None

    def contains(self, prompt_id: str) -> bool:
        return prompt_id in self.running or prompt_id in self.pending

    @property
    def remaining(self) -> int:
        return len(self.running) + len(self.pending)


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    reason: str
    latency_ms: float | None = None
    comfyui_version: str | None = None
    queue_remaining: int | None = None


_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 4, 8, 8, 200, 80, 80


def _brief(value: Any, limit: int = 200) -> str:
    """A short excerpt of a decoded value, built in bounded time and memory (``str()`` of a
    64 MB history would build all of it first), for an error's ``excerpt``."""
    return _REPR.repr(value)[:limit]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _queue_ids(items: Any, what: str, redact: Callable[[str], str]) -> list[tuple[float, str]]:
    if not isinstance(items, list):
        raise ProtocolError(f"/queue: {what} is not a list", excerpt=redact(_brief(items)))
    out: list[tuple[float, str]] = []
    for item in items:
        if not (isinstance(item, list) and len(item) >= 2 and isinstance(item[1], str)):
            raise ProtocolError(f"/queue: unexpected {what} item", excerpt=redact(_brief(item)))
        number = item[0] if isinstance(item[0], int | float) and not isinstance(item[0], bool) else 0.0
        out.append((float(number), item[1]))
    return out


class ComfyUIRestClient:
    """REST calls to one ComfyUI server; safe to share between threads."""

    def __init__(
        self,
        server_url: str | ServerURL,
        *,
        headers: Mapping[str, str] | None = None,
        http: HTTPSettings | None = None,
        session_factory: Any = requests.Session,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
        health_timeout: float = 5.0,
    ) -> None:
        self.server = server_url if isinstance(server_url, ServerURL) else ServerURL.parse(server_url)
        self.server_url = self.server.redacted
        self._clock = clock or SystemClock()
        self._log = logger or logging.getLogger(__name__)
        self.health_timeout = health_timeout
        self.http = HTTPTransport(
            self.server, headers=headers, settings=http, session_factory=session_factory, clock=self._clock, logger=self._log
        )

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ prompts

    def queue_prompt(
        self,
        workflow: Mapping[str, Any],
        prompt_id: str,
        client_id: str | None,
        *,
        extra_data: Mapping[str, Any] | None = None,
        cancel: threading.Event | None = None,
    ) -> SubmittedPrompt:
        """``POST /prompt`` exactly once; a lost reply is recovered from ``/queue`` and ``/history``."""
        body: dict[str, Any] = {"prompt": dict(workflow), "prompt_id": prompt_id}
        if client_id is not None:
            body["client_id"] = client_id
        if extra_data:
            body["extra_data"] = dict(extra_data)
        try:
            response = self.http.request("POST", "/prompt", json_body=body, idempotent=False, accept=(200, 400), cancel=cancel)
        except ComfyUIError as exc:  # HTTPStatusError included: a proxy's 502 may hide an accepted prompt
            if is_transient(exc) and self._prompt_known(prompt_id, cancel):
                self._log.warning("comfyui POST /prompt reply lost (%s), but prompt %s is on the server: not resubmitting", exc, prompt_id)
                return SubmittedPrompt(prompt_id, 0.0, recovered=True)
            raise
        data = self.http.decode(response)
        if not isinstance(data, dict):
            raise ProtocolError("POST /prompt did not answer a JSON object", excerpt=self.http.redact(_brief(data, 200)))
        if response.status_code == 400:
            error = _dict(data.get("error"))
            node_errors = _dict(data.get("node_errors"))
            message = str(error.get("message") or "the workflow failed validation")
            if error.get("details"):
                message = f"{message}: {error['details']}"
            raise WorkflowValidationError(message, error_type=str(error.get("type") or "invalid_prompt"), node_errors=node_errors)
        if data.get("prompt_id") != prompt_id:
            raise ProtocolError(
                "the server did not keep our prompt_id (ComfyUI older than 0.3.45?)",
                excerpt=self.http.redact(_brief(data.get("prompt_id"), 80)),
            )
        node_errors = _dict(data.get("node_errors"))
        if node_errors:
            self._log.warning("comfyui accepted prompt %s but dropped outputs that failed validation: %s", prompt_id, sorted(node_errors))
        number = data.get("number")
        return SubmittedPrompt(prompt_id, float(number) if isinstance(number, int | float) else 0.0, node_errors)

    def _prompt_known(self, prompt_id: str, cancel: threading.Event | None) -> bool:
        """Whether the server has this prompt (queued, running or finished). Transport errors propagate."""
        self._clock.sleep(0.2, cancel)  # let a request still in flight land first
        return self.get_queue(cancel=cancel).contains(prompt_id) or self.get_history(prompt_id, cancel=cancel) is not None

    def get_history(self, prompt_id: str, *, cancel: threading.Event | None = None) -> dict[str, Any] | None:
        """The history entry, or None while queued/running/unknown (the server answers ``{}``)."""
        data = self.http.get_json(f"/history/{quote(prompt_id, safe='')}", cancel=cancel)  # an id is one path segment
        if not isinstance(data, dict):
            raise ProtocolError("GET /history did not answer a JSON object", excerpt=self.http.redact(_brief(data, 200)))
        entry = data.get(prompt_id)
        if entry is None:
            return None
        if not isinstance(entry, dict):
            raise ProtocolError("GET /history: the entry is not an object", excerpt=self.http.redact(_brief(entry, 200)))
        return entry

    def get_queue(self, *, cancel: threading.Event | None = None, timeout: tuple[float, float] | None = None) -> QueueSnapshot:
        """The queue; with ``timeout``, one attempt within it (a clean-up after a cancel)."""
        data = self.http.get_json("/queue", cancel=cancel, timeout=timeout, idempotent=False if timeout else None)
        if not isinstance(data, dict):
            raise ProtocolError("GET /queue did not answer a JSON object", excerpt=self.http.redact(_brief(data, 200)))
        running = [pid for _, pid in _queue_ids(data.get("queue_running", []), "queue_running", self.http.redact)]
        pending = [pid for _, pid in sorted(_queue_ids(data.get("queue_pending", []), "queue_pending", self.http.redact))]
        return QueueSnapshot(running, pending)

    def queue_remaining(self, *, quick: bool = False) -> int:
        """Prompts pending plus running, over all clients (§9.5).

        ``quick``: one attempt within ``health_timeout``, as a load check before every job must be
        (a pod that hangs would otherwise hold each job for its read timeout times its retries)."""
        limit = (self.health_timeout, self.health_timeout) if quick else None
        data = self.http.get_json("/prompt", timeout=limit, idempotent=False if quick else None)
        try:
            return int(data["exec_info"]["queue_remaining"])
        except (KeyError, TypeError, ValueError):
            raise ProtocolError("GET /prompt: no exec_info.queue_remaining", excerpt=self.http.redact(_brief(data, 200))) from None

    def interrupt(self, prompt_id: str | None = None, *, timeout: tuple[float, float] | None = None) -> None:
        """Interrupt ``prompt_id`` if it is the one running (ComfyUI >= 0.3.57), or whatever runs.
        With ``timeout``: one attempt within it."""
        body = {"prompt_id": prompt_id} if prompt_id is not None else None
        self.http.request("POST", "/interrupt", json_body=body, idempotent=timeout is None, timeout=timeout)

    def delete_queued(self, prompt_ids: list[str], *, timeout: tuple[float, float] | None = None) -> None:
        self.http.request("POST", "/queue", json_body={"delete": list(prompt_ids)}, idempotent=timeout is None, timeout=timeout)

    # ------------------------------------------------------------------ files and info

    def download(self, filename: str, subfolder: str = "", file_type: str = "output") -> bytes:
        """A small output file in memory; large ones (videos) should go through :meth:`download_to`."""
        buffer = io.BytesIO()
        self.download_to(buffer, filename, subfolder, file_type)
        return buffer.getvalue()

    def download_to(
        self, sink: BinaryIO, filename: str, subfolder: str = "", file_type: str = "output", *, cancel: threading.Event | None = None
    ) -> int:
        """Stream ``GET /view`` into ``sink``, never holding the file whole (a video can be hundreds
        of MB); at most ``max_download_bytes``. Returns the byte count; on an error the sink holds
        a partial file."""
        params = {"filename": filename, "subfolder": subfolder, "type": file_type}
        return self.http.download("/view", sink, params=params, limit=self.http.settings.max_download_bytes, cancel=cancel)

    def upload_image(
        self, content: bytes, filename: str, *, subfolder: str = "", file_type: str = "input", overwrite: bool = False
    ) -> dict[str, Any]:
        """``POST /upload/image``; use the returned ``name`` (it may differ from ``filename``)."""
        files = {"image": (filename, content, "application/octet-stream")}
        data = {"type": file_type, "subfolder": subfolder, "overwrite": "true" if overwrite else "false"}
        result = self.http.decode(self.http.request("POST", "/upload/image", files=files, data=data, idempotent=False))
        if not isinstance(result, dict) or not isinstance(result.get("name"), str):
            raise ProtocolError("POST /upload/image: no name in the answer", excerpt=self.http.redact(_brief(result, 200)))
        return result

    def system_stats(self) -> dict[str, Any]:
        data = self.http.get_json("/system_stats")
        if not isinstance(data, dict):
            raise ProtocolError("GET /system_stats did not answer a JSON object", excerpt=self.http.redact(_brief(data, 200)))
        return data

    def object_info(self, node_class: str | None = None) -> dict[str, Any]:
        data = self.http.get_json("/object_info" if node_class is None else f"/object_info/{quote(node_class, safe='')}")
        if not isinstance(data, dict):
            raise ProtocolError("GET /object_info did not answer a JSON object", excerpt=self.http.redact(_brief(data, 200)))
        return data

    def health_check(self) -> HealthReport:
        """One bounded ``GET /system_stats`` (no retries): fast, and says why it failed."""
        started = self._clock.monotonic()
        timeout = (self.health_timeout, self.health_timeout)
        try:
            data = self.http.decode(self.http.request("GET", "/system_stats", idempotent=False, timeout=timeout))
        except ComfyUIError as exc:  # HTTPStatusError included
            return HealthReport(False, f"{exc.code}: {exc}")
        latency = (self._clock.monotonic() - started) * 1000.0
        system = data.get("system") if isinstance(data, dict) else None
        if not isinstance(system, dict):
            return HealthReport(False, "protocol: /system_stats has no 'system' object (not ComfyUI?)", latency)
        version = system.get("comfyui_version")
        return HealthReport(True, "ok", latency, version if isinstance(version, str) else None)
