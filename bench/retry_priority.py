"""How long a job whose pool child died waits behind queued jobs: ``python -m bench.retry_priority``.

One worker with one pool process; job A runs (about 2 s on the pod), then ``--queued`` jobs of
about 0.5 s each are queued behind it, and A's pool child is killed. A's prompt goes on running
on the pod and ends about 1.5 s after the kill; the figure is when A reaches SUCCESS, and how many
of the queued jobs finished before it. Its retry used to go to the back of the queue.
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import tempfile
import time
from pathlib import Path

from tasks.client import enqueue_workflow, task_state
from tests.conftest import slow_workflow
from tests.integration.celery_support import WorkerProcess, app_for, env_for, finished, running, wait_for
from worker.app.local_redis import LocalRedis
from worker.simulator import ComfyUISimulator, SimulatorTiming


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queued", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-retry-"))
    timing = SimulatorTiming(node_seconds=0.01, sampler_step_seconds=0.1, input_time_scale=0.25)
    with LocalRedis() as redis_server, ComfyUISimulator(timing=timing, root=tmp / "sim") as sim:
        env = env_for(redis_server.url, sim.url, TASK_RETRY_BACKOFF="2")  # the default backoff
        app = app_for(env)
        worker = WorkerProcess(app, env, concurrency=1, log_path=tmp / "worker.log")
        try:
            for run in range(args.runs):
                first = enqueue_workflow(app, slow_workflow(steps=40, salt=1000 * run))
                wait_for(first, running(step=True))
                queued = [enqueue_workflow(app, slow_workflow(steps=10, salt=1000 * run + i + 1)) for i in range(args.queued)]
                time.sleep(0.3)
                os.kill(worker.pool_pid_of(first.id), signal.SIGKILL)
                killed = time.monotonic()
                wait_for(first, finished, timeout=120)
                took = time.monotonic() - killed
                ahead = sum(task_state(r)[0] == "SUCCESS" for r in queued)
                for result in queued:
                    wait_for(result, finished, timeout=120)
                print(f"run {run}: kill -> A SUCCESS {took:5.1f} s; queued jobs finished before it: {ahead}/{args.queued}")
                del first, queued, result
        finally:
            worker.stop()
            gc.collect()
            app.close()


if __name__ == "__main__":
    main()
