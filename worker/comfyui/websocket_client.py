"""``ComfyUIWebSocketClient``: one ComfyUI event stream, kept alive, parsed and dispatched.

Why not ``websocket.WebSocketApp.run_forever``: its timeout is process-wide, it reconnects by
recursion and it swallows callback exceptions. This client runs its own receive loop on one
thread, reading in short slices so that :meth:`close` acts within ``read_slice`` seconds, and
sees close codes, pings and pongs.

Reconnection keeps the clientId (events are routed by it) and only opens the new socket after
the old one is fully closed: ComfyUI silently mutes a socket whose clientId is reused while the
old one is open (protocol §4.6, trace ``reconnect-overlap``). Events sent while disconnected are
lost for good, so every reconnect is reported to ``on_connection`` handlers for reconciliation.
"""

from __future__ import annotations

import logging
import random
import struct
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import websocket

from worker.comfyui import protocol as p
from worker.comfyui.clock import Clock, Deadline, SystemClock
from worker.comfyui.errors import (
    ComfyUIError,
    ConnectionFailedError,
    ConnectionLostError,
    TransportError,
)
from worker.comfyui.follower import PromptCompletion
from worker.comfyui.progress import JobProgressState, ProgressTracker
from worker.comfyui.redact import Redactor
from worker.comfyui.urls import ServerURL
from worker.comfyui.websocket_dispatch import Dispatcher, Unsubscribe
from worker.comfyui.websocket_socket import default_ws_factory, dial, greet, release
from worker.comfyui.websocket_types import ComfyUIConnection, ConnectionEvent, ConnectionState, WebSocketFactory, WebSocketLike

__all__ = [
    "ComfyUIConnection",
    "ComfyUIWebSocketClient",
    "ConnectionEvent",
    "ConnectionState",
    "PromptCompletion",
    "WebSocketFactory",
    "WebSocketLike",
    "WebSocketSettings",
    "default_ws_factory",
]


@dataclass(frozen=True)
class WebSocketSettings:
    connect_timeout: float = 10.0
    reconnect_attempts: int = 3
    reconnect_delay: float = 5.0
    #: multiplier applied per further attempt (1.0: constant delay)
    reconnect_backoff: float = 1.0
    #: +/- fraction of random spread on each delay (0.0: none)
    reconnect_jitter: float = 0.0
    #: ComfyUI never pings: we do, and a socket that answers nothing for ``idle_timeout`` is dead
    ping_interval: float = 10.0
    idle_timeout: float = 30.0
    #: while a prompt is watched, a socket quiet this long is pinged (no HTTP request; a busy one never)
    quiet_ping_after: float = 0.5
    pong_timeout: float = 1.0  #: no frame this long after a ping: dead, open or not (0: off)
    read_slice: float = 0.25
    send_feature_flags: bool = True
    max_frame_bytes: int = p.MAX_FRAME_BYTES

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_slice <= 0:
            raise ValueError("connect_timeout and read_slice must be > 0")
        if self.reconnect_attempts < 0 or self.reconnect_delay < 0:
            raise ValueError("reconnect_attempts and reconnect_delay must be >= 0")
        if self.idle_timeout <= self.ping_interval:
            raise ValueError("idle_timeout must be longer than ping_interval")


