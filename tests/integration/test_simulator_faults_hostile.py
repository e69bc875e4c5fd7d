"""The simulator under hostile load (issue 15, small ones): a silent fault sends nothing, a long chain runs."""

from __future__ import annotations

from typing import Any

import pytest
import websocket

from tests.integration.sim_client import submit, wait_history
from worker.simulator import ComfyUISimulator
from worker.simulator.graph import cache_keys


def test_a_silent_simulator_sends_no_greeting(sim: ComfyUISimulator) -> None:
    sim.faults.silent = True
    ws = websocket.create_connection(sim.url.replace("http", "ws") + "/ws?clientId=quiet", timeout=0.3)
    try:
        with pytest.raises(websocket.WebSocketTimeoutException):
            ws.recv()
    finally:
        ws.close()
    sim.faults.silent = False
    loud = websocket.create_connection(sim.url.replace("http", "ws") + "/ws?clientId=loud", timeout=2)
    try:
        assert '"status"' in loud.recv()
    finally:
        loud.close()


def chain(n: int) -> dict[str, Any]:
    """LabSlowProgress nodes, each one's salt linked to the one before."""
    workflow: dict[str, Any] = {"0": {"class_type": "LabSlowProgress", "inputs": {"steps": 1, "seconds_per_step": 0.0, "salt": 0}}}
    for i in range(1, n):
        workflow[str(i)] = {"class_type": "LabSlowProgress", "inputs": {"steps": 1, "seconds_per_step": 0.0, "salt": [str(i - 1), 0]}}
    return workflow


def test_cache_keys_of_a_deep_chain_are_short_and_need_no_recursion() -> None:
    keys = cache_keys(chain(5000))
    assert len(keys) == 5000 and {len(k) for k in keys.values()} == {64}
    assert len(set(keys.values())) == 5000


def test_a_60_node_chain_runs(sim: ComfyUISimulator) -> None:
    # signatures nested as escaped JSON doubled per link: 50 nodes never finished
    submit(sim.url, chain(60), prompt_id="p-chain")
    assert wait_history(sim.url, "p-chain", timeout=20)["status"]["status_str"] == "success"
