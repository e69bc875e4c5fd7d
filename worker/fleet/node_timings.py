"""Node durations learned across the fleet, for the progress time estimate.

Every successful job reports how long each node took (see ``worker.comfyui.eta.Observation``)
under its :attr:`NodeSpec.key` (class type, resolution, frames, cold or warm, a loader's model);
the next job on any worker starts from those figures instead of the priors. Records live in a
:class:`TimingStore`: :class:`RedisTimingStore` on the fleet (one hash plus a sorted set of
last-update times, so the size and the age are both bounded), :class:`MemoryTimingStore` in
tests and single-process tools.

A store failure never fails a job: the estimate falls back to the priors, a warning is
logged, and the store is left alone for ``retry_after_s`` (a dead Redis costs one timeout, not
one per job). Reads happen once per job, before it starts; writes once after it succeeded, on a
background thread (:meth:`NodeTimings.learn_later`), so they never delay the result.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Protocol

import redis

from worker.comfyui.clock import Clock, SystemClock
from worker.comfyui.eta import Observation
from worker.comfyui.node_costs import NodeCost, NodeSpec, node_specs, prior_cost

__all__ = ["LearnedDurations", "MemoryTimingStore", "NodeTimings", "RedisTimingStore", "TimingRecord", "TimingStore"]

#: a key longer than this is not learned (keys are built from workflow inputs)
MAX_KEY_LENGTH = 200
#: a stored value longer than this is ignored when read
MAX_VALUE_BYTES = 512
DEFAULT_MAX_ENTRIES = 5000
DEFAULT_MAX_AGE_S = 14 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class TimingRecord:
    fixed_s: float
    per_step_s: float | None
    count: int
    updated_at: float  # wall-clock seconds

    def to_json(self) -> str:
        per_step = None if self.per_step_s is None else round(self.per_step_s, 5)
        return json.dumps({"f": round(self.fixed_s, 4), "s": per_step, "n": self.count, "t": self.updated_at})

    @classmethod
    def from_json(cls, raw: str | bytes) -> TimingRecord | None:
        """None for anything malformed or oversized: a bad record means 'unknown', not an error."""
        if len(raw) > MAX_VALUE_BYTES:
            return None
        try:
            data = json.loads(raw)
            per_step = data.get("s")
            record = cls(float(data["f"]), None if per_step is None else float(per_step), int(data["n"]), float(data["t"]))
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        if record.fixed_s < 0 or (record.per_step_s is not None and record.per_step_s < 0) or record.count < 1:
            return None
        return record


class TimingStore(Protocol):
    def get_many(self, keys: Sequence[str]) -> dict[str, TimingRecord]:
        """The fresh records among ``keys`` (missing or expired ones left out)."""
        ...

    def put_many(self, records: Mapping[str, TimingRecord]) -> None:
        """Write (replace) records, then evict by age and size."""
        ...


class MemoryTimingStore:
    """In-process store with the same bounds as the Redis one (oldest update evicted first)."""

    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES, max_age_s: float = DEFAULT_MAX_AGE_S, clock: Clock | None = None) -> None:
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._clock = clock or SystemClock()
        self._records: dict[str, TimingRecord] = {}
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, TimingRecord]:
        oldest = self._clock.time() - self.max_age_s
        with self._lock:
            return {k: r for k in keys if (r := self._records.get(k)) is not None and r.updated_at >= oldest}

    def put_many(self, records: Mapping[str, TimingRecord]) -> None:
        oldest = self._clock.time() - self.max_age_s
        with self._lock:
            self._records.update(records)
            kept = sorted((r.updated_at, k) for k, r in self._records.items() if r.updated_at >= oldest)
            self._records = {k: self._records[k] for _, k in kept[-self.max_entries :]} if self.max_entries > 0 else {}

    def __len__(self) -> int:
        return len(self._records)


class RedisTimingStore:
    """Records in the hash ``prefix``; last-update times in the sorted set ``prefix:seen``.

    ``client`` is a ``redis.Redis`` (or anything with its hmget/pipeline API) created with a
    socket timeout: every call here is a network call."""

    def __init__(
        self,
        client: Any,
        *,
        prefix: str = "comfy:node-timings",
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        clock: Clock | None = None,
    ) -> None:
        self._redis = client
        self._hash = prefix
        self._seen = f"{prefix}:seen"
        self.max_entries = max_entries
        self.max_age_s = max_age_s
        self._clock = clock or SystemClock()

    @classmethod
    def from_url(cls, url: str, *, timeout: float = 2.0, **options: Any) -> RedisTimingStore:
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return cls(client, **options)

    def close(self) -> None:
        self._redis.close()

    def get_many(self, keys: Sequence[str]) -> dict[str, TimingRecord]:
        if not keys:
            return {}
        oldest = self._clock.time() - self.max_age_s
        found: dict[str, TimingRecord] = {}
        for key, raw in zip(keys, self._redis.hmget(self._hash, list(keys)), strict=True):
            record = TimingRecord.from_json(raw) if raw is not None else None
            if record is not None and record.updated_at >= oldest:
                found[key] = record
        return found

    def put_many(self, records: Mapping[str, TimingRecord]) -> None:
        if not records:
            return
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._hash, mapping={k: r.to_json() for k, r in records.items()})
        pipe.zadd(self._seen, {k: r.updated_at for k, r in records.items()})
        pipe.execute()
        self._evict()

    def _evict(self) -> None:
        """Drop records older than ``max_age_s``, then the oldest beyond ``max_entries``."""
        oldest = self._clock.time() - self.max_age_s
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrangebyscore(self._seen, "-inf", f"({oldest}")
        pipe.zrange(self._seen, 0, -(max(0, self.max_entries) + 1))  # all but the newest max_entries
        stale, excess = pipe.execute()
        doomed = list(dict.fromkeys([*stale, *excess]))
        if doomed:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hdel(self._hash, *doomed)
            pipe.zrem(self._seen, *doomed)
            pipe.execute()


class LearnedDurations:
    """A :class:`~worker.comfyui.node_costs.DurationModel` over one snapshot of learned records."""

    def __init__(self, records: Mapping[str, TimingRecord]) -> None:
        self._records = dict(records)

    def expect(self, spec: NodeSpec) -> NodeCost:
        record = self._records.get(spec.key)
        if record is not None:
            if record.per_step_s is None or spec.steps == 0:
                return NodeCost(record.fixed_s, learned=True)
            return NodeCost(record.fixed_s, record.per_step_s, spec.steps, learned=True)
        prior = prior_cost(spec)
        other = replace(spec, cold=not spec.cold)
        sibling = self._records.get(other.key)
        if sibling is None:
            return prior
        # seen only warm (or only cold): the step time carries over; the fixed part is scaled by
        # the priors' cold-to-warm ratio (the priors' shape, the fleet's measured scale)
        other_prior = prior_cost(other).fixed_s
        fixed = sibling.fixed_s * prior.fixed_s / other_prior if other_prior > 0 else prior.fixed_s
        if sibling.per_step_s is None or spec.steps == 0:
            return NodeCost(fixed, prior.per_step_s, prior.steps, learned=sibling.per_step_s is not None or spec.steps == 0)
        return NodeCost(fixed, sibling.per_step_s, spec.steps, learned=True)

    def __len__(self) -> int:
        return len(self._records)


def _merge(old: TimingRecord | None, seen: Observation, now: float, horizon: int) -> TimingRecord:
    """A running mean for the first ``horizon`` runs, then an exponential one (recent runs count
    more: drivers, pods and models change)."""
    if old is None:
        return TimingRecord(seen.fixed_s, seen.per_step_s, 1, now)
    weight = 1.0 / min(old.count + 1, horizon)
    fixed = old.fixed_s + (seen.fixed_s - old.fixed_s) * weight
    if seen.per_step_s is None:
        per_step = old.per_step_s
    elif old.per_step_s is None:
        per_step = seen.per_step_s
    else:
        per_step = old.per_step_s + (seen.per_step_s - old.per_step_s) * weight
    return TimingRecord(fixed, per_step, old.count + 1, now)


class NodeTimings:
    """Reads a workflow's learned durations before a job and learns from it after."""

    def __init__(
        self,
        store: TimingStore,
        *,
        clock: Clock | None = None,
        horizon: int = 4,
        retry_after_s: float = 30.0,
        logger: logging.Logger | None = None,
    ) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._horizon = max(1, horizon)
        self._retry_after_s = retry_after_s
        self._down_until = float("-inf")
        self._log = logger or logging.getLogger(__name__)
        self._writer: ThreadPoolExecutor | None = None
        self._writer_lock = threading.Lock()

    def _available(self) -> bool:
        return self._clock.monotonic() >= self._down_until

    def _failed(self, what: str, exc: Exception) -> None:
        self._down_until = self._clock.monotonic() + self._retry_after_s
        self._log.warning("node timings %s (progress uses priors; store skipped for %g s): %s", what, self._retry_after_s, exc)

    @staticmethod
    def keys_for(workflow: Mapping[str, Any]) -> list[str]:
        """Every key the workflow may need: its nodes cold (loaders run) and warm (loaders cached)."""
        cold = node_specs(workflow)
        loaders = [n for n, spec in cold.items() if spec.model or "Loader" in spec.class_type]
        warm = node_specs(workflow, loaders)
        keys = [s.key for s in (*cold.values(), *warm.values())]
        return [k for k in dict.fromkeys(keys) if len(k) <= MAX_KEY_LENGTH]

    def model_for(self, workflow: Mapping[str, Any]) -> LearnedDurations:
        """One store read; priors only if the store fails (or failed within ``retry_after_s``)."""
        if not self._available():
            return LearnedDurations({})
        try:
            return LearnedDurations(self._store.get_many(self.keys_for(workflow)))
        except Exception as exc:  # noqa: BLE001 - learned timings are a nicety: a job never fails for them
            self._failed("unavailable", exc)
            return LearnedDurations({})

    def learn_later(self, observations: Iterable[Observation]) -> Future[int]:
        """:meth:`learn` on a background thread (one, so writes stay in order)."""
        items = list(observations)
        with self._writer_lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="node-timings")
            return self._writer.submit(self.learn, items)

    def close(self) -> None:
        """Finish the pending writes."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.shutdown(wait=True)

    def learn(self, observations: Iterable[Observation]) -> int:
        """Fold one job's node timings in; returns how many records were written."""
        seen = [o for o in observations if len(o.spec.key) <= MAX_KEY_LENGTH]
        if not seen or not self._available():
            return 0
        now = self._clock.time()
        try:
            old = self._store.get_many([o.spec.key for o in seen])
            merged: dict[str, TimingRecord] = {}
            for item in seen:
                merged[item.spec.key] = _merge(merged.get(item.spec.key) or old.get(item.spec.key), item, now, self._horizon)
            self._store.put_many(merged)
        except Exception as exc:  # noqa: BLE001 - see model_for
            self._failed("not saved", exc)
            return 0
        return len(merged)
