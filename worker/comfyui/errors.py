"""One exception hierarchy for everything that can go wrong talking to ComfyUI.

The tree (``code`` in brackets; codes are unique per class and stable: a web backend switches on them)::

    ComfyUIError [comfyui_error]                 base; never raised itself
    ├── TransportError [transport]               the only fallback / retry trigger
    │   ├── ConnectionFailedError [connection]   could not connect (refused, DNS, TLS, HTTP upgrade refused)
    │   │   └── RedirectRefusedError [redirect_refused]  the WebSocket upgrade redirected: not followed
    │   ├── TransportTimeoutError [transport_timeout]  also a ComfyUITimeoutError; phase connect/handshake/idle/request
    │   ├── ConnectionLostError [connection_lost]      an established connection went away
    │   └── ProtocolError [protocol]             the server does not speak ComfyUI's protocol
    │       └── ResponseTooLargeError [too_large]  a body or frame past its cap, refused while read
    ├── ComfyUITimeoutError [comfyui_timeout]    base of the two timeouts; never raised itself
    │   ├── TransportTimeoutError                (see above)
    │   └── JobTimeoutError [timeout]            the job's own deadline (phase job)
    ├── HTTPStatusError [http]                   an unusable HTTP status
    ├── WorkflowValidationError [validation]     the workflow (or a task option) was rejected
    ├── ExecutionError [execution]               a node raised while the prompt ran
    ├── PromptInterruptedError [interrupted]     ``POST /interrupt`` stopped the prompt
    ├── JobCancelledError [cancelled]            we were told to stop (revoke, shutdown)
    ├── PromptNotFoundError [prompt_lost]        the prompt is in neither queue nor history
    ├── StorageError [storage]                   a finished prompt's outputs could not be stored
    ├── ResultTooLargeError [result_too_large]   too many outputs, or a result too large to store
    └── OutputSaveError [output_save]            ``save_outputs``: some files could not be saved

Design rules:

* Every error has a stable machine-readable ``code``, unique to its class (a test checks it).
* All state lives in ``args == (message, fields)``, ``fields`` a JSON-serialisable dict that
  carries ``code`` and ``message`` too. That makes the errors survive ``pickle`` *and* Celery's
  JSON result encoding, which stores ``exc_type``, ``exc_module`` and ``exc_message =
  list(args)`` and rebuilds the error with ``cls(*args)``: a backend without this code (or not
  written in Python) reads ``exc_message[1]["code"]`` and the fields from the raw JSON.
* Only :class:`TransportError` subclasses may ever trigger a fallback or a retry. An execution
  error, a validation error, a cancellation or our own bug never inherits from it, so a single
  ``except TransportError`` is exactly the fallback condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from worker.comfyui.protocol import ExecutionErrorData, ExecutionInterruptedData

TimeoutPhase = Literal["connect", "handshake", "idle", "request", "job"]

__all__ = [
    "ComfyUIError",
    "ComfyUITimeoutError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "ExecutionError",
    "HTTPStatusError",
    "JobCancelledError",
    "JobTimeoutError",
    "PromptInterruptedError",
    "PromptNotFoundError",
    "ProtocolError",
    "TimeoutPhase",
    "TransportError",
    "TransportTimeoutError",
    "WorkflowValidationError",
]


class ComfyUIError(Exception):
    """Base of every error this package raises; raised itself only for our own unexpected states."""

    code: ClassVar[str] = "comfyui_error"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None) -> None:
        # code and message ride along in the fields so that the raw stored JSON carries them;
        # a rebuilt error (``cls(*args)``) gets them back from its own class, not from the data
        fields = {k: v for k, v in (details or {}).items() if k not in _RESERVED}
        super().__init__(message, {"code": self.code, "message": message, **fields})

    @property
    def message(self) -> str:
        return str(self.args[0])

    @property
    def details(self) -> dict[str, Any]:
        """The structured fields (``node_id``, ``status`` …), without ``code`` and ``message``."""
        details = self.args[1] if len(self.args) > 1 else {}
        return {k: v for k, v in details.items() if k not in _RESERVED} if isinstance(details, dict) else {}

    def _str(self, key: str) -> str | None:
        value = self.details.get(key)
        return value if isinstance(value, str) else None

    def _int(self, key: str) -> int | None:
        value = self.details.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The structured form stored in results and events: ``code``, ``message`` and details
        (the same dict as ``exc_message[1]`` in the stored FAILURE JSON)."""
        return {"code": self.code, "message": self.message, **self.details}


_RESERVED = frozenset({"code", "message"})


