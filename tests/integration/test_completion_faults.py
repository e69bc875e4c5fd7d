"""Completion stays prompt through socket faults: the result within 0.5 s of the job's end on the pod,
with the production reconnect pace (3 x 5 s) and history probe (5 s), and no extra request on a healthy socket."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import slow_workflow
from tests.observers import PodEvents
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.pod_client import ComfyUIPodClient, PodClientSettings, PodEvent
from worker.comfyui.websocket_client import ConnectionEvent, WebSocketSettings
from worker.simulator import ComfyUISimulator

SETTINGS = PodClientSettings(
    http=HTTPSettings(connect_timeout=1.0, read_timeout=5.0, retries=1, retry_backoff=0.02),
    websocket=WebSocketSettings(connect_timeout=1.0, reconnect_attempts=3, reconnect_delay=5.0, read_slice=0.02),
    poll_interval=2.0,
    history_probe_interval=5.0,
    job_timeout=20.0,
    wait_slice=0.05,
)
#: 30 steps of 1 s scaled by the test simulator's 0.05: a 1.5 s job
JOB = {"steps": 30, "seconds_per_step": 1.0}


class Ended:
    """When the pod last emitted an event for any prompt: the job's end, once it is over."""

    def __init__(self, sim: ComfyUISimulator) -> None:
        self.at = 0.0
        sim.sim.engine.on_event = self._seen

    def _seen(self, event: str, prompt_id: str) -> None:
        self.at = time.monotonic()

    def lag(self) -> float:
        return time.monotonic() - self.at


@pytest.fixture
def events() -> list[PodEvent]:
    return []


def _client(sim: ComfyUISimulator, events: list[PodEvent], settings: PodClientSettings = SETTINGS) -> ComfyUIPodClient:
    return ComfyUIPodClient(sim.url, settings=settings, observers=[PodEvents(events)])


@pytest.fixture
def client(sim: ComfyUISimulator, events: list[PodEvent]) -> Iterator[ComfyUIPodClient]:
    pod = _client(sim, events)
    yield pod
    pod.close()


def counts(sim: ComfyUISimulator) -> dict[str, int]:
    return {k: v for k, v in sim.request_counts().items() if not k.startswith("GET /_sim")}


def once_connected(events: list[PodEvent], action: Callable[[], None], after: float = 0.0) -> None:
    def wait() -> None:
        while not any(isinstance(e, ConnectionEvent) for e in events):
            time.sleep(0.002)
        time.sleep(after)
        action()

    threading.Thread(target=wait, daemon=True).start()


def _run(client: ComfyUIPodClient, sim: ComfyUISimulator, name: str, **job: Any) -> tuple[Any, float]:
    ended = Ended(sim)
    result = client.execute_workflow(slow_workflow(**{**JOB, **job}), prompt_id=name)
    return result, ended.lag()


def test_a_healthy_socket_makes_no_extra_request(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    result, lag = _run(client, sim, "healthy")
    assert result.method == "websocket" and lag < 0.5
    assert counts(sim) == {"GET /system_stats": 1, "GET /ws": 1, "POST /prompt": 1, "GET /history/{prompt_id}": 1}


def test_a_drop_mid_job_is_covered_by_history_during_the_5_s_reconnect_wait(
    sim: ComfyUISimulator, client: ComfyUIPodClient, events: list[PodEvent]
) -> None:
    sim.faults.drop_sockets(at_event="progress", occurrence=6)
    result, lag = _run(client, sim, "dropped")
    assert lag < 0.5, f"result {lag:.2f} s after the job's end"
    assert result.method == "websocket"
    assert [e.kind for e in events if isinstance(e, ConnectionEvent)] == ["connected", "disconnected"]  # no reconnect yet


def test_after_a_fallback_mid_job_the_end_is_polled_closely(sim: ComfyUISimulator, events: list[PodEvent]) -> None:
    settings = dataclasses.replace(SETTINGS, websocket=dataclasses.replace(SETTINGS.websocket, reconnect_delay=0.05))
    client = _client(sim, events, settings)
    sim.faults.drop_sockets(at_event="progress", occurrence=3)
    once_connected(events, lambda: sim.faults.refuse_websocket(seconds=20))
    try:
        result, lag = _run(client, sim, "fell-back", steps=40)
    finally:
        client.close()
    assert (result.method, result.fallback_reason) == ("rest_polling", "error")
    assert lag < 0.5, f"result {lag:.2f} s after the job's end (poll_interval is 2 s)"


def test_a_silent_socket_is_found_by_pings_and_the_end_by_history(sim: ComfyUISimulator, events: list[PodEvent]) -> None:
    settings = dataclasses.replace(SETTINGS, websocket=dataclasses.replace(SETTINGS.websocket, quiet_ping_after=0.2, pong_timeout=0.3))
    client = _client(sim, events, settings)
    once_connected(events, lambda: setattr(sim.faults, "silent", True), after=0.3)
    try:
        result, lag = _run(client, sim, "silent")
    finally:
        sim.faults.silent = False
        client.close()
    assert lag < 0.5, f"result {lag:.2f} s after the job's end (the history probe is 5 s away)"
    assert result.method == "websocket"


def test_events_that_end_the_job_before_the_post_reply_are_trusted(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    sim.faults.prompt_reply_delay = 2.0
    started = time.monotonic()
    result, lag = _run(client, sim, "reply-late", steps=4)  # 0.2 s
    assert lag < 0.5 and time.monotonic() - started < 1.5, "the result waited for the POST reply"
    assert result.status == "success" and result.outputs
    assert counts(sim)["POST /prompt"] == 1
