"""Many long jobs at once, per Celery pool: ``python -m bench.many_jobs``.

Starts simulator pods in this process, a private Redis and one real worker per pool spec,
enqueues every job at once and reports, per pool: peak jobs followed at once (STARTED or
PROGRESS), makespan against the ideal (jobs spread evenly, one prompt at a time per pod),
peak RSS/PSS, sockets and threads of the worker's process tree, its CPU, the age of PROGRESS
records of running jobs (p50/p95), the final message → SUCCESS latency (p50/max), prompts per
pod (spread) and the requests the pods received (per job, per second).

The issue's size is ``--jobs 200 --seconds 20 --pods 20 --pools prefork:2,prefork:32,threads:200``
(about 4 minutes per scalable pool, 2,000 s for prefork 2); the defaults run in a few minutes.
State changes are read from the result backend's pub/sub channel, so nothing here polls.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis

from bench.fleet_support import Footprint, footprint, job, percentile, pods, production_env
from tasks.client import enqueue_workflow
from tests.integration.celery_support import WorkerProcess, app_for
from worker.app.local_redis import LocalRedis
from worker.simulator import ComfyUISimulator, SimulatorTiming


@dataclass
class Watch:
    """Every state change of our tasks, as the result backend publishes it."""

    ids: set[str]
    states: dict[str, str] = field(default_factory=dict)
    progress: dict[str, dict[str, Any]] = field(default_factory=dict)
    done_at: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_message(self, key: str, data: bytes) -> None:
        task_id = key.removeprefix("celery-task-meta-")
        if task_id not in self.ids:
            return
        meta = json.loads(data)
        with self.lock:
            self.states[task_id] = meta["status"]
            if meta["status"] == "PROGRESS" and isinstance(meta.get("result"), dict):
                self.progress[task_id] = meta["result"]
            if meta["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
                self.done_at.setdefault(task_id, time.monotonic())


def _listen(client: redis.Redis, watch: Watch, stop: threading.Event, ready: threading.Event) -> None:
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.psubscribe("celery-task-meta-*")
    ready.set()
    while not stop.is_set():
        message = pubsub.get_message(timeout=0.1)
        if message is not None:
            watch.on_message(message["channel"].decode(), message["data"])
    pubsub.close()


def _requests(sims: list[ComfyUISimulator]) -> list[dict[str, int]]:
    return [{k: v for k, v in sim.request_counts().items() if not k.startswith("GET /_sim")} for sim in sims]


def run_pool(spec: str, sims: list[ComfyUISimulator], broker: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    pool, _, concurrency = spec.partition(":")
    servers = ",".join(f"p{i}={sim.url}" for i, sim in enumerate(sims))
    env = production_env(broker, servers, JOB_TIME_LIMIT=str(args.jobs * args.seconds * 4), **dict(args.env))
    app = app_for(env)
    last_event: dict[str, float] = {}
    for sim in sims:
        sim.sim.engine.on_event = lambda event, prompt: last_event.__setitem__(prompt, time.monotonic())
    worker = WorkerProcess(app, env, pool=pool, concurrency=int(concurrency or 1), log_path=tmp / f"{spec.replace(':', '-')}.log")
    client = redis.Redis.from_url(broker)
    before, cpu_before = _requests(sims), footprint(worker.process.pid).cpu_s
    watch, stop, ready = Watch(set()), threading.Event(), threading.Event()
    listener = threading.Thread(target=_listen, args=(client, watch, stop, ready), daemon=True)
    listener.start()
    ready.wait(5)
    workflows = [job(args.seconds, args.step) for _ in range(args.jobs)]
    ids = [f"bench-{spec}-{i}-{time.monotonic_ns()}" for i in range(args.jobs)]
    watch.ids.update(ids)
    started = time.monotonic()
    for task_id, workflow in zip(ids, workflows, strict=True):
        enqueue_workflow(app, workflow, task_id=task_id)
    peak = Footprint(0, 0, 0, 0, 0, 0, 0)
    redis_port = urlsplit(broker).port
    followed_peak, ages = 0, []
    deadline = started + args.jobs * args.seconds * 2 + 120
    while len(watch.done_at) < len(ids) and time.monotonic() < deadline:
        time.sleep(args.sample)
        now = time.time()
        with watch.lock:
            active = [t for t in ids if watch.states.get(t) in ("STARTED", "PROGRESS") and t not in watch.done_at]
            ages += [now - meta["updated_at"] for t, meta in watch.progress.items() if t in active and meta.get("status") == "running"]
        followed_peak = max(followed_peak, len(active))
        now_fp = footprint(worker.process.pid, redis_port)
        peak = Footprint(*(max(a, b) for a, b in zip(peak.__dict__.values(), now_fp.__dict__.values(), strict=True)))
    makespan = max(watch.done_at.values(), default=time.monotonic()) - started
    cpu = footprint(worker.process.pid).cpu_s - cpu_before
    after = _requests(sims)
    stop.set()
    listener.join(2)
    worker.stop()
    client.close()
    prompts = [a.get("POST /prompt", 0) - b.get("POST /prompt", 0) for a, b in zip(after, before, strict=True)]
    total_requests = sum(sum(a.values()) - sum(b.values()) for a, b in zip(after, before, strict=True))
    by_route: dict[str, int] = {}
    for a, b in zip(after, before, strict=True):
        for route, count in a.items():
            by_route[route] = by_route.get(route, 0) + count - b.get(route, 0)
    finals = [(watch.done_at[t] - last_event[t]) * 1000 for t in ids if t in watch.done_at and t in last_event]
    ideal = math.ceil(args.jobs / len(sims)) * args.seconds
    outcome = {s: sum(1 for t in ids if watch.states.get(t) == s) for s in ("SUCCESS", "FAILURE", "REVOKED")}
    return {
        "pool": spec,
        "outcome": outcome,
        "followed_peak": followed_peak,
        "makespan_s": round(makespan, 1),
        "ideal_s": ideal,
        "rss_mb": round(peak.rss_mb),
        "pss_mb": round(peak.pss_mb),
        "sockets": peak.sockets,
        "sockets_to_redis": peak.redis_sockets,
        "fds": peak.fds,
        "threads": peak.threads,
        "cpu_s": round(cpu, 1),
        "progress_age_p50_s": round(percentile(ages, 50), 2),
        "progress_age_p95_s": round(percentile(ages, 95), 2),
        "final_to_success_p50_ms": round(percentile(finals, 50)),
        "final_to_success_max_ms": round(max(finals, default=float("nan"))),
        "prompts_per_pod_min_max": (min(prompts), max(prompts)),
        "requests_per_job": round(total_requests / len(ids), 1),
        "requests_per_s": round(total_requests / makespan, 1),
        "requests_by_route": dict(sorted(by_route.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=10.0, help="pod time of one job")
    parser.add_argument("--step", type=float, default=0.5, help="seconds between progress events")
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--pools", default="prefork:8,threads:60", help="comma-separated pool:concurrency")
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between footprint samples")
    parser.add_argument("--env", type=lambda s: tuple(s.split("=", 1)), action="append", default=[], help="NAME=VALUE for the worker")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-many-"))
    print(f"{args.jobs} jobs x {args.seconds:g} s over {args.pods} pods; worker logs in {tmp}", flush=True)
    with LocalRedis() as redis_server, pods(args.pods, SimulatorTiming(node_seconds=0.0)) as sims:
        for spec in args.pools.split(","):
            redis.Redis.from_url(redis_server.url).flushall()
            print(json.dumps(run_pool(spec, sims, redis_server.url, args, tmp)), flush=True)


if __name__ == "__main__":
    main()
