"""CancelBoard: a cancel recorded anywhere reaches the job's event, for every job of the process."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Iterable

import pytest

from worker.fleet.cancel_board import CancelBoard


def test_a_cancel_recorded_in_a_source_sets_the_jobs_event_within_an_interval() -> None:
    flagged: set[str] = set()
    asked: list[set[str]] = []

    def source(ids: Collection[str]) -> Iterable[str]:
        asked.append(set(ids))
        return flagged & set(ids)

    board = CancelBoard([source], interval=0.01)
    with board.job("a") as a, board.job("b") as b:
        assert not a.is_set() and not b.is_set()
        flagged.add("b")
        assert b.wait(1.0)
        assert not a.is_set()
        assert {"a", "b"} in asked  # one call for all the process's jobs
    assert board.running() == []
    board.close()


def test_a_job_already_cancelled_when_it_registers_is_cancelled_at_once() -> None:
    board = CancelBoard([lambda ids: ids], interval=60.0)
    with board.job("early") as event:
        assert event.is_set()
    board.close()


def test_a_failing_source_is_logged_and_the_others_still_asked(caplog: pytest.LogCaptureFixture) -> None:
    def broken(ids: Collection[str]) -> Iterable[str]:
        raise ConnectionError("redis away")

    board = CancelBoard([broken, lambda ids: ids], interval=60.0)
    with board.job("x") as event:
        assert event.is_set()
    assert "redis away" in caplog.text
    board.close()


def test_cancel_by_id_and_an_event_of_the_callers_own() -> None:
    board = CancelBoard([], interval=60.0)
    mine = threading.Event()
    with board.job("x", mine) as event:
        assert event is mine
        assert board.cancel("x") and mine.is_set()
    assert not board.cancel("x")
    board.close()


def test_the_watcher_thread_stops_on_close() -> None:
    before = set(threading.enumerate())  # other tests' boards may still run
    board = CancelBoard([lambda ids: ()], interval=0.01)
    with board.job("x"):
        time.sleep(0.03)
        assert [t for t in threading.enumerate() if t not in before and t.name == "cancel-board"]
    board.close()
    assert not [t for t in threading.enumerate() if t not in before and t.name == "cancel-board" and t.is_alive()]
