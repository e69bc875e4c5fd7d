"""The server answered, but refused: an unusable HTTP status or a rejected workflow.

Apart because these come from a reachable, working server: never a transport failure, and a
validation error would fail the same way again on any pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.comfyui.errors.base import ComfyUIError, _fields


class HTTPStatusError(ComfyUIError):
    """Raised when an HTTP answer has a status the call cannot use (404, 500 …)."""

    code = "http"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        status: int | None = None,
        url: str | None = None,
        body_excerpt: str | None = None,
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(status=status, url=url, body_excerpt=body_excerpt)})

    @property
    def status(self) -> int | None:
        return self._int("status")


class WorkflowValidationError(ComfyUIError):
    """Raised when the workflow is rejected before it ran (``POST /prompt`` 400, our own checks, or a bad task option)."""

    code = "validation"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        error_type: str | None = None,
        node_errors: Mapping[str, Any] | None = None,
    ) -> None:
        merged = {**(details or {}), **_fields(error_type=error_type)}
        if node_errors is not None:
            merged["node_errors"] = dict(node_errors)
        merged.setdefault("node_errors", {})
        super().__init__(message, merged)

    @property
    def node_errors(self) -> dict[str, Any]:
        value = self.details.get("node_errors")
        return value if isinstance(value, dict) else {}

    @property
    def error_type(self) -> str | None:
        return self._str("error_type")
