"""The simulator runs each node for the duration its timing profile gives."""

from __future__ import annotations

import time
from typing import Any

import requests

from worker.simulator import ComfyUISimulator, SimulatorTiming


class FixedProfile:
    def durations(self, class_type: str, inputs: Any) -> tuple[float, float | None]:
        return (0.3, None) if class_type == "EmptyImage" else (0.0, None)

    def unload(self) -> None:
        pass


def test_the_simulator_runs_nodes_for_the_profiles_durations(image_only: dict[str, Any]) -> None:
    with ComfyUISimulator(timing=SimulatorTiming(profile=FixedProfile())) as sim:
        started = time.monotonic()
        prompt = requests.post(f"{sim.url}/prompt", json={"prompt": image_only}, timeout=5).json()["prompt_id"]
        while not requests.get(f"{sim.url}/history/{prompt}", timeout=5).json():
            time.sleep(0.02)
        assert time.monotonic() - started >= 0.3
