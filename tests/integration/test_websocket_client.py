"""ComfyUIWebSocketClient over real sockets against the simulator, with its faults."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from tests.conftest import slow_workflow
from tests.integration.sim_client import submit, wait_history
from worker.comfyui import protocol as p
from worker.comfyui.errors import (
    ComfyUIError,
    ConnectionFailedError,
    ConnectionLostError,
    ExecutionError,
    PromptInterruptedError,
    TransportTimeoutError,
)
from worker.comfyui.progress import JobProgressState, JobStatus
from worker.comfyui.websocket_client import ComfyUIWebSocketClient, ConnectionEvent, ConnectionState, PromptCompletion, WebSocketSettings
from worker.simulator import ComfyUISimulator

FAST = WebSocketSettings(
    connect_timeout=2.0, reconnect_attempts=3, reconnect_delay=0.05, ping_interval=0.1, idle_timeout=0.5, read_slice=0.05
)


class Recorder:
    """Collects what a client's handlers receive."""

    def __init__(self, client: ComfyUIWebSocketClient, prompt_id: str | None = None) -> None:
        self.progress: list[JobProgressState] = []
        self.completions: list[PromptCompletion] = []
        self.errors: list[ComfyUIError] = []
        self.messages: list[Any] = []
        self.previews: list[Any] = []
        self.connection: list[ConnectionEvent] = []
        self.done = threading.Event()
        client.on_progress(self.progress.append, prompt_id)
        client.on_completion(self._complete, prompt_id)
        client.on_error(self.errors.append, prompt_id)
        client.on_message(self.messages.append)
        client.on_preview(self.previews.append, prompt_id)
        client.on_connection(self.connection.append)

    def _complete(self, completion: PromptCompletion) -> None:
        self.completions.append(completion)
        self.done.set()

    def wait(self, timeout: float = 5.0) -> PromptCompletion:
        assert self.done.wait(timeout), f"no completion; connection events: {self.connection}"
        return self.completions[-1]


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


@pytest.fixture
def client(sim: ComfyUISimulator) -> Iterator[ComfyUIWebSocketClient]:
    ws = ComfyUIWebSocketClient(sim.url, settings=FAST)
    yield ws
    ws.close()


def test_happy_path_with_progress(sim: ComfyUISimulator, client: ComfyUIWebSocketClient, txt2img: dict[str, Any]) -> None:
    rec = Recorder(client, "p1")
    client.connect()
    client.watch("p1", txt2img)
    submit(sim.url, txt2img, client.client_id, "p1")
    completion = rec.wait()
    assert completion.outcome == "success"
    curve = [s.progress for s in rec.progress]
    assert curve == sorted(curve) and curve[-1] == 99.9
    assert {s.current_node_type for s in rec.progress} >= {"KSampler", "SaveImage"}
    assert len([s for s in rec.progress if s.current_node_id == "3" and s.node_value is not None]) >= 6
    assert len(rec.previews) == 6  # type 4, attributed by metadata
    assert all(isinstance(f, p.PreviewImageWithMetadata) for f in rec.previews)
    assert client.server_features["supports_preview_metadata"] is True
    connection = client.connection
    assert (connection.state, connection.reconnect_count, connection.client_id) == (ConnectionState.CONNECTED, 0, client.client_id)
    assert rec.connection[0].kind == "connected" and rec.connection[0].connection_time_ms is not None


def test_events_before_the_post_reply_are_kept(sim: ComfyUISimulator, client: ComfyUIWebSocketClient) -> None:
    sim.faults.prompt_reply_delay = 0.3
    rec = Recorder(client, "early")
    client.connect()
    client.watch("early", slow_workflow(steps=3))
    submit(sim.url, slow_workflow(steps=3), client.client_id, "early")  # returns after the prompt already finished
    assert rec.done.is_set()
    assert rec.wait().outcome == "success"
    assert rec.progress[0].status is JobStatus.RUNNING


def test_cached_rerun(sim: ComfyUISimulator, client: ComfyUIWebSocketClient, txt2img: dict[str, Any]) -> None:
    client.connect()
    first = Recorder(client, "a")
    client.watch("a", txt2img)
    submit(sim.url, txt2img, client.client_id, "a")
    first.wait()
    second = Recorder(client, "b")
    tracker = client.watch("b", txt2img)
    submit(sim.url, txt2img, client.client_id, "b")
    assert second.wait().outcome == "success"
    assert tracker.state().nodes_total == 0  # everything came from the cache
    assert second.previews == []


