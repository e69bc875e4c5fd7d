"""The simulator's ``silent`` fault is silent from the first byte (issue 15, small ones)."""

from __future__ import annotations

import pytest
import websocket

from worker.simulator import ComfyUISimulator


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
