"""bench/fault_proxy.py: transparent until a fault is armed, then each fault does what it says."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bench.fault_proxy import FaultKind, FaultProxy
from tests.conftest import FAST, slow_workflow
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.pod_client import ComfyUIPodClient, PodClientSettings
from worker.simulator import ComfyUISimulator


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[ComfyUISimulator, FaultProxy]]:
    with ComfyUISimulator(timing=FAST, root=tmp_path / "sim") as sim, FaultProxy(sim.port, hold=1.0, delay=0.3) as proxy:
        yield sim, proxy


def test_passes_http_and_websocket_through(proxied: tuple[ComfyUISimulator, FaultProxy]) -> None:
    sim, proxy = proxied
    client = ComfyUIPodClient(proxy.url)
    try:
        result = client.execute_workflow(slow_workflow(steps=3))
    finally:
        client.close()
    assert result.status == "success" and result.method == "websocket"
    assert sim.request_counts()["POST /prompt"] == 1


def test_each_fault_breaks_one_request(proxied: tuple[ComfyUISimulator, FaultProxy]) -> None:
    _, proxy = proxied
    with requests.Session() as session:
        assert session.get(f"{proxy.url}/system_stats", timeout=5).ok
        for kind in ("drop_reply", "truncate", "cut"):
            proxy.arm(kind)
            with pytest.raises(requests.RequestException):
                session.get(f"{proxy.url}/system_stats", timeout=5).json()
        proxy.arm("bad_gateway")
        assert session.get(f"{proxy.url}/system_stats", timeout=5).status_code == 502
        proxy.arm("blackhole")
        with pytest.raises(requests.ReadTimeout):
            session.get(f"{proxy.url}/system_stats", timeout=(1, 0.5))
        proxy.arm("delay")
        started = time.monotonic()
        assert session.get(f"{proxy.url}/system_stats", timeout=5).ok
        assert time.monotonic() - started >= 0.3
    proxy.refuse(5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{proxy.url}/system_stats", timeout=5)
    proxy.clear()
    assert requests.get(f"{proxy.url}/system_stats", timeout=5).ok
    assert proxy.applied == {"drop_reply": 1, "truncate": 1, "bad_gateway": 1, "cut": 1, "blackhole": 1, "delay": 1, "refuse": 1}


@pytest.mark.parametrize("fault", ["drop_reply", "bad_gateway"])
def test_a_lost_prompt_reply_is_recovered_without_a_second_post(proxied: tuple[ComfyUISimulator, FaultProxy], fault: FaultKind) -> None:
    """bad_gateway: the pod accepted the prompt, the proxy answered 502 (it was raised as ``http``)."""
    sim, proxy = proxied
    client = ComfyUIPodClient(proxy.url, settings=PodClientSettings(http=HTTPSettings(retries=0)))
    try:
        client.rest.health_check()  # the next chunk the proxy sees is the POST
        proxy.arm(fault)
        submitted = client.rest.queue_prompt(slow_workflow(steps=2), "lost-reply", None)
    finally:
        client.close()
    assert submitted.recovered
    assert sim.request_counts()["POST /prompt"] == 1


def test_only_localhost_upstreams() -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
        FaultProxy(80, upstream_host="example.com")
