"""The transport failures: the server cannot be reached, went away, or speaks nonsense.

Apart because this family is the one fallback and retry trigger: a single ``except
TransportError`` is exactly that condition, so nothing else may ever inherit from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from worker.comfyui.errors.base import ComfyUIError, _fields


class TransportError(ComfyUIError):
    """Base of the transport failures, raised when the server cannot be reached or speaks
    nonsense: the only fallback/retry trigger (raised itself only for unclassified socket errors)."""

    code = "transport"


class ConnectionFailedError(TransportError):
    """Raised when a connection cannot be opened: refused, DNS, TLS, or the WebSocket upgrade refused."""

    code = "connection"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None, *, url: str | None = None) -> None:
        super().__init__(message, {**(details or {}), **_fields(url=url)})


class ConnectionLostError(TransportError):
    """Raised when an established connection went away (close frame, reset, or silence past the idle limit)."""

    code = "connection_lost"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        close_code: int | None = None,
        reconnect_attempts: int | None = None,
    ) -> None:
        super().__init__(
            message,
            {**(details or {}), **_fields(close_code=close_code, reconnect_attempts=reconnect_attempts)},
        )

    @property
    def close_code(self) -> int | None:
        return self._int("close_code")


class ProtocolError(TransportError):
    """Raised when the server answers something that is not ComfyUI's protocol (non-JSON, wrong shape)."""

    code = "protocol"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None, *, excerpt: str | None = None) -> None:
        super().__init__(message, {**(details or {}), **_fields(excerpt=excerpt)})


class RedirectRefusedError(ConnectionFailedError):
    """Raised when the WebSocket upgrade answers a redirect (30x): it is not followed, so the
    credentials sent with the upgrade never reach the host the ``Location`` names."""

    code = "redirect_refused"

    def __init__(
        self, message: str, details: Mapping[str, Any] | None = None, *, status: int | None = None, location: str | None = None
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(status=status, location=location)})


class ResponseTooLargeError(ProtocolError):
    """Raised when a server sends more than a cap allows (a REST body, a WebSocket frame), as soon
    as the cap is passed: the rest is never read."""

    code = "too_large"

    def __init__(
        self, message: str, details: Mapping[str, Any] | None = None, *, limit: int | None = None, what: str | None = None
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(limit=limit, what=what)})
