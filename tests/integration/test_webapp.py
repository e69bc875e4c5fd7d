"""The example web app end to end: a real browser, the app, a real worker, a private Redis, the simulator."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from examples.webapp.app import create_app, output_location
from examples.webapp.fleet import LocalFleet, local_fleet
from tasks.client import ComfyClient
from tests.integration.webapp_support import chromium, serve
from tests.schema_support import check
from worker.simulator.media import solid_png


@pytest.fixture
def fleet(broker: str) -> Iterator[LocalFleet]:
    with local_fleet(step_seconds=0.25, broker=broker, extra_env={"PROGRESS_THROTTLE_SECONDS": "0.1"}) as made:
        yield made


@pytest.fixture
def site(fleet: LocalFleet) -> Iterator[str]:
    client = ComfyClient.from_url(fleet.broker)
    try:
        with serve(create_app(client)) as url:
            yield url
    finally:
        client.close()


PAGE_STATE = """
const img = (id) => document.getElementById(id);
return {
  state: document.body.dataset.state || null,
  percent: Number(img("fill").getAttribute("aria-valuenow")),
  status: document.getElementById("status").textContent,
  previewSeq: img("preview").dataset.seq || null,
  previewLoaded: img("preview").complete && img("preview").naturalWidth > 0,
  outputLoaded: img("output").complete && img("output").naturalWidth > 0,
};
"""


def test_the_page_shows_progress_previews_and_the_output(site: str, fleet: LocalFleet, tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []
    with chromium(tmp_path / "profile") as browser:
        browser.get(site)
        browser.find_element("id", "run").click()
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            now = browser.execute_script(PAGE_STATE)
            if not seen or now != seen[-1]:
                seen.append(now)
            if now["state"] in ("SUCCESS", "FAILURE", "REVOKED") and (now["outputLoaded"] or now["state"] != "SUCCESS"):
                break
            time.sleep(0.03)
        screenshot = tmp_path / "webapp.png"
        browser.save_screenshot(str(screenshot))
        print(f"screenshot: {screenshot}")
        # then an upload: the image goes with the job as an input, the inverted one comes back
        upload = tmp_path / "green.png"
        upload.write_bytes(solid_png(16, 16, (0, 200, 0)))
        first_job = browser.execute_script("return document.body.dataset.job")
        browser.find_element("id", "image").send_keys(str(upload))
        browser.find_element("id", "run").click()
        uploaded = wait_until_done(browser, first_job)
        browser.save_screenshot(str(tmp_path / "webapp-upload.png"))
    final = seen[-1]
    assert final["state"] == "SUCCESS" and final["outputLoaded"], (final, fleet.worker_log.read_text()[-2000:])
    percents = [s["percent"] for s in seen if s["state"] == "PROGRESS"]
    assert len(set(percents)) >= 3 and percents == sorted(percents), percents  # the bar moved, forward only
    assert any("KSampler (node 3): step" in s["status"] for s in seen)
    previews = {s["previewSeq"] for s in seen if s["previewSeq"] and s["previewLoaded"]}
    assert len(previews) >= 2, seen  # the preview image changed, and each one loaded
    assert uploaded["state"] == "SUCCESS" and uploaded["outputLoaded"], uploaded


def wait_until_done(browser: Any, previous_job: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    now: dict[str, Any] = {}
    while time.monotonic() < deadline:
        now = browser.execute_script(PAGE_STATE)
        job = browser.execute_script("return document.body.dataset.job")
        if job != previous_job and now["state"] in ("SUCCESS", "FAILURE", "REVOKED") and (now["outputLoaded"] or now["state"] != "SUCCESS"):
            return now
        time.sleep(0.05)
    raise AssertionError(f"the upload job did not end: {now}")


def test_the_json_api_and_the_event_stream(site: str) -> None:
    job_id = requests.post(f"{site}/api/jobs", data={"sample": "txt2img"}, timeout=10).json()["job_id"]
    updates: list[dict[str, Any]] = []
    events: list[str] = []
    with requests.get(f"{site}/api/jobs/{job_id}/events", stream=True, timeout=30) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        event = ""
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line[7:]
                events.append(event)
            elif line.startswith("data: ") and event == "update":
                updates.append(json.loads(line[6:]))
                if updates[-1]["state"] == "PROGRESS" and updates[-1]["progress"]["preview"]:
                    preview = requests.get(f"{site}/api/jobs/{job_id}/preview", timeout=5)
                    assert preview.status_code == 200 and preview.content[:2] == b"\xff\xd8"  # a JPEG
    assert events[-1] == "end" and updates[-1]["state"] == "SUCCESS"
    for update in updates:
        check("jobView", update)
    status = requests.get(f"{site}/api/jobs/{job_id}", timeout=5).json()
    assert status == updates[-1]
    stored = status["result"]["media"]["files"][0]
    assert stored["url"].startswith("file://")  # the final image comes from the output store
    output = requests.get(f"{site}/api/jobs/{job_id}/output", timeout=10)
    assert output.status_code == 200 and output.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert hashlib.sha256(output.content).hexdigest() == stored["sha256"]
    assert requests.get(f"{site}/api/jobs/no-such-job/preview", timeout=5).status_code == 404


def test_an_uploaded_image_is_inverted(site: str) -> None:
    red = solid_png(8, 8, (255, 0, 0))
    answer = requests.post(f"{site}/api/jobs", files={"image": ("red.png", red, "image/png")}, timeout=10)
    job_id = answer.json()["job_id"]
    final: dict[str, Any] = {}
    with requests.get(f"{site}/api/jobs/{job_id}/events", stream=True, timeout=30) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("data: {") and '"state"' in line:
                final = json.loads(line[6:])
    assert final["state"] == "SUCCESS", final
    output = requests.get(f"{site}/api/jobs/{job_id}/output", timeout=10)
    assert output.status_code == 200 and output.content.startswith(b"\x89PNG") and output.content != red


def test_cancel_from_the_api(site: str) -> None:
    job_id = requests.post(f"{site}/api/jobs", data={"sample": "txt2img"}, timeout=10).json()["job_id"]
    with requests.get(f"{site}/api/jobs/{job_id}/events", stream=True, timeout=30) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("data: ") and '"PROGRESS"' in line and '"step":' in line and '"step":null' not in line:
                assert requests.post(f"{site}/api/jobs/{job_id}/cancel", timeout=5).status_code == 202
            if line.startswith("data: ") and ('"REVOKED"' in line or '"SUCCESS"' in line):
                final = json.loads(line[6:])
                break
    assert final["state"] == "REVOKED", final


def test_output_location_prefers_the_store() -> None:
    result = {"server_url": "http://pod:8188/", "files": [{"kind": "text"}, {"kind": "image", "filename": "a b.png", "type": "output"}]}
    assert output_location(result) == "http://pod:8188/view?filename=a+b.png&subfolder=&type=output"
    assert output_location(result, 1) is None
    presigned = "https://bucket.example/x.png?X-Amz-Signature=1"
    stored = {**result, "media": {"files": [{"kind": "image", "url": "s3://bucket/x.png", "presigned_url": presigned}]}}
    assert output_location(stored) == presigned
    local = {**result, "media": {"files": [{"kind": "image", "url": "file:///srv/out/x.png", "presigned_url": None}]}}
    assert output_location(local) == "file:///srv/out/x.png"
