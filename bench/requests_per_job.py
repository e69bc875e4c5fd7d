"""HTTP requests one job costs the pods on a healthy socket: ``python -m bench.requests_per_job``.

One real worker (threads pool, documented defaults) runs one job of each length in turn over
``--pods`` simulator pods; every request any pod received meanwhile is counted by route (the
WebSocket upgrade, ``GET /ws``, is shown but is not an HTTP request of the budget).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from bench.fleet_support import job, pods, production_env
from tasks.client import enqueue_workflow
from tests.integration.celery_support import WorkerProcess, app_for
from worker.app.local_redis import LocalRedis
from worker.simulator import ComfyUISimulator


def counts(sims: list[ComfyUISimulator]) -> dict[str, int]:
    total: dict[str, int] = {}
    for sim in sims:
        for route, count in sim.request_counts().items():
            if not route.startswith("GET /_sim"):
                total[route] = total.get(route, 0) + count
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=2)
    parser.add_argument("--lengths", default="2,60", help="comma-separated job lengths in seconds")
    parser.add_argument("--env", type=lambda s: tuple(s.split("=", 1)), action="append", default=[], help="NAME=VALUE for the worker")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-requests-"))
    with LocalRedis() as redis_server, pods(args.pods) as sims:
        env = production_env(redis_server.url, ",".join(f"p{i}={s.url}" for i, s in enumerate(sims)), **dict(args.env))
        app = app_for(env)
        worker = WorkerProcess(app, env, pool="threads", concurrency=4, log_path=tmp / "worker.log")
        enqueue_workflow(app, job(0)).get(timeout=30)  # warm-up: the first health check is per process
        for seconds in (float(s) for s in args.lengths.split(",")):
            before = counts(sims)
            result = enqueue_workflow(app, job(seconds))
            result.get(timeout=seconds + 60)
            after = counts(sims)
            routes = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
            http = sum(v for k, v in routes.items() if k != "GET /ws")
            print(json.dumps({"job_s": seconds, "pods": args.pods, "http_requests": http, "by_route": routes}), flush=True)
        worker.stop()


if __name__ == "__main__":
    main()
