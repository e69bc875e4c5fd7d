"""ComfyUIPodClient against the simulator: every execution path and fault, with request counts."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import slow_workflow
from tests.integration.pod_support import SETTINGS, Job, counts, when_connected
from tests.integration.sim_client import wait_history
from tests.observers import PodEvents
from worker.comfyui.errors import (
    ConnectionFailedError,
    PromptNotFoundError,
)
from worker.comfyui.pod_client import ComfyUIPodClient, FallbackEvent, PodEvent
from worker.comfyui.progress import JobStatus
from worker.comfyui.websocket_client import ConnectionEvent, WebSocketSettings
from worker.simulator import ComfyUISimulator


@pytest.fixture
def events() -> list[PodEvent]:
    return []


@pytest.fixture
def client(sim: ComfyUISimulator, events: list[PodEvent]) -> Iterator[ComfyUIPodClient]:
    pod = ComfyUIPodClient(sim.url, settings=SETTINGS, observers=[PodEvents(events)])
    yield pod
    pod.close()


def test_websocket_path_happy(sim: ComfyUISimulator, client: ComfyUIPodClient, txt2img: dict[str, Any], events: list[PodEvent]) -> None:
    job = Job(client)
    result = job.run(txt2img, prompt_id="ok-1")
    assert (result.prompt_id, result.status, result.method, result.fallback_reason) == ("ok-1", "success", "websocket", None)
    assert [(f.node_id, f.kind, f.type) for f in result.files] == [("9", "image", "output")]
    assert result.files[0].filename == "ComfyUI_00001_.png"
    assert client.rest.download(result.files[0].filename or "").startswith(b"\x89PNG")
    curve = [s.progress for s in job.progress]
    assert curve == sorted(curve) and curve[-1] == 100.0 and max(curve[:-1]) < 100.0
    assert job.progress[-1].status is JobStatus.COMPLETED
    assert result.progress_updates == len(job.progress)
    assert result.to_dict()["files"][0]["kind"] == "image"
    assert counts(sim) == {"GET /system_stats": 1, "GET /ws": 1, "POST /prompt": 1, "GET /history/{prompt_id}": 1, "GET /view": 1}
    assert [type(e).__name__ for e in events] == ["ConnectionEvent"]
    assert isinstance(events[0], ConnectionEvent) and events[0].kind == "connected"


def test_polling_path(sim: ComfyUISimulator, client: ComfyUIPodClient, image_only: dict[str, Any]) -> None:
    job = Job(client)
    result = job.run(image_only, "polling", prompt_id="poll-1")
    assert (result.method, result.status) == ("rest_polling", "success")
    assert [f.filename for f in result.files] == ["lab_image_only_00001_.png"]
    assert job.progress[-1].progress == 100.0
    c = counts(sim)
    assert c["POST /prompt"] == 1 and "GET /ws" not in c
    assert c["GET /history/{prompt_id}"] >= 1


def test_websocket_only_path_raises_when_the_socket_is_refused(
    sim: ComfyUISimulator, client: ComfyUIPodClient, image_only: dict[str, Any]
) -> None:
    sim.faults.refuse_websocket(times=1)
    with pytest.raises(ConnectionFailedError):
        client.execute_workflow(image_only, path="websocket")
    assert "POST /prompt" not in counts(sim)


def test_refused_websocket_falls_back_at_once(
    sim: ComfyUISimulator, client: ComfyUIPodClient, image_only: dict[str, Any], events: list[PodEvent]
) -> None:
    sim.faults.refuse_websocket(times=1)
    started = time.monotonic()
    result = Job(client).run(image_only, prompt_id="fb-1")
    assert (result.method, result.fallback_reason) == ("rest_polling", "connection_failed")
    assert time.monotonic() - started < 2.0
    fallbacks = [e for e in events if isinstance(e, FallbackEvent)]
    assert fallbacks == [FallbackEvent("fb-1", "connection_failed", fallbacks[0].detail)]
    assert counts(sim)["POST /prompt"] == 1


def test_handshake_timeout_falls_back_with_reason_timeout(
    sim: ComfyUISimulator, client: ComfyUIPodClient, image_only: dict[str, Any], events: list[PodEvent]
) -> None:
    sim.faults.handshake_delay = 2.0
    result = Job(client).run(image_only)
    assert (result.method, result.fallback_reason) == ("rest_polling", "timeout")
    assert [e.reason for e in events if isinstance(e, FallbackEvent)] == ["timeout"]


def test_drop_mid_job_with_successful_reconnect_stays_on_websocket(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    sim.faults.drop_sockets(at_event="progress", occurrence=3)
    job = Job(client)
    result = job.run(slow_workflow(steps=10), prompt_id="drop-ok")
    assert (result.method, result.fallback_reason) == ("websocket", None)
    assert counts(sim)["POST /prompt"] == 1
    assert counts(sim)["GET /ws"] == 2
    curve = [s.progress for s in job.progress]
    assert curve == sorted(curve)


def test_drop_mid_job_without_reconnect_falls_back_to_polling(
    sim: ComfyUISimulator, client: ComfyUIPodClient, events: list[PodEvent]
) -> None:
    sim.faults.drop_sockets(at_event="progress", occurrence=2)
    when_connected(events, lambda: sim.faults.refuse_websocket(times=10))
    job = Job(client)
    # long enough to outlast the reconnect attempts: the probes made while they run would find a shorter job's end
    result = job.run(slow_workflow(steps=60), prompt_id="drop-fb")
    assert (result.method, result.fallback_reason) == ("rest_polling", "error")
    assert counts(sim)["POST /prompt"] == 1  # one prompt, one submission
    assert [e.reason for e in events if isinstance(e, FallbackEvent)] == ["error"]
    kinds = [e.kind for e in events if isinstance(e, ConnectionEvent)]
    assert kinds == ["connected", "disconnected", "failed"]
    curve = [s.progress for s in job.progress]
    assert curve == sorted(curve) and curve[-1] == 100.0


def test_job_that_finishes_while_disconnected_still_resolves(sim: ComfyUISimulator, events: list[PodEvent]) -> None:
    """Only the probe made on reconnecting can find this completion: the periodic one is 30 s away."""
    settings = dataclasses.replace(SETTINGS, history_probe_interval=30.0)
    client = ComfyUIPodClient(sim.url, settings=settings, observers=[PodEvents(events)])
    sim.faults.drop_sockets(at_event="progress", occurrence=1)
    # reconnects fail until after the prompt finished
    when_connected(events, lambda: sim.faults.refuse_websocket(seconds=0.15))
    started = time.monotonic()
    result = Job(client).run(slow_workflow(steps=2), prompt_id="while-away")
    assert result.status == "success"
    assert time.monotonic() - started < 3.0
    assert counts(sim)["POST /prompt"] == 1
    client.close()
    assert wait_history(sim.url, "while-away")["status"]["status_str"] == "success"


@pytest.mark.parametrize("prompt_id", ["job/7?x=1#frag", "with space %41"])
def test_any_prompt_id_is_one_path_segment(client: ComfyUIPodClient, image_only: dict[str, Any], prompt_id: str) -> None:
    """A caller's own id (a Celery task id can be any string) must not change the /history URL."""
    for path in ("auto", "polling"):
        result = Job(client).run(dict(image_only), path, prompt_id=f"{prompt_id} {path}")
        assert (result.prompt_id, result.status) == (f"{prompt_id} {path}", "success")
        assert client.rest.get_history(result.prompt_id) is not None


