"""The excerpt of a first WebSocket frame that is not text passes the redactor too."""

from __future__ import annotations

import pytest
import websocket

from worker.comfyui.clock import Deadline, FakeClock
from worker.comfyui.errors import ProtocolError
from worker.comfyui.redact import Redactor
from worker.comfyui.websocket_socket import greet

TOKEN = "tok-3f9a1c77b2"


class _BinaryEcho:
    """A server whose first frame is binary and echoes the upgrade request (the token included)."""

    connected = True

    def recv_data(self, control_frame: bool = False) -> tuple[int, bytes]:
        return websocket.ABNF.OPCODE_BINARY, f"GET /ws?clientId=c&token={TOKEN} HTTP/1.1".encode()

    def send(self, payload: str | bytes, opcode: int = 1) -> int:
        return len(payload)

    def ping(self, payload: str | bytes = "") -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def close(self, status: int = 1000, reason: bytes = b"", timeout: float | None = None) -> None: ...
    def send_close(self, status: int = 1000, reason: bytes = b"") -> None: ...
    def shutdown(self) -> None: ...


def test_a_binary_first_frame_echoing_the_token_is_redacted_in_the_excerpt() -> None:
    # the excerpt was the raw bytes in hex, which no redaction looks into: the token left hex-encoded
    with pytest.raises(ProtocolError) as exc:
        greet(
            _BinaryEcho(),
            Deadline(FakeClock(), 5.0),
            send_feature_flags=False,
            max_frame_bytes=1 << 20,
            read_slice=0.5,
            server_url="http://pod:8188",
            redact=Redactor([TOKEN]),
        )
    excerpt = str(exc.value.details.get("excerpt"))
    assert TOKEN not in excerpt and TOKEN.encode().hex() not in excerpt
    assert "not text" in str(exc.value) and "clientId=c" in excerpt
