"""Real Celery components for tests: a private Redis, worker processes, and polling helpers."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.result import AsyncResult

from config.settings import Settings
from tasks.app import create_app
from tasks.client import task_state
from worker.app.local_redis import LocalRedis
from worker.app.processes import stop_process
from worker.simulator import ComfyUISimulator, SimulatorTiming

ROOT = Path(__file__).resolve().parents[2]

FAST_ENV = {
    "PROGRESS_THROTTLE_SECONDS": "0.2",
    "COMFYUI_WS_RECONNECT_DELAY": "0.05",
    "COMFYUI_WS_PING_INTERVAL": "0.5",
    "COMFYUI_WS_IDLE_TIMEOUT": "3",
    "COMFYUI_POLL_INTERVAL": "0.1",
    "COMFYUI_HISTORY_PROBE_INTERVAL": "0.5",
    "COMFYUI_HTTP_RETRIES": "1",
    "COMFYUI_HTTP_CONNECT_TIMEOUT": "1",
    "TASK_RETRY_BACKOFF": "0",
    "ANALYTICS_SINK": "log",
}


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """Our own redis-server: we may flush it between tests (never the machine's shared one)."""
    with LocalRedis() as server:
        yield server
        _collect_results()


@pytest.fixture
def broker(redis_server: LocalRedis) -> Iterator[str]:
    redis.Redis.from_url(redis_server.url).flushall()
    yield redis_server.url
    _collect_results()
    while _apps:
        _apps.pop().close()  # its broker connections, while the broker still runs


def _collect_results() -> None:
    """Finalise unreachable ``AsyncResult`` objects while their Redis still runs.

    ``AsyncResult.__del__`` unsubscribes from the result's channel. One caught in a reference
    cycle (a test frame holding a ``pytest.raises`` traceback, say) is finalised whenever the
    cycle collector runs, and once that was after this Redis had stopped: the unsubscribe
    failed inside ``__del__`` and pytest, which makes unraisable exceptions errors here, exited 1
    after every test had passed."""
    gc.collect()


def env_for(broker: str, servers: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "COMFYUI_", "JOB_", "TASK_"))}
    env.update(FAST_ENV)
    env.update(CELERY_BROKER_URL=broker, COMFYUI_SERVERS=servers, PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


_apps: list[Celery] = []


def app_for(env: Mapping[str, str]) -> Celery:
    """A Celery app as a web backend would have it; closed after the test by ``broker``."""
    app = create_app(Settings.from_env(env))
    _apps.append(app)
    return app


class WorkerProcess:
    """``celery -A tasks.app worker`` as a real process (prefork pool unless ``pool`` says otherwise)."""

    def __init__(
        self,
        app: Celery,
        env: Mapping[str, str],
        *,
        concurrency: int = 1,
        queues: str | None = None,
        log_path: Path,
        pool: str = "prefork",
        app_module: str = "tasks.app",
    ) -> None:
        self.app = app
        self.name = f"w{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app_module,
            "worker",
            "-l",
            "info",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-n",
            self.name,
        ]
        args += ["--without-mingle", "--without-gossip"]
        if queues:
            args += ["-Q", queues]
        self.log_path = log_path
        with log_path.open("w") as output:  # the child writes through its own copy of the descriptor
            self.process = subprocess.Popen(args, env=dict(env), cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not app.control.ping(destination=[self.name], timeout=0.3):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")

    def pool_pid_of(self, task_id: str, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = self.app.control.inspect(destination=[self.name], timeout=0.2).active() or {}
            for task in active.get(self.name, []):
                if task["id"] == task_id and task.get("worker_pid"):
                    return int(task["worker_pid"])
            time.sleep(0.05)
        raise AssertionError(f"task {task_id} is not active on {self.name}")

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        stop_process(self.process, grace=15)


Snapshot = tuple[str, Any]


def wait_for(
    result: AsyncResult[Any], predicate: Callable[[Snapshot], bool], timeout: float = 20.0, interval: float = 0.02
) -> list[Snapshot]:
    """Poll like a web backend; return every distinct (state, info) seen, ending with the one that satisfied ``predicate``."""
    seen: list[Snapshot] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = task_state(result)  # judge the very read we record
        if not seen or (seen[-1][0], repr(seen[-1][1])) != (current[0], repr(current[1])):
            seen.append(current)
        if predicate(current):
            return seen
        time.sleep(interval)
    raise AssertionError(f"timed out; states seen: {[s for s, _ in seen]}")


def finished(current: Snapshot) -> bool:
    return current[0] in ("SUCCESS", "FAILURE", "REVOKED")


def running(**expected: Any) -> Callable[[Snapshot], bool]:
    """A predicate: PROGRESS whose meta has every ``expected`` key truthy (``True``) or equal to the given value."""

    def check(current: Snapshot) -> bool:
        state, info = current
        if state != "PROGRESS" or not isinstance(info, dict):
            return False
        return all(bool(info.get(key)) if want is True else info.get(key) == want for key, want in expected.items())

    return check


#: the keys of the PROGRESS meta (README)
META_KEYS = {
    "prompt_id",
    "progress",
    "status",
    "node_id",
    "node_type",
    "step",
    "step_max",
    "nodes_done",
    "nodes_total",
    "queue_position",
    "eta_s",
    "elapsed_s",
    "queued_s",
    "method",
    "pod",
    "server_url",
    "job_type",
    "attempt",
    "updated_at",
    # celery-progress's keys, and where the live preview is
    "current",
    "total",
    "percent",
    "description",
    "preview",
}
VISIBLE = SimulatorTiming(node_seconds=0.01, sampler_step_seconds=0.1, input_time_scale=0.25)


def posts(sim: ComfyUISimulator) -> int:
    return sim.request_counts().get("POST /prompt", 0)
