"""The WebSocket client's value types: the socket it drives, its connection state and events.

Kept apart from the client so that code which only *reads* connection events (the pod client,
analytics, tests' fakes) needs no socket code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol

__all__ = ["ComfyUIConnection", "ConnectionEvent", "ConnectionState", "WebSocketFactory", "WebSocketLike"]


class WebSocketLike(Protocol):
    """The part of ``websocket.WebSocket`` this client uses (so tests can inject their own)."""

    connected: bool

    def recv_data(self, control_frame: bool = False) -> tuple[int, bytes]: ...
    def send(self, payload: str | bytes, opcode: int = ...) -> int: ...
    def ping(self, payload: str | bytes = "") -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def close(self, status: int = ..., reason: bytes = ..., timeout: float | None = ...) -> None: ...
    def send_close(self, status: int = ..., reason: bytes = ...) -> None: ...
    def shutdown(self) -> None: ...


class ConnectionState(StrEnum):
    NEW = "new"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(frozen=True)
class ComfyUIConnection:
    """A snapshot of the connection, safe to log: the URL has its credentials redacted."""

    client_id: str
    server_url: str
    state: ConnectionState
    connected_since: float | None
    reconnect_count: int


@dataclass(frozen=True)
class ConnectionEvent:
    """Connected, disconnected, reconnected or failed — for analytics and reconciliation."""

    kind: Literal["connected", "disconnected", "reconnected", "failed"]
    client_id: str
    server_url: str
    connection_time_ms: float | None = None
    reason: str | None = None
    duration_s: float | None = None
    attempt: int = 0
    close_code: int | None = None


#: ``(url, connect_timeout, headers) -> socket``: how the client opens a socket (tests inject fakes)
WebSocketFactory = Callable[[str, float, list[str]], WebSocketLike]
