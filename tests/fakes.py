"""In-memory fakes for the library's injection points: an HTTP session and a WebSocket.

``FakeComfyUI`` answers the REST calls the pod client makes from a dict of prompts (no
sockets, no threads); ``FakeSocket`` is a ``WebSocketLike`` that plays scripted frames. With a
``FakeClock`` the pod client's waits take no time, so a whole job runs in milliseconds.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
import websocket

Frame = tuple[int, bytes]


def text(message: dict[str, Any]) -> Frame:
    return websocket.ABNF.OPCODE_TEXT, json.dumps(message).encode()


def status_frame() -> Frame:
    return text({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "fake"}})


def _response(method: str, url: str, status: int, body: Any) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/json"
    response.url = url
    response.request = requests.Request(method, url).prepare()
    return response


class FakeComfyUI:
    """The REST side of a ComfyUI server, in memory. ``history`` is filled by the test (or by
    ``finish_after_polls``); ``counts`` counts requests like the simulator does."""

    def __init__(self) -> None:
        self.prompts: dict[str, dict[str, Any]] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.pending: list[str] = []
        self.running: list[str] = []
        self.counts: Counter[str] = Counter()
        self.submitted = threading.Event()
        #: after this many ``GET /history`` of a prompt, it is finished with ``outputs`` (None: never)
        self.finish_after_polls: int | None = None
        self.outputs: dict[str, Any] = {"9": {"images": [{"filename": "out.png", "subfolder": "", "type": "output"}]}}
        self._polls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def session(self) -> FakeSession:
        return FakeSession(self)

    def succeed(self, prompt_id: str) -> None:
        with self._lock:
            self._succeed(prompt_id)

    def _succeed(self, prompt_id: str) -> None:
        self.history[prompt_id] = {"outputs": self.outputs, "status": {"status_str": "success", "completed": True, "messages": []}}
        for queue in (self.pending, self.running):
            if prompt_id in queue:
                queue.remove(prompt_id)

    def answer(self, method: str, url: str, body: Any) -> requests.Response:
        path = urlsplit(url).path
        with self._lock:
            if path.startswith("/history/"):
                self.counts[f"{method} /history/{{prompt_id}}"] += 1
                return _response(method, url, 200, self._history(unquote(path.removeprefix("/history/"))))
            self.counts[f"{method} {path}"] += 1
            status, answer = self._route(method, path, body)
        return _response(method, url, status, answer)

    def _history(self, prompt_id: str) -> dict[str, Any]:
        self._polls[prompt_id] += 1
        if self.finish_after_polls is not None and prompt_id in self.prompts and self._polls[prompt_id] >= self.finish_after_polls:
            self._succeed(prompt_id)
        return {prompt_id: self.history[prompt_id]} if prompt_id in self.history else {}

    def _route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        if (method, path) == ("POST", "/prompt"):
            prompt_id = body["prompt_id"]
            self.prompts[prompt_id] = body
            self.running.append(prompt_id)
            self.submitted.set()
            return 200, {"prompt_id": prompt_id, "number": len(self.prompts), "node_errors": {}}
        if (method, path) == ("GET", "/queue"):
            return 200, {"queue_running": [[0, p] for p in self.running], "queue_pending": [[1, p] for p in self.pending]}
        if (method, path) == ("GET", "/system_stats"):
            return 200, {"system": {"comfyui_version": "0.8.0"}, "devices": []}
        if (method, path) == ("POST", "/interrupt"):
            self.running.clear()
            return 200, {}
        if (method, path) == ("POST", "/queue"):
            self.pending = [p for p in self.pending if p not in body.get("delete", [])]
            return 200, {}
        return 404, {"error": "not found"}


class FakeSession:
    """What ``HTTPTransport`` uses of a ``requests.Session``."""

    def __init__(self, server: FakeComfyUI) -> None:
        self.server = server
        self.headers: dict[str, str] = {}

    def request(self, method: str, url: str, *, json: Any = None, **_: Any) -> requests.Response:
        return self.server.answer(method, url, json)

    def close(self) -> None:
        pass


class FakeSocket:
    """A ``WebSocketLike`` playing ``greeting`` at once and ``frames`` once ``gate`` is set (e.g.
    when the prompt was posted); then it times out like an idle socket, or drops if ``drop``."""

    connected = True

    def __init__(self, frames: list[Frame] = (), *, gate: threading.Event | None = None, drop: bool = False) -> None:  # type: ignore[assignment]
        self.greeting: deque[Frame] = deque([status_frame()])
        self.frames: deque[Frame] = deque(frames)
        self.gate = gate
        self.drop = drop
        self.sent: list[str | bytes] = []
        self.closed = False
        self.timeout: float | None = None

    def recv_data(self, control_frame: bool = False) -> Frame:
        if self.greeting:
            return self.greeting.popleft()
        if self.closed:
            return websocket.ABNF.OPCODE_CLOSE, struct.pack(">H", 1000)
        if self.frames and (self.gate is None or self.gate.is_set()):
            return self.frames.popleft()
        if self.drop and not self.frames:
            raise ConnectionResetError("dropped by the fake")
        time.sleep(0.002)  # a real socket blocks for its timeout; a short nap keeps the loop cheap
        raise websocket.WebSocketTimeoutException("timed out")

    def send(self, payload: str | bytes, opcode: int = 1) -> int:
        self.sent.append(payload)
        return len(payload)

    def ping(self, payload: str | bytes = "") -> None:
        pass

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout

    def close(self, status: int = 1000, reason: bytes = b"", timeout: float | None = None) -> None:
        self.closed = True

    def send_close(self, status: int = 1000, reason: bytes = b"") -> None:
        self.closed = True

    def shutdown(self) -> None:
        self.closed = True


class SocketFactory:
    """A ``WebSocketFactory`` handing out the given sockets (or raising) in turn, recording URLs."""

    def __init__(self, *sockets: FakeSocket | Exception | Callable[[], FakeSocket]) -> None:
        self.sockets = deque(sockets)
        self.urls: list[str] = []

    def __call__(self, url: str, timeout: float, headers: list[str]) -> FakeSocket:
        self.urls.append(url)
        item = self.sockets.popleft()
        if isinstance(item, Exception):
            raise item
        return item if isinstance(item, FakeSocket) else item()