def test_execution_error_reaches_on_error_with_node_details(sim: ComfyUISimulator, client: ComfyUIWebSocketClient) -> None:
    workflow = {
        "1": {"class_type": "LabSlowProgress", "inputs": {"steps": 2, "seconds_per_step": 0.1, "salt": 0}},
        "2": {"class_type": "LabRaiseError", "inputs": {"message": "boom", "value": ["1", 0]}},
    }
    rec = Recorder(client, "err")
    client.connect()
    client.watch("err", workflow)
    submit(sim.url, workflow, client.client_id, "err")
    assert rec.wait().outcome == "error"
    time.sleep(0.05)
    assert len(rec.errors) == 1
    error = rec.errors[0]
    assert isinstance(error, ExecutionError)
    assert (error.node_id, error.node_type, error.exception_type) == ("2", "LabRaiseError", "RuntimeError")
    assert "boom (value=2)" in error.message
    assert rec.progress[-1].status is JobStatus.FAILED


def test_interrupt(sim: ComfyUISimulator, client: ComfyUIWebSocketClient) -> None:
    rec = Recorder(client, "int")
    client.connect()
    client.watch("int", slow_workflow(steps=200))
    submit(sim.url, slow_workflow(steps=200), client.client_id, "int")
    wait_until(lambda: any(s.node_value for s in rec.progress))
    requests.post(f"{sim.url}/interrupt", json={"prompt_id": "int"}, timeout=5)
    assert rec.wait().outcome == "interrupted"
    assert isinstance(rec.errors[0], PromptInterruptedError)
    assert rec.errors[0].to_dict()["node_type"] == "LabSlowProgress"


def test_three_drops_mid_run_each_reconnects(sim: ComfyUISimulator, client: ComfyUIWebSocketClient) -> None:
    rec = Recorder(client, "drops")
    client.connect()
    client.watch("drops", slow_workflow(steps=60))
    submit(sim.url, slow_workflow(steps=60), client.client_id, "drops")
    for n in range(1, 4):
        wait_until(lambda n=n: client.connection.reconnect_count == n - 1 and client.is_connected and bool(rec.progress))  # type: ignore[misc]
        time.sleep(0.05)
        started = time.monotonic()
        sim.drop_sockets()
        wait_until(lambda n=n: client.connection.reconnect_count == n)  # type: ignore[misc]
        assert time.monotonic() - started < 1.0  # delay 0.05 s: reconnects promptly, every time
    completion = rec.wait()
    assert completion.outcome == "success"
    kinds = [e.kind for e in rec.connection]
    assert kinds == ["connected"] + ["disconnected", "reconnected"] * 3
    assert all(e.duration_s is not None for e in rec.connection if e.kind == "disconnected")
    curve = [s.progress for s in rec.progress]
    assert curve == sorted(curve)


def test_reconnect_refused_until_attempts_run_out(sim: ComfyUISimulator, client: ComfyUIWebSocketClient) -> None:
    rec = Recorder(client)
    client.connect()
    sim.faults.refuse_websocket(times=10)
    started = time.monotonic()
    sim.drop_sockets()
    wait_until(lambda: client.failure is not None)
    assert time.monotonic() - started < 2.0  # 3 attempts 0.05 s apart: no hang
    failure = client.failure
    assert isinstance(failure, ConnectionLostError)
    assert failure.details["reconnect_attempts"] == 3
    assert "HTTP 503" in failure.message
    assert rec.errors == [failure]
    assert [e.kind for e in rec.connection] == ["connected", "disconnected", "failed"]
    assert client.connection.state is ConnectionState.FAILED
    with pytest.raises(ConnectionFailedError):
        client.connect()


def test_silent_socket_is_caught_by_the_idle_check(sim: ComfyUISimulator, client: ComfyUIWebSocketClient) -> None:
    rec = Recorder(client)
    client.connect()
    sim.faults.silent = True
    started = time.monotonic()
    wait_until(lambda: any(e.kind == "disconnected" for e in rec.connection))
    detected = time.monotonic() - started
    assert 0.4 <= detected < 1.5  # idle_timeout 0.5 s
    assert next(e for e in rec.connection if e.kind == "disconnected").reason == "idle"
    sim.faults.silent = False
    wait_until(lambda: client.connection.reconnect_count == 1)


