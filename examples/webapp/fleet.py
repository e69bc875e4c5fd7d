"""A whole fleet on this machine for the example app: the simulator, a private Redis, one worker.

The same pieces as ``python3 -m worker demo``, kept running while the app serves; the browser
test and ``bench/web.py`` use it too. Previews are on for every job (``PREVIEWS=on``) and
outputs go to a file store in a temporary directory (``OUTPUT_STORE``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from celery import Celery

from worker.app.local_redis import LocalRedis
from worker.app.processes import stop_process
from worker.simulator import ComfyUISimulator, SimulatorTiming

__all__ = ["LocalFleet", "local_fleet"]

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class LocalFleet:
    broker: str
    simulator_url: str
    worker_log: Path
    env: Mapping[str, str]


@contextlib.contextmanager
def local_fleet(
    *, step_seconds: float = 0.1, broker: str | None = None, extra_env: Mapping[str, str] | None = None, concurrency: int = 1
) -> Iterator[LocalFleet]:
    """Start the simulator, a private redis-server (unless ``broker`` is given) and a celery
    worker process; stop them all on exit."""
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="comfy-webapp-")))
        timing = SimulatorTiming(node_seconds=step_seconds / 4, sampler_step_seconds=step_seconds)
        sim = stack.enter_context(ComfyUISimulator(timing=timing, root=workdir / "comfyui"))
        broker = broker or stack.enter_context(LocalRedis()).url
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "COMFYUI_"))}
        env.update(
            CELERY_BROKER_URL=broker,
            CELERY_RESULT_BACKEND=broker,
            COMFYUI_SERVERS=f"sim={sim.url}",
            PYTHONPATH=str(ROOT),
            PREVIEWS="on",
            OUTPUT_STORE=(workdir / "store").as_uri(),  # outputs into a file store: the page shows them from there
            PROGRESS_THROTTLE_SECONDS=os.environ.get("PROGRESS_THROTTLE_SECONDS", "0.2"),
            WORKER_SOFT_SHUTDOWN_TIMEOUT="0",
        )
        env.update(extra_env or {})
        log_path = workdir / "worker.log"
        args = [sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-l", "info", "-c", str(concurrency)]
        args += ["-n", f"webapp-{os.getpid()}@%h", "--without-mingle", "--without-gossip"]
        with log_path.open("w") as output:
            worker = subprocess.Popen(args, env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        stack.callback(stop_process, worker, sig=signal.SIGQUIT, grace=15)
        control = Celery(broker=broker, set_as_current=False)
        stack.callback(control.close)
        deadline = time.monotonic() + 60
        while not control.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not start:\n{log_path.read_text()[-3000:]}")
        yield LocalFleet(broker, sim.url, log_path, env)