class ComfyUIWebSocketClient:
    """The event stream of one clientId on one ComfyUI server."""

    def __init__(
        self,
        server_url: str | ServerURL,
        *,
        client_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        token: str | None = None,
        token_param: str = "token",
        settings: WebSocketSettings | None = None,
        clock: Clock | None = None,
        ws_factory: WebSocketFactory | None = None,
        logger: logging.Logger | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._url = server_url if isinstance(server_url, ServerURL) else ServerURL.parse(server_url)
        self.client_id = client_id or str(uuid.uuid4())
        self._headers = [f"{k}: {v}" for k, v in (headers or {}).items()]
        self._token = token
        self._token_param = token_param
        self.settings = settings or WebSocketSettings()
        self._clock = clock or SystemClock()
        self._factory = ws_factory or default_ws_factory
        self._log = logger or logging.getLogger(__name__)
        self._rng = rng
        self.server_url = self._url.redacted

        self._lock = threading.RLock()
        self._ws: WebSocketLike | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._state = ConnectionState.NEW
        self._connected_since: float | None = None  # wall clock, for people
        self._connected_at = 0.0  # monotonic, for durations
        self._last_frame_at = 0.0
        self._last_ping_at = 0.0
        self._reconnects = 0
        self._failure: ConnectionLostError | None = None
        self._close_exchanged = False  # the current socket's close handshake already happened
        self._events = Dispatcher(self._log)

    # ------------------------------------------------------------------ handlers

    def on_progress(self, handler: Callable[[JobProgressState], None], prompt_id: str | None = None) -> Unsubscribe:
        """Progress of watched prompts (see :meth:`watch`); returns a callable that unregisters."""
        return self._events.progress.add(handler, prompt_id)

    def on_completion(self, handler: Callable[[PromptCompletion], None], prompt_id: str | None = None) -> Unsubscribe:
        return self._events.completion.add(handler, prompt_id)

    def on_error(self, handler: Callable[[ComfyUIError], None], prompt_id: str | None = None) -> Unsubscribe:
        """Execution errors and interrupts of a prompt, and the connection's final loss (to all)."""
        return self._events.errors.add(handler, prompt_id)

    def on_message(self, handler: Callable[[p.ComfyUIMessage | p.BinaryFrame], None]) -> Unsubscribe:
        """Every parsed frame, malformed and unknown ones included."""
        return self._events.messages.add(handler, None)

    def on_preview(
        self, handler: Callable[[p.PreviewImage | p.PreviewImageWithMetadata], None], prompt_id: str | None = None
    ) -> Unsubscribe:
        return self._events.previews.add(handler, prompt_id)

    def on_connection(self, handler: Callable[[ConnectionEvent], None]) -> Unsubscribe:
        return self._events.connection.add(handler, None)

    def watch(
        self,
        prompt_id: str,
        workflow: Mapping[str, Any],
        *,
        weights: Mapping[str, float] | None = None,
        tracker: ProgressTracker | None = None,
    ) -> ProgressTracker:
        """Track a prompt's progress (in ``tracker`` if given); call before submitting it so early events count."""
        tracker = tracker or ProgressTracker(prompt_id, workflow, clock=self._clock, weights=weights)
        self._events.follower.watch(tracker)
        return tracker

    def unwatch(self, prompt_id: str) -> None:
        self._events.follower.unwatch(prompt_id)

    @property
    def server_features(self) -> Mapping[str, Any]:
        """The server's ``feature_flags`` (empty until it sent them)."""
        return self._events.server_features

    # ------------------------------------------------------------------ lifecycle

    @property
    def connection(self) -> ComfyUIConnection:
        with self._lock:
            return ComfyUIConnection(self.client_id, self.server_url, self._state, self._connected_since, self._reconnects)

    @property
    def failure(self) -> ConnectionLostError | None:
        """Set when reconnection gave up; the client is then unusable."""
        return self._failure

    @property
    def is_connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    def connect(self) -> ComfyUIConnection:
        """Open the socket (connect, upgrade, first ``status``) within ``connect_timeout``.

        Raises a :class:`TransportError` (connection refused, HTTP status on upgrade, timeout with
        phase ``connect`` or ``handshake``, or a server that is not ComfyUI).
        """
        with self._lock:
            if self._state in (ConnectionState.CONNECTED, ConnectionState.RECONNECTING):
                return self.connection
            if self._state in (ConnectionState.CLOSED, ConnectionState.FAILED):
                raise ConnectionFailedError("this WebSocket client was closed; create a new one", url=self.server_url)
        elapsed_ms = self._open()
        self._log.info("comfyui websocket connected client_id=%s server=%s in %.0f ms", self.client_id, self.server_url, elapsed_ms)
        # reported before the reader starts: a socket dropping at once must not say "disconnected" first
        self._emit_connection(ConnectionEvent("connected", self.client_id, self.server_url, connection_time_ms=elapsed_ms))
        self._thread = threading.Thread(target=self._run, name=f"comfyui-ws-{self.client_id[:8]}", daemon=True)
        self._thread.start()
        return self.connection

    def close(self) -> None:
        """Idempotent. Stops the loop, closes the socket and joins the thread.

        The close frame is sent from here: the server's echo wakes the reader at once, instead of
        the reader noticing only at the end of its read slice.
        """
        self._closing.set()
        with self._lock:
            if self._state is not ConnectionState.FAILED:
                self._state = ConnectionState.CLOSED
            thread, self._thread = self._thread, None
            ws = self._ws if thread is not None else None
        if ws is not None:
            try:
                ws.send_close()
            except Exception as exc:  # noqa: BLE001 - a broken socket is closed below either way
                self._log.debug("sending the close frame: %s", exc)
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.settings.read_slice * 4 + 2.0)
            if thread.is_alive():
                self._log.warning("comfyui websocket thread did not stop in time client_id=%s", self.client_id)
        self._drop_socket()

    def __enter__(self) -> ComfyUIWebSocketClient:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ connecting

    def _open(self) -> float:
        deadline = Deadline(self._clock, self.settings.connect_timeout)
        started = self._clock.monotonic()
        url = self._url.websocket(self.client_id, self._token, self._token_param)
        ws = dial(self._factory, url, self.settings.connect_timeout, list(self._headers), server_url=self.server_url)
        try:
            first = greet(
                ws,
                deadline,
                send_feature_flags=self.settings.send_feature_flags,
                max_frame_bytes=self.settings.max_frame_bytes,
                read_slice=self.settings.read_slice,
                server_url=self.server_url,
                redact=Redactor.from_headers(dict(h.split(": ", 1) for h in self._headers if ": " in h), self._token),
            )
        except BaseException:
            release(ws, self.settings.read_slice, self._log)
            raise
        with self._lock:
            self._ws = ws
            self._state = ConnectionState.CONNECTED
            self._close_exchanged = False
            self._connected_since = self._clock.time()
            now = self._clock.monotonic()
            self._connected_at = self._last_frame_at = self._last_ping_at = now
        self._dispatch(first)
        return (self._clock.monotonic() - started) * 1000.0

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                reason, close_code = self._read_until_lost()
                if self._closing.is_set():
                    break
                if not self._reconnect(reason, close_code):
                    break
        except Exception:  # noqa: BLE001 - a bug here must not kill silently: fail the client loudly
            self._log.exception("comfyui websocket loop crashed client_id=%s", self.client_id)
            self._fail(ConnectionLostError("the WebSocket receive loop crashed (see log)"))
        finally:
            self._drop_socket()

    def _read_until_lost(self) -> tuple[str, int | None]:
        settings = self.settings
        while not self._closing.is_set():
            ws = self._ws
            if ws is None:
                return "error", None
            now = self._clock.monotonic()
            unanswered = self._last_ping_at > self._last_frame_at and 0 < settings.pong_timeout < now - self._last_ping_at
            if now - self._last_frame_at > settings.idle_timeout or unanswered:
                self._log.warning(
                    "comfyui websocket silent for %.1f s, treating it as dead client_id=%s", now - self._last_frame_at, self.client_id
                )
                return "idle", None
            try:
                if self._ping_due(now):
                    self._last_ping_at = now
                    ws.ping(b"comfy-celery")
                opcode, data = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                continue
            except (OSError, websocket.WebSocketException) as exc:
                if self._closing.is_set():
                    return "closing", None
                return f"error: {exc.__class__.__name__}", None
            self._last_frame_at = self._clock.monotonic()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                self._close_exchanged = True  # websocket-client has already answered it
                if self._closing.is_set():
                    return "closing", None
                code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None
                return "closed by server", code
            if opcode in (websocket.ABNF.OPCODE_PING, websocket.ABNF.OPCODE_PONG):
                continue
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                self.handle_frame(data, binary=opcode == websocket.ABNF.OPCODE_BINARY)
        return "closing", None

    def _ping_due(self, now: float) -> bool:
        """Every ``ping_interval``; while a prompt is watched, also once quiet for ``quiet_ping_after``."""
        quiet = self._events.follower.watching and now - self._last_frame_at >= self.settings.quiet_ping_after
        return (quiet and self._last_ping_at <= self._last_frame_at) or now - self._last_ping_at >= self.settings.ping_interval

    def _reconnect(self, reason: str, close_code: int | None) -> bool:
        with self._lock:
            duration = self._clock.monotonic() - self._connected_at
            self._state = ConnectionState.RECONNECTING
        self._log.warning(
            "comfyui websocket lost client_id=%s reason=%s close_code=%s after %.1f s; reconnecting",
            self.client_id,
            reason,
            close_code,
            duration,
        )
        self._emit_connection(
            ConnectionEvent("disconnected", self.client_id, self.server_url, reason=reason, duration_s=duration, close_code=close_code)
        )
        self._drop_socket()  # fully closed before a new socket with the same clientId opens (§4.6)
        settings = self.settings
        last_error: TransportError | None = None
        for attempt in range(1, settings.reconnect_attempts + 1):
            delay = settings.reconnect_delay * settings.reconnect_backoff ** (attempt - 1)
            delay *= 1.0 + settings.reconnect_jitter * (2.0 * self._rng() - 1.0)
            if self._clock.sleep(max(0.0, delay), self._closing):
                return False
            try:
                elapsed_ms = self._open()
            except TransportError as exc:
                last_error = exc
                self._log.warning("comfyui websocket reconnect %d/%d failed: %s", attempt, settings.reconnect_attempts, exc)
                continue
            with self._lock:
                self._reconnects += 1
            self._log.info("comfyui websocket reconnected client_id=%s attempt=%d in %.0f ms", self.client_id, attempt, elapsed_ms)
            self._emit_connection(
                ConnectionEvent("reconnected", self.client_id, self.server_url, connection_time_ms=elapsed_ms, attempt=attempt)
            )
            return True
        self._fail(
            ConnectionLostError(
                f"WebSocket to {self.server_url} lost ({reason}) and {settings.reconnect_attempts} reconnect attempts failed"
                + (f": {last_error}" if last_error else ""),
                close_code=close_code,
                reconnect_attempts=settings.reconnect_attempts,
            )
        )
        return False

    def _fail(self, error: ConnectionLostError) -> None:
        with self._lock:
            self._state = ConnectionState.FAILED
            self._failure = error
        self._log.error("comfyui websocket gave up client_id=%s: %s", self.client_id, error)
        self._emit_connection(ConnectionEvent("failed", self.client_id, self.server_url, reason=str(error)))
        self._events.lost(error)

    def _drop_socket(self) -> None:
        with self._lock:
            ws, self._ws = self._ws, None
            exchanged = self._close_exchanged
        if ws is not None:
            release(ws, self.settings.read_slice, self._log, exchanged=exchanged)

    # ------------------------------------------------------------------ dispatch

    def handle_frame(self, data: bytes | str, *, binary: bool) -> None:
        """Parse one frame and dispatch it (public for custom transports and tests)."""
        if binary:
            self._dispatch(p.parse_binary(data if isinstance(data, bytes) else data.encode(), max_bytes=self.settings.max_frame_bytes))
        else:
            self._dispatch(p.parse_text(data, max_bytes=self.settings.max_frame_bytes))

    def _dispatch(self, message: p.ComfyUIMessage | p.BinaryFrame) -> None:
        self._events.frame(message)

    def _emit_connection(self, event: ConnectionEvent) -> None:
        self._events.connection_event(event)
