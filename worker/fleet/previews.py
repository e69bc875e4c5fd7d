"""Live previews: the latest sampler preview of a job, where a web backend can read it cheaply.

ComfyUI sends one JPEG (about 30 KB at 512x512) per sampler step. Keeping every one, or putting
one in the PROGRESS meta (rewritten on every update and read by every poller), would multiply
that; so the latest preview goes to its own short-lived key (``comfy-preview:<job id>``, a
Redis key with a TTL, overwritten in place), written at most once per ``interval`` (the latest
one wins, like progress), and the PROGRESS meta only says where it is and which step it shows
(:meth:`PreviewRecorder.pointer`). Opt-in: it costs the pod bandwidth to send previews.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["MAX_PREVIEW_BYTES", "PREVIEW_KEY", "PreviewRecorder", "PreviewStore", "preview_key"]

log = logging.getLogger(__name__)

PREVIEW_KEY = "comfy-preview:{}"
#: a preview larger than this is not kept (a real one is ~30 KB; the WebSocket caps frames anyway)
MAX_PREVIEW_BYTES = 4 * 1024 * 1024


def preview_key(job_id: str) -> str:
    return PREVIEW_KEY.format(job_id)


class PreviewStore(Protocol):
    """The slice of a Redis client used here: ``SET key value EX ttl``."""

    def set(self, name: str, value: bytes, ex: int | None = None) -> Any: ...


class PreviewRecorder:
    """Receives one job's preview frames; writes the latest to the store, throttled.

    :meth:`on_preview` is called from the job's thread for every frame; a failing store is
    logged once and never breaks the job."""

    def __init__(
        self,
        store: PreviewStore,
        job_id: str,
        *,
        ttl: int = 60,
        interval: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.key = preview_key(job_id)
        self.ttl = ttl
        self.interval = interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._last_write: float | None = None
        self._written: dict[str, Any] | None = None
        self._failed = False
        self.writes = 0

    def on_preview(self, image: bytes, image_format: str, step: int | None = None, node_id: str | None = None) -> bool:
        """Keep ``image`` if the last write is at least ``interval`` old; True if written."""
        if not image or len(image) > MAX_PREVIEW_BYTES:
            return False
        now = self._monotonic()
        with self._lock:
            if self._last_write is not None and now - self._last_write < self.interval:
                return False
            self._last_write = now
        try:
            self.store.set(self.key, bytes(image), ex=self.ttl)
        except Exception:  # a preview is a nicety: the job goes on without it
            if not self._failed:
                log.warning("preview for %s not stored (later failures are not logged)", self.key, exc_info=True)
            self._failed = True
            return False
        with self._lock:
            self.writes += 1
            self._written = {"key": self.key, "step": step, "node_id": node_id, "format": image_format, "seq": self.writes}
        return True

    def pointer(self) -> dict[str, Any] | None:
        """What the PROGRESS meta says of the preview: its key, step, node, format and a counter
        that changes with every new image (a browser's cache buster); None before the first."""
        with self._lock:
            return dict(self._written) if self._written is not None else None
