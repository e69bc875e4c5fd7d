"""The simulator's REST API and routing, over real sockets on 127.0.0.1 (faults: test_simulator_faults.py)."""

from __future__ import annotations

import io
import struct
import time
import zlib
from typing import Any

import pytest
import requests
import websocket

from tests.conftest import slow_workflow
from tests.integration.sim_client import RawSocket, submit, wait_history
from worker.comfyui import protocol as p
from worker.simulator import ComfyUISimulator


def _png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = struct.unpack(">II", data[16:24])
    zlib.decompress(data[data.index(b"IDAT") + 4 : data.index(b"IEND") - 8])  # the pixel data decodes
    return width, height


def test_every_route_is_served_with_and_without_api_prefix(sim: ComfyUISimulator) -> None:
    for prefix in ("", "/api"):
        assert requests.get(f"{sim.url}{prefix}/prompt", timeout=5).json() == {"exec_info": {"queue_remaining": 0}}
        assert requests.get(f"{sim.url}{prefix}/queue", timeout=5).json() == {"queue_running": [], "queue_pending": []}
        assert requests.get(f"{sim.url}{prefix}/history/nope", timeout=5).json() == {}
        assert requests.get(f"{sim.url}{prefix}/system_stats", timeout=5).json()["system"]["comfyui_version"] == "0.8.0"
        assert requests.get(f"{sim.url}{prefix}/features", timeout=5).json()["supports_preview_metadata"] is True
        info = requests.get(f"{sim.url}{prefix}/object_info", timeout=5).json()
        assert info["KSampler"]["input"]["required"]["steps"][0] == "INT"
        assert info["SaveImage"]["output_node"] is True
        assert requests.get(f"{sim.url}{prefix}/object_info/Nope", timeout=5).json() == {}
    assert requests.get(f"{sim.url}/jobs", timeout=5).status_code == 404  # only under /api, as in 0.8.0
    assert requests.get(f"{sim.url}/api/jobs/nope", timeout=5).json() == {"error": "Job not found"}


def test_success_writes_real_files_and_history(sim: ComfyUISimulator, image_only: dict[str, Any]) -> None:
    ws = RawSocket(sim.url)
    reply = submit(sim.url, image_only, ws.client_id, "p-files")
    assert reply == {"prompt_id": "p-files", "number": 0, "node_errors": {}, "_status": 200}
    frames = ws.until_done("p-files")
    texts = [f for f in frames if isinstance(f, p.ProgressText)]
    assert texts == [p.ProgressText("4", "width: 64, height: 64\n batch size: 1")]
    entry = wait_history(sim.url, "p-files")
    assert entry["status"]["status_str"] == "success"
    image = entry["outputs"]["6"]["images"][0]
    assert image == {"filename": "lab_image_only_00001_.png", "subfolder": "", "type": "output"}
    data = requests.get(f"{sim.url}/view", params=image, timeout=5).content
    assert _png_size(data) == (96, 64)  # ImageScale to width 96, height from GetImageSize
    job = requests.get(f"{sim.url}/api/jobs/p-files", timeout=5).json()
    assert (job["status"], job["outputs_count"]) == ("completed", 1)
    ws.close()


def test_view_refuses_paths_outside_its_folders(sim: ComfyUISimulator) -> None:
    assert requests.get(f"{sim.url}/view", params={"filename": "../x.png"}, timeout=5).status_code == 400
    assert requests.get(f"{sim.url}/view", params={"filename": "/etc/passwd"}, timeout=5).status_code == 400
    assert requests.get(f"{sim.url}/view", params={"filename": "x.png", "subfolder": "../.."}, timeout=5).status_code == 403
    assert requests.get(f"{sim.url}/view", params={"filename": "x.png", "type": "secret"}, timeout=5).status_code == 400
    assert requests.get(f"{sim.url}/view", params={"filename": "missing.png"}, timeout=5).status_code == 404


def test_upload_then_load_image(sim: ComfyUISimulator) -> None:
    def upload(content: bytes) -> dict[str, Any]:
        files = {"image": ("in.png", io.BytesIO(content), "image/png")}
        result: dict[str, Any] = requests.post(f"{sim.url}/upload/image", files=files, timeout=5).json()
        return result

    assert upload(b"one") == {"name": "in.png", "subfolder": "", "type": "input"}
    assert upload(b"one")["name"] == "in.png"  # identical content: same name
    assert upload(b"two")["name"] == "in (1).png"
    workflow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    assert submit(sim.url, workflow)["_status"] == 200
    missing = submit(sim.url, {**workflow, "1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}}})
    assert missing["_status"] == 400
    assert missing["node_errors"]["1"]["errors"][0]["details"] == "image - Invalid image file: nope.png"


def test_video_node_returns_gifs_output(sim: ComfyUISimulator) -> None:
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 4, "color": 255}},
        "2": {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": ["1", 0],
                "frame_rate": 8,
                "loop_count": 0,
                "filename_prefix": "clip",
                "format": "image/gif",
                "pingpong": False,
                "save_output": True,
            },
        },
    }
    reply = submit(sim.url, workflow)
    entry = wait_history(sim.url, reply["prompt_id"])
    video = entry["outputs"]["2"]["gifs"][0]
    assert (video["filename"], video["format"], video["type"]) == ("clip_00001.gif", "image/gif", "output")
    data = requests.get(f"{sim.url}/view", params={"filename": video["filename"], "type": "output"}, timeout=5).content
    assert data.startswith(b"GIF89a") and data.endswith(b";")


