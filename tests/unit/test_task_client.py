"""What a poller reads: a state and its meta must come from the same stored record."""

from __future__ import annotations

from typing import Any

from tasks.client import job_status, task_state


class RacingResult:
    """An AsyncResult whose task ends between two reads: ``.state`` is stale, the backend is current."""

    id = "t-1"

    def __init__(self, record: dict[str, Any]) -> None:
        self.backend = self
        self._record = record
        self.state = "PROGRESS"  # what a first read saw, before the task ended

    @property
    def info(self) -> Any:
        return self._record["result"]

    def get_task_meta(self, task_id: str) -> dict[str, Any]:
        assert task_id == self.id
        return self._record


def test_state_and_meta_come_from_one_read() -> None:
    record = {"status": "SUCCESS", "result": {"status": "success", "files": []}}
    racing = RacingResult(record)
    assert task_state(racing) == ("SUCCESS", record["result"])  # type: ignore[arg-type]
    view = job_status(racing)  # type: ignore[arg-type]
    assert view == {"task_id": "t-1", "state": "SUCCESS", "result": record["result"]}  # never "progress": <the result>


def test_progress_view_holds_progress_meta() -> None:
    meta = {"progress": 40.0, "status": "running"}
    view = job_status(RacingResult({"status": "PROGRESS", "result": meta}))  # type: ignore[arg-type]
    assert view == {"task_id": "t-1", "state": "PROGRESS", "progress": meta}


def test_an_error_rebuilt_without_our_module_keeps_its_code() -> None:
    """Celery looks the exception's module up in sys.modules only: elsewhere it builds a generic class."""
    from celery.utils.serialization import create_exception_cls

    from tasks.client import _error_view

    generic = create_exception_cls("ExecutionError", "celery.exceptions")
    error = generic("boom", {"code": "execution", "message": "boom", "node_id": "2"})
    assert _error_view(error) == {"code": "execution", "message": "boom", "node_id": "2"}
    assert _error_view(KeyError("x"))["code"] == "task_error"
