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

import json
import logging
import random
import struct
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeVar

import websocket

from worker.comfyui import protocol as p
from worker.comfyui.clock import Clock, Deadline, SystemClock
from worker.comfyui.errors import (
    ComfyUIError,
    ConnectionFailedError,
    ConnectionLostError,
    ExecutionError,
    PromptInterruptedError,
    ProtocolError,
    TransportError,
    TransportTimeoutError,
)
from worker.comfyui.progress import JobProgressState, ProgressTracker
from worker.comfyui.urls import ServerURL, redact_url

__all__ = [
    "ComfyUIConnection",
    "ComfyUIWebSocketClient",
    "ConnectionEvent",
    "ConnectionState",
    "PromptCompletion",
    "WebSocketLike",
    "WebSocketSettings",
]

Unsubscribe = Callable[[], None]
H = TypeVar("H")


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


WebSocketFactory = Callable[[str, float, list[str]], WebSocketLike]


def default_ws_factory(url: str, timeout: float, headers: list[str]) -> WebSocketLike:
    """websocket-client, without an Origin header (a mismatching one gets a 403, protocol §2.4)."""
    ws: WebSocketLike = websocket.create_connection(
        url, timeout=timeout, header=headers, suppress_origin=True, enable_multithread=True, skip_utf8_validation=True
    )
    return ws


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


@dataclass(frozen=True)
class PromptCompletion:
    """A prompt reached its end on the socket. ``unknown``: only the final ``executing`` was seen."""

    prompt_id: str
    outcome: Literal["success", "error", "interrupted", "unknown"]
    message: p.KnownMessage


