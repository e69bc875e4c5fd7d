"""Done means: an img2img workflow with an input image by URL, through Celery end to end (real
worker process, private Redis, the simulator), whose result links to its output in the S3
server and whose presigned URL serves the right bytes."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import requests

from tests.integration.celery_support import WorkerProcess, app_for, env_for, finished, wait_for
from tests.integration.media_support import S3_ENV, FileServer, S3Server
from worker.comfyui.errors import StorageError, WorkflowValidationError
from worker.fleet.media.sniff import image_size
from worker.simulator import ComfyUISimulator
from worker.simulator.media import solid_png

PHOTO = solid_png(120, 80, (0, 200, 100))


def img2img(reference: str = "input:photo") -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": reference}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "img2img"}},
    }


def test_img2img_by_url_through_celery_into_s3(
    broker: str, sim: ComfyUISimulator, s3_server: S3Server, file_server: FileServer, tmp_path: Path
) -> None:
    from tasks.client import enqueue_workflow

    file_server.routes["/photo.png"] = PHOTO
    bucket = s3_server.bucket()
    env = env_for(
        broker,
        sim.url,
        OUTPUT_STORE=f"s3://{bucket}/fleet",
        OUTPUT_S3_ENDPOINT_URL=s3_server.endpoint,
        OUTPUT_PRESIGN_SECONDS="300",
        INPUT_URL_ALLOW="127.0.0.1",
        **S3_ENV,
    )
    app = app_for(env)
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    try:
        result = enqueue_workflow(app, img2img(), inputs={"photo": {"url": f"{file_server.url}/photo.png?token=abc"}})
        wait_for(result, finished, timeout=30)
        assert str(result.state) == "SUCCESS", worker.log()[-3000:]
        outcome = result.result
        assert isinstance(outcome, dict)
        media = outcome["media"]
        (entry,) = media["files"]
        assert media["store"] == f"s3://{bucket}/fleet"
        assert entry["url"] == f"s3://{bucket}/fleet/outputs/{result.id}/3_0.png"
        served = requests.get(entry["presigned_url"], timeout=10)
        assert served.status_code == 200 and hashlib.sha256(served.content).hexdigest() == entry["sha256"]
        assert image_size(served.content, "image/png") == (120, 80) == (entry["width"], entry["height"])
        assert file_server.hits["/photo.png"] == 1
        assert "token=abc" not in worker.log()  # the input URL's query never reaches a log line

        bad = enqueue_workflow(app, img2img("input:photograph"), inputs={"photo": {"url": f"{file_server.url}/photo.png"}})
        wait_for(bad, finished, timeout=30)
        assert str(bad.state) == "FAILURE"
        assert isinstance(bad.result, WorkflowValidationError) and bad.result.error_type == "unknown_input"
        assert file_server.hits["/photo.png"] == 1  # refused before fetching anything
    finally:
        worker.stop()


def test_a_store_that_refuses_fails_with_storage_after_retries_without_resubmitting(
    broker: str, sim: ComfyUISimulator, s3_server: S3Server, tmp_path: Path
) -> None:
    from tasks.client import enqueue_workflow

    env = env_for(
        broker,
        sim.url,
        OUTPUT_STORE="s3://no-such-bucket/x",  # every PUT answers NoSuchBucket
        OUTPUT_S3_ENDPOINT_URL=s3_server.endpoint,
        OUTPUT_STORE_ATTEMPTS="2",
        TASK_MAX_RETRIES="1",
        **S3_ENV,
    )
    app = app_for(env)
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    try:
        photo = {"base64": base64.b64encode(PHOTO).decode()}
        result = enqueue_workflow(app, img2img(), inputs={"photo": photo})
        wait_for(result, finished, timeout=30)
        assert str(result.state) == "FAILURE", worker.log()[-3000:]
        assert isinstance(result.result, StorageError) and result.result.code == "storage"
        assert "NoSuchBucket" in result.result.message
        assert worker.log().count("storing the outputs failed") == 1  # one task-level retry (TASK_MAX_RETRIES=1)
        assert sim.request_counts().get("POST /prompt", 0) == 1  # the retry re-attached to the finished prompt
    finally:
        worker.stop()


def test_a_redelivered_task_after_cleanup_answers_from_the_store_without_running_again(
    broker: str, sim: ComfyUISimulator, tmp_path: Path
) -> None:
    from tasks.client import enqueue_workflow

    store = tmp_path / "store"
    env = env_for(broker, sim.url, OUTPUT_STORE=store.as_uri(), OUTPUT_CLEANUP="history")
    app = app_for(env)
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    try:
        inputs = {"photo": {"base64": base64.b64encode(PHOTO).decode()}}
        first = enqueue_workflow(app, img2img(), inputs=inputs)
        wait_for(first, finished, timeout=30)
        assert str(first.state) == "SUCCESS", worker.log()[-3000:]
        assert requests.get(f"{sim.url}/history/{first.id}", timeout=5).json() == {}  # cleaned up on the pod
        # the same task id again, as a redelivery would bring it (its stored result forgotten first,
        # so the SUCCESS waited for is the second run's)
        first.forget()
        again = enqueue_workflow(app, img2img(), inputs=inputs, task_id=first.id)
        wait_for(again, finished, timeout=30)
        assert str(again.state) == "SUCCESS", worker.log()[-3000:]
        assert worker.log().count(f"Task comfy.run_workflow[{first.id}] succeeded") == 2
        assert sim.request_counts().get("POST /prompt", 0) == 1  # answered from the manifest, not run twice
        outcome = again.result
        assert isinstance(outcome, dict) and outcome["media"]["files"][0]["key"] == f"outputs/{first.id}/3_0.png"
        assert (store / "outputs" / first.id / "3_0.png").is_file()
    finally:
        worker.stop()
