"""One request helper for every REST call: timeouts, headers, bounded retries, typed errors.

Library errors are translated here, at the boundary (as httpx does): callers only ever see the
:mod:`worker.comfyui.errors` hierarchy. Only idempotent requests are retried, and only on
connection failures, timeouts and 5xx; ``POST /prompt`` is never retried here.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import resource
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import requests
from requests.adapters import HTTPAdapter, ReadTimeoutError  # urllib3's, as requests itself imports it

from worker.comfyui.clock import Clock, SystemClock
from worker.comfyui.errors import (
    ConnectionFailedError,
    HTTPStatusError,
    JobCancelledError,
    ProtocolError,
    ResponseTooLargeError,
    TransportError,
    TransportTimeoutError,
)
from worker.comfyui.redact import Redactor
from worker.comfyui.urls import ServerURL, redact_url
from worker.comfyui.watchdog import watchdog

__all__ = ["HTTPSettings", "HTTPTransport"]


@dataclass(frozen=True)
class HTTPSettings:
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    #: extra attempts for idempotent requests (connection errors, timeouts, 5xx)
    retries: int = 3
    retry_backoff: float = 0.5
    max_download_bytes: int = 512 * 1024 * 1024
    #: every other response body (``/history`` with a million outputs was 217 MB), enforced while reading
    max_response_bytes: int = 32 * 1024 * 1024
    #: one download from first byte to last (a ``/view`` trickling a byte a second never ended)
    download_timeout: float = 600.0
    #: requests in flight at once to this server from this process (each holds one connection);
    #: also the most connections kept open between requests
    max_connections: int = 2

    def __post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ValueError("HTTP timeouts must be > 0")
        if self.retries < 0:
            raise ValueError("retries must be >= 0")
        if self.max_response_bytes <= 0 or self.max_download_bytes <= 0 or not self.download_timeout > 0:
            raise ValueError("HTTP size caps and the download timeout must be > 0")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")


class HTTPTransport:
    """One ``requests.Session`` per server, shared by every thread and greenlet of the process.

    A session per thread piled up: under gevent every job was a new greenlet, so every job
    added a session and its connection, never pruned (380 sockets after 300 jobs). Here the
    connections to one server are bounded whatever the pool: at most ``max_connections``
    requests are in flight at once (a caller waits for a slot within its connect timeout, and
    its cancel event), and urllib3 keeps at most that many open between requests. A streamed
    download (minutes for a video) gets a connection of its own instead, closed with it."""

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
        self._session_obj: requests.Session | None = None
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.settings.max_connections)
        self._clock = clock or SystemClock()
        self._log = logger or logging.getLogger(__name__)
        #: the configured credentials, kept out of every excerpt of a body (a server may echo them)
        self.redact = Redactor.from_headers(self._headers)

    def _session(self) -> requests.Session:
        with self._lock:
            if self._session_obj is None:
                session = self._session_factory()
                session.headers.update(self._headers)
                # never more pooled connections than requests we let run at once: urllib3 then
                # neither discards connections nor logs "pool is full" (a fake session has no adapters)
                if isinstance(session, requests.Session):
                    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=self.settings.max_connections)
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                self._session_obj = session
            return self._session_obj

    def close(self) -> None:
        with self._lock:
            session, self._session_obj = self._session_obj, None
        if session is not None:
            session.close()

    def _checkout(
        self, method: str, safe_url: str, wait: float, cancel: threading.Event | None, stream: bool
    ) -> tuple[requests.Session, Callable[[], None]]:
        """A session for one request and what to call once its body is read: a slot of the
        shared session, or (``stream``) a session of its own, closed with its response."""
        if stream:
            session = self._session_factory()
            session.headers.update(self._headers)
            return session, session.close
        deadline = self._clock.monotonic() + wait
        while not self._slots.acquire(timeout=min(0.05, max(0.0, deadline - self._clock.monotonic()))):
            if cancel is not None and cancel.is_set():
                raise JobCancelledError(f"{method} {safe_url}: cancelled while waiting for a connection")
            if self._clock.monotonic() >= deadline:
                raise TransportTimeoutError(
                    f"{method} {safe_url}: no free connection within {wait:g} s ({self.settings.max_connections} in use)",
                    phase="connect",
                    seconds=wait,
                )
        return self._session(), self._slots.release

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

        With ``stream`` the body is left unread for :meth:`download`; otherwise it is read here,
        at most ``max_response_bytes`` (:class:`ResponseTooLargeError` past that, the rest unread)."""
        url = self.server.http(path)
        safe_url = redact_url(url)
        retry = method.upper() in ("GET", "HEAD") if idempotent is None else idempotent
        attempts = 1 + (self.settings.retries if retry else 0)
        timeout = timeout or (self.settings.connect_timeout, self.settings.read_timeout)
        last: TransportError | HTTPStatusError | None = None
        for attempt in range(1, attempts + 1):
            if attempt > 1 and self._clock.sleep(self.settings.retry_backoff * 2 ** (attempt - 2), cancel):
                break
            session, done = self._checkout(method, safe_url, timeout[0], cancel, stream)
            handed_over = False
            try:
                response = session.request(method, url, json=json_body, params=params, files=files, data=data, timeout=timeout, stream=True)
                if response.status_code in accept:
                    if not stream:
                        return self._read_body(response, method, safe_url, timeout)
                    _close_also(response, done)
                    handed_over = True
                    return response
                excerpt = self.redact.excerpt(_head_of_body(response, 200 + self.redact.longest))
            except requests.RequestException as exc:
                last = _transport_error(exc, method, safe_url, timeout)
            else:
                error = HTTPStatusError(
                    f"{method} {safe_url} answered HTTP {response.status_code}",
                    status=response.status_code,
                    url=safe_url,
                    body_excerpt=excerpt,
                )
                if response.status_code < 500 or not retry:
                    raise error
                last = error
            finally:
                if not handed_over:
                    done()  # the body is read (or refused): the connection is free again
            if attempt < attempts:
                self._log.warning("comfyui %s %s failed (attempt %d/%d): %s", method, safe_url, attempt, attempts, last)
        assert last is not None  # the loop ran at least once, and only a failure gets here
        raise last

    def _read_body(self, response: requests.Response, method: str, safe_url: str, timeout: tuple[float, float]) -> requests.Response:
        """Read the body into ``response.content``, refusing it as soon as it passes the cap."""
        limit = self.settings.max_response_bytes
        if response.raw is None:  # a body already in memory (a test's fake session): only its size to check
            if len(response.content) > limit:
                raise ResponseTooLargeError(
                    f"{method} {safe_url} sent more than the {limit} bytes allowed", limit=limit, what=f"{method} body"
                )
            return response
        with response:
            announced = response.headers.get("Content-Length", "")
            if announced.isdigit() and int(announced) > limit:
                raise ResponseTooLargeError(
                    f"{method} {safe_url} announced {announced} bytes, more than the {limit} allowed", limit=limit, what=f"{method} body"
                )
            chunks: list[bytes] = []
            size = 0
            with _body_deadline(response, 2 * timeout[1], f"{method} {safe_url}: body"):
                for chunk in response.iter_content(1 << 16):
                    size += len(chunk)
                    if size > limit:
                        raise ResponseTooLargeError(
                            f"{method} {safe_url} sent more than the {limit} bytes allowed", limit=limit, what=f"{method} body"
                        )
                    chunks.append(chunk)
        response._content = b"".join(chunks)  # what .content returns from now on
        return response

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
        with response, _body_deadline(response, self.settings.download_timeout, f"GET {safe_url}: download"):
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
                f"{response.request.method} {redact_url(response.url)} did not answer JSON", excerpt=self.redact.excerpt(response.content)
            ) from None


