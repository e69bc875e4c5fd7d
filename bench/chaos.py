"""A chaos run: real Celery workers, a private Redis, two simulated pods behind fault proxies.

    python -m bench.chaos --rounds 24 --jobs 3 --seed 1 --budget 300

Every round enqueues a few jobs and injects one fault kind: a pool child or a whole worker
killed (SIGKILL), a simulator fault (WebSocket drop, a 5xx on ``POST /prompt`` or ``/history``)
or a fault proxy fault (a request's reply dropped, truncated or replaced by a 502, a connection
held silent, cut, delayed, or refused). At the end every job is judged:

* ``correct``: SUCCESS, and its outputs are the history entry of the pod it names;
* ``failed``: FAILURE with a typed error (its code is listed): a fault the job could not outlive;
* ``wrong``: SUCCESS with other outputs, or a FAILURE without a typed error;
* ``lost``: no final state (PENDING, RETRY) when the run ends;
* ``hung``: still STARTED or PROGRESS when the run ends;
* ``dup``: the prompt is in the history of more than one pod, or was accepted more than once.

Bounded: at most ``--rounds`` rounds and ``--budget`` seconds (a whole worker lost is only
redelivered after the broker's visibility timeout, about two minutes with the settings here,
so the run waits for that); everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from celery.result import AsyncResult

from bench.fault_proxy import FaultProxy
from tasks.client import enqueue_workflow, task_state
from tests.conftest import slow_workflow
from tests.integration.celery_support import WorkerProcess, app_for, env_for
from worker.app.local_redis import LocalRedis
from worker.comfyui.errors import ComfyUIError
from worker.simulator import ComfyUISimulator, SimulatorTiming

KINDS = (
    "none",
    "kill_child",
    "kill_worker",
    "sim_ws_drop",
    "sim_prompt_5xx",
    "sim_history_5xx",
    "proxy_drop_reply",
    "proxy_truncate",
    "proxy_bad_gateway",
    "proxy_blackhole",
    "proxy_cut",
    "proxy_delay",
    "proxy_refuse",
)
TIMING = SimulatorTiming(node_seconds=0.01, sampler_step_seconds=0.05, input_time_scale=0.25)
ENV = {
    "COMFYUI_HTTP_READ_TIMEOUT": "3",
    "COMFYUI_HTTP_RETRIES": "1",
    "COMFYUI_WS_IDLE_TIMEOUT": "3",
    "TASK_RETRY_BACKOFF": "0.5",
    "TASK_MAX_RETRIES": "4",
    "JOB_TIME_LIMIT": "40",
    "JOB_HARD_TIME_LIMIT": "50",
}


@dataclass
class Job:
    kind: str
    result: AsyncResult  # type: ignore[type-arg]


@dataclass
class Fleet:
    pods: list[ComfyUISimulator]
    proxies: list[FaultProxy]
    workers: list[WorkerProcess]
    start_worker: Callable[[], WorkerProcess]
    kills: Counter[str] = field(default_factory=Counter)


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _pool_pid(fleet: Fleet, task_id: str) -> int | None:
    for worker in fleet.workers:
        active = worker.app.control.inspect(destination=[worker.name], timeout=0.5).active() or {}
        for task in active.get(worker.name, []):
            if task["id"] == task_id and task.get("worker_pid"):
                return int(task["worker_pid"])
    return None


def _running(jobs: list[Job]) -> list[Job]:
    return [job for job in jobs if task_state(job.result)[0] == "PROGRESS"]


def _inject_before(kind: str, fleet: Fleet) -> None:
    for pod in fleet.pods:
        if kind == "sim_prompt_5xx":
            pod.faults.fail_route("POST", "/prompt", status=503, times=1)
        elif kind == "sim_history_5xx":
            pod.faults.fail_route("GET", "/history", status=500, times=3)
    for proxy in fleet.proxies:
        if kind.startswith("proxy_") and kind not in ("proxy_cut", "proxy_refuse"):
            proxy.arm(kind.removeprefix("proxy_"), times=2)  # type: ignore[arg-type]


def _inject_after(kind: str, fleet: Fleet, jobs: list[Job], rng: random.Random) -> None:
    if kind == "kill_child":
        running = _running(jobs)
        pid = _pool_pid(fleet, rng.choice(running).result.id) if running else None
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            fleet.kills["pool_child"] += 1
    elif kind == "kill_worker":
        victim = fleet.workers.pop(rng.randrange(len(fleet.workers)))
        for pid in (*_children(victim.process.pid), victim.process.pid):
            os.kill(pid, signal.SIGKILL)
        victim.process.wait(10)
        fleet.kills["whole_worker"] += 1
        fleet.workers.append(fleet.start_worker())
    elif kind == "sim_ws_drop":
        for pod in fleet.pods:
            pod.faults.drop_sockets()
    elif kind == "proxy_cut":
        for proxy in fleet.proxies:
            proxy.cut_all()
    elif kind == "proxy_refuse":
        for proxy in fleet.proxies:
            proxy.refuse(2.0)


def _wait(jobs: list[Job], until: float) -> None:
    while time.monotonic() < until and any(task_state(j.result)[0] not in ("SUCCESS", "FAILURE", "REVOKED") for j in jobs):
        time.sleep(0.1)


def _history(pod: ComfyUISimulator, prompt_id: str) -> dict[str, Any] | None:
    data = requests.get(f"{pod.url}/history/{prompt_id}", timeout=5).json()
    entry = data.get(prompt_id)
    return entry if isinstance(entry, dict) else None


def _judge(job: Job, fleet: Fleet, names: list[str]) -> tuple[str, str | None, bool]:
    """(verdict, failure code, duplicate)."""
    state, info = task_state(job.result)
    entries = {name: _history(pod, job.result.id) for name, pod in zip(names, fleet.pods, strict=True)}
    duplicate = sum(entry is not None for entry in entries.values()) > 1
    if state in ("PROGRESS", "STARTED"):
        return "hung", None, duplicate
    if state == "SUCCESS" and isinstance(info, dict):
        entry = entries.get(str(info.get("pod")))
        ok = entry is not None and entry.get("outputs") == info.get("outputs")
        return ("correct" if ok else "wrong"), None, duplicate
    if state == "FAILURE":
        error = job.result.result
        if isinstance(error, ComfyUIError):
            return "failed", error.code, duplicate
        return "wrong", type(error).__name__, duplicate
    return "lost", state, duplicate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--jobs", type=int, default=3, help="jobs per round")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds for the whole run")
    parser.add_argument("--whole-worker-kills", type=int, default=2)
    parser.add_argument("--kill-child-share", type=float, default=0.25, help="share of rounds that kill a pool child")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    started = time.monotonic()
    others = [k for k in KINDS if k not in ("kill_worker", "kill_child")]
    kinds = ["kill_child" if rng.random() < args.kill_child_share else rng.choice(others) for _ in range(args.rounds)]
    for index in range(min(args.whole_worker_kills, args.rounds)):  # early: redelivery takes minutes
        kinds[1 + 3 * index if 1 + 3 * index < args.rounds else index] = "kill_worker"
    root = Path(tempfile.mkdtemp(prefix="comfy-chaos-"))
    names = ["pod0", "pod1"]
    with LocalRedis() as redis_server:
        pods = [ComfyUISimulator(timing=TIMING, root=root / name).start() for name in names]
        proxies = [FaultProxy(pod.port).__enter__() for pod in pods]
        env = env_for(redis_server.url, ",".join(f"{n}={p.url}" for n, p in zip(names, proxies, strict=True)), **ENV)
        app = app_for(env)
        counter = iter(range(1000))

        def start_worker() -> WorkerProcess:
            return WorkerProcess(app, env, concurrency=2, log_path=root / f"worker{next(counter)}.log")

        fleet = Fleet(pods, proxies, [start_worker(), start_worker()], start_worker)
        jobs: list[Job] = []
        batch: list[Job] = []
        last_worker_kill = 0.0
        try:
            for round_no, kind in enumerate(kinds):
                if time.monotonic() - started > args.budget * 0.5:
                    break
                _inject_before(kind, fleet)
                batch = [
                    Job(kind, enqueue_workflow(app, slow_workflow(steps=rng.randint(10, 40), salt=round_no * 100 + i)))
                    for i in range(args.jobs)
                ]
                jobs += batch
                time.sleep(rng.uniform(0.3, 1.0))
                _inject_after(kind, fleet, batch, rng)
                if kind == "kill_worker":
                    last_worker_kill = time.monotonic()
                else:
                    _wait(batch, time.monotonic() + 25)
                for pod in pods:
                    pod.faults.clear()
                for proxy in proxies:
                    proxy.clear()
                print(f"round {round_no:2d} {kind:18s} {time.monotonic() - started:6.1f} s", file=sys.stderr, flush=True)
            visibility = app.conf.broker_transport_options.get("visibility_timeout", 0)
            end = min(started + args.budget, max(time.monotonic() + 30, last_worker_kill + visibility + 30))
            _wait(jobs, end)
            table, codes = _tabulate(jobs, fleet, names)
            posts = sum(pod.request_counts().get("POST /prompt", 0) for pod in pods)
            _print(table, codes)
            print(
                f"\n{len(jobs)} jobs, {posts} POST /prompt reached the pods, kills: {dict(fleet.kills)}, "
                f"proxy faults applied: {dict(sum((p.applied for p in proxies), Counter()))}, "
                f"{time.monotonic() - started:.0f} s; logs in {root}"
            )
            bad = sum(t["wrong"] + t["lost"] + t["hung"] + t["dup"] for t in table.values())
            return 1 if bad else 0
        finally:
            for worker in fleet.workers:
                worker.stop()
            jobs.clear()
            batch.clear()
            gc.collect()  # AsyncResult.__del__ unsubscribes: while this Redis still runs
            app.close()
            for proxy in proxies:
                proxy.__exit__(None, None, None)
            for pod in pods:
                pod.stop()


def _tabulate(jobs: list[Job], fleet: Fleet, names: list[str]) -> tuple[dict[str, Counter[str]], dict[str, Counter[str]]]:
    table: dict[str, Counter[str]] = defaultdict(Counter)
    codes: dict[str, Counter[str]] = defaultdict(Counter)
    for job in jobs:
        verdict, code, duplicate = _judge(job, fleet, names)
        table[job.kind]["jobs"] += 1
        table[job.kind][verdict] += 1
        table[job.kind]["dup"] += duplicate
        if code:
            codes[job.kind][code] += 1
    return table, codes


def _print(table: dict[str, Counter[str]], codes: dict[str, Counter[str]]) -> None:
    columns = ("jobs", "correct", "failed", "wrong", "lost", "hung", "dup")
    print(f"| {'fault':18s} | " + " | ".join(f"{c:>7s}" for c in columns) + " | failure codes")
    print("|" + "-" * 20 + "|" + "|".join("-" * 9 for _ in columns) + "|---")
    for kind in KINDS:
        if kind in table:
            row = " | ".join(f"{table[kind][c]:7d}" for c in columns)
            print(f"| {kind:18s} | {row} | {dict(codes[kind]) or ''}")
    total = Counter[str]()
    for counts in table.values():
        total.update(counts)
    print(f"| {'total':18s} | " + " | ".join(f"{total[c]:7d}" for c in columns) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