def test_job_that_finishes_before_the_post_reply(sim: ComfyUISimulator, client: ComfyUIPodClient, image_only: dict[str, Any]) -> None:
    sim.faults.prompt_reply_delay = 0.3
    result = Job(client).run(image_only, prompt_id="early")
    assert (result.status, result.method) == ("success", "websocket")
    assert counts(sim)["POST /prompt"] == 1


def test_silent_socket_is_caught_by_the_history_probe(sim: ComfyUISimulator, events: list[PodEvent]) -> None:
    deaf = dataclasses.replace(
        SETTINGS, websocket=WebSocketSettings(connect_timeout=1.0, ping_interval=5.0, idle_timeout=30.0, read_slice=0.05)
    )
    client = ComfyUIPodClient(sim.url, settings=deaf, observers=[PodEvents(events)])
    job = Job(client)
    started = time.monotonic()
    when_connected(events, lambda: setattr(sim.faults, "silent", True))
    result = job.run(slow_workflow(steps=2), prompt_id="deaf")
    assert (result.status, result.method) == ("success", "websocket")
    assert time.monotonic() - started < 2.0  # probe every 0.3 s, not the 30 s idle limit
    assert not [e for e in events if isinstance(e, ConnectionEvent) and e.kind == "disconnected"]
    client.close()


def test_history_500_then_recovering(sim: ComfyUISimulator, client: ComfyUIPodClient, image_only: dict[str, Any]) -> None:
    sim.faults.fail_route("GET", "/history", status=500, times=5)
    result = Job(client).run(image_only, "polling")
    assert result.status == "success"
    assert counts(sim)["GET /history/{prompt_id}"] >= 6


def test_failing_history_probes_do_not_end_a_job_the_socket_is_following(
    sim: ComfyUISimulator, client: ComfyUIPodClient, events: list[PodEvent]
) -> None:
    """The probe is a safety net: a REST hiccup while the socket works must not fail the job."""
    job = Job(client)
    # every probe for the first ~1 s fails after its retries (3 requests each, one probe per 0.3 s)
    when_connected(events, lambda: sim.faults.fail_route("GET", "/history", status=500, times=9))
    result = job.run(slow_workflow(steps=30, seconds_per_step=1.0), prompt_id="probe-500")  # about 1.5 s
    assert (result.status, result.method, result.fallback_reason) == ("success", "websocket", None)
    assert counts(sim)["GET /history/{prompt_id}"] >= 10  # the failed probes, then the confirmation
    assert counts(sim)["POST /prompt"] == 1


def test_history_written_late(sim: ComfyUISimulator, client: ComfyUIPodClient, image_only: dict[str, Any]) -> None:
    sim.sim.timing.history_delay_seconds = 0.3
    result = Job(client).run(image_only)
    assert (result.status, result.method) == ("success", "websocket")
    assert counts(sim)["GET /history/{prompt_id}"] >= 2  # {} at first, then the entry


def test_server_restart_mid_job_is_a_clear_error(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    job = Job(client)

    def restart_when_running() -> None:
        while not any(s.node_value for s in job.progress):
            time.sleep(0.005)
        sim.restart()

    threading.Thread(target=restart_when_running, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(PromptNotFoundError) as info:
        job.run(slow_workflow(steps=200), prompt_id="lost")
    assert info.value.to_dict()["prompt_id"] == "lost"
    assert time.monotonic() - started < 3.0
    assert counts(sim)["POST /prompt"] == 1
