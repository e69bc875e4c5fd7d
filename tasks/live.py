"""What a running task tells web backends: Flower's view, webhooks and live previews.

The ``comfy-cancel:<id>`` flag that ``ComfyClient.cancel`` sets is read by the process's one
cancel board (``tasks.cancel_flags``) for all its jobs at once, with no listener per job.

Each concern is one small piece the task wires in: :func:`flower_summary` (the ``result`` field
of the ``task-progress`` event, which Flower shows), :class:`WebObserver` (the
job's progress webhooks and its preview recorder), :func:`webhook_sender` (one per process) and
:func:`connect_final_webhooks` (the final webhook once the result is stored, from Celery's
``task_postrun`` / ``task_revoked`` signals).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

from celery import Celery, signals
from celery.backends.redis import RedisBackend

from config.settings import Settings
from tasks.client import TASK_NAME, view_of
from tasks.web_options import WebOptions
from worker.comfyui.errors import WorkflowValidationError
from worker.comfyui.observer import JobObserver, Preview
from worker.fleet.netguard import AddressGuard, BlockedAddressError
from worker.fleet.previews import PreviewRecorder
from worker.fleet.webhooks import WebhookSender

__all__ = [
    "WebObserver",
    "check_webhook",
    "connect_final_webhooks",
    "flower_summary",
    "redis_of",
    "webhook_sender",
]

log = logging.getLogger(__name__)

#: connect and read timeout of one webhook delivery (a hanging receiver costs the sender thread this)
WEBHOOK_TIMEOUT = 5.0


def flower_summary(meta: Mapping[str, Any]) -> str:
    """What Flower shows as a running task's Result: Flower copies every field of a task event
    onto its task, and its task page and list display the ``result`` field (and no other custom
    one), so the ``task-progress`` event carries this line as ``result``."""
    return f"{meta.get('percent', 0):g} % · {meta.get('description', '')} · pod {meta.get('pod')}"


def redis_of(celery: Celery) -> Any:
    """The result backend's redis-py client, or None when the backend is not Redis."""
    backend = celery.backend
    return backend.client if isinstance(backend, RedisBackend) else None


_senders: dict[int, WebhookSender] = {}
_senders_lock = threading.Lock()


def webhook_sender(settings: Settings) -> WebhookSender | None:
    """The process's webhook sender (None without ``WEBHOOK_SECRET``); created after the fork."""
    if not settings.webhook_secret:
        return None
    with _senders_lock:
        key = id(settings)
        if key not in _senders:
            _senders[key] = WebhookSender(
                settings.webhook_secret,
                guard=AddressGuard.from_setting(settings.webhook_allowed_networks),
                timeout=WEBHOOK_TIMEOUT,
                progress_interval=settings.webhook_progress_interval,
            )
        return _senders[key]


def _webhook_url(args: Any, kwargs: Mapping[str, Any] | None) -> str | None:
    """The task's ``webhook_url`` option, whether ``options`` came by keyword or by position."""
    options = (kwargs or {}).get("options")
    if options is None and isinstance(args, list | tuple) and len(args) > 1:
        options = args[1]
    url = options.get("webhook_url") if isinstance(options, Mapping) else None
    return url if isinstance(url, str) else None


def connect_final_webhooks(celery: Celery, settings: Settings) -> None:
    """Send the final webhook after Celery stored the final state (a receiver that reads the
    job's status on receipt sees it ended): ``task_postrun`` for a task that ran,
    ``task_revoked`` for one discarded before it started."""

    def final(task_id: str, args: Any, kwargs: Mapping[str, Any] | None) -> None:
        url = _webhook_url(args, kwargs)
        sender = webhook_sender(settings)
        if url is None or sender is None:
            return
        meta = celery.backend.get_task_meta(task_id)
        view = view_of(task_id, str(meta["status"]), meta.get("result"))
        if view["state"] in ("SUCCESS", "FAILURE", "REVOKED"):
            sender.send(url, task_id, dict(view))

    def ours(sender: Any) -> bool:
        return getattr(sender, "name", None) == TASK_NAME and getattr(sender, "app", None) is celery

    def on_postrun(sender: Any = None, task_id: str = "", args: Any = None, kwargs: Mapping[str, Any] | None = None, **_: Any) -> None:
        if ours(sender):
            final(task_id, args, kwargs)

    def on_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
        if ours(sender) and request is not None:
            final(str(request.id), getattr(request, "args", None), getattr(request, "kwargs", None))

    # weak references held by the app: the handlers go with it (tests create many apps)
    celery.conf.comfy_webhook_handlers = (on_postrun, on_revoked)
    signals.task_postrun.connect(on_postrun)
    signals.task_revoked.connect(on_revoked)


def check_webhook(settings: Settings, web: WebOptions) -> None:
    """Refuse a job whose webhook could never be sent, before it costs a pod anything."""
    if web.webhook_url is None:
        return
    if not settings.webhook_secret:
        raise WorkflowValidationError("webhook_url needs the workers' WEBHOOK_SECRET, which is not set")
    try:
        AddressGuard.from_setting(settings.webhook_allowed_networks).check(web.webhook_url)
    except BlockedAddressError as exc:
        raise WorkflowValidationError(f"webhook_url refused: {exc}") from None


class WebObserver(JobObserver):
    """One job's web side: its progress webhooks and its live preview recorder.

    A job observer for the previews (``on_preview``); the task's own observer asks it for the
    preview pointer to put in the meta and hands it each published meta for the webhook."""

    def __init__(self, settings: Settings, web: WebOptions, job_id: str, redis: Any) -> None:
        self.job_id = job_id
        self.web = web
        self.sender = webhook_sender(settings) if web.webhook_url and web.webhook_progress else None
        wanted = settings.previews if web.previews is None else web.previews
        self.previews = (
            PreviewRecorder(redis, job_id, ttl=settings.preview_ttl, interval=settings.progress_throttle)
            if wanted and redis is not None
            else None
        )

    def on_preview(self, preview: Preview) -> None:
        if self.previews is not None:
            step = int(preview.step) if preview.step is not None else None
            self.previews.on_preview(preview.image, preview.format, step, preview.node_id)

    def progress_published(self, meta: Mapping[str, Any]) -> None:
        if self.sender is not None and self.web.webhook_url is not None:
            self.sender.send(self.web.webhook_url, self.job_id, dict(view_of(self.job_id, "PROGRESS", dict(meta))))

    def preview_pointer(self) -> Any:
        """The :class:`tasks.meta.PreviewPointer` of the latest stored preview, or None."""
        return self.previews.pointer() if self.previews is not None else None
