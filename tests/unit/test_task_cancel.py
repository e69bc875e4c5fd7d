from __future__ import annotations

import os
import signal

from tasks.cancel import Cancellation, CancelReason, TimeLimit, cancel_on_sigusr1


class Stopwatch:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_reason_wins() -> None:
    cancellation = Cancellation()
    cancellation.cancel(CancelReason.REVOKED)
    cancellation.cancel(CancelReason.TIME_LIMIT)
    assert cancellation.is_set() and cancellation.reason is CancelReason.REVOKED


def test_a_time_limit_is_reached_within_the_startup_allowance() -> None:
    watch = Stopwatch()
    limit = TimeLimit(60.0, started=watch(), startup_allowance=1.0, monotonic=watch)
    watch.now += 58.9
    assert not limit.reached()
    watch.now += 0.2  # Celery's timer started before the body: its signal may come 1 s early
    assert limit.reached()


def test_the_allowance_is_at_most_half_a_short_limit() -> None:
    watch = Stopwatch()
    limit = TimeLimit(1.0, started=watch(), startup_allowance=1.0, monotonic=watch)
    watch.now += 0.4
    assert not limit.reached()
    watch.now += 0.1
    assert limit.reached()


def test_sigusr1_before_the_limit_is_a_revoke_and_after_it_a_time_limit() -> None:
    watch = Stopwatch()
    early, late = Cancellation(), Cancellation()
    with cancel_on_sigusr1(early, TimeLimit(60.0, started=watch(), monotonic=watch)):
        os.kill(os.getpid(), signal.SIGUSR1)
    watch.now += 60.0
    with cancel_on_sigusr1(late, TimeLimit(60.0, started=100.0, monotonic=watch)):
        os.kill(os.getpid(), signal.SIGUSR1)
    assert (early.reason, late.reason) == (CancelReason.REVOKED, CancelReason.TIME_LIMIT)
