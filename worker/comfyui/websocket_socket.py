"""A ComfyUI WebSocket's own life: dial (TCP, TLS, HTTP upgrade), the server's greeting, release.

Each failure becomes the library's error for it, so a caller can tell a refused upgrade
(``ConnectionFailedError`` with the HTTP status), a slow server (``TransportTimeoutError`` with
the phase ``connect`` or ``handshake``) and a server that is not ComfyUI (``ProtocolError``).
"""

from __future__ import annotations

import json
import logging

import websocket

from worker.comfyui import protocol as p
from worker.comfyui.clock import Deadline
from worker.comfyui.errors import ConnectionFailedError, ProtocolError, ResponseTooLargeError, TransportTimeoutError
from worker.comfyui.redact import Redactor
from worker.comfyui.websocket_types import WebSocketFactory, WebSocketLike
from worker.comfyui.ws_frames import FrameTooLargeError, capped_connection, install_frame_cap

__all__ = ["default_ws_factory", "dial", "greet", "release"]


def default_ws_factory(url: str, timeout: float, headers: list[str]) -> WebSocketLike:
    """websocket-client, without an Origin header (a mismatching one gets a 403, protocol §2.4),
    never following a redirect, frames capped while read (:mod:`worker.comfyui.ws_frames`)."""
    ws: WebSocketLike = capped_connection(url, timeout, headers, max_frame_bytes=p.MAX_FRAME_BYTES)
    return ws


def dial(factory: WebSocketFactory, url: str, timeout: float, headers: list[str], *, server_url: str) -> WebSocketLike:
    """Open the socket through ``factory``; ``server_url`` (redacted) is what errors name."""
    try:
        return factory(url, timeout, headers)
    except websocket.WebSocketBadStatusException as exc:
        raise ConnectionFailedError(
            f"WebSocket upgrade refused with HTTP {exc.status_code}", {"status": exc.status_code}, url=server_url
        ) from None
    except websocket.WebSocketTimeoutException:
        raise TransportTimeoutError(
            f"no WebSocket handshake from {server_url} within {timeout:g} s", phase="handshake", seconds=timeout
        ) from None
    except TimeoutError:
        raise TransportTimeoutError(f"could not connect to {server_url} within {timeout:g} s", phase="connect", seconds=timeout) from None
    except (OSError, websocket.WebSocketException) as exc:
        raise ConnectionFailedError(
            f"WebSocket connection to {server_url} failed: {exc.__class__.__name__}: {exc}", url=server_url
        ) from None


def greet(
    ws: WebSocketLike,
    deadline: Deadline,
    *,
    send_feature_flags: bool,
    max_frame_bytes: int,
    read_slice: float,
    server_url: str,
    redact: Redactor | None = None,
) -> p.StatusData:
    """Send our feature flags, then wait for ``status``: ComfyUI greets every socket with it (and
    its ``sid``), the proof we reached ComfyUI. Leaves the socket reading in ``read_slice`` steps.

    First, a websocket-client socket gets this client's frame cap, enforced while frames are read."""
    if isinstance(ws, websocket.WebSocket):
        install_frame_cap(ws, max_frame_bytes)
    if send_feature_flags:
        ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
    ws.settimeout(max(0.001, deadline.remaining() or 0.001))
    try:
        opcode, data = ws.recv_data()
    except websocket.WebSocketTimeoutException:
        raise TransportTimeoutError(
            "no status message after the WebSocket handshake", phase="handshake", seconds=deadline.seconds
        ) from None
    except FrameTooLargeError as exc:
        raise ResponseTooLargeError(f"the server's first WebSocket frame: {exc}", limit=exc.limit, what="websocket frame") from None
    except (OSError, websocket.WebSocketException) as exc:
        raise ConnectionFailedError(f"WebSocket closed during the handshake: {exc}", url=server_url) from None
    # a server may echo the token of the URL, in a text frame or a binary one: both excerpts are
    # redacted text (a hex dump of the bytes would carry the token past the redactor)
    if opcode != websocket.ABNF.OPCODE_TEXT:
        raise ProtocolError(
            "the server's first WebSocket frame is not text: not a ComfyUI server?", excerpt=(redact or Redactor()).excerpt(bytes(data), 80)
        )
    message = p.parse_text(data, max_bytes=max_frame_bytes)
    if not isinstance(message, p.StatusData):
        raise ProtocolError(
            "the server's first WebSocket message is not 'status': not a ComfyUI server?",
            excerpt=(redact or Redactor()).excerpt(bytes(data)),
        )
    ws.settimeout(read_slice)
    return message


def release(ws: WebSocketLike, read_slice: float, log: logging.Logger, *, exchanged: bool = False) -> None:
    """Close the handshake if it is still open (waiting briefly: a dead peer never answers),
    then always release the socket.

    websocket-client's ``close()`` does nothing once a close frame was sent (``connected`` is
    then False), which is the case after the client's ``close()`` sent ours to a server that
    never echoed it: without the ``shutdown()`` the descriptor was left to the garbage collector."""
    try:
        if not exchanged:
            ws.close(timeout=min(1.0, read_slice * 2))
    except Exception as exc:  # noqa: BLE001 - closing a broken socket may fail in many ways
        log.debug("closing websocket: %s", exc)
    finally:
        try:
            ws.shutdown()
        except Exception as exc:  # noqa: BLE001 - as above
            log.debug("releasing websocket: %s", exc)
