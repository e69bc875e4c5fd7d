"""Server URLs: validation, the WebSocket URL, and redaction for logs.

A pod is often reached through an HTTPS proxy with a path prefix and a credential (a bearer
header, or a ``token`` query parameter). Both REST and WebSocket URLs keep the prefix; nothing
that is logged, stored or sent to analytics carries the credential. A server URL is parsed once
(:meth:`ServerURL.parse`, in the settings) and carried as a :class:`ServerURL` from there to the
clients; :attr:`ServerURL.redacted` is its only printable form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

__all__ = ["ServerURL", "redact_url"]

_SECRET_PARAMS = re.compile(r"(token|key|secret|password|auth|signature|sig)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` without user info and with secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    netloc = parts.hostname or ""
    try:
        port = parts.port
    except ValueError:  # "h:99999" parses; only .port refuses it: shown without the port
        port = None
    if port is not None:
        netloc = f"{netloc}:{port}"
    if parts.username or parts.password:
        netloc = f"***@{netloc}"
    pairs = [(k, "***" if _SECRET_PARAMS.search(k) else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    query = urlencode(pairs, safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


@dataclass(frozen=True)
class ServerURL:
    """A validated ComfyUI base URL such as ``https://pod-8188.proxy.example/prefix``."""

    scheme: str
    netloc: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> ServerURL:
        """Raise ValueError (naming the problem, never the credential) for anything unusable."""
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"invalid ComfyUI server URL {redact_url(url)!r}: {exc}") from None
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"ComfyUI server URL must start with http:// or https://, got {redact_url(url)!r}")
        if not parts.hostname:
            raise ValueError(f"ComfyUI server URL has no host: {redact_url(url)!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"ComfyUI server URL must not carry a query or fragment: {redact_url(url)!r}")
        if parts.username or parts.password:
            raise ValueError("put credentials in the auth settings, not in the ComfyUI server URL")
        netloc = parts.hostname if port is None else f"{parts.hostname}:{port}"
        if ":" in parts.hostname:  # IPv6 literal
            netloc = f"[{parts.hostname}]" + ("" if port is None else f":{port}")
        return cls(parts.scheme, netloc, parts.path.rstrip("/"))

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.prefix}"

    @property
    def redacted(self) -> str:
        """The form that is logged, returned and sent to analytics: the one place a server URL is
        redacted (parsing already refuses user info and queries; this stays safe if that changes)."""
        return redact_url(self.base)

    def http(self, path: str) -> str:
        return f"{self.base}/{path.lstrip('/')}"

    def websocket(self, client_id: str, token: str | None = None, token_param: str = "token") -> str:
        scheme = "wss" if self.scheme == "https" else "ws"
        query = f"clientId={quote(client_id, safe='')}"
        if token is not None:
            query += f"&{quote(token_param)}={quote(token, safe='')}"
        return f"{scheme}://{self.netloc}{self.prefix}/ws?{query}"

    def __str__(self) -> str:
        return self.base
