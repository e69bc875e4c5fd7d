"""The media pipeline against the simulator: inputs uploaded and loaded, outputs streamed into
the file store and the S3 server, retries that neither resubmit nor re-stream."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.media_support import FileServer, S3Server
from worker.comfyui.clock import FakeClock
from worker.comfyui.errors import StorageError, WorkflowValidationError
from worker.comfyui.pod_client import ComfyUIPodClient
from worker.comfyui.results import WorkflowResult
from worker.fleet.media import AddressGuard, FileStore, MediaPipeline, MediaSettings, OutputPolicy, OutputStore, URLFetcher
from worker.fleet.media.store import ObjectWriter
from worker.simulator import ComfyUISimulator
from worker.simulator.media import solid_png

PHOTO = solid_png(96, 48, (250, 10, 10))


def img2img() -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "input:photo"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "img2img"}},
    }


@pytest.fixture
def pod(sim: ComfyUISimulator) -> Iterator[ComfyUIPodClient]:
    client = ComfyUIPodClient(sim.url)
    yield client
    client.close()


def pipeline(store: OutputStore | None, **settings: Any) -> MediaPipeline:
    return MediaPipeline(store, URLFetcher(AddressGuard(("127.0.0.1",))), MediaSettings(**settings), clock=FakeClock())


def run(pod: ComfyUIPodClient, media: MediaPipeline, inputs: dict[str, Any], task_id: str) -> WorkflowResult:
    workflow = media.prepare_inputs(img2img(), inputs, pod.rest, task_id)
    return pod.execute_workflow(workflow, prompt_id=task_id, timeout=30)


def test_an_input_by_url_is_uploaded_loaded_and_its_output_stored(
    sim: ComfyUISimulator, pod: ComfyUIPodClient, file_server: FileServer, tmp_path: Path
) -> None:
    file_server.routes["/photo.png"] = PHOTO
    media = pipeline(FileStore(tmp_path / "store"))
    workflow = media.prepare_inputs(img2img(), {"photo": {"url": f"{file_server.url}/photo.png"}}, pod.rest, "task-1")
    assert workflow["1"]["inputs"]["image"] == "comfy-celery/task-1/photo.png"
    result = pod.execute_workflow(workflow, prompt_id="task-1", timeout=30)
    stored = media.store_outputs(pod.rest, result)
    (entry,) = stored["media"]["files"]
    path = tmp_path / "store" / "outputs" / "task-1" / "3_0.png"
    assert entry["key"] == "outputs/task-1/3_0.png" and entry["url"] == path.as_uri()
    content = path.read_bytes()
    assert entry["sha256"] == hashlib.sha256(content).hexdigest() and entry["size"] == len(content)
    assert (entry["content_type"], entry["width"], entry["height"]) == ("image/png", 96, 48)  # LoadImage read our upload
    assert entry["filename"].startswith("img2img_") and entry["presigned_url"] is None
    assert stored["media"]["store"] == (tmp_path / "store").resolve().as_uri()


def test_a_retry_uploads_idempotently_and_does_not_stream_again(sim: ComfyUISimulator, pod: ComfyUIPodClient, tmp_path: Path) -> None:
    media = pipeline(FileStore(tmp_path / "store"))
    inputs = {"photo": {"base64": base64.b64encode(PHOTO).decode()}}
    result = run(pod, media, inputs, "task-2")
    first = media.store_outputs(pod.rest, result)
    views = sim.request_counts().get("GET /view", 0)
    again = media.prepare_inputs(img2img(), inputs, pod.rest, "task-2")  # a redelivery uploads again …
    assert again["1"]["inputs"]["image"] == "comfy-celery/task-2/photo.png"  # … under the same name
    assert media.store_outputs(pod.rest, result) == first
    assert sim.request_counts().get("GET /view", 0) == views  # the record said it was stored


def test_a_bad_reference_fails_before_anything_is_uploaded(sim: ComfyUISimulator, pod: ComfyUIPodClient) -> None:
    media = pipeline(None)
    workflow = img2img()
    workflow["1"]["inputs"]["image"] = "input:phot"
    with pytest.raises(WorkflowValidationError) as exc:
        media.prepare_inputs(workflow, {"photo": {"base64": base64.b64encode(PHOTO).decode()}}, pod.rest, "task-3")
    assert exc.value.error_type == "unknown_input"
    assert sim.request_counts().get("POST /upload/image", 0) == 0


def test_a_missing_input_file_is_the_pods_validation_error(pod: ComfyUIPodClient) -> None:
    workflow = img2img()
    workflow["1"]["inputs"]["image"] = "comfy-celery/nobody/photo.png"
    with pytest.raises(WorkflowValidationError) as exc:
        pod.execute_workflow(workflow, prompt_id="task-4", timeout=30)
    assert "Invalid image file" in str(exc.value.node_errors)


class FlakyStore:
    """A file store whose first ``failures`` writes fail the way a network store does."""

    def __init__(self, inner: FileStore, failures: int) -> None:
        self.inner, self.failures, self.url = inner, failures, inner.url

    @contextlib.contextmanager
    def writer(self, key: str, content_type: str) -> Iterator[ObjectWriter]:
        with self.inner.writer(key, content_type) as sink:
            if self.failures > 0 and not key.endswith(".json"):
                self.failures -= 1
                sink.write(b"partial")
                raise ConnectionResetError("store went away")
            yield sink

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self.inner.put_bytes(key, data, content_type)

    def read_bytes(self, key: str, limit: int) -> bytes | None:
        return self.inner.read_bytes(key, limit)

    def object_url(self, key: str) -> str:
        return self.inner.object_url(key)

    def presign(self, key: str, lifetime: int) -> str | None:
        return None


def test_a_store_failure_is_retried_with_backoff_without_resubmitting(sim: ComfyUISimulator, pod: ComfyUIPodClient, tmp_path: Path) -> None:
    inner = FileStore(tmp_path / "store")
    media = pipeline(FlakyStore(inner, failures=2), store_attempts=3, store_backoff=0.5)
    result = run(pod, media, {"photo": {"base64": base64.b64encode(PHOTO).decode()}}, "task-5")
    (entry,) = media.store_outputs(pod.rest, result)["media"]["files"]
    assert (tmp_path / "store" / entry["key"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sim.request_counts().get("POST /prompt", 0) == 1
    clock = media._clock
    assert isinstance(clock, FakeClock) and clock.sleeps == [0.5, 1.0]
    assert [p.name for p in (tmp_path / "store").rglob("*partial")] == []  # no partial left behind

    failing = pipeline(FlakyStore(inner, failures=5), store_attempts=2)
    result = run(pod, failing, {"photo": {"base64": base64.b64encode(PHOTO).decode()}}, "task-6")
    with pytest.raises(StorageError) as exc:
        failing.store_outputs(pod.rest, result)
    assert exc.value.code == "storage" and exc.value.retryable and "store went away" in exc.value.message


def test_the_output_cap_holds_while_streaming_and_leaves_nothing(sim: ComfyUISimulator, pod: ComfyUIPodClient, tmp_path: Path) -> None:
    media = pipeline(FileStore(tmp_path / "store"), outputs=OutputPolicy(max_bytes=100))
    result = run(pod, media, {"photo": {"base64": base64.b64encode(PHOTO).decode()}}, "task-7")
    with pytest.raises(StorageError) as exc:
        media.store_outputs(pod.rest, result)
    assert not exc.value.retryable and sim.request_counts().get("GET /view", 0) == 1  # not retried: it would fail again
    assert [p for p in (tmp_path / "store").rglob("*") if p.is_file()] == []


def test_s3_outputs_with_presigned_urls_inline_base64_and_history_cleanup(
    sim: ComfyUISimulator, pod: ComfyUIPodClient, s3_server: S3Server
) -> None:
    store = s3_server.store("prod")
    media = pipeline(store, outputs=OutputPolicy(presign_seconds=120, inline_max_bytes=1 << 20), cleanup="history")
    result = run(pod, media, {"photo": {"base64": base64.b64encode(PHOTO).decode()}}, "task-8")
    (entry,) = media.store_outputs(pod.rest, result)["media"]["files"]
    assert entry["url"] == f"s3://{store.bucket}/prod/outputs/task-8/3_0.png"
    served = requests.get(entry["presigned_url"], timeout=5)
    assert served.content == base64.b64decode(entry["base64"])
    assert hashlib.sha256(served.content).hexdigest() == entry["sha256"]
    assert served.headers["Content-Type"] == "image/png" and "X-Amz-Expires=120" in entry["presigned_url"]
    assert pod.rest.get_history("task-8") is None  # forgotten on the pod once stored
    # the next job can take this output as its input, by store key or s3:// URL
    for spec in ({"store_key": entry["key"]}, {"url": entry["url"]}):
        workflow = media.prepare_inputs(img2img(), {"photo": spec}, pod.rest, "task-9")
        assert workflow["1"]["inputs"]["image"] == "comfy-celery/task-9/photo.png"


def test_a_cancel_stops_the_store_without_retrying(sim: ComfyUISimulator, pod: ComfyUIPodClient, tmp_path: Path) -> None:
    media = pipeline(FileStore(tmp_path / "store"))
    result = run(pod, media, {"photo": {"base64": base64.b64encode(PHOTO).decode()}}, "task-10")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Exception) as exc:
        media.store_outputs(pod.rest, result, cancel=cancel)
    assert getattr(exc.value, "code", None) == "cancelled"


def test_a_file_the_pod_no_longer_has_is_not_retried(sim: ComfyUISimulator, pod: ComfyUIPodClient, tmp_path: Path) -> None:
    media = pipeline(FileStore(tmp_path / "store"))
    result = run(pod, media, {"photo": {"base64": base64.b64encode(PHOTO).decode()}}, "task-11")
    for item in result.files:
        assert item.filename is not None
        (sim.root / "output" / item.filename).unlink()
    with pytest.raises(StorageError) as exc:
        media.store_outputs(pod.rest, result)
    assert not exc.value.retryable and "404" in exc.value.message
    assert sim.request_counts().get("GET /view", 0) == 1


def test_the_manifest_answers_a_redelivery_after_cleanup(sim: ComfyUISimulator, pod: ComfyUIPodClient, s3_server: S3Server) -> None:
    media = pipeline(s3_server.store(), cleanup="history")
    assert media.recall("task-12") is None
    result = run(pod, media, {"photo": {"base64": base64.b64encode(PHOTO).decode()}}, "task-12")
    stored = media.store_outputs(pod.rest, result, also={"pod": "pod0"})
    assert pod.rest.get_history("task-12") is None  # the pod forgot the prompt …
    recalled = media.recall("task-12")  # … the store did not
    assert recalled is not None and recalled["prompt_id"] == "task-12" and recalled["pod"] == "pod0"
    (entry,) = recalled["media"]["files"]
    assert {k: v for k, v in entry.items() if k != "presigned_url"} == {
        k: v for k, v in stored["media"]["files"][0].items() if k != "presigned_url"
    }
    assert requests.get(entry["presigned_url"], timeout=5).content[:8] == b"\x89PNG\r\n\x1a\n"  # signed anew
