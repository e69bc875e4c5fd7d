"""Address rules for a webhook URL: the input URLs' rules (:mod:`worker.fleet.media.fetch`).

A task argument naming a URL lets whoever enqueues a job make the worker open a connection: to
the cloud's metadata service (169.254.169.254), the broker on 127.0.0.1, a pod's private
address. So the host is resolved, *every* address it resolves to is checked by the very rule
input URLs go through (:class:`worker.fleet.media.fetch.AddressGuard`: not loopback,
link-local, private, shared, reserved or multicast unless the allow-list names the host or a
network), and the caller then connects to the checked address itself
(:attr:`CheckedURL.address`), never to the name again: a DNS answer that changes between the
check and the connect (rebinding) cannot slip a private address in. Only http and https URLs
without credentials are accepted.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from worker.comfyui.errors import WorkflowValidationError
from worker.fleet.media.fetch import AddressGuard as InputAddressGuard

__all__ = ["AddressGuard", "BlockedAddressError", "CheckedURL"]

Resolver = Callable[[str, int], Sequence[str]]


class BlockedAddressError(ValueError):
    """A URL is malformed, uses another scheme, or resolves to an address the rules refuse.

    The message names the host, never the URL's path or query (they may carry tokens)."""


@dataclass(frozen=True)
class CheckedURL:
    """A URL whose host resolved to ``address``, which passed the rules: connect there."""

    scheme: str
    host: str
    port: int
    path: str  # path + query, as sent in the request line
    address: str


def _system_resolver(host: str, port: int) -> Sequence[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressGuard:
    """Checks URLs against the address rules; ``allow`` lists hosts or networks accepted anyway
    (e.g. ``127.0.0.1/32`` for a receiver on the same machine, ``10.0.0.0/8`` for a VPC)."""

    def __init__(self, allow: Iterable[str] = (), *, resolver: Resolver | None = None) -> None:
        self.allow = tuple(item.strip() for item in allow if item.strip())
        resolve = resolver or _system_resolver
        self._rule = InputAddressGuard(self.allow, lambda host, port: list(resolve(host, port)))

    @classmethod
    def from_setting(cls, raw: str) -> AddressGuard:
        """``raw``: comma-separated networks or addresses (``127.0.0.1,10.0.0.0/8``)."""
        return cls(raw.split(","))

    def check(self, url: str) -> CheckedURL:
        """Parse ``url``, resolve its host and check every address; raise :class:`BlockedAddressError`."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise BlockedAddressError("not a valid URL") from None
        if parts.scheme not in ("http", "https"):
            raise BlockedAddressError(f"scheme {parts.scheme or '(none)'!r} is not accepted: http or https only")
        host = parts.hostname
        if not host:
            raise BlockedAddressError("the URL names no host")
        if parts.username or parts.password:
            raise BlockedAddressError("credentials in the URL are not accepted")
        port = port or (443 if parts.scheme == "https" else 80)
        try:
            address = self._rule.check(host, port)
        except WorkflowValidationError as exc:
            if exc.details.get("error_type") == "input_unreachable":
                raise BlockedAddressError(f"host {host!r} does not resolve") from None
            raise BlockedAddressError(f"host {host!r} resolves to a non-public address that is not allowed") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return CheckedURL(parts.scheme, host, port, path, address)
