"""Real components for the media tests: an S3 server process (moto's server mode) and an HTTP
server for input URLs, both on 127.0.0.1 and free ports, both stopped after the test."""

from __future__ import annotations

import http.server
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from worker.app.processes import stop_process
from worker.fleet.media import S3Store

__all__ = ["FileServer", "S3Server", "file_server", "s3_server"]

#: moto accepts any credentials; these are set for the test's processes only
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen[bytes]

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=30),
        )

    def bucket(self) -> str:
        name = f"media-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def store(self, prefix: str = "jobs", **options: Any) -> S3Store:
        return S3Store(self.client(), self.bucket(), prefix, **options)


def start_s3_server(log_path: Path) -> S3Server:
    port = free_port()
    with log_path.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=output, stderr=subprocess.STDOUT
        )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(endpoint + "/moto-api/", timeout=1)
            break
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                raise RuntimeError("moto server did not start:\n" + log_path.read_text()[-2000:]) from None
            time.sleep(0.05)
    return S3Server(endpoint, process)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("moto") / "moto.log")
    try:
        yield server
    finally:
        stop_process(server.process)


Handler = Callable[[http.server.BaseHTTPRequestHandler], None]


@dataclass
class FileServer:
    """Serves ``routes[path]`` (bytes, or a handler for odd behaviour) and counts requests."""

    url: str
    routes: dict[str, bytes | Handler] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)


def handler_class(server: FileServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            server.hits[path] = server.hits.get(path, 0) + 1
            route = server.routes.get(path)
            if route is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif isinstance(route, bytes):
                self.send_response(200)
                self.send_header("Content-Type", "image/png")  # deliberately not trusted
                self.send_header("Content-Length", str(len(route)))
                self.end_headers()
                self.wfile.write(route)
            else:
                route(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def file_server() -> Iterator[FileServer]:
    port = free_port()
    server = FileServer(f"http://127.0.0.1:{port}")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler_class(server))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
