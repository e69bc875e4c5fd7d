"""A minimal raw client for driving the simulator in tests (no product code involved)."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, ClassVar

import requests
import websocket

from worker.comfyui import protocol as p


class RawSocket:
    #: every socket not closed yet: the ``_close_raw_sockets`` fixture closes them after each test
    opened: ClassVar[list[RawSocket]] = []

    def __init__(self, base_url: str, client_id: str | None = None, flags: bool = False, timeout: float = 5.0) -> None:
        self.client_id = client_id or str(uuid.uuid4())
        url = base_url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        self.ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
        RawSocket.opened.append(self)
        if flags:
            self.ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))

    def next(self, timeout: float = 5.0) -> p.ComfyUIMessage | p.BinaryFrame:
        self.ws.settimeout(timeout)
        opcode, data = self.ws.recv_data()
        if opcode == websocket.ABNF.OPCODE_BINARY:
            return p.parse_binary(data)
        return p.parse_text(data)

    def until(self, predicate: Any, timeout: float = 5.0) -> list[p.ComfyUIMessage | p.BinaryFrame]:
        seen: list[p.ComfyUIMessage | p.BinaryFrame] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.next(max(0.01, deadline - time.monotonic()))
            seen.append(msg)
            if predicate(msg):
                return seen
        raise AssertionError(f"condition not met; saw {[type(m).__name__ for m in seen]}")

    def until_done(self, prompt_id: str, timeout: float = 5.0) -> list[p.ComfyUIMessage | p.BinaryFrame]:
        return self.until(lambda m: isinstance(m, p.ExecutingData) and m.node is None and m.prompt_id == prompt_id, timeout)

    def close(self) -> None:
        try:
            self.ws.close(timeout=0.5)
        finally:
            self.ws.shutdown()  # type: ignore[no-untyped-call]  # close() does nothing once marked closed
        if self in RawSocket.opened:
            RawSocket.opened.remove(self)

    @classmethod
    def close_all(cls) -> None:
        for raw in list(cls.opened):
            raw.close()


def submit(base_url: str, workflow: dict[str, Any], client_id: str | None = None, prompt_id: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"prompt": workflow}
    if client_id is not None:
        body["client_id"] = client_id
    if prompt_id is not None:
        body["prompt_id"] = prompt_id
    response = requests.post(f"{base_url}/prompt", json=body, timeout=5)
    result: dict[str, Any] = response.json()
    result["_status"] = response.status_code
    return result


def wait_history(base_url: str, prompt_id: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = requests.get(f"{base_url}/history/{prompt_id}", timeout=5).json()
        if data:
            entry: dict[str, Any] = data[prompt_id]
            return entry
        time.sleep(0.01)
    raise AssertionError(f"no history for {prompt_id}")
