"""The error hierarchy: stable codes, one fallback clause, and survival through pickle and Celery."""

from __future__ import annotations

import inspect
import json
import pickle

import pytest
from celery import Celery

from worker.comfyui import errors as e

SAMPLES: list[e.ComfyUIError] = [
    e.ComfyUIError("base"),
    e.TransportError("transport"),
    e.ConnectionFailedError("refused", url="http://pod:8188"),
    e.TransportTimeoutError("no handshake", phase="handshake", seconds=10.0),
    e.JobTimeoutError("too long", prompt_id="p1", seconds=600.0),
    e.ConnectionLostError("dropped", close_code=1006, reconnect_attempts=3),
    e.ProtocolError("not JSON", excerpt="<html>"),
    e.HTTPStatusError("bad status", status=502, url="http://pod/history", body_excerpt="Bad Gateway"),
    e.WorkflowValidationError(
        "Prompt outputs failed validation",
        error_type="prompt_outputs_failed_validation",
        node_errors={"3": {"errors": [{"type": "value_smaller_than_min"}], "dependent_outputs": ["9"], "class_type": "KSampler"}},
    ),
    e.ExecutionError(
        "RuntimeError: boom",
        prompt_id="p1",
        node_id="2",
        node_type="LabRaiseError",
        exception_type="RuntimeError",
        exception_message="boom\n",
        traceback=['  File "x.py", line 1\n'],
    ),
    e.PromptInterruptedError("interrupted", prompt_id="p1", node_id="3", node_type="KSampler"),
    e.JobCancelledError("cancelled", prompt_id="p1"),
    e.PromptNotFoundError("gone", prompt_id="p1"),
    e.StorageError("the store refused the object", key="outputs/p1/9_0.png", retryable=True),
    e.RedirectRefusedError("redirect", status=302, location="http://elsewhere:1/ws"),
    e.ResponseTooLargeError("huge", limit=1024, what="GET /history"),
    e.ResultTooLargeError("too many files", limit=10, what="output files"),
    e.OutputSaveError("one failed", failures=[{"filename": "a.png", "error": "timeout"}]),
]


def test_every_class_has_a_sample() -> None:
    assert {type(s) for s in SAMPLES} == set(e.ALL_ERRORS)


@pytest.mark.parametrize("error", SAMPLES, ids=lambda x: type(x).__name__)
def test_pickle_round_trip(error: e.ComfyUIError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert back.to_dict() == error.to_dict()
    assert str(back) == str(error)


@pytest.mark.parametrize("error", SAMPLES, ids=lambda x: type(x).__name__)
def test_celery_json_result_round_trip(error: e.ComfyUIError) -> None:
    app = Celery("roundtrip", backend="cache+memory://", set_as_current=False)
    app.conf.result_serializer = "json"
    backend = app.backend
    stored = backend.prepare_exception(error, "json")
    encoded = backend.encode(stored)  # what the result backend really holds
    back = backend.exception_to_python(backend.decode(encoded))
    assert type(back) is type(error)
    assert isinstance(back, e.ComfyUIError)
    assert back.to_dict() == error.to_dict()
    assert back.code == error.code


def test_only_transport_failures_are_transport_errors() -> None:
    transport = {type(s) for s in SAMPLES if isinstance(s, e.TransportError)}
    assert transport == {
        e.TransportError,
        e.ConnectionFailedError,
        e.TransportTimeoutError,
        e.ConnectionLostError,
        e.ProtocolError,
        e.RedirectRefusedError,  # the WebSocket falls back to REST, which never sends credentials across a redirect
        e.ResponseTooLargeError,
    }
    # a job deadline is a timeout but must never trigger a fallback or retry
    assert not isinstance(e.JobTimeoutError("x"), e.TransportError)
    assert isinstance(e.JobTimeoutError("x"), e.ComfyUITimeoutError)


def test_codes_are_stable() -> None:
    assert {type(s).__name__: s.code for s in SAMPLES} == {
        "ComfyUIError": "comfyui_error",
        "TransportError": "transport",
        "ConnectionFailedError": "connection",
        "TransportTimeoutError": "transport_timeout",
        "JobTimeoutError": "timeout",
        "ConnectionLostError": "connection_lost",
        "ProtocolError": "protocol",
        "HTTPStatusError": "http",
        "WorkflowValidationError": "validation",
        "ExecutionError": "execution",
        "PromptInterruptedError": "interrupted",
        "JobCancelledError": "cancelled",
        "PromptNotFoundError": "prompt_lost",
        "StorageError": "storage",
        "RedirectRefusedError": "redirect_refused",
        "ResponseTooLargeError": "too_large",
        "ResultTooLargeError": "result_too_large",
        "OutputSaveError": "output_save",
    }


def test_typed_accessors() -> None:
    validation = SAMPLES[8]
    assert isinstance(validation, e.WorkflowValidationError)
    assert validation.node_errors["3"]["class_type"] == "KSampler"
    assert validation.error_type == "prompt_outputs_failed_validation"
    execution = SAMPLES[9]
    assert isinstance(execution, e.ExecutionError)
    assert (execution.node_id, execution.node_type, execution.exception_type) == ("2", "LabRaiseError", "RuntimeError")
    assert execution.traceback == ['  File "x.py", line 1\n']
    timeout = SAMPLES[3]
    assert isinstance(timeout, e.TransportTimeoutError)
    assert timeout.phase == "handshake"
    assert e.JobTimeoutError("x").phase == "job"
    lost = SAMPLES[5]
    assert isinstance(lost, e.ConnectionLostError)
    assert lost.close_code == 1006
    http = SAMPLES[7]
    assert isinstance(http, e.HTTPStatusError)
    assert http.status == 502


def test_every_class_has_its_own_code_and_a_raised_when_docstring() -> None:
    classes = [c for _, c in inspect.getmembers(e, inspect.isclass) if issubclass(c, e.ComfyUIError)]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)), sorted(codes)
    for cls in classes:
        assert "raised" in (cls.__doc__ or "").lower(), cls.__name__
    tree = e.__doc__ or ""
    for cls in classes:
        assert f"{cls.__name__} [{cls.code}]" in tree, f"the tree in errors.py's docstring lacks {cls.__name__}"


@pytest.mark.parametrize("error", SAMPLES, ids=lambda x: type(x).__name__)
def test_the_raw_stored_json_carries_code_message_and_fields(error: e.ComfyUIError) -> None:
    """What a backend without this code reads: ``exc_message[1]`` is ``to_dict()``."""
    app = Celery("raw", backend="cache+memory://", set_as_current=False)
    app.conf.result_serializer = "json"
    raw = json.loads(app.backend.encode(app.backend.prepare_exception(error, "json")))
    message, fields = raw["exc_message"]
    assert message == error.message
    assert fields == error.to_dict()
    assert fields["code"] == error.code and fields["message"] == error.message


def test_details_never_echo_code_and_message_and_a_rebuilt_error_keeps_its_own_code() -> None:
    error = e.ExecutionError("boom", node_id="2")
    assert error.details == {"node_id": "2"}
    forged = e.ExecutionError("boom", {"code": "validation", "message": "other", "node_id": "2"})
    assert forged.code == "execution" and forged.to_dict() == error.to_dict()