def test_routing_without_client_id_broadcasts_progress_only(sim: ComfyUISimulator) -> None:
    a, b = RawSocket(sim.url), RawSocket(sim.url)
    for s in (a, b):
        assert isinstance(s.next(), p.StatusData)
    reply = submit(sim.url, slow_workflow(steps=3))
    wait_history(sim.url, reply["prompt_id"])
    time.sleep(0.05)
    for s in (a, b):
        kinds = set()
        s.ws.settimeout(0.1)
        try:
            while True:
                kinds.add(type(s.next(0.1)).__name__)
        except websocket.WebSocketTimeoutException:
            pass
        assert kinds == {"StatusData", "ProgressStateMessageData", "ProgressData"}
        s.close()


def test_reconnect_replays_the_running_node_and_overlap_goes_deaf(sim: ComfyUISimulator) -> None:
    first = RawSocket(sim.url)
    submit(sim.url, slow_workflow(steps=40, seconds_per_step=0.4), first.client_id, "p-overlap")
    first.until(lambda m: isinstance(m, p.ProgressData))
    second = RawSocket(sim.url, client_id=first.client_id)
    assert isinstance(second.next(), p.StatusData)
    replay = second.next()
    assert isinstance(replay, p.ExecutingData) and replay.is_reconnect_replay and replay.node == "1"
    second.until(lambda m: isinstance(m, p.ProgressData))
    first.close()  # the hazard: this unregisters the *second* socket too
    time.sleep(0.1)
    second.ws.settimeout(0.3)
    drained = []
    with pytest.raises(websocket.WebSocketTimeoutException):
        while True:
            drained.append(second.next(0.3))
    assert len(drained) <= 3  # whatever was in flight; then silence although the prompt runs on
    second.close()


def test_feature_flags_switch_previews_to_type_4(sim: ComfyUISimulator, txt2img: dict[str, Any]) -> None:
    ws = RawSocket(sim.url, flags=True)
    assert isinstance(ws.next(), p.StatusData)
    flags = ws.next()
    assert isinstance(flags, p.FeatureFlagsData) and flags.supports_preview_metadata
    submit(sim.url, txt2img, ws.client_id, "p-flags")
    frames = ws.until_done("p-flags")
    previews = [f for f in frames if isinstance(f, p.PreviewImageWithMetadata)]
    assert len(previews) == 6
    assert {(f.prompt_id, f.node_id, f.format) for f in previews} == {("p-flags", "3", "jpeg")}
    assert not [f for f in frames if isinstance(f, p.PreviewImage)]


def test_cached_rerun_reports_every_node_cached(sim: ComfyUISimulator, txt2img: dict[str, Any]) -> None:
    ws = RawSocket(sim.url)
    submit(sim.url, txt2img, ws.client_id, "run-1")
    ws.until_done("run-1")
    submit(sim.url, txt2img, ws.client_id, "run-2")
    frames = ws.until_done("run-2")
    cached = next(f for f in frames if isinstance(f, p.ExecutionCachedData))
    assert sorted(cached.nodes) == ["3", "4", "5", "6", "7", "8", "9"]
    assert not [f for f in frames if isinstance(f, p.ExecutingData) and f.node is not None]
    first = wait_history(sim.url, "run-1")["outputs"]["9"]
    assert wait_history(sim.url, "run-2")["outputs"]["9"] == first  # same file names replayed


def test_queue_delete_clear_and_targeted_interrupt(sim: ComfyUISimulator) -> None:
    ws = RawSocket(sim.url)
    submit(sim.url, slow_workflow(steps=100, seconds_per_step=0.2, salt=1), ws.client_id, "running")
    ws.until(lambda m: isinstance(m, p.ProgressData))
    for i in range(3):
        submit(sim.url, slow_workflow(salt=10 + i), ws.client_id, f"pending-{i}")
    queue = requests.get(f"{sim.url}/queue", timeout=5).json()
    assert [item[1] for item in queue["queue_running"]] == ["running"]
    assert sorted(item[1] for item in queue["queue_pending"]) == ["pending-0", "pending-1", "pending-2"]
    requests.post(f"{sim.url}/queue", json={"delete": ["pending-1"]}, timeout=5)
    assert sorted(i[1] for i in requests.get(f"{sim.url}/queue", timeout=5).json()["queue_pending"]) == ["pending-0", "pending-2"]
    requests.post(f"{sim.url}/queue", json={"clear": True}, timeout=5)
    assert requests.get(f"{sim.url}/queue", timeout=5).json()["queue_pending"] == []
    assert requests.post(f"{sim.url}/queue", data=b"", timeout=5).status_code == 500
    requests.post(f"{sim.url}/interrupt", json={"prompt_id": "someone-else"}, timeout=5)
    ws.until(lambda m: isinstance(m, p.ProgressData))  # still running
    requests.post(f"{sim.url}/interrupt", json={"prompt_id": "running"}, timeout=5)
    frames = ws.until_done("running")
    assert any(isinstance(f, p.ExecutionInterruptedData) for f in frames)
    assert wait_history(sim.url, "running")["status"] == {
        "status_str": "error",
        "completed": False,
        "messages": wait_history(sim.url, "running")["status"]["messages"],
    }


