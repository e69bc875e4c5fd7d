"""Issue 14's fault cases end to end, with a real Celery worker at the default ComfyUI settings
(reconnect 3 x 5 s, history probe 5 s, poll 2 s): the time from the job's end on the pod (the
simulator's last event) to ``AsyncResult.ready()``, polled every 2 ms: ``python -m bench.celery_faults``.

Each case is a 3 s job (30 steps of 0.1 s), except the late POST reply (0.6 s); a fault is armed
on the simulator at the job's 10th step (about 1 s in), so it hits the worker's own socket.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from celery import Celery

from tasks.client import enqueue_workflow
from tests.integration.celery_support import WorkerProcess, app_for, env_for
from worker.app.local_redis import LocalRedis
from worker.simulator import ComfyUISimulator, Faults, SimulatorTiming

_SALT = itertools.count(1)
#: the production defaults for everything that decides how a fault is noticed
DEFAULTS = {
    "COMFYUI_WS_RECONNECT_DELAY": "5",
    "COMFYUI_WS_PING_INTERVAL": "10",
    "COMFYUI_WS_IDLE_TIMEOUT": "30",
    "COMFYUI_POLL_INTERVAL": "2",
    "COMFYUI_HISTORY_PROBE_INTERVAL": "5",
    "COMFYUI_HTTP_RETRIES": "3",
    "PROGRESS_THROTTLE_SECONDS": "1",
}


def slow(steps: int) -> dict[str, object]:
    return {
        "1": {"class_type": "LabSlowProgress", "inputs": {"steps": steps, "seconds_per_step": 0.1, "salt": next(_SALT)}},
        "2": {"class_type": "LabTextOutput", "inputs": {"text": "done", "value": ["1", 0]}},
    }


Arm = Callable[[Faults], object]


def _at_step(faults: Faults, arm: Arm, step: int = 10) -> Callable[[str, str], None]:
    seen = itertools.count(1)

    def on_event(event: str, prompt_id: str) -> None:
        if event == "progress" and next(seen) == step:
            arm(faults)

    return on_event


def _refuse_then_drop(faults: Faults) -> None:
    faults.refuse_websocket(seconds=20)
    faults.drop_sockets()


CASES: list[tuple[str, int, Arm | None, Arm | None]] = [
    # name, steps, armed before the job, armed at the 10th step
    ("healthy socket", 30, None, None),
    ("socket dropped 1 s in", 30, None, lambda f: f.drop_sockets()),
    ("dropped, reconnects refused 20 s", 30, None, _refuse_then_drop),
    ("silent socket from 1 s in", 30, None, lambda f: setattr(f, "silent", True)),
    ("POST reply 3 s late, job 0.6 s", 6, lambda f: setattr(f, "prompt_reply_delay", 3.0), None),
]


def one_job(sim: ComfyUISimulator, app: Celery, steps: int, before: Arm | None, during: Arm | None) -> float:
    """One job with its faults; milliseconds from its last event on the pod to ``ready()``."""
    sim.faults.clear()
    last: dict[str, float] = {}
    armed = _at_step(sim.faults, during) if during else None

    def on_event(event: str, prompt_id: str) -> None:
        last[prompt_id] = time.monotonic()
        if armed is not None:
            armed(event, prompt_id)

    sim.sim.engine.on_event = on_event
    if before:
        before(sim.faults)
    result = enqueue_workflow(app, slow(steps))
    while not result.ready():
        time.sleep(0.002)
    latency = (time.monotonic() - last[result.id]) * 1000
    sim.faults.clear()
    time.sleep(0.2)  # the worker's socket closes before the next job
    return latency


def main(rounds: int = 3) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-celery-faults-"))
    with LocalRedis() as redis_server, ComfyUISimulator(timing=SimulatorTiming(node_seconds=0.01)) as sim:
        env = env_for(redis_server.url, sim.url, JOB_TIME_LIMIT="60", JOB_HARD_TIME_LIMIT="70", TASK_RETRY_BACKOFF="0", **DEFAULTS)
        app = app_for(env)
        worker = WorkerProcess(app, env, log_path=tmp / "worker.log")
        print(f"{'case (default settings)':<34} job end → AsyncResult.ready(), {rounds} rounds")
        try:
            for name, steps, before, during in CASES:
                latencies = [one_job(sim, app, steps, before, during) for _ in range(rounds)]
                print(f"{name:<34} {', '.join(f'{x:.0f}' for x in latencies)} ms")
        finally:
            worker.stop()


if __name__ == "__main__":
    main()
