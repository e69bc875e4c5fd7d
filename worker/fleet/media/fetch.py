"""Fetching an input URL from a task argument without becoming a proxy into the private network.

A task argument is written by whoever can reach the web backend, and the worker sits next to
the pods, the broker and the cloud's metadata service. So before connecting, the host name is
resolved and *every* address it resolves to must be public (not loopback, link-local, private,
shared, reserved or multicast) unless the allow-list names the host or a network containing
the address; the connection then goes to the address that was checked (no second resolution a
DNS rebinding could change), with the original name in ``Host`` and for TLS (SNI and the
certificate check). Redirects are followed by hand, a few at most, each hop checked again.
Connect and read timeouts apply (the connect timeout to name resolution too), an overall
deadline and a cancel event bound the whole fetch (checked between socket reads),
and the size cap is enforced while reading, whatever ``Content-Length`` claims.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import urllib3

from worker.comfyui.errors import JobCancelledError, WorkflowValidationError

__all__ = ["AddressGuard", "FetchSettings", "URLFetcher", "public_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def public_url(url: str) -> str:
    """The URL as it may appear in an error: no credentials, no query (a presigned signature)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed "[" of an IPv6 host: nothing of it is shown
        return "(malformed URL)"
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a port out of range: shown as absent
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _invalid(message: str, error_type: str) -> WorkflowValidationError:
    return WorkflowValidationError(message, error_type=error_type)


@dataclass(frozen=True)
class AddressGuard:
    """Which addresses an input URL may reach; ``allow`` holds host names, addresses and networks."""

    allow: tuple[str, ...] = ()
    resolver: Resolver = field(default=_resolve, compare=False)

    def _networks(self) -> list[IPNetwork]:
        networks: list[IPNetwork] = []
        for entry in self.allow:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                continue  # a host name
        return networks

    def _host_allowed(self, host: str) -> bool:
        names = {entry.lower().rstrip(".") for entry in self.allow}
        return host.lower().rstrip(".") in names

    @staticmethod
    def _forbidden(address: IPAddress) -> bool:
        if isinstance(address, ipaddress.IPv6Address):
            if address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            elif address.is_site_local:  # fec0::/10: deprecated, not "private" to Python, but internal
                return True
            elif address.sixtofour is not None and AddressGuard._forbidden(address.sixtofour):
                return True  # 2002:7f00:1:: is 6to4 for 127.0.0.1: Python calls it global
        return not address.is_global or address.is_multicast or address.is_reserved

    def check(self, host: str, port: int) -> str:
        """The address to connect to; refuses (validation error) when any address is forbidden."""
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self.resolver(host, port)]
        except (OSError, UnicodeError, ValueError) as exc:
            raise _invalid(f"input URL host {host!r} does not resolve ({exc.__class__.__name__})", "input_unreachable") from None
        if not addresses:
            raise _invalid(f"input URL host {host!r} does not resolve", "input_unreachable")
        if not self._host_allowed(host):
            networks = self._networks()
            for address in addresses:
                if self._forbidden(address) and not any(address in net for net in networks):
                    raise _invalid(
                        f"input URL host {host!r} resolves to {address}, a loopback, private or link-local address "
                        "the worker refuses to fetch from (INPUT_URL_ALLOW lists the exceptions)",
                        "input_forbidden_address",
                    )
        return str(addresses[0])


@dataclass(frozen=True)
class FetchSettings:
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    #: the whole fetch, redirects included
    total_timeout: float = 120.0
    max_bytes: int = 50 * 1024 * 1024
    max_redirects: int = 3
    #: a CA bundle for HTTPS (None: the system's)
    ca_file: str | None = None


