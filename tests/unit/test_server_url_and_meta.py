"""One ServerURL from the settings to the clients; the task's contract types match README."""

from __future__ import annotations

import dataclasses
import json
import re
import typing

from config.settings import Settings
from config.wiring import pod_pool
from tasks.meta import ProgressMeta, TaskResult, progress_meta, task_result
from tests.integration.celery_support import META_KEYS
from tests.traces import ROOT
from worker.comfyui.progress import JobProgressState, JobStatus
from worker.comfyui.results import WorkflowResult
from worker.comfyui.websocket_client import ComfyUIWebSocketClient


def test_the_server_url_is_parsed_once_and_carried_to_both_clients() -> None:
    settings = Settings.from_env({"COMFYUI_SERVERS": "a=https://pod-a.example/prefix/"})
    pool = pod_pool(settings)
    pod = pool.pods[0]
    client = pool.client(pod)
    ws = ComfyUIWebSocketClient(client.server)
    assert client.server is pod.server and client.rest.server is pod.server
    assert ws._url is pod.server  # taken as it is, not parsed again
    assert pod.safe_url == client.server_url == pod.server.redacted == "https://pod-a.example/prefix"
    pool.close()


def readme_json(after: str) -> dict[str, typing.Any]:
    text = (ROOT / "README.md").read_text()
    block = re.search(re.escape(after) + r".*?```json\n(.*?)```", text, re.S)
    assert block is not None
    return dict(json.loads(block.group(1).replace("…", "")))


def test_progress_meta_is_what_readme_shows_and_what_the_type_declares() -> None:
    declared = set(typing.get_type_hints(ProgressMeta))
    state = JobProgressState(prompt_id="p", progress=12.345, status=JobStatus.RUNNING)
    meta = progress_meta(state, pod="pod0", server_url="https://x", attempt=1, job_type="image_generation", published_at=1.0)
    assert set(meta) == declared == set(readme_json("**PROGRESS**")) == META_KEYS
    assert meta["progress"] == 12.3


def test_the_success_result_is_the_workflow_result_plus_the_pod() -> None:
    declared = set(typing.get_type_hints(TaskResult))
    # "media" only with an output store (NotRequired); README shows it in its own section
    assert declared - {"media"} == {f.name for f in dataclasses.fields(WorkflowResult)} | {"pod"} == set(readme_json("**SUCCESS**"))
    assert "media" in declared
    result = WorkflowResult("p", "success", {}, [], "websocket", 1.0, 2, "https://x")
    assert task_result(result, pod="pod0")["pod"] == "pod0"
    assert "media" not in task_result(result, pod="pod0")
    assert task_result(result, pod="pod0", media={"store": "file:///x", "files": []})["media"]["store"] == "file:///x"
