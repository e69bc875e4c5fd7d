"""ComfyUIWebSocketClient through its socket factory and clock: no server, no real socket."""

from __future__ import annotations

import threading
import time

import pytest
import websocket

from tests.fakes import FakeSocket, SocketFactory, text
from tests.traces import TRACE_DIR, load_trace
from worker.comfyui import protocol as p
from worker.comfyui.clock import FakeClock
from worker.comfyui.errors import ComfyUIError, ConnectionLostError, ProtocolError
from worker.comfyui.follower import PromptCompletion
from worker.comfyui.progress import JobProgressState
from worker.comfyui.websocket_client import ComfyUIWebSocketClient, ConnectionEvent, WebSocketSettings

FAST = WebSocketSettings(connect_timeout=1.0, reconnect_attempts=2, reconnect_delay=3.0, reconnect_backoff=2.0, read_slice=0.01)


def wait_until(condition: object, seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.002)
    assert condition(), "condition not met in time"  # type: ignore[operator]


def client(factory: SocketFactory, clock: FakeClock | None = None) -> ComfyUIWebSocketClient:
    return ComfyUIWebSocketClient(
        "https://pod.test/prefix", client_id="cid-1", token="s3cret", settings=FAST, clock=clock or FakeClock(), ws_factory=factory
    )


def test_connect_sends_feature_flags_and_puts_the_client_id_and_token_in_the_url() -> None:
    socket = FakeSocket()
    factory = SocketFactory(socket)
    ws = client(factory)
    ws.connect()
    ws.close()
    assert factory.urls == ["wss://pod.test/prefix/ws?clientId=cid-1&token=s3cret"]
    assert '"feature_flags"' in str(socket.sent[0])
    assert "s3cret" not in ws.server_url and socket.closed


def test_a_recorded_run_reaches_the_handlers_of_its_prompt() -> None:
    records = load_trace(TRACE_DIR / "success-ksampler.jsonl")
    post = next(r for r in records if r["kind"] == "http" and r["path"] == "/prompt")
    prompt_id = post["response"]["prompt_id"]
    frames = [text(r["msg"]) for r in records if r["kind"] == "ws_text" and r["conn"] == "A"][1:]
    ws = client(SocketFactory(FakeSocket(frames)))
    progress: list[JobProgressState] = []
    done: list[PromptCompletion] = []
    others: list[PromptCompletion] = []
    ws.watch(prompt_id, post["request"]["prompt"])
    ws.on_progress(progress.append, prompt_id)
    ws.on_completion(done.append, prompt_id)
    ws.on_completion(others.append, "another prompt")
    with ws:
        wait_until(lambda: done)
    assert [c.outcome for c in done] == ["success"] and others == []
    assert progress and progress[-1].progress < 100.0  # 100 only once history confirms


def test_reconnects_back_off_on_the_clock_and_the_final_loss_reaches_every_error_handler() -> None:
    clock = FakeClock()
    refused = websocket.WebSocketBadStatusException("Handshake status %d %s", 503, "Service Unavailable")
    factory = SocketFactory(FakeSocket(drop=True), refused, refused)
    ws = client(factory, clock)
    events: list[ConnectionEvent] = []
    errors: list[ComfyUIError] = []
    ws.on_connection(events.append)
    ws.on_error(errors.append)
    ws.connect()
    wait_until(lambda: ws.failure is not None)
    ws.close()
    assert [e.kind for e in events] == ["connected", "disconnected", "failed"]
    assert clock.sleeps == [3.0, 6.0]  # reconnect_delay, then times reconnect_backoff
    assert len(factory.urls) == 3 and len(set(factory.urls)) == 1  # the same clientId every time
    assert len(errors) == 1 and isinstance(errors[0], ConnectionLostError)


def test_a_server_that_does_not_greet_with_status_is_not_comfyui() -> None:
    socket = FakeSocket()
    socket.greeting.clear()
    socket.greeting.append(text({"type": "hello", "data": {}}))
    with pytest.raises(ProtocolError):
        client(SocketFactory(socket)).connect()
    assert socket.closed


def test_a_raising_handler_does_not_stop_the_others() -> None:
    frame = p.encode_text(p.ExecutionStartData("p1"))
    ws = client(SocketFactory(FakeSocket([(websocket.ABNF.OPCODE_TEXT, frame.encode())])))
    heard = threading.Event()

    def broken(_: object) -> None:
        raise RuntimeError("handler bug")

    ws.on_message(broken)
    ws.on_message(lambda m: heard.set() if isinstance(m, p.ExecutionStartData) else None)
    with ws:
        assert heard.wait(2.0)
