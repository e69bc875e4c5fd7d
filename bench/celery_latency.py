"""With real Celery workers: time from the simulator's final message to ``AsyncResult.ready()``,
``update_state`` calls per job, and redelivery after kill -9 of a pool child and of the whole
worker: ``python -m bench.celery_latency`` (the whole-worker part waits out the broker's
visibility timeout, about 70 s). ``--pool threads`` runs the same in the threads pool, where
there is no pool child: only the whole worker is killed."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import tempfile
import time
from pathlib import Path

from tasks.client import enqueue_workflow, task_state
from tests.integration.celery_support import WorkerProcess, app_for, env_for, running
from worker.app.local_redis import LocalRedis
from worker.simulator import ComfyUISimulator, SimulatorTiming


def slow(steps: int, salt: int) -> dict[str, object]:
    return {
        "1": {"class_type": "LabSlowProgress", "inputs": {"steps": steps, "seconds_per_step": 0.1, "salt": salt}},
        "2": {"class_type": "LabTextOutput", "inputs": {"text": "done", "value": ["1", 0]}},
    }


def main(whole_worker: bool = True, pool: str = "prefork") -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-celery-"))
    with LocalRedis() as redis_server, ComfyUISimulator(timing=SimulatorTiming(node_seconds=0.01)) as sim:
        last: dict[str, float] = {}
        sim.sim.engine.on_event = lambda event, prompt: last.__setitem__(prompt, time.monotonic())
        env = env_for(
            redis_server.url, sim.url, PROGRESS_THROTTLE_SECONDS="1", JOB_TIME_LIMIT="20", JOB_HARD_TIME_LIMIT="25", TASK_RETRY_BACKOFF="0"
        )
        app = app_for(env)
        worker = WorkerProcess(app, env, pool=pool, concurrency=4 if pool == "threads" else 1, log_path=tmp / "w1.log")
        latencies = []
        for i in range(5):
            result = enqueue_workflow(app, slow(20, i))  # about 2 s of steps
            while not result.ready():
                time.sleep(0.002)
            latencies.append((time.monotonic() - last[result.id]) * 1000)
        updates = [json.loads(m)["progressUpdates"] for m in re.findall(r"comfyui_job_websocket_completed (\{.*\})", worker.log())]
        print(f"final message -> AsyncResult.ready(): {', '.join(f'{x:.0f}' for x in latencies)} ms (poll every 2 ms)")
        print(f"update_state(PROGRESS) calls per 2-second job at 1/s: {updates}")

        before = sim.request_counts()["POST /prompt"]
        if pool == "prefork":
            result = enqueue_workflow(app, slow(60, 100))
            while str(result.state) != "PROGRESS":
                time.sleep(0.005)
            os.kill(worker.pool_pid_of(result.id), signal.SIGKILL)
            killed = time.monotonic()
            while not running(attempt=2)(task_state(result)):
                time.sleep(0.005)
            print(f"kill -9 of the pool child -> job running again (attempt 2): {(time.monotonic() - killed) * 1000:.0f} ms")
            result.get(timeout=60)
            print(f"  POST /prompt seen by the simulator for it: {sim.request_counts()['POST /prompt'] - before}")
            before = sim.request_counts()["POST /prompt"]

        if whole_worker:
            result = enqueue_workflow(app, slow(200, 200))
            while str(result.state) != "PROGRESS":
                time.sleep(0.005)
            os.kill(worker.process.pid, signal.SIGKILL)
            killed = time.monotonic()
            for pid in _children(worker.process.pid):
                os.kill(pid, signal.SIGKILL)
            second = WorkerProcess(app, env, pool=pool, log_path=tmp / "w2.log")
            # only a live worker can write SUCCESS: the dead one's last PROGRESS record stays behind
            while str(result.state) != "SUCCESS":
                time.sleep(0.05)
            visibility = app.conf.broker_transport_options["visibility_timeout"]
            print(
                f"kill -9 of the whole worker -> result from another worker: {time.monotonic() - killed:.1f} s (visibility {visibility} s)"
            )
            print(f"  POST /prompt for it: {sim.request_counts()['POST /prompt'] - before}")
            second.stop()
        worker.stop()


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().split()[3]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pool", choices=("prefork", "threads"), default="prefork")
    main(pool=parser.parse_args().pool)
