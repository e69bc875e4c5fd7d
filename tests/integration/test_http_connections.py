"""The HTTP transport's connections, counted by the kernel: bounded whatever the pool, a clear
error at the file limit, and a wait for a connection that has a deadline and a cancel."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.integration.net_support import established_to
from worker.comfyui.errors import ConnectionFailedError, JobCancelledError, TransportTimeoutError
from worker.comfyui.http_transport import HTTPSettings, HTTPTransport
from worker.comfyui.urls import ServerURL


class _Slow(BaseHTTPRequestHandler):
    """Answers after ``delay`` seconds and records how many requests it served at once."""

    protocol_version = "HTTP/1.1"
    delay = 0.0
    lock = threading.Lock()
    now = 0
    peak = 0

    def do_GET(self) -> None:
        cls = type(self)
        with cls.lock:
            cls.now += 1
            cls.peak = max(cls.peak, cls.now)
        time.sleep(cls.delay)
        with cls.lock:
            cls.now -= 1
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[ThreadingHTTPServer, type[_Slow]]]:
    handler = type("Handler", (_Slow,), {"delay": 0.0, "now": 0, "peak": 0, "lock": threading.Lock()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd, handler
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _transport(port: int, **settings: float) -> HTTPTransport:
    return HTTPTransport(ServerURL.parse(f"http://127.0.0.1:{port}"), settings=HTTPSettings(retries=0, **settings))  # type: ignore[arg-type]


def test_a_new_thread_per_request_does_not_pile_up_connections(server: tuple[ThreadingHTTPServer, type[_Slow]]) -> None:
    """Like gevent, where every job is a new greenlet: 60 short-lived threads, 2 connections."""
    httpd, _ = server
    port = httpd.server_address[1]
    transport = _transport(port)
    for _ in range(60):
        worker = threading.Thread(target=transport.get_json, args=("/x",))
        worker.start()
        worker.join()
    assert established_to(port) <= transport.settings.max_connections
    transport.close()
    assert established_to(port) == 0


def test_requests_in_flight_are_bounded_whatever_the_number_of_threads(server: tuple[ThreadingHTTPServer, type[_Slow]]) -> None:
    httpd, handler = server
    handler.delay = 0.05
    transport = _transport(httpd.server_address[1], max_connections=2)
    threads = [threading.Thread(target=transport.get_json, args=("/x",)) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert handler.peak == 2
    assert established_to(httpd.server_address[1]) <= 2
    transport.close()


def test_the_wait_for_a_connection_has_a_deadline_and_a_cancel(server: tuple[ThreadingHTTPServer, type[_Slow]]) -> None:
    httpd, handler = server
    handler.delay = 1.0
    transport = _transport(httpd.server_address[1], max_connections=1, connect_timeout=0.2)
    busy = threading.Thread(target=transport.get_json, args=("/busy",))
    busy.start()
    while handler.now == 0:
        time.sleep(0.005)
    started = time.monotonic()
    with pytest.raises(TransportTimeoutError, match="no free connection") as caught:
        transport.get_json("/second")
    assert caught.value.phase == "connect" and time.monotonic() - started < 0.6
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    with pytest.raises(JobCancelledError):
        transport.get_json("/third", cancel=cancel, timeout=(5.0, 5.0))
    busy.join()
    transport.close()


@contextlib.contextmanager
def _no_file_descriptors_left() -> Iterator[int]:
    """Lower the soft limit to what is open now plus a few, then use those few."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = len(os.listdir("/proc/self/fd")) + 8
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    held: list[socket.socket] = []
    try:
        with contextlib.suppress(OSError):
            while len(held) < 64:
                held.append(socket.socket())
        yield limit
    finally:
        for sock in held:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_running_out_of_file_descriptors_is_a_clear_connection_error(server: tuple[ThreadingHTTPServer, type[_Slow]]) -> None:
    httpd, _ = server
    transport = _transport(httpd.server_address[1])
    with _no_file_descriptors_left() as limit, pytest.raises(ConnectionFailedError, match="out of file descriptors") as caught:
        transport.get_json("/x")
    assert caught.value.details["resource"] == "file_descriptors" and caught.value.details["limit"] == limit
    assert transport.get_json("/x") == {"ok": True}  # and the transport works again once descriptors are back
    transport.close()