def test_reconnect_waits_for_the_old_socket_so_the_new_one_is_not_deaf(sim: ComfyUISimulator, client: ComfyUIWebSocketClient) -> None:
    rec = Recorder(client, "ov")
    client.connect()
    client.watch("ov", slow_workflow(steps=40))
    submit(sim.url, slow_workflow(steps=40), client.client_id, "ov")
    wait_until(lambda: bool(rec.progress))
    sim.drop_sockets()
    wait_until(lambda: client.connection.reconnect_count == 1)
    assert rec.wait().outcome == "success"  # the final events reached the new socket
    stats = requests.get(f"{sim.url}/_sim/stats", timeout=5).json()
    assert stats["open_sockets"] == 1  # never two sockets under one clientId


def test_handshake_timeout_and_refusal_are_typed(sim: ComfyUISimulator) -> None:
    sim.faults.handshake_delay = 1.0
    slow = ComfyUIWebSocketClient(sim.url, settings=WebSocketSettings(connect_timeout=0.2, ping_interval=0.1, idle_timeout=0.5))
    started = time.monotonic()
    with pytest.raises(TransportTimeoutError) as info:
        slow.connect()
    assert info.value.phase == "handshake"
    assert time.monotonic() - started < 0.9
    sim.faults.handshake_delay = 0
    sim.faults.refuse_websocket(times=1, status=403)
    with pytest.raises(ConnectionFailedError) as refused:
        ComfyUIWebSocketClient(sim.url, settings=FAST).connect()
    assert refused.value.details["status"] == 403


def test_connection_refused_and_unroutable_hosts() -> None:
    with pytest.raises(ConnectionFailedError):
        ComfyUIWebSocketClient("http://127.0.0.1:9", settings=FAST).connect()


def test_not_a_comfyui_server_is_a_protocol_error(sim: ComfyUISimulator) -> None:
    from aiohttp import web

    from worker.comfyui.errors import ProtocolError

    async def other_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str("hello, I am not ComfyUI")
        await ws.receive()
        return ws

    other = ComfyUISimulator()
    other.sim.app.router.add_route("GET", "/other/ws", other_ws)
    with other:
        with pytest.raises(ProtocolError) as info:
            ComfyUIWebSocketClient(other.url + "/other", settings=FAST).connect()
        assert "not ComfyUI" in (info.value.details.get("excerpt") or "")


def test_malformed_duplicated_and_reordered_frames_are_survived(sim: ComfyUISimulator, client: ComfyUIWebSocketClient) -> None:
    rec = Recorder(client, "m")
    client.connect()
    client.watch("m", slow_workflow(steps=6))
    sim.faults.mangle_only = "progress_state"
    sim.faults.corrupt_frames = 2
    sim.faults.duplicate_frames = 2
    sim.faults.reorder_frames = 2
    submit(sim.url, slow_workflow(steps=6), client.client_id, "m")
    assert rec.wait().outcome == "success"
    assert sum(isinstance(m, p.MalformedMessage) for m in rec.messages) == 2
    curve = [s.progress for s in rec.progress]
    assert curve == sorted(curve)
    assert len(rec.completions) == 1


def test_type_1_previews_without_feature_flags(sim: ComfyUISimulator, txt2img: dict[str, Any]) -> None:
    legacy = ComfyUIWebSocketClient(sim.url, settings=dataclasses.replace(FAST, send_feature_flags=False))
    rec = Recorder(legacy, "legacy")
    legacy.connect()
    submit(sim.url, txt2img, legacy.client_id, "legacy")
    rec.wait()
    assert len(rec.previews) == 6
    assert all(isinstance(f, p.PreviewImage) and f.format == "jpeg" for f in rec.previews)
    legacy.close()


def test_a_raising_handler_breaks_nothing(sim: ComfyUISimulator, client: ComfyUIWebSocketClient, caplog: pytest.LogCaptureFixture) -> None:
    def bad(_: object) -> None:
        raise RuntimeError("handler bug")

    client.on_progress(bad)
    client.on_message(bad)
    rec = Recorder(client, "h")
    client.connect()
    client.watch("h", slow_workflow(steps=3))
    submit(sim.url, slow_workflow(steps=3), client.client_id, "h")
    assert rec.wait().outcome == "success"
    assert rec.progress
    assert "handler bug" in caplog.text


