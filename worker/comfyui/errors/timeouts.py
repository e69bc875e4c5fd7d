"""The two timeouts: a transport one (connect, handshake, idle, request) and the job's deadline.

Apart because they share a base (``except ComfyUITimeoutError`` catches both) while only the
transport one is a :class:`TransportError`: a job deadline must never trigger a fallback.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from worker.comfyui.errors.base import ComfyUIError, _fields
from worker.comfyui.errors.transport import TransportError

TimeoutPhase = Literal["connect", "handshake", "idle", "request", "job"]


class ComfyUITimeoutError(ComfyUIError):
    """Base of the two timeouts (never raised itself): something took longer than allowed; ``phase`` says what."""

    code = "comfyui_timeout"

    @property
    def phase(self) -> str | None:
        return self._str("phase")


class TransportTimeoutError(ComfyUITimeoutError, TransportError):
    """Raised when a connect, handshake, idle or request timeout passes: a transport failure."""

    code = "transport_timeout"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        phase: TimeoutPhase | None = None,
        seconds: float | None = None,
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(phase=phase, seconds=seconds)})


class JobTimeoutError(ComfyUITimeoutError):
    """Raised when the job's own deadline passed (the ``timeout`` option or ``JOB_TIME_LIMIT``).
    Not a transport failure: never retried or fallen back on."""

    code = "timeout"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        prompt_id: str | None = None,
        seconds: float | None = None,
    ) -> None:
        merged = {**(details or {}), **_fields(prompt_id=prompt_id, seconds=seconds)}
        merged.setdefault("phase", "job")
        super().__init__(message, merged)
