"""A finished prompt whose outputs could not be delivered: stored, returned, or saved.

Apart because the prompt itself succeeded: these are never retried by resubmitting it, and
none is a transport failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.comfyui.errors.base import ComfyUIError, _fields


class StorageError(ComfyUIError):
    """Raised when a finished prompt's outputs could not be moved into the output store.

    The prompt itself succeeded and its history entry is the source, so this is retried with
    backoff by streaming again, never by resubmitting the prompt. Not a :class:`TransportError`:
    it must never trigger a pod fallback or a resubmission.
    """

    code = "storage"

    def __init__(
        self, message: str, details: Mapping[str, Any] | None = None, *, key: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(key=key, retryable=retryable)})

    @property
    def retryable(self) -> bool:
        return self.details.get("retryable") is not False


class ResultTooLargeError(ComfyUIError):
    """Raised when a finished prompt's result is beyond what a job may return (too many output
    files, or a result too large for the result backend). Not a transport failure: the same
    history would give the same result again, so it is never retried."""

    code = "result_too_large"

    def __init__(
        self, message: str, details: Mapping[str, Any] | None = None, *, limit: int | None = None, what: str | None = None
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(limit=limit, what=what)})


class OutputSaveError(ComfyUIError):
    """Raised by ``save_outputs`` after it tried every file, when some could not be saved
    (a download failed or timed out, a name is unusable); ``failures`` says which and why."""

    code = "output_save"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None, *, failures: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, {**(details or {}), **_fields(failures=failures)})

    @property
    def failures(self) -> list[dict[str, Any]]:
        value = self.details.get("failures")
        return [f for f in value if isinstance(f, dict)] if isinstance(value, list) else []