class _Handlers:
    """Thread-safe handler lists whose entries may filter by prompt id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[Callable[[Any], None], str | None]] = []

    def add(self, handler: Callable[[Any], None], prompt_id: str | None) -> Unsubscribe:
        entry = (handler, prompt_id)
        with self._lock:
            self._items.append(entry)

        def remove() -> None:
            with self._lock:
                if entry in self._items:
                    self._items.remove(entry)

        return remove

    def matching(self, prompt_id: str | None) -> list[Callable[[Any], None]]:
        with self._lock:
            return [h for h, wanted in self._items if wanted is None or wanted == prompt_id]

    def every(self) -> list[Callable[[Any], None]]:
        with self._lock:
            return [h for h, _ in self._items]


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
        self.server_url = redact_url(self._url.base)

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
        self.server_features: Mapping[str, Any] = {}

        self._progress = _Handlers()
        self._completion = _Handlers()
        self._errors = _Handlers()
        self._messages = _Handlers()
        self._previews = _Handlers()
        self._connection = _Handlers()
        self._trackers: dict[str, ProgressTracker] = {}
        self._finished: deque[str] = deque(maxlen=1024)
        self._current_prompt: str | None = None

    # ------------------------------------------------------------------ handlers

    def on_progress(self, handler: Callable[[JobProgressState], None], prompt_id: str | None = None) -> Unsubscribe:
        """Progress of watched prompts (see :meth:`watch`); returns a callable that unregisters."""
        return self._progress.add(handler, prompt_id)

    def on_completion(self, handler: Callable[[PromptCompletion], None], prompt_id: str | None = None) -> Unsubscribe:
        return self._completion.add(handler, prompt_id)

    def on_error(self, handler: Callable[[ComfyUIError], None], prompt_id: str | None = None) -> Unsubscribe:
        """Execution errors and interrupts of a prompt, and the connection's final loss (to all)."""
        return self._errors.add(handler, prompt_id)

    def on_message(self, handler: Callable[[p.ComfyUIMessage | p.BinaryFrame], None]) -> Unsubscribe:
        """Every parsed frame, malformed and unknown ones included."""
        return self._messages.add(handler, None)

    def on_preview(
        self, handler: Callable[[p.PreviewImage | p.PreviewImageWithMetadata], None], prompt_id: str | None = None
    ) -> Unsubscribe:
        return self._previews.add(handler, prompt_id)

    def on_connection(self, handler: Callable[[ConnectionEvent], None]) -> Unsubscribe:
        return self._connection.add(handler, None)

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
        with self._lock:
            self._trackers[prompt_id] = tracker
        return tracker

    def unwatch(self, prompt_id: str) -> None:
        with self._lock:
            self._trackers.pop(prompt_id, None)

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
        self._thread = threading.Thread(target=self._run, name=f"comfyui-ws-{self.client_id[:8]}", daemon=True)
        self._thread.start()
        self._log.info("comfyui websocket connected client_id=%s server=%s in %.0f ms", self.client_id, self.server_url, elapsed_ms)
        self._emit_connection(ConnectionEvent("connected", self.client_id, self.server_url, connection_time_ms=elapsed_ms))
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
        try:
            ws = self._factory(url, self.settings.connect_timeout, list(self._headers))
        except websocket.WebSocketBadStatusException as exc:
            raise ConnectionFailedError(
                f"WebSocket upgrade refused with HTTP {exc.status_code}", {"status": exc.status_code}, url=self.server_url
            ) from None
        except websocket.WebSocketTimeoutException:
            raise TransportTimeoutError(
                f"no WebSocket handshake from {self.server_url} within {self.settings.connect_timeout:g} s",
                phase="handshake",
                seconds=self.settings.connect_timeout,
            ) from None
        except TimeoutError:
            raise TransportTimeoutError(
                f"could not connect to {self.server_url} within {self.settings.connect_timeout:g} s",
                phase="connect",
                seconds=self.settings.connect_timeout,
            ) from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionFailedError(
                f"WebSocket connection to {self.server_url} failed: {exc.__class__.__name__}: {exc}", url=self.server_url
            ) from None
        try:
            if self.settings.send_feature_flags:
                ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
            first = self._first_message(ws, deadline)
        except BaseException:
            self._close_quietly(ws)
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

    def _first_message(self, ws: WebSocketLike, deadline: Deadline) -> p.ComfyUIMessage:
        """ComfyUI greets every socket with ``status`` (and its ``sid``): proof we reached ComfyUI."""
        ws.settimeout(max(0.001, deadline.remaining() or 0.001))
        try:
            opcode, data = ws.recv_data()
        except websocket.WebSocketTimeoutException:
            raise TransportTimeoutError(
                "no status message after the WebSocket handshake", phase="handshake", seconds=deadline.seconds
            ) from None
        except (OSError, websocket.WebSocketException) as exc:
            raise ConnectionFailedError(f"WebSocket closed during the handshake: {exc}", url=self.server_url) from None
        if opcode != websocket.ABNF.OPCODE_TEXT:
            raise ProtocolError("the server's first WebSocket frame is not text: not a ComfyUI server?", excerpt=bytes(data[:80]).hex())
        message = p.parse_text(data, max_bytes=self.settings.max_frame_bytes)
        if not isinstance(message, p.StatusData):
            raise ProtocolError(
                "the server's first WebSocket message is not 'status': not a ComfyUI server?",
                excerpt=bytes(data[:200]).decode("utf-8", "replace"),
            )
        ws.settimeout(self.settings.read_slice)
        return message

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
            if now - self._last_frame_at > settings.idle_timeout:
                self._log.warning(
                    "comfyui websocket silent for %.1f s, treating it as dead client_id=%s", now - self._last_frame_at, self.client_id
                )
                return "idle", None
            try:
                if now - self._last_ping_at >= settings.ping_interval:
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
        for handler in self._errors.every():  # the loss concerns every prompt on this socket
            self._call(handler, error)

    def _drop_socket(self) -> None:
        with self._lock:
            ws, self._ws = self._ws, None
            exchanged = self._close_exchanged
        if ws is not None:
            self._close_quietly(ws, exchanged)

    def _close_quietly(self, ws: WebSocketLike, exchanged: bool = False) -> None:
        """Close the handshake if it is still open (waiting briefly: a dead peer never answers),
        then always release the socket.

        websocket-client's ``close()`` does nothing once a close frame was sent (``connected`` is
        then False), which is the case after :meth:`close` sent ours to a server that never
        echoed it: without the ``shutdown()`` the descriptor was left to the garbage collector."""
        try:
            if not exchanged:
                ws.close(timeout=min(1.0, self.settings.read_slice * 2))
        except Exception as exc:  # noqa: BLE001 - closing a broken socket may fail in many ways
            self._log.debug("closing websocket: %s", exc)
        finally:
            try:
                ws.shutdown()
            except Exception as exc:  # noqa: BLE001 - as above
                self._log.debug("releasing websocket: %s", exc)

    # ------------------------------------------------------------------ dispatch

    def handle_frame(self, data: bytes | str, *, binary: bool) -> None:
        """Parse one frame and dispatch it (public for custom transports and tests)."""
        if binary:
            self._dispatch(p.parse_binary(data if isinstance(data, bytes) else data.encode(), max_bytes=self.settings.max_frame_bytes))
        else:
            self._dispatch(p.parse_text(data, max_bytes=self.settings.max_frame_bytes))

    def _dispatch(self, message: p.ComfyUIMessage | p.BinaryFrame) -> None:
        for handler in self._messages.matching(None):
            self._call(handler, message)
        if isinstance(message, p.MalformedMessage | p.MalformedBinary):
            self._log.warning("comfyui websocket: skipping malformed frame (%s)", message.reason)
            return
        if isinstance(message, p.UnknownMessage | p.UnknownBinary | p.ProgressText):
            return
        if isinstance(message, p.PreviewImage | p.PreviewImageWithMetadata):
            prompt_id = message.prompt_id if isinstance(message, p.PreviewImageWithMetadata) else self._current_prompt
            for handler in self._previews.matching(prompt_id):
                self._call(handler, message)
            return
        if isinstance(message, p.FeatureFlagsData):
            self.server_features = message.flags
            return
        self._track(message)

    def _track(self, message: p.KnownMessage) -> None:
        prompt_id = getattr(message, "prompt_id", None)
        if isinstance(message, p.ExecutingData | p.ProgressData | p.ProgressStateMessageData) and prompt_id:
            self._current_prompt = prompt_id
        with self._lock:
            if isinstance(message, p.ExecutingData) and message.is_reconnect_replay:
                trackers = list(self._trackers.values())
            else:
                tracker = self._trackers.get(prompt_id) if prompt_id else None
                trackers = [tracker] if tracker else []
        for tracker in trackers:
            if tracker.apply(message):
                state = tracker.state()
                for handler in self._progress.matching(tracker.prompt_id):
                    self._call(handler, state)
        if prompt_id is None:
            return
        completion: PromptCompletion | None = None
        if isinstance(message, p.ExecutionSuccessData):
            completion = PromptCompletion(prompt_id, "success", message)
        elif isinstance(message, p.ExecutionErrorData):
            if not message.is_fatal:
                self._log.info("comfyui: node %s blocked its branch: %s", message.node_id, message.exception_message.strip())
                return
            self._error(prompt_id, ExecutionError.from_event(message))
            completion = PromptCompletion(prompt_id, "error", message)
        elif isinstance(message, p.ExecutionInterruptedData):
            self._error(
                prompt_id,
                PromptInterruptedError(
                    f"prompt {prompt_id} was interrupted at node {message.node_id} ({message.node_type})",
                    prompt_id=prompt_id,
                    node_id=message.node_id,
                    node_type=message.node_type,
                ),
            )
            completion = PromptCompletion(prompt_id, "interrupted", message)
        elif isinstance(message, p.ExecutingData) and message.is_completion:
            completion = PromptCompletion(prompt_id, "unknown", message)
        if completion is not None and prompt_id not in self._finished:
            self._finished.append(prompt_id)
            for handler in self._completion.matching(prompt_id):
                self._call(handler, completion)

    def _error(self, prompt_id: str, error: ComfyUIError) -> None:
        if prompt_id in self._finished:
            return
        for handler in self._errors.matching(prompt_id):
            self._call(handler, error)

    def _emit_connection(self, event: ConnectionEvent) -> None:
        for handler in self._connection.matching(None):
            self._call(handler, event)

    def _call(self, handler: Callable[[Any], None], value: Any) -> None:
        """A handler that raises is logged; it breaks neither the loop nor the other handlers."""
        try:
            handler(value)
        except Exception:  # noqa: BLE001 - isolation is the point
            self._log.exception("comfyui websocket handler %r failed", getattr(handler, "__qualname__", handler))