def _fields(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class TransportError(ComfyUIError):
    """Base of the transport failures, raised when the server cannot be reached or speaks
    nonsense: the only fallback/retry trigger (raised itself only for unclassified socket errors)."""

    code = "transport"


class ConnectionFailedError(TransportError):
    """Raised when a connection cannot be opened: refused, DNS, TLS, or the WebSocket upgrade refused."""

    code = "connection"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None, *, url: str | None = None) -> None:
        super().__init__(message, {**(details or {}), **_fields(url=url)})


class ComfyUITimeoutError(ComfyUIError):
    """Base of the two timeouts (never raised itself): something took longer than allowed; ``phase`` says what."""

    code = "comfyui_timeout"

    @property
    def phase(self) -> str | None:
        return self._str("phase")


class TransportTimeoutError(ComfyUITimeoutError, TransportError):
    """Raised when a connect, handshake, idle or request timeout passes: a transport failure."""

    code = "transport_timeout"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        phase: TimeoutPhase | None = None,
        seconds: float | None = None,
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(phase=phase, seconds=seconds)})


class JobTimeoutError(ComfyUITimeoutError):
    """Raised when the job's own deadline passed (the ``timeout`` option or ``JOB_TIME_LIMIT``).
    Not a transport failure: never retried or fallen back on."""

    code = "timeout"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        prompt_id: str | None = None,
        seconds: float | None = None,
    ) -> None:
        merged = {**(details or {}), **_fields(prompt_id=prompt_id, seconds=seconds)}
        merged.setdefault("phase", "job")
        super().__init__(message, merged)


class ConnectionLostError(TransportError):
    """Raised when an established connection went away (close frame, reset, or silence past the idle limit)."""

    code = "connection_lost"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        close_code: int | None = None,
        reconnect_attempts: int | None = None,
    ) -> None:
        super().__init__(
            message,
            {**(details or {}), **_fields(close_code=close_code, reconnect_attempts=reconnect_attempts)},
        )

    @property
    def close_code(self) -> int | None:
        return self._int("close_code")


class ProtocolError(TransportError):
    """Raised when the server answers something that is not ComfyUI's protocol (non-JSON, wrong shape)."""

    code = "protocol"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None, *, excerpt: str | None = None) -> None:
        super().__init__(message, {**(details or {}), **_fields(excerpt=excerpt)})


class HTTPStatusError(ComfyUIError):
    """Raised when an HTTP answer has a status the call cannot use (404, 500 …)."""

    code = "http"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        status: int | None = None,
        url: str | None = None,
        body_excerpt: str | None = None,
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(status=status, url=url, body_excerpt=body_excerpt)})

    @property
    def status(self) -> int | None:
        return self._int("status")


class WorkflowValidationError(ComfyUIError):
    """Raised when the workflow is rejected before it ran (``POST /prompt`` 400, our own checks, or a bad task option)."""

    code = "validation"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        error_type: str | None = None,
        node_errors: Mapping[str, Any] | None = None,
    ) -> None:
        merged = {**(details or {}), **_fields(error_type=error_type)}
        if node_errors is not None:
            merged["node_errors"] = dict(node_errors)
        merged.setdefault("node_errors", {})
        super().__init__(message, merged)

    @property
    def node_errors(self) -> dict[str, Any]:
        value = self.details.get("node_errors")
        return value if isinstance(value, dict) else {}

    @property
    def error_type(self) -> str | None:
        return self._str("error_type")


class ExecutionError(ComfyUIError):
    """Raised when a node raised while the prompt ran (``execution_error``)."""

    code = "execution"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        prompt_id: str | None = None,
        node_id: str | None = None,
        node_type: str | None = None,
        exception_type: str | None = None,
        exception_message: str | None = None,
        traceback: list[str] | None = None,
    ) -> None:
        super().__init__(
            message,
            {
                **(details or {}),
                **_fields(
                    prompt_id=prompt_id,
                    node_id=node_id,
                    node_type=node_type,
                    exception_type=exception_type,
                    exception_message=exception_message,
                    traceback=traceback,
                ),
            },
        )

    @classmethod
    def from_event(cls, event: ExecutionErrorData) -> ExecutionError:
        """The error an ``execution_error`` message (or its history copy) stands for."""
        return cls(
            f"{event.node_type} (node {event.node_id}) failed: {event.exception_type}: {event.exception_message.strip()}",
            prompt_id=event.prompt_id,
            node_id=event.node_id,
            node_type=event.node_type,
            exception_type=event.exception_type,
            exception_message=event.exception_message,
            traceback=list(event.traceback),
        )

    @property
    def node_id(self) -> str | None:
        return self._str("node_id")

    @property
    def node_type(self) -> str | None:
        return self._str("node_type")

    @property
    def exception_type(self) -> str | None:
        return self._str("exception_type")

    @property
    def traceback(self) -> list[str]:
        value = self.details.get("traceback")
        return [str(v) for v in value] if isinstance(value, list) else []


