"""A silent socket is found within about a second while a prompt is watched, by WebSocket pings only."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.conftest import slow_workflow
from tests.integration.sim_client import submit
from worker.comfyui.websocket_client import ComfyUIWebSocketClient, ConnectionEvent, WebSocketSettings
from worker.simulator import ComfyUISimulator

# the production pace for the periodic ping and the idle check: only the quiet ping can be quick
SETTINGS = WebSocketSettings(
    reconnect_delay=0.05, ping_interval=10.0, idle_timeout=30.0, read_slice=0.02, quiet_ping_after=0.2, pong_timeout=0.3
)


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_a_watched_socket_that_goes_silent_is_dropped_within_a_second(sim: ComfyUISimulator) -> None:
    client = ComfyUIWebSocketClient(sim.url, settings=SETTINGS)
    events: list[ConnectionEvent] = []
    client.on_connection(events.append)
    try:
        client.connect()
        client.watch("quiet", slow_workflow(steps=200))
        submit(sim.url, slow_workflow(steps=200), client.client_id, "quiet")
        time.sleep(0.3)
        assert not any(e.kind == "disconnected" for e in events)  # quiet pings answered: alive
        sim.faults.silent = True
        started = time.monotonic()
        assert _wait(lambda: any(e.kind == "disconnected" for e in events), 2.0)
        assert time.monotonic() - started < 1.0  # about quiet_ping_after + pong_timeout, not idle_timeout (30 s)
    finally:
        sim.faults.silent = False
        client.close()


def test_without_a_watched_prompt_a_quiet_socket_is_not_pinged_early(sim: ComfyUISimulator) -> None:
    client = ComfyUIWebSocketClient(sim.url, settings=SETTINGS)
    events: list[ConnectionEvent] = []
    client.on_connection(events.append)
    try:
        client.connect()
        sim.faults.silent = True
        assert not _wait(lambda: any(e.kind == "disconnected" for e in events), 1.0)
    finally:
        sim.faults.silent = False
        client.close()
