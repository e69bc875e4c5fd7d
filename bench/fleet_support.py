"""Shared pieces of the fleet benches: simulator pods, production settings, a worker's footprint.

The benches measure what a deployment would see, so workers run with the documented defaults
(not the tests' fast intervals), and the footprint is read from ``/proc`` for the whole
process tree (a prefork worker is a parent plus its pool children).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from config.settings import ENV_VARS
from tests.integration.celery_support import env_for
from worker.simulator import ComfyUISimulator, SimulatorTiming

__all__ = ["Footprint", "footprint", "job", "percentile", "pods", "production_env", "tree"]

_SALT = itertools.count(1)
_TICKS = os.sysconf("SC_CLK_TCK")


def job(seconds: float, step_seconds: float = 0.5) -> dict[str, object]:
    """A workflow that runs ``seconds`` on a pod, with a progress event every ``step_seconds``."""
    steps, per_step = (max(1, round(seconds / step_seconds)), step_seconds) if seconds > 0 else (1, 0.0)
    return {
        "1": {"class_type": "LabSlowProgress", "inputs": {"steps": steps, "seconds_per_step": per_step, "salt": next(_SALT)}},
        "2": {"class_type": "LabTextOutput", "inputs": {"text": "done", "value": ["1", 0]}},
    }


def production_env(broker: str, servers: str, **extra: str) -> dict[str, str]:
    """The environment of a worker with every documented default (the tests' fast intervals undone)."""
    env = env_for(broker, servers)
    for var in ENV_VARS:
        if var.name.startswith(("COMFYUI_", "PROGRESS_", "TASK_")) and var.name != "COMFYUI_SERVERS" and not var.default.startswith("("):
            env[var.name] = var.default
    env["ANALYTICS_SINK"] = "none"
    env.update(extra)
    return env


@contextlib.contextmanager
def pods(count: int, timing: SimulatorTiming | None = None) -> Iterator[list[ComfyUISimulator]]:
    """``count`` simulator pods in this process, each on its own port and event loop."""
    with contextlib.ExitStack() as stack:
        sims = [stack.enter_context(ComfyUISimulator(timing=timing or SimulatorTiming())) for _ in range(count)]
        yield sims


def tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, []))
    return out


@dataclass(frozen=True)
class Footprint:
    rss_mb: float
    pss_mb: float
    sockets: int
    fds: int
    threads: int
    cpu_s: float
    #: TCP sockets connected to ``redis_port`` (broker and result backend), part of ``sockets``
    redis_sockets: int = 0


def _remote_ports() -> dict[str, int]:
    """Socket inode -> remote TCP port, for every TCP socket of the machine."""
    ports: dict[str, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                ports[fields[9]] = int(fields[2].rsplit(":", 1)[1], 16)
    return ports


def footprint(root: int, redis_port: int | None = None) -> Footprint:
    """Memory, descriptors, threads and CPU of a process tree right now."""
    rss = pss = 0.0
    sockets = fds = threads = redis_sockets = 0
    cpu = 0.0
    ports = _remote_ports() if redis_port is not None else {}
    for pid in tree(root):
        base = Path(f"/proc/{pid}")
        with contextlib.suppress(OSError):
            for line in (base / "smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) / 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
            fields = (base / "stat").read_text().rsplit(")", 1)[1].split()
            cpu += (int(fields[11]) + int(fields[12])) / _TICKS
            threads += int(fields[17])
            for fd in (base / "fd").iterdir():
                fds += 1
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:"):
                        sockets += 1
                        redis_sockets += ports.get(target[8:-1]) == redis_port
    return Footprint(rss, pss, sockets, fds, threads, cpu, redis_sockets)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, round(q) - 1))]
