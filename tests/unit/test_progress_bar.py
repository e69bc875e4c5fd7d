from __future__ import annotations

import io
from typing import Any

from worker.app.follow import follow_task
from worker.app.progress_bar import render


def test_render_running_queued_and_other_states() -> None:
    meta = {
        "progress": 45.0,
        "status": "running",
        "node_id": "3",
        "node_type": "KSampler",
        "step": 4.0,
        "step_max": 10.0,
        "method": "websocket",
        "pod": "a",
    }
    assert render("PROGRESS", meta, width=10) == "[#####-----]  45.0%  KSampler (node 3) step 4/10  websocket  a"
    loader = {**meta, "node_type": "VAEDecode", "node_id": "8", "step": 0.0, "step_max": 1.0}
    assert "step" not in render("PROGRESS", loader)
    queued = {"progress": 0.0, "status": "queued", "queue_position": 2, "method": "websocket"}
    assert "queued (position 2)" in render("PROGRESS", queued)
    assert render("PENDING", None) == "waiting for a worker…"
    assert render("FAILURE", None) == "FAILURE"


class FakeReads:
    """Each poll is one read; the last state repeats."""

    def __init__(self, states: list[tuple[str, Any]]) -> None:
        self._states = states
        self.reads = 0

    def __call__(self) -> tuple[str, Any]:
        self.reads += 1
        return self._states[min(self.reads, len(self._states)) - 1]


def test_follow_prints_changes_and_ends_on_a_full_bar() -> None:
    meta = {
        "progress": 50.0,
        "status": "running",
        "node_id": "3",
        "node_type": "KSampler",
        "step": 5.0,
        "step_max": 10.0,
        "method": "websocket",
    }
    reads = FakeReads([("PENDING", None), ("PROGRESS", meta), ("PROGRESS", meta), ("SUCCESS", {"ok": True})])
    out = io.StringIO()
    assert follow_task(reads, timeout=5, out=out, interactive=False, sleep=lambda s: None) == "SUCCESS"
    lines = out.getvalue().splitlines()
    assert lines[0] == "waiting for a worker…"
    assert "50.0%" in lines[1]
    assert lines[-1].startswith("[" + "#" * 30 + "] 100.0%") and lines[-1].endswith("done")
    assert len(lines) == 3


def test_a_pipe_gets_one_100_percent_line_when_the_last_progress_was_full() -> None:
    running = {"progress": 80.0, "status": "running", "node_id": "8", "node_type": "VAEDecode", "method": "websocket"}
    full = {"progress": 100.0, "status": "completed", "node_id": None, "node_type": None, "method": "websocket"}
    reads = FakeReads([("PROGRESS", running), ("PROGRESS", full), ("SUCCESS", {"ok": True})])
    out = io.StringIO()
    assert follow_task(reads, timeout=5, out=out, interactive=False, sleep=lambda s: None) == "SUCCESS"
    lines = out.getvalue().splitlines()
    assert [line for line in lines if "100.0%" in line] == [lines[-1]] and lines[-1].endswith("done")
    assert len(lines) == 2
    tty = io.StringIO()
    reads = FakeReads([("PROGRESS", running), ("PROGRESS", full), ("SUCCESS", {"ok": True})])
    assert follow_task(reads, timeout=5, out=tty, interactive=True, sleep=lambda s: None) == "SUCCESS"
    assert tty.getvalue().endswith("done\n")  # a terminal redraws the line: the full bar ends as "done"


def test_follow_times_out() -> None:
    out = io.StringIO()
    assert follow_task(FakeReads([("PENDING", None)]), timeout=0.0, out=out, interactive=True) == "TIMEOUT"
