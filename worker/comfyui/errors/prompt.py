"""What became of a submitted prompt when it did not succeed: failed, interrupted, cancelled, lost.

Apart because these are built from the prompt's own events (``execution_error``,
``execution_interrupted``) or from its absence in queue and history, not from a connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from worker.comfyui.errors.base import ComfyUIError, _fields

if TYPE_CHECKING:
    from worker.comfyui.protocol import ExecutionErrorData, ExecutionInterruptedData


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
