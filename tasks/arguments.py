"""The task's arguments, judged before anything else touches them: in the worker's main process
(:func:`guarded_strategy`) and on the task's first line (:func:`task_arguments`).

Why the main process matters: it decodes every message (Celery's strategy reads
``message.payload``) and pickles the arguments for the pool child. A list nested 500 deep
(about 1 KB) made that pickling raise ``RecursionError``, which Celery treats as unrecoverable:
the worker died, the message was restored, and the next worker died too. 100,000 deep, the
decoding itself failed: the message was dropped and its job stayed PENDING for ever.
:func:`guarded_strategy` measures the raw message first (length, and bracket depth without
decoding) and swaps a hostile body for a small marker, so the job still ends the ordinary way
(acked, FAILURE ``validation`` in the result backend, ``task-failed`` event) and the worker
carries on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from celery.worker.strategy import default as default_strategy

from worker.comfyui.errors import WorkflowValidationError
from worker.comfyui.json_bounds import JSONBounds, JSONBoundsError, check_value, raw_json_depth
from worker.comfyui.workflow import MAX_WORKFLOW_BYTES, WORKFLOW_BOUNDS, validate_workflow

__all__ = ["MAX_MESSAGE_BYTES", "MAX_MESSAGE_DEPTH", "REJECTED_KEY", "guarded_strategy", "task_arguments"]

#: the workflow plus room for options and Celery's own fields
MAX_MESSAGE_BYTES = MAX_WORKFLOW_BYTES + 1024 * 1024
#: [args, kwargs, embed] > args list > the workflow: two levels above the workflow's own bound
MAX_MESSAGE_DEPTH = WORKFLOW_BOUNDS.max_depth + 3
#: the marker argument :class:`GuardedRequest` puts in place of a refused body
REJECTED_KEY = "__comfy_celery_rejected__"
_EMBED: dict[str, Any] = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _refusal(body: Any, decoded: bool) -> str | None:
    """Why this body must not be decoded or pickled, or None when it is safe to."""
    if not decoded and isinstance(body, str | bytes | bytearray | memoryview):
        raw = bytes(body) if isinstance(body, bytearray | memoryview) else body
        if len(raw) > MAX_MESSAGE_BYTES:
            return f"the task message is {len(raw)} bytes, more than the {MAX_MESSAGE_BYTES} allowed"
        if raw_json_depth(raw, MAX_MESSAGE_DEPTH) > MAX_MESSAGE_DEPTH:
            return f"the task message is nested more than {MAX_MESSAGE_DEPTH} levels deep"
        return None
    if decoded:
        try:
            check_value(body, JSONBounds(max_depth=MAX_MESSAGE_DEPTH, max_string_chars=MAX_MESSAGE_BYTES), where="the task message")
        except JSONBoundsError as exc:
            return str(exc)
    return None


def _swap_for_marker(message: Any, reason: str) -> None:
    """Make ``message`` carry the marker instead of its body, for every later reader of it."""
    payload = [[{REJECTED_KEY: reason}], {}, dict(_EMBED)]
    message.body = json.dumps(payload).encode()
    message.content_type, message.content_encoding = "application/json", "utf-8"
    message._decoded_cache = payload  # kombu caches the decoded body here


def guarded_strategy(task: Any, app: Any, consumer: Any, **kwargs: Any) -> Callable[..., Any]:
    """Celery's default strategy, behind a look at the raw message (set as the task's ``Strategy``)."""
    handle: Callable[..., Any] = default_strategy(task, app, consumer, **kwargs)

    def guarded(message: Any, body: Any, *args: Any, **options: Any) -> Any:
        reason = _refusal(message.body if body is None else body, decoded=body is not None)
        if reason is not None:
            _swap_for_marker(message, reason)
            body = None
        return handle(message, body, *args, **options)

    return guarded


def task_arguments(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    """``(workflow, options, inputs)`` from the task's ``*args, **kwargs``, or a :class:`WorkflowValidationError`.

    The signature is ``run_workflow(workflow, options=None, inputs=None)``; a wrong count or an
    unknown keyword is the caller's mistake, reported like any other invalid job (not a ``TypeError``).
    ``options`` and ``inputs`` are checked by their own parsers (``TaskOptions``, the media pipeline).
    """
    values = dict(kwargs)
    names = ("workflow", "options", "inputs")
    unknown = set(values) - set(names)
    if unknown:
        raise WorkflowValidationError(f"unknown task arguments: {', '.join(sorted(unknown))}", error_type="bad_arguments")
    if len(args) > len(names):
        raise WorkflowValidationError(f"the task takes at most {len(names)} arguments, got {len(args)}", error_type="bad_arguments")
    for name, value in zip(names, args, strict=False):
        if name in values:
            raise WorkflowValidationError(f"argument {name!r} given twice", error_type="bad_arguments")
        values[name] = value
    if "workflow" not in values:
        raise WorkflowValidationError("the task needs a workflow argument", error_type="bad_arguments")
    workflow = values["workflow"]
    if isinstance(workflow, Mapping) and REJECTED_KEY in workflow and len(workflow) == 1:
        raise WorkflowValidationError(str(workflow[REJECTED_KEY]), error_type="message_refused")
    return validate_workflow(workflow), values.get("options"), values.get("inputs")
