"""The web side's small parts: previews, web options, settings, progress keys, the client's routing."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from config.settings import Settings, SettingsError
from tasks.client import PREVIEW_KEY, ComfyClient, view_of
from tasks.live import flower_summary
from tasks.meta import describe, progress_meta
from tasks.web_options import WebOptions
from worker.comfyui.errors import ExecutionError, WorkflowValidationError
from worker.comfyui.progress import JobProgressState, JobStatus
from worker.fleet import previews
from worker.fleet.previews import PreviewRecorder


class FakeRedis:
    def __init__(self, fail: bool = False) -> None:
        self.values: dict[str, tuple[bytes, int | None]] = {}
        self.fail = fail

    def set(self, name: str, value: bytes, ex: int | None = None) -> bool:
        if self.fail:
            raise ConnectionError("redis down")
        self.values[name] = (value, ex)
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_preview_recorder_keeps_the_latest_throttled() -> None:
    store, clock = FakeRedis(), Clock()
    recorder = PreviewRecorder(store, "job-1", ttl=30, interval=1.0, monotonic=clock)
    assert recorder.pointer() is None
    assert recorder.on_preview(b"\xff\xd8one", "jpeg", 1, "3")
    clock.now += 0.5
    assert not recorder.on_preview(b"\xff\xd8two", "jpeg", 2, "3")  # within the interval
    clock.now += 0.6
    assert recorder.on_preview(b"\xff\xd8three", "jpeg", 3, "3")
    assert store.values["comfy-preview:job-1"] == (b"\xff\xd8three", 30)
    assert recorder.pointer() == {"key": "comfy-preview:job-1", "step": 3, "node_id": "3", "format": "jpeg", "seq": 2}
    assert previews.PREVIEW_KEY == PREVIEW_KEY  # the client reads what the worker writes


def test_preview_recorder_refuses_oversized_and_survives_a_failing_store() -> None:
    recorder = PreviewRecorder(FakeRedis(), "job-1", interval=0)
    assert not recorder.on_preview(b"x" * (previews.MAX_PREVIEW_BYTES + 1), "jpeg", 1)
    failing = PreviewRecorder(FakeRedis(fail=True), "job-2", interval=0)
    assert not failing.on_preview(b"\xff\xd8", "jpeg", 1)
    assert not failing.on_preview(b"\xff\xd8", "jpeg", 2)
    assert failing.pointer() is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"webhook_url": "ftp://x/"}, "http or https"),
        ({"webhook_url": "https://user:pw@x/"}, "credentials"),
        ({"webhook_url": "https://x/" + "a" * 3000}, "at most"),
        ({"webhook_url": 5}, r"an http\(s\) URL"),
        ({"webhook_progress": True}, "needs a webhook_url"),
        ({"webhook_url": "https://x/", "webhook_progress": "yes"}, "true or false"),
        ({"previews": "on"}, "true or false"),
    ],
)
def test_web_options_refuse(options: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkflowValidationError, match=message):
        WebOptions.parse(dict(options))


def test_web_options_are_taken_out_and_the_rest_is_left() -> None:
    from tasks.workflow import TaskOptions

    options = {"webhook_url": "https://hooks.example/x", "webhook_progress": True, "previews": True, "job_type": "face_swap"}
    parsed = TaskOptions.parse(options)
    assert parsed.web == WebOptions("https://hooks.example/x", True, True)
    assert parsed.job_type == "face_swap"
    with pytest.raises(WorkflowValidationError, match="not accepted"):
        TaskOptions.parse({"callback_url": "https://x/"})  # only webhook_url is exempt from the URL rule


def test_settings_for_webhooks_and_previews() -> None:
    secret = "whsec_" + base64.b64encode(b"0123456789abcdef01234567").decode()
    settings = Settings.from_env({"WEBHOOK_SECRET": secret, "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.1/32, 10.0.0.0/8", "PREVIEWS": "on"})
    assert settings.webhook_secret == secret and settings.previews and settings.preview_ttl == 60
    assert secret not in repr(settings)
    for env, name in (
        ({"WEBHOOK_SECRET": "whsec_not base64!"}, "WEBHOOK_SECRET"),
        ({"WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"short").decode()}, "too short"),
        ({"WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8,nonsense"}, "nonsense"),
        ({"PREVIEWS": "yes"}, "PREVIEWS"),
    ):
        with pytest.raises(SettingsError, match=name) as caught:
            Settings.from_env(env)
        assert "not base64!" not in str(caught.value)


def state(**changes: Any) -> JobProgressState:
    values: dict[str, Any] = {"prompt_id": "p", "progress": 42.04, "status": JobStatus.RUNNING}
    values.update(changes)
    return JobProgressState(**values)


def test_progress_keys_for_progress_bars_and_flower() -> None:
    running = state(current_node_id="3", current_node_type="KSampler", node_value=5.0, node_max=10.0)
    meta = progress_meta(running, pod="a", server_url="https://x", attempt=1, job_type="image_generation", published_at=1.0)
    extras = {k: meta[k] for k in ("current", "total", "percent", "description")}
    assert extras == {"current": 42.0, "total": 100, "percent": 42.0, "description": "KSampler (node 3): step 5/10"}
    assert meta["preview"] is None
    assert describe(state(status=JobStatus.QUEUED, queue_position=2)) == "queued (position 2)"
    assert describe(state(current_node_id="8", current_node_type="VAEDecode")) == "VAEDecode (node 8)"
    assert describe(state(status=JobStatus.COMPLETED)) == "completed"
    assert flower_summary(meta) == "42 % · KSampler (node 3): step 5/10 · pod a"


def test_views_and_routes() -> None:
    error = ExecutionError("boom", node_id="2")
    assert view_of("t", "FAILURE", error)["error"]["code"] == "execution"
    assert view_of("t", "FAILURE", RuntimeError("x"))["error"] == {"code": "task_error", "message": "RuntimeError('x')"}
    assert view_of("t", "REVOKED", "revoked")["error"]["code"] == "cancelled"
    assert view_of("t", "STARTED", None) == {"task_id": "t", "state": "STARTED"}
    client = ComfyClient.from_url("memory://", routes={"lora_training": "train", "pod:b": "comfyui.b"})
    try:
        assert client.queue_for({}) == "comfyui"
        assert client.queue_for({"job_type": "lora_training"}) == "train"
        assert client.queue_for({"job_type": "lora_training", "pod": "b"}) == "comfyui.b"
    finally:
        client.close()
