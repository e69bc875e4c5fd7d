"""What is worth another attempt before a prompt was accepted: the task's one retry rule."""

from __future__ import annotations

from worker.comfyui.errors.rejections import HTTPStatusError
from worker.comfyui.errors.transport import RedirectRefusedError, ResponseTooLargeError, TransportError

__all__ = ["TRANSIENT_STATUSES", "is_transient"]

#: statuses a server or proxy sends when it may well answer later (overloaded, restarting)
TRANSIENT_STATUSES = frozenset({408, 425, 429})


def is_transient(error: BaseException) -> bool:
    """The one rule for what is worth another attempt before a prompt was accepted.

    A transport failure, a 5xx, or a 408/425/429: the pod or a proxy in front of it may answer
    later, and since the prompt id is ours, a later attempt looks it up before submitting (so a
    5xx on ``POST /prompt`` that did queue the prompt is not sent twice). A 4xx, a validation or
    an execution error would fail the same way again, and so would a refused redirect or an
    answer over a size cap, though both are transport errors (they may still make the pod client
    fall back)."""
    if isinstance(error, RedirectRefusedError | ResponseTooLargeError):
        return False
    if isinstance(error, TransportError):
        return True
    if isinstance(error, HTTPStatusError):
        status = error.status
        return status is not None and (status >= 500 or status in TRANSIENT_STATUSES)
    return False
