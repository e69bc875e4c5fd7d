"""Hostile or broken servers on 127.0.0.1, for the tests and ``bench/hostile.py``.

Each is a raw TCP server running one scripted behaviour per connection, so a case can do what
no well-behaved framework would: redirect a WebSocket upgrade, announce a 2**62-byte frame,
send an endless body, echo the request's credentials, trickle a byte at a time.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import threading
import time
from collections.abc import Callable

__all__ = ["ScriptedServer", "echo_headers", "endless_body", "huge_frame", "redirect_to", "trickle", "websocket_accept"]

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Script = Callable[[socket.socket, bytes, "ScriptedServer"], None]


class ScriptedServer:
    """Accepts connections; reads the request head; hands the socket to ``script``."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.requests: list[bytes] = []
        self.sent = 0  # payload bytes the scripts managed to send
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                self.requests.append(head)
                self.script(conn, head, self)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.listener.close()
        self.thread.join(2)

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def websocket_accept(head: bytes) -> bytes:
    """The 101 answer to a WebSocket upgrade request."""
    key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key:"))
    accept = base64.b64encode(hashlib.sha1(key + _GUID.encode()).digest())
    return b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"


def redirect_to(location: str, status: int = 302) -> Script:
    def script(conn: socket.socket, head: bytes, server: ScriptedServer) -> None:
        conn.sendall(f"HTTP/1.1 {status} Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode())

    return script


def huge_frame(announced: int, send_bytes: int = 1 << 20) -> Script:
    """Upgrade, then a text frame header announcing ``announced`` bytes, then zeros while the peer reads."""

    def script(conn: socket.socket, head: bytes, server: ScriptedServer) -> None:
        conn.sendall(websocket_accept(head))
        header = b"\x81" + (b"\x7f" + struct.pack(">Q", announced) if announced > 65535 else b"\x7e" + struct.pack(">H", announced))
        conn.sendall(header)
        block = b"\0" * 65536
        while server.sent < send_bytes and not server.stop.is_set():
            conn.sendall(block)
            server.sent += len(block)

    return script


def endless_body(status: int = 200, content_length: int | None = None, limit: int = 1 << 30) -> Script:
    """A JSON-looking body that goes on (chunked, or with a huge Content-Length)."""

    def script(conn: socket.socket, head: bytes, server: ScriptedServer) -> None:
        length = f"Content-Length: {content_length}\r\n" if content_length is not None else ""
        conn.sendall(f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n{length}\r\n".encode() + b'{"x": "')
        block = b"a" * 65536
        while server.sent < limit and not server.stop.is_set():
            conn.sendall(block)
            server.sent += len(block)

    return script


def echo_headers(status: int = 500) -> Script:
    """An error page that quotes the request, credentials included (as some proxies do)."""

    def script(conn: socket.socket, head: bytes, server: ScriptedServer) -> None:
        body = b"<html>error; your request was:\n" + head + b"</html>"
        conn.sendall(f"HTTP/1.1 {status} Internal Server Error\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)

    return script


def trickle(interval: float, content_length: int = 1000) -> Script:
    """A 200 whose body comes one byte every ``interval`` seconds (each inside any read timeout)."""

    def script(conn: socket.socket, head: bytes, server: ScriptedServer) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {content_length}\r\n\r\n".encode())
        for _ in range(content_length):
            if server.stop.wait(interval):
                return
            conn.sendall(b"x")
            server.sent += 1

    return script


def elapsed(started: float) -> float:
    return time.monotonic() - started
