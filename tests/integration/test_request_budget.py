"""HTTP requests per job on a healthy socket: a fixed few, whatever the job's length, and shared
per pod for all the jobs of a process."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from tests.conftest import slow_workflow
from tests.integration.pod_support import SETTINGS, counts
from tests.integration.sim_client import RawSocket, submit
from worker.comfyui.observer import JobObserver
from worker.comfyui.pod_client import ComfyUIPodClient
from worker.comfyui.progress import JobProgressState
from worker.simulator import ComfyUISimulator


def test_a_long_job_on_a_healthy_socket_costs_no_probe(sim: ComfyUISimulator) -> None:
    """Progress every 0.05 s for 2 s, probe interval 0.3 s: the socket is never silent that long."""
    client = ComfyUIPodClient(sim.url, settings=SETTINGS)
    try:
        result = client.execute_workflow(slow_workflow(steps=40, seconds_per_step=1.0), prompt_id="long")
        assert result.method == "websocket"
        http = {k: v for k, v in counts(sim).items() if k != "GET /ws"}
        assert http == {"GET /system_stats": 1, "POST /prompt": 1, "GET /history/{prompt_id}": 1}
        # a second job within the health check's max age does not check it again
        client.execute_workflow(slow_workflow(steps=2, salt=1), prompt_id="next")
        assert counts(sim)["GET /system_stats"] == 1
    finally:
        client.close()


def test_queued_jobs_of_a_process_share_one_queue_read_per_interval(sim: ComfyUISimulator) -> None:
    settings = dataclasses.replace(SETTINGS, queued_probe_delay=0.1, history_probe_interval=0.3)
    client = ComfyUIPodClient(sim.url, settings=settings)
    blocker = RawSocket(sim.url)
    submit(sim.url, slow_workflow(steps=30, seconds_per_step=1.0, salt=99), blocker.client_id, "ahead")  # 1.5 s
    positions: dict[str, list[int]] = {}
    results: dict[str, Any] = {}

    class Positions(JobObserver):
        def on_progress(self, state: JobProgressState) -> None:
            if state.queue_position is not None:
                positions.setdefault(state.prompt_id, []).append(state.queue_position)

    def run(index: int) -> None:
        name = f"queued-{index}"
        results[name] = client.execute_workflow(slow_workflow(steps=1, salt=index), prompt_id=name, observer=Positions())

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started
    try:
        assert {r.status for r in results.values()} == {"success"}
        assert len(positions) == 8  # every queued job learnt its position
        # at most one read per queue_read_interval (1 s) for all eight, where each job read its own
        # every probe interval (0.3 s here): about 40
        assert counts(sim)["GET /queue"] <= elapsed / settings.queue_read_interval + 2, (counts(sim), elapsed)
    finally:
        client.close()


def test_a_queued_job_waits_in_slices_not_in_a_busy_loop(sim: ComfyUISimulator) -> None:
    """Each pass of the follow loop ticks the observers once: a queued job behind a 1.5 s prompt
    passes about once per wait slice (0.05 s here), never once per millisecond."""
    settings = dataclasses.replace(SETTINGS, history_probe_interval=0.2)
    client = ComfyUIPodClient(sim.url, settings=settings)
    blocker = RawSocket(sim.url)
    submit(sim.url, slow_workflow(steps=30, seconds_per_step=1.0, salt=98), blocker.client_id, "ahead")  # 1.5 s
    ticks: list[float] = []

    class Ticks(JobObserver):
        def on_tick(self) -> None:
            ticks.append(time.monotonic())

    try:
        started = time.monotonic()
        assert client.execute_workflow(slow_workflow(steps=1, salt=97), prompt_id="behind", observer=Ticks()).status == "success"
        elapsed = time.monotonic() - started
        assert len(ticks) <= elapsed / settings.wait_slice * 2 + 10, (len(ticks), elapsed)
    finally:
        client.close()
