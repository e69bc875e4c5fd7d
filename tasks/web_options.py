"""The per-task options a web backend adds: ``webhook_url``, ``webhook_progress``, ``previews``.

``webhook_url`` is the one URL a task argument may carry: it names where the caller wants to be
told, it authenticates nothing (the worker signs the body with its own secret), and it is
checked against the address rules before the job runs and again at each delivery. Credentials
still never go in task arguments: a URL with a user or password part is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from worker.comfyui.errors import WorkflowValidationError

__all__ = ["MAX_URL_LENGTH", "WebOptions"]

MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class WebOptions:
    webhook_url: str | None = None
    #: also call the webhook on progress (throttled by ``WEBHOOK_PROGRESS_SECONDS``)
    webhook_progress: bool = False
    #: keep the latest sampler preview in Redis; None: the fleet's ``PREVIEWS`` setting
    previews: bool | None = None

    @classmethod
    def parse(cls, options: dict[str, Any]) -> WebOptions:
        """Take this class's keys out of ``options`` (the rest is parsed by ``TaskOptions``)."""
        url = options.pop("webhook_url", None)
        progress = options.pop("webhook_progress", False)
        previews = options.pop("previews", None)
        if url is not None:
            if not isinstance(url, str) or len(url) > MAX_URL_LENGTH:
                raise WorkflowValidationError(f"webhook_url must be an http(s) URL of at most {MAX_URL_LENGTH} characters")
            try:
                parts = urlsplit(url)
                _ = parts.port
            except ValueError:
                raise WorkflowValidationError("webhook_url is not a valid URL") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise WorkflowValidationError("webhook_url must be an http or https URL with a host")
            if parts.username or parts.password:
                raise WorkflowValidationError("webhook_url must not carry credentials: webhooks are signed by the worker")
        if not isinstance(progress, bool):
            raise WorkflowValidationError("webhook_progress must be true or false")
        if progress and url is None:
            raise WorkflowValidationError("webhook_progress needs a webhook_url")
        if previews is not None and not isinstance(previews, bool):
            raise WorkflowValidationError("previews must be true or false")
        return cls(url, progress, previews)