def test_filters_and_unsubscribe(sim: ComfyUISimulator, client: ComfyUIWebSocketClient) -> None:
    mine: list[str] = []
    everyone: list[str] = []
    off = client.on_completion(lambda c: mine.append(c.prompt_id), "x")
    client.on_completion(lambda c: everyone.append(c.prompt_id))
    client.connect()
    for prompt_id in ("x", "y"):
        submit(sim.url, slow_workflow(steps=1, salt=len(everyone)), client.client_id, prompt_id)
        wait_history(sim.url, prompt_id)
    wait_until(lambda: len(everyone) == 2)
    assert (mine, everyone) == (["x"], ["x", "y"])
    off()
    submit(sim.url, slow_workflow(steps=1, salt=9), client.client_id, "x2")
    wait_until(lambda: len(everyone) == 3)
    assert mine == ["x"]


def test_close_is_idempotent_and_leaves_nothing_behind(sim: ComfyUISimulator) -> None:
    before = set(threading.enumerate())
    clients = [ComfyUIWebSocketClient(sim.url, settings=FAST) for _ in range(5)]
    for c in clients:
        c.connect()
    wait_until(lambda: requests.get(f"{sim.url}/_sim/stats", timeout=5).json()["open_sockets"] == 5)
    for c in clients:
        c.close()
        c.close()
    assert set(threading.enumerate()) - before == set()
    wait_until(lambda: requests.get(f"{sim.url}/_sim/stats", timeout=5).json()["open_sockets"] == 0)
    assert all(c.connection.state is ConnectionState.CLOSED for c in clients)


def test_every_client_socket_is_closed_whether_or_not_the_server_answers_the_close(sim: ComfyUISimulator) -> None:
    """A silent server never echoes our close frame: the socket must still be closed, and the
    same for a socket replaced by a reconnect."""
    from worker.comfyui.websocket_client import default_ws_factory

    opened: list[Any] = []

    def recording(url: str, timeout: float, headers: list[str]) -> Any:
        opened.append(default_ws_factory(url, timeout, headers))
        return opened[-1]

    polite = ComfyUIWebSocketClient(sim.url, settings=FAST, ws_factory=recording)
    polite.connect()
    sim.drop_sockets()
    wait_until(lambda: polite.connection.reconnect_count == 1)
    polite.close()
    deaf = ComfyUIWebSocketClient(sim.url, settings=FAST, ws_factory=recording)
    deaf.connect()
    sim.faults.silent = True
    deaf.close()
    assert len(opened) == 3
    assert [ws.sock for ws in opened] == [None, None, None]  # every socket closed, none left to the GC


def test_close_during_reconnect_backoff_returns_promptly(sim: ComfyUISimulator) -> None:
    slow = ComfyUIWebSocketClient(
        sim.url, settings=WebSocketSettings(reconnect_delay=30.0, ping_interval=0.1, idle_timeout=0.5, read_slice=0.05)
    )
    slow.connect()
    sim.drop_sockets()
    wait_until(lambda: slow.connection.state is ConnectionState.RECONNECTING)
    started = time.monotonic()
    slow.close()
    assert time.monotonic() - started < 1.0


def test_credentials_go_on_the_upgrade_and_never_into_the_record(sim: ComfyUISimulator) -> None:
    from worker.comfyui.websocket_client import default_ws_factory

    seen: list[tuple[str, list[str]]] = []

    def spy(url: str, timeout: float, headers: list[str]) -> Any:
        seen.append((url, headers))
        return default_ws_factory(url, timeout, headers)

    bearer = ComfyUIWebSocketClient(sim.url + "/", headers={"Authorization": "Bearer sk-123"}, settings=FAST, ws_factory=spy)
    bearer.connect()
    query = ComfyUIWebSocketClient(sim.url, token="tok-456", settings=FAST, ws_factory=spy)
    query.connect()
    assert seen[0] == (f"{sim.url.replace('http', 'ws')}/ws?clientId={bearer.client_id}", ["Authorization: Bearer sk-123"])
    assert seen[1][0].endswith(f"/ws?clientId={query.client_id}&token=tok-456")
    for client in (bearer, query):
        assert "sk-123" not in repr(client.connection) and "tok-456" not in repr(client.connection)
        client.close()
