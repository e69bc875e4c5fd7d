"""The rules of partitions, as properties: what is transient, and where a prompt may be."""

from __future__ import annotations

from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.comfyui.errors import (
    ALL_ERRORS,
    ComfyUIError,
    ConnectionFailedError,
    HTTPStatusError,
    RedirectRefusedError,
    ResponseTooLargeError,
    TransportError,
    WorkflowValidationError,
    is_transient,
)
from worker.comfyui.pod_client import ComfyUIPodClient
from worker.comfyui.rest_client import QueueSnapshot
from worker.comfyui.urls import ServerURL
from worker.fleet.pods import PodConfig, PodPool


@given(st.integers(min_value=100, max_value=599))
def test_an_http_status_is_transient_when_the_server_may_answer_later(status: int) -> None:
    error = HTTPStatusError("x", status=status)
    assert is_transient(error) == (status >= 500 or status in (408, 425, 429))


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_every_transport_error_and_nothing_else_without_a_status_is_transient(cls: type[ComfyUIError]) -> None:
    """Except a refused redirect and an answer over a cap: the same server would do it again."""
    same_again = issubclass(cls, RedirectRefusedError | ResponseTooLargeError)
    assert is_transient(cls("x")) == (issubclass(cls, TransportError) and not same_again)


def test_a_validation_error_is_never_transient() -> None:
    assert not is_transient(WorkflowValidationError("bad"))
    assert not is_transient(ValueError("not ours"))


Answer = str  # "has", "not", "error"


class FakePod:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def get_history(self, prompt_id: str, **_: Any) -> dict[str, Any] | None:
        if self.answer == "error":
            raise HTTPStatusError("GET /history answered HTTP 503", status=503)
        return {"status": {}} if self.answer == "has" else None

    def get_queue(self, **_: Any) -> QueueSnapshot:
        return QueueSnapshot([], [])

    @property
    def rest(self) -> FakePod:  # the pod client's REST API
        return self

    def close(self) -> None:
        pass


@given(st.lists(st.sampled_from(["has", "not", "error"]), min_size=2, max_size=5))
def test_a_prompt_is_found_or_declared_absent_only_when_every_pod_answered(answers: list[Answer]) -> None:
    pods = [PodConfig(f"p{i}", ServerURL.parse(f"http://127.0.0.1:{10 + i}")) for i in range(len(answers))]
    fakes = {pod.name: FakePod(answer) for pod, answer in zip(pods, answers, strict=True)}
    pool = PodPool(pods, lambda pod: cast(ComfyUIPodClient, fakes[pod.name]))
    try:
        if "has" in answers:
            found = pool.find_prompt("id")
            assert found is not None and answers[pods.index(found)] == "has"
        elif "error" in answers:
            with pytest.raises(ConnectionFailedError):
                pool.find_prompt("id")  # it may be there: never 'not found'
        else:
            assert pool.find_prompt("id") is None
    finally:
        pool.close()
