"""ComfyUI's Host/Origin check (protocol §2.4), which refuses a browser page on another origin
talking to a server on a loopback address.

Apart from the server because it is a pure rule on two header values, with its own edge cases
(ports missing on one side, non-loopback hosts never checked).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["is_loopback", "origin_mismatch"]


def is_loopback(hostname: str | None) -> bool:
    if not hostname:
        return False
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def origin_mismatch(host: str | None, origin: str | None) -> bool:
    """ComfyUI's Host/Origin check (protocol §2.4): only for loopback hosts; a port missing on
    either side is dropped from the other before comparing."""
    if host is None or origin is None:
        return False
    parsed_origin = urlsplit(origin)
    parsed_host = urlsplit("//" + host.lower())
    if not is_loopback(parsed_host.hostname):
        return False
    host_part: str | None = host.lower()
    origin_part: str | None = parsed_origin.netloc.lower()
    if parsed_origin.port is None:
        host_part = parsed_host.hostname
    if parsed_host.port is None:
        origin_part = parsed_origin.hostname
    if not host_part or not origin_part:
        return False
    return host_part != origin_part
