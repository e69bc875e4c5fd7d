"""The web side, measured: ``python -m bench.web [--jobs 8] [--watchers 20] [--browser]``.

1. Latency from the worker's progress update (``updated_at``: the worker's clock just before it
   stores the PROGRESS record) to (a) a ``ComfyClient.watch`` in this process and (b) an SSE
   client of the example app, which runs as its own process, and (``--browser``) (c) an
   EventSource in headless chromium on the app's page: p50 / p95 / max over every update.
2. CPU of the example app's process (utime + stime from /proc) idle, then while ``--watchers``
   browsers-worth of SSE streams each watch their own job: CPU seconds per watched job, per
   delivered update, and the app's average CPU share.

Everything runs on this machine: the simulator, a private Redis and a real worker process
(examples/webapp/fleet.py), so the numbers include Redis pub/sub and the worker's own overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from examples.webapp.fleet import local_fleet
from tasks.client import ComfyClient
from worker.app.processes import stop_process

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")


def workflow(steps: int, salt: int) -> dict[str, object]:
    return {
        "1": {"class_type": "LabSlowProgress", "inputs": {"steps": steps, "seconds_per_step": 0.1, "salt": salt}},
        "2": {"class_type": "LabTextOutput", "inputs": {"text": "done", "value": ["1", 0]}},
    }


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def sse_updates(url: str) -> Iterator[tuple[float, dict[str, object]]]:
    """(arrival wall time, view) for every update event of one SSE stream."""
    with requests.get(url, stream=True, timeout=120) as stream:
        event = ""
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line[7:]
                if event == "end":
                    return
            elif line.startswith("data: ") and event == "update":
                yield time.time(), json.loads(line[6:])


def lag(arrived: float, view: dict[str, object]) -> float | None:
    progress = view.get("progress")
    if view.get("state") != "PROGRESS" or not isinstance(progress, dict):
        return None
    return (arrived - float(progress["updated_at"])) * 1000.0


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no samples"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return f"{name}: n={len(values)} p50={statistics.median(values):.1f} ms p95={p95:.1f} ms max={ordered[-1]:.1f} ms"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_app(broker: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = dict(os.environ, CELERY_BROKER_URL=broker, CELERY_RESULT_BACKEND=broker, PYTHONPATH=str(ROOT))
    app = subprocess.Popen([sys.executable, "-m", "examples.webapp", "--port", str(port)], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(f"{url}/api/samples", timeout=1)
            return app, url
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def collect(url: str, into: list[float]) -> None:
    into.extend(x for arrived, view in sse_updates(url) if (x := lag(arrived, view)) is not None)


BROWSER_WATCH = """
const [url, done] = [arguments[0], arguments[arguments.length - 1]];
const lags = [];
const source = new EventSource(url);
source.addEventListener("update", (e) => {
  const view = JSON.parse(e.data);
  if (view.state === "PROGRESS") lags.push(Date.now() - view.progress.updated_at * 1000);
});
source.addEventListener("end", () => { source.close(); done(lags); });
"""


def browser_latency(client: ComfyClient, url: str, jobs: int) -> None:
    """The same, measured in Debian's headless chromium by an EventSource on the app's page."""
    from tests.integration.webapp_support import chromium  # noqa: PLC0415 - selenium only for this phase

    lags: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-web-") as profile, chromium(Path(profile)) as browser:
        browser.set_script_timeout(60)
        browser.get(url)
        for i in range(jobs):
            job_id = client.submit(workflow(20, salt=500 + i))
            lags += browser.execute_async_script(BROWSER_WATCH, f"/api/jobs/{job_id}/events")
    print(summary("worker update -> chromium EventSource on the example app's page", lags))


def latency(client: ComfyClient, url: str, jobs: int) -> None:
    direct: list[float] = []
    over_sse: list[float] = []
    for i in range(jobs):
        job_id = client.submit(workflow(20, salt=i))
        sse = threading.Thread(target=collect, args=(f"{url}/api/jobs/{job_id}/events", over_sse))
        sse.start()
        for view in client.watch(job_id, timeout=60):
            if (x := lag(time.time(), dict(view))) is not None:
                direct.append(x)
        sse.join(30)
    print(summary("worker update -> ComfyClient.watch", direct))
    print(summary("worker update -> SSE client of the example app", over_sse))


def cpu(client: ComfyClient, url: str, app_pid: int, watchers: int) -> None:
    start = cpu_seconds(app_pid)
    time.sleep(3)
    idle = cpu_seconds(app_pid) - start
    print(f"example app idle: {idle / 3 * 100:.2f} % CPU")
    ids = [client.submit(workflow(30, salt=1000 + i)) for i in range(watchers)]
    counts = [0] * watchers

    def watch(index: int) -> None:
        for _ in sse_updates(f"{url}/api/jobs/{ids[index]}/events"):
            counts[index] += 1

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(watchers)]
    began_cpu, began = cpu_seconds(app_pid), time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    used, wall = cpu_seconds(app_pid) - began_cpu, time.monotonic() - began
    updates = sum(counts)
    print(
        f"{watchers} SSE watchers, {updates} updates in {wall:.1f} s: app CPU {used:.2f} s "
        f"({used / wall * 100:.1f} % of a core), {used / watchers * 1000:.1f} ms per watched job, "
        f"{used / max(updates, 1) * 1000:.2f} ms per delivered update; "
        f"per watched job per second of its watch: {used / watchers / wall * 1000:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--browser", action="store_true", help="also measure in headless chromium (needs chromium + chromium-driver)")
    args = parser.parse_args()
    with local_fleet(step_seconds=0.05, concurrency=2, extra_env={"PROGRESS_THROTTLE_SECONDS": "0.25"}) as fleet:
        client = ComfyClient.from_url(fleet.broker)
        app, url = start_app(fleet.broker)
        try:
            latency(client, url, args.jobs)
            if args.browser:
                browser_latency(client, url, args.jobs)
            cpu(client, url, app.pid, args.watchers)
        finally:
            stop_process(app, grace=5)
            client.close()


if __name__ == "__main__":
    main()
