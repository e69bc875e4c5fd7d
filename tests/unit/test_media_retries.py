"""``with_retries`` around the output store: what a failure, a cap and a cancel end as."""

from __future__ import annotations

import threading

import pytest

from worker.comfyui.clock import FakeClock
from worker.comfyui.errors import JobCancelledError, StorageError
from worker.fleet.media.outputs import with_retries


def test_a_cancel_during_the_backoff_is_a_cancellation_not_a_retryable_storage_error() -> None:
    # a revoke (or the time limit) arriving while we wait to store again must end the task as
    # cancelled: a retryable StorageError would make the Celery task retry a revoked job
    cancel = threading.Event()
    clock = FakeClock()
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        cancel.set()  # the revoke lands while this attempt fails
        raise StorageError("store down", key="outputs/t/9_0.png")

    with pytest.raises(JobCancelledError) as exc:
        with_retries(flaky, attempts=4, backoff=1.0, sleep=clock.sleep, cancel=cancel, key="outputs/t/9_0.png")
    assert exc.value.code == "cancelled"
    assert calls == [1]


def test_retryable_failures_are_retried_with_backoff_then_end_as_storage_errors() -> None:
    clock = FakeClock()

    def down() -> None:
        raise OSError("connection refused")

    with pytest.raises(StorageError) as exc:
        with_retries(down, attempts=3, backoff=1.0, sleep=clock.sleep, cancel=threading.Event(), key="k")
    assert exc.value.retryable and clock.sleeps == [1.0, 2.0]