class PromptInterruptedError(ComfyUIError):
    """Raised when the prompt was stopped by ``POST /interrupt`` (by us or by someone else)."""

    code = "interrupted"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | None = None,
        *,
        prompt_id: str | None = None,
        node_id: str | None = None,
        node_type: str | None = None,
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(prompt_id=prompt_id, node_id=node_id, node_type=node_type)})

    @classmethod
    def from_event(cls, event: ExecutionInterruptedData) -> PromptInterruptedError:
        return cls(
            f"prompt {event.prompt_id} was interrupted at node {event.node_id} ({event.node_type})",
            prompt_id=event.prompt_id,
            node_id=event.node_id,
            node_type=event.node_type,
        )


class JobCancelledError(ComfyUIError):
    """Raised when we were asked to stop waiting (revoke, shutdown); the prompt was deleted or interrupted."""

    code = "cancelled"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None, *, prompt_id: str | None = None) -> None:
        super().__init__(message, {**(details or {}), **_fields(prompt_id=prompt_id)})


class PromptNotFoundError(ComfyUIError):
    """Raised when the prompt is in neither the queue nor the history (deleted, or the server restarted)."""

    code = "prompt_lost"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None, *, prompt_id: str | None = None) -> None:
        super().__init__(message, {**(details or {}), **_fields(prompt_id=prompt_id)})


#: Every concrete class, for tests and for documentation tables.
ALL_ERRORS: tuple[type[ComfyUIError], ...] = (
    ComfyUIError,
    TransportError,
    ConnectionFailedError,
    TransportTimeoutError,
    JobTimeoutError,
    ConnectionLostError,
    ProtocolError,
    HTTPStatusError,
    WorkflowValidationError,
    ExecutionError,
    PromptInterruptedError,
    JobCancelledError,
    PromptNotFoundError,
)


class StorageError(ComfyUIError):
    """Raised when a finished prompt's outputs could not be moved into the output store.

    The prompt itself succeeded and its history entry is the source, so this is retried with
    backoff by streaming again, never by resubmitting the prompt. Not a :class:`TransportError`:
    it must never trigger a pod fallback or a resubmission.
    """

    code = "storage"

    def __init__(
        self, message: str, details: Mapping[str, Any] | None = None, *, key: str | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(key=key, retryable=retryable)})

    @property
    def retryable(self) -> bool:
        return self.details.get("retryable") is not False


__all__ += ["StorageError"]
ALL_ERRORS = (*ALL_ERRORS, StorageError)


# ---------------------------------------------------------------- hostile or broken servers (issue 15)


class RedirectRefusedError(ConnectionFailedError):
    """Raised when the WebSocket upgrade answers a redirect (30x): it is not followed, so the
    credentials sent with the upgrade never reach the host the ``Location`` names."""

    code = "redirect_refused"

    def __init__(
        self, message: str, details: Mapping[str, Any] | None = None, *, status: int | None = None, location: str | None = None
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(status=status, location=location)})


class ResponseTooLargeError(ProtocolError):
    """Raised when a server sends more than a cap allows (a REST body, a WebSocket frame), as soon
    as the cap is passed: the rest is never read."""

    code = "too_large"

    def __init__(
        self, message: str, details: Mapping[str, Any] | None = None, *, limit: int | None = None, what: str | None = None
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(limit=limit, what=what)})


class ResultTooLargeError(ComfyUIError):
    """Raised when a finished prompt's result is beyond what a job may return (too many output
    files, or a result too large for the result backend). Not a transport failure: the same
    history would give the same result again, so it is never retried."""

    code = "result_too_large"

    def __init__(
        self, message: str, details: Mapping[str, Any] | None = None, *, limit: int | None = None, what: str | None = None
    ) -> None:
        super().__init__(message, {**(details or {}), **_fields(limit=limit, what=what)})


class OutputSaveError(ComfyUIError):
    """Raised by ``save_outputs`` after it tried every file, when some could not be saved
    (a download failed or timed out, a name is unusable); ``failures`` says which and why."""

    code = "output_save"

    def __init__(self, message: str, details: Mapping[str, Any] | None = None, *, failures: list[dict[str, str]] | None = None) -> None:
        super().__init__(message, {**(details or {}), **_fields(failures=failures)})

    @property
    def failures(self) -> list[dict[str, Any]]:
        value = self.details.get("failures")
        return [f for f in value if isinstance(f, dict)] if isinstance(value, list) else []


ALL_ERRORS = (*ALL_ERRORS, RedirectRefusedError, ResponseTooLargeError, ResultTooLargeError, OutputSaveError)
