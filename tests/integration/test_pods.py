"""Pod choice: least loaded, unhealthy pods skipped, and no resources piling up per choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import PodConfig, Settings
from tests.conftest import FAST, slow_workflow
from tests.integration.sim_client import RawSocket, submit
from worker.comfyui.errors import ConnectionFailedError
from worker.pods import PodPool
from worker.simulator import ComfyUISimulator


def test_least_loaded_skips_unhealthy_pods_and_does_not_pile_up_sessions(tmp_path: Path) -> None:
    with ComfyUISimulator(timing=FAST, root=tmp_path / "a") as a, ComfyUISimulator(timing=FAST, root=tmp_path / "b") as b:
        settings = Settings.from_env({"COMFYUI_SERVERS": f"a={a.url},b={b.url},dead=http://127.0.0.1:9", "COMFYUI_HTTP_RETRIES": "0"})
        pool = PodPool.from_settings(settings)
        busy = RawSocket(a.url)
        submit(a.url, slow_workflow(steps=400), busy.client_id, "busy")
        assert pool.least_loaded().name == "b"
        for _ in range(30):
            pool.least_loaded()
        sessions = [len(pool.client(p).http._sessions) for p in pool.pods]
        assert max(sessions) <= len(pool.pods)  # one per pool thread, however many choices
        assert pool.find_prompt("busy") == pool.get("a")
        assert pool.find_prompt("nowhere") is None
        pool.close()


def test_no_healthy_pod_is_a_transport_error() -> None:
    pool = PodPool.from_settings(
        Settings.from_env({"COMFYUI_SERVERS": "x=http://127.0.0.1:9,y=http://127.0.0.1:10", "COMFYUI_HTTP_RETRIES": "0"})
    )
    with pytest.raises(ConnectionFailedError):
        pool.least_loaded()
    with pytest.raises(KeyError):
        pool.get("z")
    assert PodPool([PodConfig("only", "http://127.0.0.1:9")], factory=lambda pod: pool.client(pool.pods[0])).least_loaded().name == "only"
    pool.close()
