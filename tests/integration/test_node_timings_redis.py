"""Learned node timings in a real (private) redis-server: shared across clients, bounded in size and age."""

from __future__ import annotations

import redis

from worker.app.local_redis import LocalRedis
from worker.comfyui.clock import FakeClock
from worker.comfyui.eta import Observation
from worker.comfyui.node_costs import NodeSpec
from worker.fleet.node_timings import NodeTimings, RedisTimingStore, TimingRecord

SPEC = NodeSpec("3", "KSampler", 512 * 512, 1, 20, cold=False)


def test_one_worker_learns_and_another_reads_it_through_redis(redis_server: LocalRedis) -> None:
    redis.Redis.from_url(redis_server.url).flushall()
    store = RedisTimingStore.from_url(redis_server.url, timeout=2.0, prefix="t1")
    writer = NodeTimings(store)
    writer.learn([Observation(SPEC, 0.7, 0.1, 0.03, 20)])
    writer.learn([Observation(SPEC, 0.9, 0.3, 0.03, 20)])
    reader = RedisTimingStore.from_url(redis_server.url, timeout=2.0, prefix="t1")
    record = reader.get_many([SPEC.key, "unknown key"])
    assert list(record) == [SPEC.key]
    assert (record[SPEC.key].fixed_s, record[SPEC.key].per_step_s, record[SPEC.key].count) == (0.2, 0.03, 2)
    store.close()
    reader.close()


def test_size_and_age_are_bounded_in_redis(redis_server: LocalRedis) -> None:
    client = redis.Redis.from_url(redis_server.url, socket_timeout=2.0)
    client.flushall()
    clock = FakeClock()
    store = RedisTimingStore(client, prefix="t2", max_entries=3, max_age_s=100.0, clock=clock)
    for index in range(5):
        store.put_many({f"k{index}": TimingRecord(1.0, None, 1, clock.time())})
        clock.advance(10)
    assert sorted(str(k, "utf-8") if isinstance(k, bytes) else k for k in client.hkeys("t2")) == ["k2", "k3", "k4"]
    assert client.zcard("t2:seen") == 3
    clock.advance(75)  # k2 is 105 s old now: not served, and dropped at the next write
    assert set(store.get_many(["k2", "k3", "k4"])) == {"k3", "k4"}
    store.put_many({"k5": TimingRecord(1.0, None, 1, clock.time())})
    assert sorted(str(k, "utf-8") if isinstance(k, bytes) else k for k in client.hkeys("t2")) == ["k3", "k4", "k5"]
    client.hset("t2", "bad", "not json")
    assert store.get_many(["bad"]) == {}
    client.close()
