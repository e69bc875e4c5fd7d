"""ComfyUIPodClient against the simulator: execution errors, cancel and deadline, bad input, the REST API."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.conftest import slow_workflow
from tests.integration.pod_support import SETTINGS, Job, counts
from tests.integration.sim_client import RawSocket, submit, wait_history
from tests.observers import PodEvents
from worker.comfyui import protocol as p
from worker.comfyui.errors import (
    ConnectionFailedError,
    ExecutionError,
    JobCancelledError,
    JobTimeoutError,
    PromptInterruptedError,
    ProtocolError,
    TransportTimeoutError,
    WorkflowValidationError,
)
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.pod_client import ComfyUIPodClient, PodEvent
from worker.comfyui.progress import JobStatus
from worker.simulator import ComfyUISimulator


@pytest.fixture
def events() -> list[PodEvent]:
    return []


@pytest.fixture
def client(sim: ComfyUISimulator, events: list[PodEvent]) -> Iterator[ComfyUIPodClient]:
    pod = ComfyUIPodClient(sim.url, settings=SETTINGS, observers=[PodEvents(events)])
    yield pod
    pod.close()


def test_validation_400(sim: ComfyUISimulator, client: ComfyUIPodClient, txt2img: dict[str, Any]) -> None:
    txt2img["3"]["inputs"]["steps"] = 0
    with pytest.raises(WorkflowValidationError) as info:
        Job(client).run(txt2img)
    error = info.value
    assert error.error_type == "prompt_outputs_failed_validation"
    assert error.node_errors["3"]["errors"][0]["type"] == "value_smaller_than_min"
    assert counts(sim)["POST /prompt"] == 1


def test_execution_error(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    workflow = {
        "1": {"class_type": "LabSlowProgress", "inputs": {"steps": 2, "seconds_per_step": 0.1, "salt": 0}},
        "2": {"class_type": "LabRaiseError", "inputs": {"message": "kaboom", "value": ["1", 0]}},
    }
    job = Job(client)
    with pytest.raises(ExecutionError) as info:
        job.run(workflow, prompt_id="exec-err")
    error = info.value
    assert (error.node_id, error.node_type, error.exception_type) == ("2", "LabRaiseError", "RuntimeError")
    assert error.details["prompt_id"] == "exec-err"
    assert job.progress[-1].status is JobStatus.FAILED


def test_execution_error_on_the_polling_path(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    workflow = {"2": {"class_type": "LabRaiseError", "inputs": {"message": "poll-boom"}}}
    with pytest.raises(ExecutionError) as info:
        Job(client).run(workflow, "polling")
    assert "poll-boom" in info.value.message


def test_interrupt_by_someone_else(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    job = Job(client)

    def interrupt() -> None:
        while not any(s.node_value for s in job.progress):
            time.sleep(0.005)
        requests.post(f"{sim.url}/interrupt", timeout=5)

    threading.Thread(target=interrupt, daemon=True).start()
    with pytest.raises(PromptInterruptedError) as info:
        job.run(slow_workflow(steps=200))
    assert info.value.to_dict()["node_type"] == "LabSlowProgress"


def test_a_queued_prompt_learns_its_position_early_and_a_started_one_costs_no_request(sim: ComfyUISimulator) -> None:
    """The history probe is rare (30 s here); the one early look at /queue is made only for a
    prompt that has not started 0.1 s after its submission."""
    settings = dataclasses.replace(SETTINGS, history_probe_interval=30.0, queued_probe_delay=0.1)
    client = ComfyUIPodClient(sim.url, settings=settings)
    try:
        started = Job(client)
        assert started.run(slow_workflow(steps=20, salt=3), prompt_id="starts-at-once").status == "success"
        assert counts(sim).get("GET /queue", 0) == 0

        blocker = RawSocket(sim.url)
        submit(sim.url, slow_workflow(steps=50, salt=4), blocker.client_id, "ahead")  # about 0.5 s
        queued = Job(client)
        assert queued.run(slow_workflow(steps=2, salt=5), prompt_id="behind").status == "success"
        assert [s.queue_position for s in queued.progress if s.queue_position is not None] == [0]
        assert counts(sim)["GET /queue"] == 1
    finally:
        client.close()


def test_cancel_while_queued_deletes_the_prompt(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    blocker = RawSocket(sim.url)
    submit(sim.url, slow_workflow(steps=400, salt=1), blocker.client_id, "blocker")
    job = Job(client)
    cancelled_at: list[float] = []

    def cancel_once_queued() -> None:  # the job learns its position from /queue, then is cancelled
        deadline = time.monotonic() + 5
        while not any(s.queue_position == 0 for s in job.progress) and time.monotonic() < deadline:
            time.sleep(0.005)
        cancelled_at.append(time.monotonic())
        job.cancel.set()

    threading.Thread(target=cancel_once_queued, daemon=True).start()
    with pytest.raises(JobCancelledError):
        job.run(slow_workflow(steps=2, salt=2), prompt_id="queued")
    assert time.monotonic() - cancelled_at[0] < 1.0
    queue = requests.get(f"{sim.url}/queue", timeout=5).json()
    assert [i[1] for i in queue["queue_pending"]] == []
    assert [i[1] for i in queue["queue_running"]] == ["blocker"]
    assert any(s.queue_position == 0 for s in job.progress)
    requests.post(f"{sim.url}/interrupt", timeout=5)
    assert requests.get(f"{sim.url}/history/queued", timeout=5).json() == {}  # it never ran


def test_cancel_while_running_interrupts_it(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    job = Job(client)

    def cancel() -> None:
        while not any(s.node_value for s in job.progress):
            time.sleep(0.005)
        job.cancel.set()

    threading.Thread(target=cancel, daemon=True).start()
    with pytest.raises(JobCancelledError):
        job.run(slow_workflow(steps=400), prompt_id="running")
    entry = wait_history(sim.url, "running")
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert job.progress[-1].status is JobStatus.CANCELLED


def test_deadline(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    started = time.monotonic()
    with pytest.raises(JobTimeoutError) as info:
        Job(client).run(slow_workflow(steps=400), prompt_id="slowpoke", timeout=0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.5
    assert info.value.phase == "job"
    assert wait_history(sim.url, "slowpoke")["status"]["messages"][-1][0] == "execution_interrupted"


@pytest.mark.parametrize(
    "workflow",
    [
        [1, 2],
        {},
        {"1": {"inputs": {}}},
        {"1": {"class_type": "SaveImage", "inputs": {"images": ["9", 0]}}},
        {"1": {"class_type": "SaveImage", "inputs": {"images": [9, 0]}}},
        {"1": {"class_type": "SaveImage", "inputs": {"x": float("nan")}}},
        {"1": {"class_type": "SaveImage", "inputs": {"x": object()}}},
        {"nodes": [], "links": []},
    ],
)
def test_bad_workflows_fail_before_any_request(sim: ComfyUISimulator, client: ComfyUIPodClient, workflow: Any) -> None:
    with pytest.raises(WorkflowValidationError):
        client.execute_workflow(workflow)
    assert counts(sim) == {}


def test_bad_urls_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="http"):
        ComfyUIPodClient("localhost:8188")


def test_non_json_answers_are_protocol_errors(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    sim.faults.fail_route("GET", "/queue", status=200, times=5)
    with pytest.raises(ProtocolError) as info:
        client.rest.get_queue()
    assert "simulated" in (info.value.details.get("excerpt") or "")


def test_lost_post_reply_is_recovered_without_a_second_post(sim: ComfyUISimulator, image_only: dict[str, Any]) -> None:
    impatient = dataclasses.replace(SETTINGS, http=HTTPSettings(connect_timeout=1.0, read_timeout=0.3, retries=1, retry_backoff=0.02))
    client = ComfyUIPodClient(sim.url, settings=impatient)
    sim.faults.prompt_reply_delay = 0.6
    result = Job(client).run(image_only, prompt_id="lost-reply")
    assert result.status == "success"
    assert counts(sim)["POST /prompt"] == 1
    client.close()


def test_post_that_never_reached_the_queue_is_not_resubmitted(sim: ComfyUISimulator, image_only: dict[str, Any]) -> None:
    impatient = dataclasses.replace(SETTINGS, http=HTTPSettings(connect_timeout=1.0, read_timeout=0.2, retries=1, retry_backoff=0.02))
    client = ComfyUIPodClient(sim.url, settings=impatient)
    sim.faults.fail_route("POST", "/prompt", delay=1.0, times=1)  # slow before it queues anything
    with pytest.raises(TransportTimeoutError) as info:
        client.execute_workflow(image_only, path="polling")
    assert info.value.phase == "request"
    assert counts(sim)["POST /prompt"] == 1
    client.close()


def test_several_jobs_at_once_each_with_its_own_socket(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    results: dict[int, Any] = {}

    def run(i: int) -> None:
        results[i] = Job(client).run(slow_workflow(steps=3, salt=100 + i), prompt_id=f"multi-{i}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(r.prompt_id for r in results.values()) == [f"multi-{i}" for i in range(4)]
    assert {r.method for r in results.values()} == {"websocket"}
    assert counts(sim)["GET /ws"] == 4
    assert counts(sim)["POST /prompt"] == 4


def test_reattach_to_a_prompt_already_on_the_pod(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    submit(sim.url, slow_workflow(steps=6), None, "already-there")
    result = Job(client).run(slow_workflow(steps=6), prompt_id="already-there", submit=False)
    assert result.status == "success"
    assert counts(sim)["POST /prompt"] == 1  # only ours, above


def test_rest_methods(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    health = client.rest.health_check()
    assert (health.ok, health.comfyui_version) == (True, "0.8.0")
    assert client.rest.queue_remaining() == 0
    uploaded = client.rest.upload_image(b"\x89PNGdata", "mine.png")
    assert uploaded["name"] == "mine.png"
    assert "KSampler" in client.rest.object_info()
    assert client.rest.object_info("KSampler")["KSampler"]["output_node"] is False
    assert client.rest.system_stats()["system"]["comfyui_version"] == "0.8.0"
    assert client.rest.get_history("nope") is None


def test_health_check_says_why() -> None:
    report = ComfyUIPodClient("http://127.0.0.1:9", settings=SETTINGS).rest.health_check()
    assert not report.ok and report.reason.startswith("connection:")


def test_unhealthy_pod_fails_fast_with_a_transport_error(image_only: dict[str, Any]) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError):
        ComfyUIPodClient("http://127.0.0.1:9", settings=SETTINGS).execute_workflow(image_only)
    assert time.monotonic() - started < 2.0


def test_queue_positions_are_in_execution_order(sim: ComfyUISimulator, client: ComfyUIPodClient) -> None:
    blocker = RawSocket(sim.url)
    submit(sim.url, slow_workflow(steps=400, salt=1), blocker.client_id, "run")
    blocker.until(lambda m: isinstance(m, p.ProgressData))
    for i in range(4):
        submit(sim.url, slow_workflow(steps=1, salt=10 + i), None, f"q{i}")
    snapshot = client.rest.get_queue()
    assert snapshot.running == ["run"]
    assert snapshot.pending == ["q0", "q1", "q2", "q3"]
    assert snapshot.position("q2") == 2
    client.rest.delete_queued(["q1"])
    assert client.rest.get_queue().pending == ["q0", "q2", "q3"]
    client.rest.interrupt("run")
    blocker.until_done("run")


def test_a_200_with_node_errors_is_surfaced(sim: ComfyUISimulator, client: ComfyUIPodClient, caplog: pytest.LogCaptureFixture) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "never"}},
    }
    caplog.set_level(logging.WARNING, logger="worker.comfyui.rest_client")
    result = Job(client).run(workflow)
    assert result.status == "success"
    assert result.node_errors["3"]["dependent_outputs"] == ["4"]
    assert [(f.node_id, f.type) for f in result.files] == [("2", "temp")]  # only the valid output ran
    assert "dropped outputs that failed validation" in caplog.text
