"""JobEvents, the one dispatcher from a job to its observers: isolation, de-duplication, throttle, count."""

from __future__ import annotations

import logging

import pytest

from worker.comfyui.clock import FakeClock
from worker.comfyui.observer import FallbackEvent, JobEvents, JobObserver
from worker.comfyui.progress import JobProgressState, JobStatus

log = logging.getLogger("test.observer")


def state(progress: float, status: JobStatus = JobStatus.RUNNING) -> JobProgressState:
    return JobProgressState(prompt_id="p1", progress=progress, status=status)


class Seen(JobObserver):
    def __init__(self) -> None:
        self.progress: list[float] = []
        self.fallbacks: list[FallbackEvent] = []

    def on_progress(self, state: JobProgressState) -> None:
        self.progress.append(state.progress)

    def on_fallback(self, event: FallbackEvent) -> None:
        self.fallbacks.append(event)


class Broken(JobObserver):
    def on_progress(self, state: JobProgressState) -> None:
        raise RuntimeError("observer bug")

    def on_fallback(self, event: FallbackEvent) -> None:
        raise RuntimeError("observer bug")


def test_a_raising_observer_is_logged_and_the_others_still_hear(caplog: pytest.LogCaptureFixture) -> None:
    seen = Seen()
    events = JobEvents([Broken(), seen], clock=FakeClock(), logger=log, prompt_id="p1")
    events.progress(state(10.0))
    events.fallback(FallbackEvent("p1", "timeout", "slow"))
    assert seen.progress == [10.0] and len(seen.fallbacks) == 1
    assert [r.getMessage() for r in caplog.records] == [
        "Broken.on_progress failed for prompt p1 (the job goes on)",
        "Broken.on_fallback failed for prompt p1 (the job goes on)",
    ]


def test_an_unchanged_state_is_not_delivered_again_and_the_count_is_what_was_delivered() -> None:
    seen = Seen()
    events = JobEvents([seen], clock=FakeClock(), logger=log, prompt_id="p1")
    for value in (5.0, 5.0, 7.5, 7.5, 7.5):
        events.progress(state(value))
    assert seen.progress == [5.0, 7.5] and events.published == 2


def test_the_throttle_keeps_the_latest_and_lets_the_final_state_through_at_once() -> None:
    clock = FakeClock()
    seen = Seen()
    events = JobEvents([seen], clock=clock, logger=log, prompt_id="p1", progress_interval=1.0)
    events.progress(state(1.0))
    events.progress(state(2.0))
    events.progress(state(3.0))
    events.tick()
    assert seen.progress == [1.0]  # the window is still open
    clock.advance(1.0)
    events.tick()
    assert seen.progress == [1.0, 3.0]  # the trailing one, never 2.0
    events.progress(state(100.0, JobStatus.COMPLETED))
    assert seen.progress == [1.0, 3.0, 100.0] and events.published == 3


def test_every_hook_of_the_base_observer_is_a_no_op() -> None:
    events = JobEvents([JobObserver()], clock=FakeClock(), logger=log, prompt_id="p1")
    events.progress(state(1.0))
    events.tick()
    events.fallback(FallbackEvent("p1", "error", "x"))
    events.flush()
    assert events.published == 1
