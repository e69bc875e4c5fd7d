"""Input URLs against a real HTTP server on 127.0.0.1: the guard, pinning, caps, timeouts."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.media_support import FileServer, free_port, handler_class
from worker.comfyui.errors import JobCancelledError, WorkflowValidationError
from worker.fleet.media.fetch import AddressGuard, FetchSettings, URLFetcher
from worker.simulator.media import solid_png

PNG = solid_png(16, 8, (200, 100, 50))


def fetcher(*allow: str, **settings: float) -> URLFetcher:
    return URLFetcher(AddressGuard(allow), FetchSettings(**settings))  # type: ignore[arg-type]


def test_loopback_is_refused_unless_allowed(file_server: FileServer) -> None:
    file_server.routes["/photo.png"] = PNG
    with pytest.raises(WorkflowValidationError) as exc:
        fetcher().fetch(f"{file_server.url}/photo.png")
    assert exc.value.error_type == "input_forbidden_address"
    assert file_server.hits == {}  # refused before connecting
    assert fetcher("127.0.0.1").fetch(f"{file_server.url}/photo.png?sig=secret") == PNG


def test_the_connection_goes_to_the_checked_address_with_the_name_in_host(file_server: FileServer) -> None:
    seen: list[str] = []

    def record(handler: http.server.BaseHTTPRequestHandler) -> None:
        seen.append(str(handler.headers["Host"]))
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(PNG)))
        handler.end_headers()
        handler.wfile.write(PNG)

    file_server.routes["/p.png"] = record
    port = file_server.url.rsplit(":", 1)[1]
    # "images.example" resolves (for this guard only) to 127.0.0.1: no second lookup happens
    guard = AddressGuard(("images.example",), resolver=lambda host, p: ["127.0.0.1"] if host == "images.example" else [])
    assert URLFetcher(guard).fetch(f"http://images.example:{port}/p.png") == PNG
    assert seen == [f"images.example:{port}"]


def test_a_redirect_to_a_forbidden_address_is_refused(file_server: FileServer) -> None:
    def redirect(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    file_server.routes["/r"] = redirect
    with pytest.raises(WorkflowValidationError) as exc:
        fetcher("127.0.0.1").fetch(f"{file_server.url}/r")
    assert exc.value.error_type == "input_forbidden_address"


def test_a_malformed_redirect_is_a_validation_error(file_server: FileServer) -> None:
    def redirect(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", "http://[::1/x")  # urljoin raises ValueError on it
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    file_server.routes["/r"] = redirect
    with pytest.raises(WorkflowValidationError) as exc:
        fetcher("127.0.0.1").fetch(f"{file_server.url}/r")
    assert exc.value.error_type == "input_unreachable"


def test_relative_redirects_are_followed(file_server: FileServer) -> None:
    def redirect(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(301)
        handler.send_header("Location", "/photo.png")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    file_server.routes["/old"] = redirect
    file_server.routes["/photo.png"] = PNG
    assert fetcher("127.0.0.1").fetch(f"{file_server.url}/old") == PNG


def test_the_size_cap_holds_while_streaming_whatever_the_headers_say(file_server: FileServer) -> None:
    def endless(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        try:
            for _ in range(10_000):  # 640 MB if nobody stopped reading
                handler.wfile.write(b"10000\r\n" + b"\x00" * 0x10000 + b"\r\n")
        except OSError:
            pass

    file_server.routes["/endless"] = endless
    file_server.routes["/declared"] = PNG * 100
    with pytest.raises(WorkflowValidationError) as exc:
        fetcher("127.0.0.1", max_bytes=1_000_000).fetch(f"{file_server.url}/endless")
    assert exc.value.error_type == "input_too_large"
    with pytest.raises(WorkflowValidationError) as exc:
        fetcher("127.0.0.1", max_bytes=len(PNG)).fetch(f"{file_server.url}/declared")
    assert exc.value.error_type == "input_too_large"


def test_missing_and_silent_urls_fail_fast(file_server: FileServer) -> None:
    def silent(handler: http.server.BaseHTTPRequestHandler) -> None:
        time.sleep(1.0)

    file_server.routes["/silent"] = silent
    with pytest.raises(WorkflowValidationError) as exc:
        fetcher("127.0.0.1").fetch(f"{file_server.url}/missing.png")
    assert exc.value.error_type == "input_unreachable" and "404" in str(exc.value)
    started = time.monotonic()
    with pytest.raises(WorkflowValidationError) as exc:
        fetcher("127.0.0.1", read_timeout=0.2).fetch(f"{file_server.url}/silent")
    assert exc.value.error_type == "input_unreachable"
    assert time.monotonic() - started < 0.9


def test_a_slow_drip_body_is_stopped_by_the_overall_deadline_and_the_cancel(file_server: FileServer) -> None:
    # each byte arrives well within the read timeout, so only the overall deadline (and the
    # cancel) can stop this: they must be checked between socket reads, not between 64 KiB chunks
    def drip(handler: http.server.BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "40")
        handler.end_headers()
        try:
            for _ in range(40):
                handler.wfile.write(b"\x89")
                handler.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    file_server.routes["/drip"] = drip
    started = time.monotonic()
    with pytest.raises(WorkflowValidationError) as exc:
        fetcher("127.0.0.1", read_timeout=1.0, total_timeout=0.3).fetch(f"{file_server.url}/drip")
    assert exc.value.error_type == "input_unreachable" and "longer than" in str(exc.value)
    assert time.monotonic() - started < 1.2  # the whole body would take 2 s
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(JobCancelledError):
        fetcher("127.0.0.1", read_timeout=1.0).fetch(f"{file_server.url}/drip", cancel=cancel)
    assert time.monotonic() - started < 1.2


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def https_server(file_server: FileServer, tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """An HTTPS server on 127.0.0.1 presenting a certificate for images.example (and another CA)."""
    cert, key = _certificate(tmp_path, "images.example")
    other, _ = _certificate(tmp_path, "other.example")
    file_server.routes["/p.png"] = PNG
    port = free_port()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler_class(file_server))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield port, cert, other
    httpd.shutdown()
    httpd.server_close()


def test_https_to_the_pinned_address_still_checks_the_certificate_for_the_name(https_server: tuple[int, Path, Path]) -> None:
    port, cert, other_ca = https_server
    guard = AddressGuard(("images.example", "other.example"), resolver=lambda host, p: ["127.0.0.1"])
    assert URLFetcher(guard, FetchSettings(ca_file=str(cert))).fetch(f"https://images.example:{port}/p.png") == PNG
    with pytest.raises(WorkflowValidationError) as exc:  # right CA, wrong name: SNI and hostname come from the URL
        URLFetcher(guard, FetchSettings(ca_file=str(cert))).fetch(f"https://other.example:{port}/p.png")
    assert exc.value.error_type == "input_unreachable"
    with pytest.raises(WorkflowValidationError):  # a CA that did not sign it
        URLFetcher(guard, FetchSettings(ca_file=str(other_ca))).fetch(f"https://images.example:{port}/p.png")
