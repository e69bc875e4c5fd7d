"""Configured secrets out of every excerpt of what a server sent.

Why: a proxy or a broken server may echo the request back (``Authorization: Bearer …`` in a
500 page). The first bytes of an error body are kept in the error, and from there they reach
the result backend, the log, the ``task-failed`` event, Flower and ``status`` output. Every
excerpt is therefore cut from a little *more* than its length, redacted, then cut: a secret that
straddles the cut cannot leave half of itself behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import quote

__all__ = ["SENSITIVE_HEADERS", "Redactor"]

#: header names whose values are credentials
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "x-auth-token"})
_MIN_SECRET = 4  # shorter values would redact ordinary text
MASK = "***"


class Redactor:
    """Replaces each configured secret (and its URL-encoded form) by ``***``."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < _MIN_SECRET:
                continue
            forms.update({secret, quote(secret, safe=""), quote(secret)})
        self._secrets = sorted(forms, key=len, reverse=True)  # longest first: a secret containing another
        self.longest = max((len(s) for s in self._secrets), default=0)

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], *extra: str | None) -> Redactor:
        """Secrets of the sensitive headers (the whole value, and the credential after a scheme like ``Bearer``)."""
        values: list[str | None] = list(extra)
        for name, value in headers.items():
            if name.lower() in SENSITIVE_HEADERS:
                values.append(value)
                scheme, _, credential = value.partition(" ")
                if credential and scheme.isalpha():
                    values.append(credential.strip())
        return cls(values)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def excerpt(self, data: bytes | str, limit: int = 200) -> str:
        """At most ``limit`` characters of ``data``, without any secret, whole or cut."""
        span = limit + self.longest  # characters: a secret starting before ``limit`` ends inside
        text = data[: span * 4].decode("utf-8", "replace") if isinstance(data, bytes) else data  # UTF-8: up to 4 bytes a character
        return self(text[:span])[:limit]