def test_history_listing_and_deletion(sim: ComfyUISimulator) -> None:
    for i in range(3):
        wait_history(sim.url, submit(sim.url, slow_workflow(steps=1, salt=i))["prompt_id"])
    ids = list(requests.get(f"{sim.url}/history", timeout=5).json())
    assert len(ids) == 3
    assert list(requests.get(f"{sim.url}/history?max_items=2", timeout=5).json()) == ids[1:]
    assert list(requests.get(f"{sim.url}/history?offset=1&max_items=1", timeout=5).json()) == ids[1:2]
    requests.post(f"{sim.url}/history", json={"delete": [ids[0]]}, timeout=5)
    assert list(requests.get(f"{sim.url}/history", timeout=5).json()) == ids[1:]
    requests.post(f"{sim.url}/history", json={"clear": True}, timeout=5)
    assert requests.get(f"{sim.url}/history", timeout=5).json() == {}


def test_free_memory_empties_the_cache_at_once_when_idle_else_after_the_running_prompt(sim: ComfyUISimulator) -> None:
    ws = RawSocket(sim.url)

    def cached_nodes(prompt_id: str, workflow: dict[str, Any]) -> tuple[str, ...]:
        submit(sim.url, workflow, ws.client_id, prompt_id)
        return next(f for f in ws.until_done(prompt_id) if isinstance(f, p.ExecutionCachedData)).nodes

    quick, busy = slow_workflow(steps=1), slow_workflow(steps=40, salt=9)
    assert cached_nodes("q1", quick) == ()
    assert sorted(cached_nodes("q2", quick)) == ["1", "2"]
    requests.post(f"{sim.url}/free", json={"unload_models": True}, timeout=5)  # models only: the cache stays
    assert sorted(cached_nodes("q3", quick)) == ["1", "2"]
    requests.post(f"{sim.url}/free", json={"free_memory": True}, timeout=5)  # idle: at once
    assert cached_nodes("q4", quick) == ()

    submit(sim.url, busy, ws.client_id, "b1")
    deadline = time.monotonic() + 5
    while [i[1] for i in requests.get(f"{sim.url}/queue", timeout=5).json()["queue_running"]] != ["b1"]:
        assert time.monotonic() < deadline, "b1 never started"
        time.sleep(0.005)
    requests.post(f"{sim.url}/free", json={"free_memory": True}, timeout=5)  # b1 is running: applied after it
    ws.until_done("b1")
    assert wait_history(sim.url, "b1")["status"]["status_str"] == "success"  # b1 itself ran to the end
    assert cached_nodes("b2", busy) == ()  # without the free, b2 would be all cached


def test_history_is_capped_like_comfyui(sim: ComfyUISimulator) -> None:
    """Past MAXIMUM_HISTORY_SIZE each new entry drops the oldest, so one more than the cap exists."""
    sim.sim.engine.max_history = 2
    ids = [submit(sim.url, slow_workflow(steps=1, salt=i))["prompt_id"] for i in range(5)]
    wait_history(sim.url, ids[-1])  # one prompt at a time, FIFO: the last done means all done
    assert list(requests.get(f"{sim.url}/history", timeout=5).json()) == ids[-3:]
    assert requests.get(f"{sim.url}/history/{ids[0]}", timeout=5).json() == {}  # evicted reads as unknown


def test_origin_mismatch_is_refused_like_comfyui(sim: ComfyUISimulator) -> None:
    port = sim.port
    assert requests.get(f"{sim.url}/prompt", headers={"Origin": f"http://127.0.0.1:{port}"}, timeout=5).status_code == 200
    assert requests.get(f"{sim.url}/prompt", headers={"Origin": "http://127.0.0.1"}, timeout=5).status_code == 200
    assert requests.get(f"{sim.url}/prompt", headers={"Origin": "null"}, timeout=5).status_code == 200
    assert requests.get(f"{sim.url}/prompt", headers={"Origin": f"http://localhost:{port}"}, timeout=5).status_code == 403
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(sim.url.replace("http", "ws") + "/ws", origin="http://evil.example", timeout=5)
