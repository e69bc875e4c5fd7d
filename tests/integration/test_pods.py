"""Pod choice: least loaded, unhealthy pods skipped, and no resources piling up per choice."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from config.settings import Settings
from config.wiring import pod_pool
from tests.conftest import FAST, slow_workflow
from tests.integration.net_support import established_to
from tests.integration.sim_client import RawSocket, submit
from worker.comfyui.errors import ConnectionFailedError
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.pod_client import ComfyUIPodClient, PodClientSettings
from worker.comfyui.urls import ServerURL
from worker.fleet.pods import PodConfig, PodPool
from worker.simulator import ComfyUISimulator


def test_least_loaded_skips_unhealthy_pods_and_does_not_pile_up_sessions(tmp_path: Path) -> None:
    with ComfyUISimulator(timing=FAST, root=tmp_path / "a") as a, ComfyUISimulator(timing=FAST, root=tmp_path / "b") as b:
        settings = Settings.from_env({"COMFYUI_SERVERS": f"a={a.url},b={b.url},dead=http://127.0.0.1:9", "COMFYUI_HTTP_RETRIES": "0"})
        pool = pod_pool(settings)
        busy = RawSocket(a.url)
        submit(a.url, slow_workflow(steps=400), busy.client_id, "busy")
        assert pool.least_loaded().name == "b"
        for _ in range(30):
            pool.least_loaded()
        for server in (a, b):  # however many choices and pool threads
            assert established_to(server.port) <= HTTPSettings().max_connections
        assert pool.find_prompt("busy") == pool.get("a")
        with pytest.raises(ConnectionFailedError, match="may be on pod dead"):
            pool.find_prompt("nowhere")  # the dead pod could not say it has not got it
        pool.close()


def test_a_hanging_pod_costs_the_load_check_its_health_timeout_only(tmp_path: Path) -> None:
    """A pod that accepts connections but never answers (a stuck proxy) must not hold every job
    for its read timeout times its retries (30 s x 4 here)."""
    hanging = socket.create_server(("127.0.0.1", 0))  # never accepts: requests wait for an answer
    slow_http = HTTPSettings(connect_timeout=1.0, read_timeout=30.0, retries=3)
    with hanging, ComfyUISimulator(timing=FAST, root=tmp_path / "a") as live:
        pods = [
            PodConfig("hung", ServerURL.parse(f"http://127.0.0.1:{hanging.getsockname()[1]}")),
            PodConfig("live", ServerURL.parse(live.url)),
        ]
        pool = PodPool(pods, lambda pod: ComfyUIPodClient(pod.url, settings=PodClientSettings(http=slow_http, health_timeout=0.2)))
        started = time.monotonic()
        assert pool.least_loaded().name == "live"
        assert time.monotonic() - started < 5.0  # 0.2 s expected; 120 s before the load check was quick
        pool.close()


def test_no_healthy_pod_is_a_transport_error() -> None:
    pool = pod_pool(Settings.from_env({"COMFYUI_SERVERS": "x=http://127.0.0.1:9,y=http://127.0.0.1:10", "COMFYUI_HTTP_RETRIES": "0"}))
    with pytest.raises(ConnectionFailedError):
        pool.least_loaded()
    with pytest.raises(KeyError):
        pool.get("z")
    only = PodConfig("only", ServerURL.parse("http://127.0.0.1:9"))
    assert PodPool([only], factory=lambda pod: pool.client(pool.pods[0])).least_loaded().name == "only"
    pool.close()
