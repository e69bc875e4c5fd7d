"""SharedReads: one answer for every job asking within max_age; a bad health check never kept."""

from __future__ import annotations

import threading
import time

from worker.comfyui.clock import FakeClock, SystemClock
from worker.comfyui.rest_client import HealthReport, QueueSnapshot
from worker.comfyui.shared_reads import SharedReads


def test_health_is_kept_while_good_and_asked_again_after_a_failure() -> None:
    clock = FakeClock()
    answers = [HealthReport(True, "ok"), HealthReport(False, "connection"), HealthReport(True, "ok")]
    asked: list[int] = []

    def health() -> HealthReport:
        asked.append(1)
        return answers[min(len(asked), len(answers)) - 1]

    reads = SharedReads(clock, health, lambda: QueueSnapshot([], []), health_max_age=10.0)
    assert reads.health().ok and reads.health().ok and len(asked) == 1
    clock.advance(10.0)
    assert not reads.health().ok  # expired: asked again, and the failure ...
    assert reads.health().ok and len(asked) == 3  # ... is not kept
    reads.pod_failed()
    reads.health()
    assert len(asked) == 4


def test_concurrent_askers_share_the_read_in_progress() -> None:
    reads_made: list[int] = []

    def queue() -> QueueSnapshot:
        reads_made.append(1)
        time.sleep(0.05)
        return QueueSnapshot(["r"], ["a", "b"])

    reads = SharedReads(SystemClock(), lambda: HealthReport(True, "ok"), queue)
    got: list[QueueSnapshot] = []
    threads = [threading.Thread(target=lambda: got.append(reads.queue(max_age=1.0)[0])) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reads_made) == 1 and len(got) == 10 and got[0].position("b") == 1
    assert reads.queue(max_age=0.0)[0] is not got[0]  # max_age 0: a fresh read


def test_a_pod_that_just_answered_needs_no_health_check() -> None:
    asked: list[int] = []

    def health() -> HealthReport:
        asked.append(1)
        return HealthReport(True, "ok")

    reads = SharedReads(FakeClock(), health, lambda: QueueSnapshot([], []))
    reads.pod_answered()
    assert reads.health().ok and asked == []