class URLFetcher:
    """``GET`` an http(s) URL into memory (bounded by ``max_bytes``), through :class:`AddressGuard`."""

    def __init__(
        self, guard: AddressGuard, settings: FetchSettings | None = None, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self.guard = guard
        self.settings = settings or FetchSettings()
        self._monotonic = monotonic

    def _pool(self, scheme: str, host: str, address: str, port: int) -> urllib3.HTTPConnectionPool:
        timeout = urllib3.Timeout(connect=self.settings.connect_timeout, read=self.settings.read_timeout)
        if scheme == "https":
            context = ssl.create_default_context(cafile=self.settings.ca_file)
            return urllib3.HTTPSConnectionPool(
                address, port, timeout=timeout, retries=False, maxsize=1, ssl_context=context, server_hostname=host, assert_hostname=host
            )
        return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False, maxsize=1)

    def _checked_address(self, host: str, port: int, deadline: float, cancel: threading.Event | None) -> str:
        """:meth:`AddressGuard.check` within ``connect_timeout`` (and the deadline, and the cancel).

        ``getaddrinfo`` takes no timeout and a slow resolver holds it for the system's retries;
        it runs on a daemon thread that is left to finish on its own when we stop waiting."""
        answer: list[str | BaseException] = []
        done = threading.Event()

        def resolve() -> None:
            try:
                answer.append(self.guard.check(host, port))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread as is
                answer.append(exc)
            done.set()

        threading.Thread(target=resolve, name="media-resolve", daemon=True).start()
        give_up = min(self._monotonic() + self.settings.connect_timeout, deadline)
        while not done.wait(max(0.0, min(0.05, give_up - self._monotonic()))):
            if cancel is not None and cancel.is_set():
                raise JobCancelledError(f"resolving {host} was cancelled")
            if self._monotonic() >= give_up:
                raise _invalid(f"input URL host {host!r} did not resolve within {self.settings.connect_timeout:g} s", "input_unreachable")
        if isinstance(answer[0], BaseException):
            raise answer[0]
        return answer[0]

    def _open(
        self, url: str, deadline: float, cancel: threading.Event | None
    ) -> tuple[urllib3.BaseHTTPResponse, urllib3.HTTPConnectionPool]:
        try:
            parts = urlsplit(url)
        except ValueError:  # urlsplit refuses e.g. "http://[::1/x": ours to type, not a crash
            raise _invalid(f"input URL {public_url(url)!r} is malformed", "input_bad_url") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _invalid(f"input URL {public_url(url)!r} is not http(s)", "input_bad_url")
        if parts.username or parts.password:
            raise _invalid("input URLs may not carry credentials", "input_bad_url")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise _invalid(f"input URL {public_url(url)!r} has a bad port", "input_bad_url") from None
        address = self._checked_address(parts.hostname, port, deadline, cancel)
        pool = self._pool(parts.scheme, parts.hostname, address, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default_port = (parts.scheme == "https" and port == 443) or (parts.scheme == "http" and port == 80)
        host_header = parts.hostname if default_port else f"{parts.hostname}:{port}"
        if ":" in parts.hostname:
            host_header = f"[{parts.hostname}]" + ("" if default_port else f":{port}")
        headers = {"Host": host_header, "Accept": "*/*", "User-Agent": "comfy-celery-media/1"}
        try:
            response = pool.urlopen("GET", target, headers=headers, redirect=False, preload_content=False, assert_same_host=False)
        except urllib3.exceptions.HTTPError as exc:
            pool.close()
            raise _invalid(f"input URL {public_url(url)!r} did not answer: {exc.__class__.__name__}", "input_unreachable") from None
        return response, pool

    def fetch(self, url: str, *, cancel: threading.Event | None = None) -> bytes:
        """The body of ``url``; every failure is a validation error naming the URL (without its query)."""
        deadline = self._monotonic() + self.settings.total_timeout
        for _ in range(self.settings.max_redirects + 1):
            self._check(url, deadline, cancel)  # a slow redirect chain is bounded too
            response, pool = self._open(url, deadline, cancel)
            try:
                if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    url = _follow(url, response.headers["Location"])
                    continue
                if response.status != 200:
                    raise _invalid(f"input URL {public_url(url)!r} answered HTTP {response.status}", "input_unreachable")
                return self._read(response, url, deadline, cancel)
            finally:
                response.release_conn()
                pool.close()
        raise _invalid(f"input URL {public_url(url)!r}: more than {self.settings.max_redirects} redirects", "input_unreachable")

    def _check(self, url: str, deadline: float, cancel: threading.Event | None) -> None:
        if cancel is not None and cancel.is_set():
            raise JobCancelledError(f"fetching {public_url(url)} was cancelled")
        if self._monotonic() > deadline:
            raise _invalid(f"input URL {public_url(url)!r} took longer than {self.settings.total_timeout:g} s", "input_unreachable")

    def _read(self, response: Any, url: str, deadline: float, cancel: threading.Event | None) -> bytes:
        limit = self.settings.max_bytes
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _invalid(f"input URL {public_url(url)!r} is {declared} bytes, over the {limit} allowed", "input_too_large")
        body = bytearray()
        try:
            for chunk in _chunks(response):
                self._check(url, deadline, cancel)
                body += chunk
                if len(body) > limit:
                    raise _invalid(f"input URL {public_url(url)!r} sent more than the {limit} bytes allowed", "input_too_large")
        except urllib3.exceptions.HTTPError as exc:
            raise _invalid(f"input URL {public_url(url)!r} failed mid-body: {exc.__class__.__name__}", "input_unreachable") from None
        return bytes(body)


def _follow(url: str, location: str) -> str:
    try:
        return urljoin(url, location)
    except ValueError:  # a malformed Location from a hostile server
        raise _invalid(f"input URL {public_url(url)!r} redirected to a malformed URL", "input_unreachable") from None


def _chunks(response: Any, size: int = 1 << 16) -> Iterable[bytes]:
    """What each socket read brings (``read1``), not full chunks: ``read(size)`` blocks until
    ``size`` bytes came, so a server dripping a byte per read timeout would hold a 64 KiB read
    (and the deadline and cancel checks between reads) for hours."""
    while True:
        chunk = response.read1(size)
        if not chunk:
            return
        yield chunk
