"""One request helper for every REST call: timeouts, headers, bounded retries, typed errors.

Library errors are translated here, at the boundary (as httpx does): callers only ever see the
:mod:`worker.comfyui.errors` hierarchy. Only idempotent requests are retried, and only on
connection failures, timeouts and 5xx; ``POST /prompt`` is never retried here.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import requests
from requests.adapters import ReadTimeoutError  # urllib3's, as requests itself imports it

from worker.comfyui.clock import Clock, SystemClock
from worker.comfyui.errors import (
    ConnectionFailedError,
    HTTPStatusError,
    JobCancelledError,
    ProtocolError,
    TransportError,
    TransportTimeoutError,
)
from worker.comfyui.urls import ServerURL, redact_url

__all__ = ["HTTPSettings", "HTTPTransport"]


@dataclass(frozen=True)
class HTTPSettings:
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    #: extra attempts for idempotent requests (connection errors, timeouts, 5xx)
    retries: int = 3
    retry_backoff: float = 0.5
    max_download_bytes: int = 512 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("HTTP timeouts must be > 0")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")


def _excerpt(content: bytes, limit: int = 200) -> str:
    return content[:limit].decode("utf-8", "replace")


class HTTPTransport:
    """A thread-safe wrapper around one ``requests.Session`` per thread."""

    def __init__(
        self,
        server: ServerURL,
        *,
        headers: Mapping[str, str] | None = None,
        settings: HTTPSettings | None = None,
        session_factory: Callable[[], requests.Session] = requests.Session,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.server = server
        self.settings = settings or HTTPSettings()
        self._headers = dict(headers or {})
        self._session_factory = session_factory
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self._clock = clock or SystemClock()
        self._log = logger or logging.getLogger(__name__)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._session_factory()
            session.headers.update(self._headers)
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        files: Mapping[str, Any] | None = None,
        data: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        timeout: tuple[float, float] | None = None,
        accept: tuple[int, ...] = (200,),
        cancel: threading.Event | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Send, retrying idempotent requests; return a response whose status is in ``accept``.

        With ``stream`` the body is left unread for :meth:`download`."""
        url = self.server.http(path)
        safe_url = redact_url(url)
        retry = method.upper() in ("GET", "HEAD") if idempotent is None else idempotent
        attempts = 1 + (self.settings.retries if retry else 0)
        timeout = timeout or (self.settings.connect_timeout, self.settings.read_timeout)
        last: TransportError | HTTPStatusError | None = None
        for attempt in range(1, attempts + 1):
            if attempt > 1 and self._clock.sleep(self.settings.retry_backoff * 2 ** (attempt - 2), cancel):
                break
            try:
                response = self._session().request(
                    method, url, json=json_body, params=params, files=files, data=data, timeout=timeout, stream=stream
                )
            except requests.RequestException as exc:
                last = _transport_error(exc, method, safe_url, timeout)
            else:
                if response.status_code in accept:
                    return response
                with response:  # a streamed error body is read no further than its excerpt
                    excerpt = _excerpt(next(response.iter_content(200), b"") if stream else response.content)
                error = HTTPStatusError(
                    f"{method} {safe_url} answered HTTP {response.status_code}",
                    status=response.status_code,
                    url=safe_url,
                    body_excerpt=excerpt,
                )
                if response.status_code < 500 or not retry:
                    raise error
                last = error
            if attempt < attempts:
                self._log.warning("comfyui %s %s failed (attempt %d/%d): %s", method, safe_url, attempt, attempts, last)
        assert last is not None  # the loop ran at least once, and only a failure gets here
        raise last

    def get_json(
        self,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        timeout: tuple[float, float] | None = None,
        cancel: threading.Event | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        return self.decode(self.request("GET", path, params=params, timeout=timeout, cancel=cancel, idempotent=idempotent))

    def download(
        self,
        path: str,
        sink: BinaryIO,
        *,
        params: Mapping[str, str] | None = None,
        limit: int,
        cancel: threading.Event | None = None,
        chunk_size: int = 1 << 16,
    ) -> int:
        """Stream a GET's body into ``sink`` chunk by chunk; return the byte count.

        Memory stays at one chunk whatever the size, the read timeout applies to every chunk, and
        ``limit`` is enforced while reading. A failure mid-body is translated like any other
        (a :class:`TransportError`); what was written to ``sink`` is then partial."""
        safe_url = redact_url(self.server.http(path))
        response = self.request("GET", path, params=params, stream=True, cancel=cancel)
        written = 0
        with response:
            try:
                for chunk in response.iter_content(chunk_size):
                    if cancel is not None and cancel.is_set():
                        raise JobCancelledError(f"GET {safe_url}: download cancelled")
                    written += len(chunk)
                    if written > limit:
                        raise ProtocolError(f"GET {safe_url} sent more than the {limit} bytes allowed")
                    sink.write(chunk)
            except requests.RequestException as exc:
                raise _transport_error(exc, "GET", safe_url, (self.settings.connect_timeout, self.settings.read_timeout)) from None
        return written

    def decode(self, response: requests.Response) -> Any:
        """JSON through the standard library: it accepts the NaN tokens ComfyUI may send (§5)."""
        try:
            return json.loads(response.content)
        except (ValueError, RecursionError):
            raise ProtocolError(
                f"{response.request.method} {redact_url(response.url)} did not answer JSON", excerpt=_excerpt(response.content)
            ) from None


def _transport_error(exc: requests.RequestException, method: str, safe_url: str, timeout: tuple[float, float]) -> TransportError:
    """The typed error for a ``requests`` failure, while sending or while streaming a body."""
    if isinstance(exc, requests.ConnectTimeout):
        return TransportTimeoutError(f"{method} {safe_url}: no connection within {timeout[0]:g} s", phase="connect", seconds=timeout[0])
    # a read timeout while streaming a body arrives as a ConnectionError around urllib3's ReadTimeoutError
    if isinstance(exc, requests.ReadTimeout) or isinstance(exc.args[0] if exc.args else None, ReadTimeoutError):
        return TransportTimeoutError(f"{method} {safe_url}: no data within {timeout[1]:g} s", phase="request", seconds=timeout[1])
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return ConnectionFailedError(f"{method} {safe_url}: {_root_cause(exc)}", url=safe_url)
    return ConnectionFailedError(f"{method} {safe_url}: {exc.__class__.__name__}", url=safe_url)


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
