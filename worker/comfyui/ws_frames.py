"""A websocket-client connection that enforces its frame cap while reading, and never follows a redirect.

Why: websocket-client reads a frame's whole payload before anyone can look at its size. A
header announcing 2**62 bytes made a pool child read without bound (3.2 GB in 14 s) and a
200 MB frame cost 430 MB before it was discarded. Here the announced length is checked as soon
as the header's length field is read, before a payload byte is, and a fragmented message is
checked as its fragments add up; past the cap the socket is poisoned (every later read fails at
once, so closing it cannot read the rest of the frame either).

Redirects: websocket-client follows a 30x on the upgrade and sends the same headers, the bearer
token included, to whatever host the ``Location`` names. A ComfyUI pod (or its proxy) has no
reason to redirect a WebSocket, so a redirect is refused with :class:`RedirectRefusedError`,
and nothing is sent to the new location.
"""

from __future__ import annotations

from typing import Any

import websocket
from websocket._abnf import ABNF, continuous_frame, frame_buffer
from websocket._handshake import SUPPORTED_REDIRECT_STATUSES

from worker.comfyui.errors import RedirectRefusedError
from worker.comfyui.urls import redact_url

__all__ = ["FrameTooLargeError", "capped_connection", "install_frame_cap"]


class FrameTooLargeError(websocket.WebSocketProtocolException):
    """A frame (or a fragmented message) announced more bytes than the cap; raised before reading them.

    A websocket-client exception on purpose: the receive loop treats it like any broken socket
    (drop it, reconnect, report), and the handshake turns it into a typed :mod:`errors` error."""

    def __init__(self, announced: int, limit: int) -> None:
        super().__init__(f"a WebSocket frame of {announced} bytes exceeds the {limit}-byte cap")
        self.announced = announced
        self.limit = limit


class _CappedFrameBuffer(frame_buffer):
    """websocket-client's frame reader, refusing a payload larger than ``limit`` from its header alone."""

    def __init__(self, recv_fn: Any, skip_utf8_validation: bool, limit: int) -> None:
        super().__init__(recv_fn, skip_utf8_validation)
        self.limit = limit
        self.poisoned: FrameTooLargeError | None = None

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length > self.limit:
            self.poisoned = FrameTooLargeError(self.length, self.limit)
            raise self.poisoned

    def recv_frame(self) -> ABNF:
        if self.poisoned is not None:  # the stream is mid-payload: nothing after this can be trusted
            raise self.poisoned
        return super().recv_frame()


class _CappedContinuation(continuous_frame):
    """Fragments of one message, refused once their sum passes ``limit`` (each alone may be small)."""

    def __init__(self, fire_cont_frame: bool, skip_utf8_validation: bool, limit: int, buffer: _CappedFrameBuffer) -> None:
        super().__init__(fire_cont_frame, skip_utf8_validation)
        self.limit = limit
        self.buffer = buffer

    def add(self, frame: ABNF) -> None:
        held = len(self.cont_data[1]) if self.cont_data else 0
        if held + len(frame.data) > self.limit:
            self.cont_data = None
            self.buffer.poisoned = FrameTooLargeError(held + len(frame.data), self.limit)
            raise self.buffer.poisoned
        super().add(frame)


def install_frame_cap(ws: websocket.WebSocket, limit: int) -> None:
    """Replace ``ws``'s frame reader by the capped one (before the first frame is read)."""
    buffer = _CappedFrameBuffer(ws._recv, ws.frame_buffer.skip_utf8_validation, limit)
    ws.frame_buffer = buffer
    ws.cont_frame = _CappedContinuation(ws.cont_frame.fire_cont_frame, ws.cont_frame.skip_utf8_validation, limit, buffer)


def capped_connection(url: str, timeout: float, headers: list[str], *, max_frame_bytes: int) -> websocket.WebSocket:
    """Open a WebSocket like ``websocket.create_connection``, capped, without Origin, never redirected."""
    ws = websocket.WebSocket(enable_multithread=True, skip_utf8_validation=True)
    install_frame_cap(ws, max_frame_bytes)
    ws.settimeout(timeout)
    try:
        ws.connect(url, header=headers, suppress_origin=True, redirect_limit=0)  # type: ignore[no-untyped-call]
    except websocket.WebSocketException:
        response = ws.handshake_response
        if response is not None and response.status in SUPPORTED_REDIRECT_STATUSES:
            location = str((response.headers or {}).get("location") or "")
            raise RedirectRefusedError(
                f"the WebSocket upgrade answered HTTP {response.status} (a redirect); not followed: credentials would go to another server",
                status=int(response.status),
                location=redact_url(location) if location else None,
            ) from None
        raise
    return ws
