from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.celery_support import broker, redis_server  # noqa: F401 - fixtures
from tests.integration.media_support import file_server, s3_server  # noqa: F401 - fixtures
from tests.integration.sim_client import RawSocket
from tests.traces import load_workflow
from worker.simulator import ComfyUISimulator, SimulatorTiming

FAST = SimulatorTiming(node_seconds=0.001, sampler_step_seconds=0.01, input_time_scale=0.05)


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """Celery's in-process test worker sets the root logger's level and keeps it: undo that."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers = handlers


@pytest.fixture(autouse=True)
def _close_raw_sockets() -> Iterator[None]:
    """Tests open raw simulator sockets freely; none outlives its test."""
    yield
    RawSocket.close_all()


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[ComfyUISimulator]:
    with ComfyUISimulator(timing=dataclasses.replace(FAST, per_class_seconds={}), root=tmp_path / "sim") as simulator:
        yield simulator


@pytest.fixture
def txt2img() -> dict[str, Any]:
    return load_workflow("txt2img-sd15-random.json")


@pytest.fixture
def image_only() -> dict[str, Any]:
    return load_workflow("image-only-save.json")


def slow_workflow(steps: int = 8, seconds_per_step: float = 0.2, salt: int = 0) -> dict[str, Any]:
    """LabSlowProgress → LabTextOutput: with FAST timing, ``seconds_per_step`` is scaled by 0.05."""
    return {
        "1": {"class_type": "LabSlowProgress", "inputs": {"steps": steps, "seconds_per_step": seconds_per_step, "salt": salt}},
        "2": {"class_type": "LabTextOutput", "inputs": {"text": "done", "value": ["1", 0]}},
    }
