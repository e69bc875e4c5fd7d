"""The process's watchdog: deadlines run in time order on one thread, cancelled ones never."""

from __future__ import annotations

import threading

from worker.comfyui.watchdog import Watchdog


def test_deadlines_fire_in_order_and_a_cancelled_one_never() -> None:
    dog = Watchdog()
    fired: list[str] = []
    done = threading.Event()
    dog.schedule(0.03, lambda: fired.append("late"))
    dropped = dog.schedule(0.01, lambda: fired.append("cancelled"))
    dog.schedule(0.005, lambda: fired.append("early"))
    dog.schedule(0.05, done.set)
    dropped.cancel()
    assert done.wait(2.0)
    assert fired == ["early", "late"]
    dog.close()


def test_many_deadlines_share_one_thread() -> None:
    before = threading.active_count()
    dog = Watchdog()
    handles = [dog.schedule(30.0, lambda: None) for _ in range(200)]
    assert threading.active_count() == before + 1  # a Timer per deadline would start 200
    assert dog.pending() == 200
    for handle in handles:
        handle.cancel()
    dog.close()
    assert threading.active_count() == before


def test_a_cancelled_deadline_keeps_nothing_alive() -> None:
    """It waits in the heap until its time: what its callback holds (a response, a socket) must not."""
    import gc
    import weakref

    class Held:
        def touch(self) -> None:
            """A bound method: the deadline's callback refers to its object."""

    dog = Watchdog()
    held = Held()
    alive = weakref.ref(held)
    dog.schedule(30.0, held.touch).cancel()
    del held
    gc.collect()
    assert alive() is None
    dog.close()


def test_a_callback_that_raises_does_not_stop_later_deadlines() -> None:
    dog = Watchdog()
    done = threading.Event()

    def broken() -> None:
        raise RuntimeError("boom")

    dog.schedule(0.001, broken)
    dog.schedule(0.01, done.set)
    assert done.wait(2.0)
    dog.close()


def test_an_earlier_deadline_wakes_a_watchdog_waiting_on_a_later_one() -> None:
    dog = Watchdog()
    done = threading.Event()
    dog.schedule(30.0, lambda: None)
    dog.schedule(0.01, done.set)
    assert done.wait(1.0)
    dog.close()
