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

The classes live in one module per family (``base``, ``transport``, ``timeouts``,
``rejections``, ``prompt``, ``outputs``; the retry rule :func:`is_transient` in ``transient``);
import them from here, the one public place. Each
class's ``__module__`` is this package, so Celery stores ``exc_module`` =
``worker.comfyui.errors`` and pickles name ``worker.comfyui.errors.<Class>``: results stored
before the split, and backends that switch on that name, keep working.
"""

from __future__ import annotations

from worker.comfyui.errors.base import ComfyUIError
from worker.comfyui.errors.outputs import OutputSaveError, ResultTooLargeError, StorageError
from worker.comfyui.errors.prompt import ExecutionError, JobCancelledError, PromptInterruptedError, PromptNotFoundError
from worker.comfyui.errors.rejections import HTTPStatusError, WorkflowValidationError
from worker.comfyui.errors.timeouts import ComfyUITimeoutError, JobTimeoutError, TimeoutPhase, TransportTimeoutError
from worker.comfyui.errors.transient import TRANSIENT_STATUSES, is_transient
from worker.comfyui.errors.transport import (
    ConnectionFailedError,
    ConnectionLostError,
    ProtocolError,
    RedirectRefusedError,
    ResponseTooLargeError,
    TransportError,
)

__all__ = [
    "ALL_ERRORS",
    "TRANSIENT_STATUSES",
    "ComfyUIError",
    "ComfyUITimeoutError",
    "ConnectionFailedError",
    "ConnectionLostError",
    "ExecutionError",
    "HTTPStatusError",
    "JobCancelledError",
    "JobTimeoutError",
    "OutputSaveError",
    "PromptInterruptedError",
    "PromptNotFoundError",
    "ProtocolError",
    "RedirectRefusedError",
    "ResponseTooLargeError",
    "ResultTooLargeError",
    "StorageError",
    "TimeoutPhase",
    "TransportError",
    "TransportTimeoutError",
    "WorkflowValidationError",
    "is_transient",
]

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
    StorageError,
    RedirectRefusedError,
    ResponseTooLargeError,
    ResultTooLargeError,
    OutputSaveError,
)

# the public name of every class is this package (see the docstring): stored results name it
for _cls in (*ALL_ERRORS, ComfyUITimeoutError):
    _cls.__module__ = __name__
del _cls
