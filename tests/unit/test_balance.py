"""Balancer: even choice when jobs start together, loads read once per interval, a queue limit."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

import pytest

from worker.comfyui.clock import FakeClock
from worker.comfyui.errors import ConnectionFailedError, JobCancelledError, JobTimeoutError
from worker.comfyui.pod_client import ComfyUIPodClient
from worker.comfyui.urls import ServerURL
from worker.fleet.balance import Balancer
from worker.fleet.pods import PodConfig, PodPool


class FakePool(PodPool):
    def __init__(self, reported: Sequence[int | None]) -> None:
        pods = [PodConfig(f"p{i}", ServerURL.parse(f"http://127.0.0.1:{9000 + i}")) for i in range(len(reported))]
        super().__init__(pods, lambda pod: ComfyUIPodClient(pod.url))
        self.reported = list(reported)
        self.reads = 0

    def loads(self) -> list[int | None]:
        self.reads += 1
        return list(self.reported)


def test_jobs_starting_together_are_spread_evenly() -> None:
    pool = FakePool([0, 0, 0, 0])
    balancer = Balancer(pool, clock=FakeClock())
    leases = [balancer.lease() for _ in range(20)]
    chosen = Counter(lease.__enter__().name for lease in leases)
    assert sorted(chosen.values()) == [5, 5, 5, 5]
    assert pool.reads == 1  # one read of every pod's load for all 20 choices
    for lease in leases:
        lease.__exit__(None, None, None)
    assert set(balancer.in_flight().values()) == {0}


def test_what_a_pod_reports_counts_when_it_exceeds_what_we_sent_it() -> None:
    pool = FakePool([6, 0, None])  # p0 busy with another process's prompts, p2 unusable
    balancer = Balancer(pool, clock=FakeClock(), rng=lambda: 0.0)
    names = []
    for _ in range(8):
        with balancer.lease() as pod:
            names.append(pod.name)
    assert set(names) == {"p1"}
    held = [balancer.lease() for _ in range(8)]
    # p1 takes jobs until it holds as many as p0 reported, then they alternate
    assert Counter(lease.__enter__().name for lease in held) == {"p1": 6, "p0": 2}


def test_loads_are_read_again_after_max_age() -> None:
    clock = FakeClock()
    pool = FakePool([0, 0])
    balancer = Balancer(pool, max_age=1.0, clock=clock)
    with balancer.lease():
        pass
    clock.advance(0.5)
    with balancer.lease():
        pass
    assert pool.reads == 1
    clock.advance(0.6)
    with balancer.lease():
        pass
    assert pool.reads == 2


def test_no_usable_pod_is_a_connection_error() -> None:
    with pytest.raises(ConnectionFailedError):
        Balancer(FakePool([None, None])).lease().__enter__()


def test_with_a_queue_limit_a_job_waits_for_room_and_can_be_cancelled_or_time_out() -> None:
    pool = FakePool([0, 0])
    balancer = Balancer(pool, max_queued_per_pod=1, wait_slice=0.01, rng=lambda: 0.0)
    held = [balancer.lease() for _ in range(4)]  # per pod: one running, one waiting
    for lease in held:
        lease.__enter__()
    with pytest.raises(JobTimeoutError, match="no pod had room"):
        balancer.lease(timeout=0.05).__enter__()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobCancelledError):
        balancer.lease(cancel=cancel).__enter__()
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(balancer.lease(timeout=5).__enter__().name))
    waiter.start()
    waiter.join(0.1)
    assert not got  # still waiting
    held[1].__exit__(None, None, None)
    waiter.join(5)
    assert got == ["p1"]  # the pod that had room again (ties go to the first pod: p0, p1, p0, p1)


def test_a_given_pod_is_used_and_counted() -> None:
    pool = FakePool([0, 0])
    balancer = Balancer(pool)
    with balancer.lease(pool.pods[1]) as pod:
        assert pod.name == "p1" and balancer.in_flight() == {"p0": 0, "p1": 1}
    assert pool.reads == 0
