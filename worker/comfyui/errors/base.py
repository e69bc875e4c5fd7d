"""The base of the tree, :class:`ComfyUIError`: how every error keeps its state in ``args``.

Apart so that each family of errors imports the one rule it builds on (``args == (message,
fields)``, which survives pickle and Celery's JSON results) and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


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
