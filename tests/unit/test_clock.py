from __future__ import annotations

import threading
import time

from worker.comfyui.clock import Deadline, FakeClock, SystemClock


def test_fake_clock_sleep_advances_time_instantly() -> None:
    clock = FakeClock(start=10.0)
    assert clock.sleep(5.0) is False
    assert clock.monotonic() == 15.0
    assert clock.sleeps == [5.0]


def test_fake_clock_sleep_reports_cancellation() -> None:
    clock = FakeClock()
    cancel = threading.Event()
    cancel.set()
    assert clock.sleep(5.0, cancel) is True
    assert clock.sleeps == []


def test_system_clock_sleep_is_cut_short_by_cancel() -> None:
    cancel = threading.Event()
    threading.Timer(0.02, cancel.set).start()
    start = time.monotonic()
    assert SystemClock().sleep(5.0, cancel) is True
    assert time.monotonic() - start < 1.0


def test_deadline_spans_several_steps() -> None:
    clock = FakeClock()
    deadline = Deadline(clock, 10.0)
    clock.advance(4.0)
    assert deadline.remaining() == 6.0
    assert deadline.cap(8.0) == 6.0
    assert deadline.cap(1.0) == 1.0
    clock.advance(7.0)
    assert deadline.expired()
    assert deadline.remaining() == 0.0


def test_no_deadline_never_expires() -> None:
    deadline = Deadline(FakeClock(), None)
    assert deadline.remaining() is None
    assert not deadline.expired()
    assert deadline.cap(3.0) == 3.0
