"""Short jobs per worker machine: ``python -m bench.short_jobs``.

Enqueues ``--jobs`` near-zero-second jobs at once against one simulator pod, per config, and
reports jobs/s (first enqueue to last result) and worker CPU per job (the whole process tree).
A config is ``pool:concurrency``, or ``legacy/pool:concurrency`` for the 20-line polling task in
:mod:`bench.legacy_task`, run in the same session for comparison. The default configs are the
Procfile's default, the recommended scalable pool, and the legacy task.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from celery.result import AsyncResult

from bench.fleet_support import footprint, job, pods, production_env
from tasks.client import enqueue_workflow
from tests.integration.celery_support import WorkerProcess, app_for
from worker.app.local_redis import LocalRedis
from worker.simulator import SimulatorTiming


def run_config(spec: str, url: str, broker: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    legacy = spec.startswith("legacy/")
    pool, _, concurrency = spec.removeprefix("legacy/").partition(":")
    env = production_env(broker, f"p0={url}", **dict(args.env))
    app = app_for(env)
    worker = WorkerProcess(
        app,
        env,
        pool=pool,
        concurrency=int(concurrency or 1),
        log_path=tmp / f"{spec.replace('/', '-').replace(':', '-')}.log",
        app_module="bench.legacy_task" if legacy else "tasks.app",
        queues="legacy" if legacy else None,
    )
    workflows = [job(0) for _ in range(args.jobs)]
    # one warm-up job: imports, connections and the first health check are not per-job costs
    warm = app.send_task("legacy.run", args=[job(0), url], queue="legacy") if legacy else enqueue_workflow(app, job(0))
    warm.get(timeout=60)
    cpu_before = footprint(worker.process.pid).cpu_s
    started = time.monotonic()
    results: list[AsyncResult[Any]] = [
        app.send_task("legacy.run", args=[w, url], queue="legacy") if legacy else enqueue_workflow(app, w) for w in workflows
    ]
    for result in results:
        result.get(timeout=args.jobs + 60, propagate=False)
    states = [result.state for result in results]
    elapsed = time.monotonic() - started
    cpu = footprint(worker.process.pid).cpu_s - cpu_before
    worker.stop()
    return {
        "config": spec,
        "jobs": args.jobs,
        "success": sum(1 for s in states if s == "SUCCESS"),
        "jobs_per_s": round(args.jobs / elapsed, 1),
        "cpu_ms_per_job": round(cpu * 1000 / args.jobs, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=300)
    parser.add_argument("--configs", default="prefork:2,threads:32,legacy/prefork:2")
    parser.add_argument("--env", type=lambda s: tuple(s.split("=", 1)), action="append", default=[], help="NAME=VALUE for the worker")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-short-"))
    print(f"{args.jobs} short jobs on one pod; worker logs in {tmp}", flush=True)
    with LocalRedis() as redis_server, pods(1, SimulatorTiming(node_seconds=0.0)) as sims:
        for spec in args.configs.split(","):
            redis.Redis.from_url(redis_server.url).flushall()
            print(json.dumps(run_config(spec, sims[0].url, redis_server.url, args, tmp)), flush=True)


if __name__ == "__main__":
    main()