def _close_also(response: requests.Response, done: Callable[[], None]) -> None:
    """Closing ``response`` also calls ``done``: a streamed body's own session lives as long."""
    close = response.close

    def close_both() -> None:
        try:
            close()
        finally:
            done()

    response.close = close_both  # type: ignore[method-assign]


def _head_of_body(response: requests.Response, size: int) -> bytes:
    """The first bytes of an error body, read no further (a body in memory, from a fake session, as is)."""
    if response.raw is None:
        return response.content[:size]
    with response:
        return next(response.iter_content(size), b"")


@contextlib.contextmanager
def _body_deadline(response: requests.Response, seconds: float, what: str) -> Iterator[None]:
    """Bound the time to read a whole body, not only each read: a server trickling a byte just
    inside the read timeout kept a download going for ever. urllib3 fills each chunk before it
    returns it, so a check between chunks would never run: a timer shuts the socket down instead,
    which ends the blocked read at once."""
    fired = threading.Event()

    def expire() -> None:
        fired.set()
        with contextlib.suppress(Exception):  # already closed, or not a urllib3 response (a test fake)
            response.raw.shutdown()

    timer = watchdog().schedule(seconds, expire)  # one thread for every request's deadline
    try:
        yield
    except (TransportError, requests.RequestException, OSError, ValueError):
        if fired.is_set():
            raise TransportTimeoutError(f"{what} not complete within {seconds:g} s", phase="request", seconds=seconds) from None
        raise
    finally:
        timer.cancel()
    if fired.is_set():  # the shutdown may also look like a clean end of the body
        raise TransportTimeoutError(f"{what} not complete within {seconds:g} s", phase="request", seconds=seconds)


def _transport_error(exc: requests.RequestException, method: str, safe_url: str, timeout: tuple[float, float]) -> TransportError:
    """The typed error for a ``requests`` failure, while sending or while streaming a body."""
    if isinstance(exc, requests.ConnectTimeout):
        return TransportTimeoutError(f"{method} {safe_url}: no connection within {timeout[0]:g} s", phase="connect", seconds=timeout[0])
    # a read timeout while streaming a body arrives as a ConnectionError around urllib3's ReadTimeoutError
    if isinstance(exc, requests.ReadTimeout) or isinstance(exc.args[0] if exc.args else None, ReadTimeoutError):
        return TransportTimeoutError(f"{method} {safe_url}: no data within {timeout[1]:g} s", phase="request", seconds=timeout[1])
    if (limit := _file_limit(exc)) is not None:
        return ConnectionFailedError(
            f"{method} {safe_url}: this process is out of file descriptors (limit {limit}): raise `ulimit -n` or lower the concurrency",
            {"resource": "file_descriptors", "limit": limit},
            url=safe_url,
        )
    if isinstance(exc, requests.ConnectionError | requests.exceptions.ChunkedEncodingError):
        return ConnectionFailedError(f"{method} {safe_url}: {_root_cause(exc)}", url=safe_url)
    return ConnectionFailedError(f"{method} {safe_url}: {exc.__class__.__name__}", url=safe_url)


def _file_limit(exc: BaseException) -> int | None:
    """The soft file limit when ``exc`` was caused by running out of descriptors (EMFILE/ENFILE), else None."""
    seen: BaseException | None = exc
    while seen is not None:
        # urllib3 wraps the OSError in its own errors' arguments, not always as a cause
        for candidate in (seen, *seen.args):
            if isinstance(candidate, OSError) and candidate.errno in (errno.EMFILE, errno.ENFILE):
                return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        seen = seen.__cause__ or seen.__context__
    return None


def _root_cause(exc: BaseException) -> str:
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
