"""``TaskOptions``: what a caller may choose per job, parsed and checked at the task's door.

Credentials are settings, never task arguments: Flower and the result backend show arguments,
so an option whose name looks like a credential or a URL is refused. A new per-job option
(media inputs, a webhook name, …) is added here, as a typed field, with its check in ``parse``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.web_options import WebOptions
from worker.comfyui.errors import WorkflowValidationError
from worker.fleet.job_types import JOB_TYPES

__all__ = ["TaskOptions"]

_FORBIDDEN_OPTION_HINTS = ("key", "token", "secret", "password", "auth", "header", "url", "credential")
_KNOWN = frozenset({"pod", "job_type", "timeout"})


def _refuse_credentials(options: Mapping[str, Any]) -> None:
    for key in options:
        if any(hint in str(key).lower() for hint in _FORBIDDEN_OPTION_HINTS):
            raise WorkflowValidationError(f"option {key!r} is not accepted: credentials and URLs are worker settings, not task arguments")
    unknown = set(options) - _KNOWN
    if unknown:
        raise WorkflowValidationError(f"unknown options: {', '.join(sorted(map(str, unknown)))}")


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1e7:  # NaN fails too
        raise WorkflowValidationError("timeout must be a positive, finite number of seconds (at most 1e7)")
    return float(value)


@dataclass(frozen=True)
class TaskOptions:
    """What a caller may choose per job (README: ``options``)."""

    pod: str | None = None
    job_type: str = "image_generation"
    timeout: float | None = None
    #: ``webhook_url``, ``webhook_progress``, ``previews`` (:mod:`tasks.web_options`)
    web: WebOptions = field(default_factory=WebOptions)

    @classmethod
    def parse(cls, options: Mapping[str, Any] | None) -> TaskOptions:
        if options is not None and not isinstance(options, Mapping):
            raise WorkflowValidationError(f"options must be an object, not {type(options).__name__}", error_type="bad_arguments")
        options = dict(options or {})
        web = WebOptions.parse(options)  # takes webhook_url & co out: the one URL accepted, checked by the address rules
        _refuse_credentials(options)
        job_type = options.get("job_type", "image_generation")
        if job_type not in JOB_TYPES:
            raise WorkflowValidationError(f"job_type must be one of {', '.join(JOB_TYPES)}, got {job_type!r}")
        pod = options.get("pod")
        if pod is not None and not isinstance(pod, str):
            raise WorkflowValidationError("pod must be a pod name")
        return cls(pod, job_type, _timeout(options.get("timeout")), web)
