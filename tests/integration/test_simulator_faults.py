"""The simulator's fault injection, over real sockets on 127.0.0.1."""

from __future__ import annotations

import json
import time

import pytest
import requests
import websocket

from tests.conftest import slow_workflow
from tests.integration.sim_client import RawSocket, submit, wait_history
from worker.comfyui import protocol as p
from worker.simulator import ComfyUISimulator

#: a dropped socket surfaces either as a close frame or as a TCP reset, depending on timing
DROPPED = (websocket.WebSocketConnectionClosedException, ConnectionError)


def test_refuse_websocket_n_times(sim: ComfyUISimulator) -> None:
    sim.faults.refuse_websocket(times=2)
    for _ in range(2):
        with pytest.raises(websocket.WebSocketBadStatusException):
            RawSocket(sim.url)
    RawSocket(sim.url).close()


def test_refuse_websocket_for_a_duration(sim: ComfyUISimulator) -> None:
    sim.faults.refuse_websocket(seconds=0.2)
    with pytest.raises(websocket.WebSocketBadStatusException):
        RawSocket(sim.url)
    time.sleep(0.25)
    RawSocket(sim.url).close()


def test_handshake_delay(sim: ComfyUISimulator) -> None:
    sim.faults.handshake_delay = 0.5
    with pytest.raises(websocket.WebSocketTimeoutException):
        RawSocket(sim.url, timeout=0.1)


def test_drop_sockets_at_a_named_event(sim: ComfyUISimulator) -> None:
    ws = RawSocket(sim.url)
    sim.faults.drop_sockets(at_event="progress", occurrence=2)
    submit(sim.url, slow_workflow(steps=6), ws.client_id, "p-drop")
    with pytest.raises(DROPPED):
        ws.until(lambda m: False)
    wait_history(sim.url, "p-drop")  # the prompt itself carries on


def test_drop_sockets_after_n_messages_and_now(sim: ComfyUISimulator) -> None:
    ws = RawSocket(sim.url)
    sim.faults.drop_sockets(after_messages=3)
    submit(sim.url, slow_workflow(steps=6), ws.client_id)
    with pytest.raises(DROPPED):
        ws.until(lambda m: False)
    again = RawSocket(sim.url)
    assert isinstance(again.next(), p.StatusData)
    sim.drop_sockets()
    with pytest.raises(DROPPED):
        again.until(lambda m: False)


def test_silent_socket_stays_open(sim: ComfyUISimulator) -> None:
    ws = RawSocket(sim.url)
    assert isinstance(ws.next(), p.StatusData)
    sim.faults.silent = True
    submit(sim.url, slow_workflow(steps=2), ws.client_id, "p-silent")
    wait_history(sim.url, "p-silent")
    with pytest.raises(websocket.WebSocketTimeoutException):
        ws.next(0.2)
    assert ws.ws.connected


def test_route_failure_n_times_then_recovery(sim: ComfyUISimulator) -> None:
    sim.faults.fail_route("GET", "/history", status=500, times=2)
    assert requests.get(f"{sim.url}/api/history/x", timeout=5).status_code == 500
    assert requests.get(f"{sim.url}/history/x", timeout=5).status_code == 500
    assert requests.get(f"{sim.url}/history/x", timeout=5).status_code == 200


def test_route_delay(sim: ComfyUISimulator) -> None:
    sim.faults.fail_route("GET", "/queue", delay=0.3, times=1)
    with pytest.raises(requests.Timeout):
        requests.get(f"{sim.url}/queue", timeout=0.1)


def test_restart_loses_queue_and_history(sim: ComfyUISimulator) -> None:
    ws = RawSocket(sim.url)
    wait_history(sim.url, submit(sim.url, slow_workflow(steps=1))["prompt_id"])
    submit(sim.url, slow_workflow(steps=100, salt=5), ws.client_id, "p-restart")
    ws.until(lambda m: isinstance(m, p.ProgressData))
    sim.restart()
    with pytest.raises(DROPPED):
        ws.until(lambda m: False)
    assert requests.get(f"{sim.url}/history", timeout=5).json() == {}
    assert requests.get(f"{sim.url}/queue", timeout=5).json() == {"queue_running": [], "queue_pending": []}
    wait_history(sim.url, submit(sim.url, slow_workflow(steps=1, salt=6))["prompt_id"])  # and it works again


def test_corrupt_duplicate_and_reorder_frames(sim: ComfyUISimulator) -> None:
    ws = RawSocket(sim.url)
    assert isinstance(ws.next(), p.StatusData)
    sim.faults.mangle_only = "execution_start"
    sim.faults.corrupt_frames = 1
    submit(sim.url, slow_workflow(steps=2, salt=1), ws.client_id, "c")
    kinds = [type(f).__name__ for f in ws.until_done("c")]
    assert kinds[:4] == ["StatusData", "StatusData", "MalformedMessage", "ExecutionCachedData"]
    sim.faults.duplicate_frames = 1
    submit(sim.url, slow_workflow(steps=2, salt=2), ws.client_id, "d")
    kinds = [type(f).__name__ for f in ws.until_done("d")]
    assert kinds[:5] == ["StatusData", "StatusData", "ExecutionStartData", "ExecutionStartData", "ExecutionCachedData"]
    sim.faults.mangle_only = "execution_cached"
    sim.faults.reorder_frames = 1
    submit(sim.url, slow_workflow(steps=2, salt=3), ws.client_id, "r")
    kinds = [type(f).__name__ for f in ws.until_done("r")]
    assert kinds[:5] == ["StatusData", "StatusData", "ExecutionStartData", "ProgressStateMessageData", "ExecutionCachedData"]


def test_late_prompt_reply_lets_events_arrive_first(sim: ComfyUISimulator) -> None:
    ws = RawSocket(sim.url)
    assert isinstance(ws.next(), p.StatusData)
    sim.faults.prompt_reply_delay = 0.3
    start = time.monotonic()
    submit(sim.url, slow_workflow(steps=1), ws.client_id, "late")
    assert time.monotonic() - start >= 0.3
    ws.ws.settimeout(0)
    early = ws.until(lambda m: isinstance(m, p.ExecutionStartData), timeout=0.5)
    assert early


def test_http_control_route_arms_faults(sim: ComfyUISimulator) -> None:
    control = f"{sim.url}/_sim/faults"
    requests.post(
        control,
        json={"refuse_websocket": {"times": 1}, "routes": [{"method": "GET", "path": "/queue", "status": 503, "times": 1}]},
        timeout=5,
    )
    with pytest.raises(websocket.WebSocketBadStatusException):
        RawSocket(sim.url)
    assert requests.get(f"{sim.url}/queue", timeout=5).status_code == 503
    ws = RawSocket(sim.url)
    assert isinstance(ws.next(), p.StatusData)
    requests.post(control, json={"drop_sockets": "now"}, timeout=5)
    with pytest.raises(DROPPED):
        ws.until(lambda m: False)
    requests.post(control, json={"restart": True}, timeout=5)
    requests.post(control, json={"clear": True}, timeout=5)
    stats = requests.get(f"{sim.url}/_sim/stats", timeout=5).json()
    assert stats["requests"]["GET /queue"] == 1
    assert stats["ws_connections"] == 1  # accepted upgrades
    assert stats["requests"]["GET /ws"] == 2  # attempts, the refused one included
    assert json.loads(json.dumps(stats))  # plain JSON for users' own CI
