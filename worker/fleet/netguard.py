"""Address rules for URLs the fleet connects to on a caller's behalf (webhooks, input URLs).

A task argument naming a URL lets whoever enqueues a job make the worker open a connection: to
the cloud's metadata service (169.254.169.254), the broker on 127.0.0.1, a pod's private
address. So the host is resolved here, *every* address it resolves to is checked, and the
caller then connects to the checked address itself (:attr:`CheckedURL.address`), never to the
name again: a DNS answer that changes between the check and the connect (rebinding) cannot
slip a private address in. Private, loopback, link-local, multicast and reserved addresses are
refused unless an allow-list names their network; only http and https are accepted.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["AddressGuard", "BlockedAddressError", "CheckedURL"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
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


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return _public(address.ipv4_mapped)
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


class AddressGuard:
    """Checks URLs against the address rules; ``allow`` lists networks accepted anyway
    (e.g. ``127.0.0.1/32`` for a receiver on the same machine, ``10.0.0.0/8`` for a VPC)."""

    def __init__(self, allow: Iterable[str] = (), *, resolver: Resolver | None = None) -> None:
        self.allow: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(item.strip(), strict=False) for item in allow if item.strip())
        self._resolve = resolver or _system_resolver

    @classmethod
    def from_setting(cls, raw: str) -> AddressGuard:
        """``raw``: comma-separated networks or addresses (``127.0.0.1,10.0.0.0/8``)."""
        return cls(raw.split(","))

    def allowed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # an IPv6 zone id is not part of the address
        return _public(ip) or any(ip in network for network in self.allow)

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
            addresses = list(dict.fromkeys(self._resolve(host, port)))
        except (OSError, UnicodeError):
            raise BlockedAddressError(f"host {host!r} does not resolve") from None
        if not addresses:
            raise BlockedAddressError(f"host {host!r} does not resolve")
        refused = [address for address in addresses if not self.allowed(address)]
        if refused:
            raise BlockedAddressError(f"host {host!r} resolves to {refused[0]}, a non-public address that is not allowed")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return CheckedURL(parts.scheme, host, port, path, addresses[0])
