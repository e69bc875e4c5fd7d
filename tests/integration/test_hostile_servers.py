"""Hostile or broken servers (issue 15, part 2): redirects, huge frames and bodies, echoed secrets, trickles."""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hostile_servers import ScriptedServer, echo_headers, endless_body, huge_frame, redirect_to, trickle
from worker.comfyui.errors import (
    HTTPStatusError,
    ProtocolError,
    RedirectRefusedError,
    ResponseTooLargeError,
    TransportTimeoutError,
)
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.pod_client import ComfyUIPodClient
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.comfyui.websocket_client import ComfyUIWebSocketClient, WebSocketLike, WebSocketSettings, default_ws_factory
from worker.simulator import ComfyUISimulator

TOKEN = "tok-Very-Secret-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WS = WebSocketSettings(connect_timeout=3.0, reconnect_attempts=0)


@pytest.fixture
def capture() -> Iterator[ScriptedServer]:
    """Where a redirect points: it records whatever reaches it."""
    with ScriptedServer(echo_headers(404)) as server:
        yield server


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirected_websocket_upgrade_is_refused_and_nothing_reaches_the_target(status: int, capture: ScriptedServer) -> None:
    with ScriptedServer(redirect_to(f"ws://127.0.0.1:{capture.port}/ws?clientId=x", status)) as redirect:
        client = ComfyUIWebSocketClient(redirect.url, headers=AUTH, settings=WS)
        with pytest.raises(RedirectRefusedError) as caught:
            client.connect()
    assert caught.value.details["status"] == status
    assert capture.requests == []
    assert TOKEN not in str(caught.value.to_dict())


@pytest.mark.parametrize("announced", [2**62, 200 * 1024 * 1024])
def test_a_huge_frame_header_is_refused_before_its_payload_is_read(announced: int) -> None:
    with ScriptedServer(huge_frame(announced, send_bytes=64 * 1024 * 1024)) as server:
        client = ComfyUIWebSocketClient(server.url, settings=WebSocketSettings(connect_timeout=5.0, max_frame_bytes=1024 * 1024))
        tracemalloc.start()
        started = time.monotonic()
        try:
            with pytest.raises(ResponseTooLargeError) as caught:
                client.connect()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert time.monotonic() - started < 2.0
    assert peak < 4 * 1024 * 1024  # the old reader held tens of MB here, and 2**62 never ended
    assert caught.value.details["limit"] == 1024 * 1024


def test_an_endless_history_body_is_refused_at_the_cap() -> None:
    with ScriptedServer(endless_body(limit=256 * 1024 * 1024)) as server:
        client = ComfyUIRestClient(server.url, http=HTTPSettings(retries=0, max_response_bytes=2 * 1024 * 1024))
        tracemalloc.start()
        try:
            with pytest.raises(ResponseTooLargeError):
                client.get_history("p1")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        client.close()
    assert peak < 8 * 1024 * 1024


def test_a_huge_content_length_is_refused_before_reading() -> None:
    with ScriptedServer(endless_body(content_length=10**12, limit=1024 * 1024)) as server:
        client = ComfyUIRestClient(server.url, http=HTTPSettings(retries=0))
        with pytest.raises(ResponseTooLargeError, match="announced"):
            client.get_queue()
        client.close()


@pytest.mark.parametrize("status", [400, 500, 502])
def test_a_server_echoing_the_token_leaves_no_trace_of_it_in_the_error(status: int) -> None:
    with ScriptedServer(echo_headers(status)) as server:
        client = ComfyUIRestClient(server.url, headers=AUTH, http=HTTPSettings(retries=0))
        with pytest.raises(HTTPStatusError) as caught:
            client.get_queue()
        client.close()
    excerpt = caught.value.details["body_excerpt"]
    assert "***" in excerpt and "your request was" in excerpt
    assert TOKEN not in str(caught.value.to_dict()) and TOKEN[:12] not in str(caught.value.to_dict())


def test_a_json_echo_of_the_token_is_redacted_from_protocol_excerpts() -> None:
    def script(conn: Any, head: bytes, server: ScriptedServer) -> None:
        body = f'["{TOKEN}"]'.encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    with ScriptedServer(script) as server:
        client = ComfyUIRestClient(server.url, headers=AUTH, http=HTTPSettings(retries=0))
        with pytest.raises(ProtocolError) as caught:
            client.get_queue()
        client.close()
    assert TOKEN not in str(caught.value.to_dict())


def test_a_trickling_download_ends_at_the_download_timeout() -> None:
    with ScriptedServer(trickle(0.05)) as server:
        client = ComfyUIRestClient(server.url, http=HTTPSettings(retries=0, read_timeout=5.0, download_timeout=0.5))
        started = time.monotonic()
        with pytest.raises(TransportTimeoutError) as caught:
            client.download("x.png")
        client.close()
    assert time.monotonic() - started < 2.0
    assert caught.value.phase == "request" and caught.value.details["seconds"] == 0.5


def test_query_auth_sends_only_the_token_on_the_websocket(sim: ComfyUISimulator, image_only: dict[str, Any]) -> None:
    seen: list[tuple[str, list[str]]] = []

    def recording(url: str, timeout: float, headers: list[str]) -> WebSocketLike:
        seen.append((url, list(headers)))
        return default_ws_factory(url, timeout, headers)

    client = ComfyUIPodClient(sim.url, headers=AUTH, token=TOKEN, ws_factory=recording)
    try:
        assert client.execute_workflow(image_only).status == "success"
    finally:
        client.close()
    url, headers = seen[0]
    assert f"token={TOKEN}" in url
    assert not any(h.lower().startswith("authorization") for h in headers)
