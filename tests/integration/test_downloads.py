"""Output files are streamed: bounded memory and size, typed errors mid-body, no partial file left."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.comfyui.errors import JobCancelledError, OutputSaveError
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.pod_client import ComfyUIPodClient
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.comfyui.results import OutputFile
from worker.fleet.outputs import save_outputs
from worker.simulator import ComfyUISimulator

RestFactory = Callable[..., ComfyUIRestClient]


@pytest.fixture
def rest() -> Iterator[RestFactory]:
    """``rest(url, **kwargs)``: a REST client closed after the test (no session left open)."""
    clients: list[ComfyUIRestClient] = []

    def make(url: str, **kwargs: Any) -> ComfyUIRestClient:
        clients.append(ComfyUIRestClient(url, **kwargs))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def _output(sim: ComfyUISimulator, workflow: dict[str, Any]) -> OutputFile:
    client = ComfyUIPodClient(sim.url)
    try:
        return client.execute_workflow(workflow, prompt_id="dl").files[0]
    finally:
        client.close()


def test_a_file_is_streamed_to_disk_and_matches_view(
    sim: ComfyUISimulator, image_only: dict[str, Any], tmp_path: Path, rest: RestFactory
) -> None:
    item = _output(sim, image_only)
    client = rest(sim.url)
    whole = client.download(item.filename or "", item.subfolder, item.type)
    assert whole.startswith(b"\x89PNG")
    [path] = save_outputs(client, [item], tmp_path / "out")
    assert path.read_bytes() == whole
    assert [p.name for p in (tmp_path / "out").iterdir()] == [path.name]  # no .part left behind


def test_the_size_cap_is_enforced_while_reading(
    sim: ComfyUISimulator, image_only: dict[str, Any], tmp_path: Path, rest: RestFactory
) -> None:
    item = _output(sim, image_only)
    capped = rest(sim.url, http=HTTPSettings(max_download_bytes=16))
    with pytest.raises(OutputSaveError) as info:
        save_outputs(capped, [item], tmp_path / "out")
    assert info.value.failures[0]["error"].startswith("protocol: ") and "more than the 16 bytes" in info.value.failures[0]["error"]
    assert list((tmp_path / "out").iterdir()) == []


def test_a_download_stops_when_cancelled(sim: ComfyUISimulator, image_only: dict[str, Any], rest: RestFactory) -> None:
    item = _output(sim, image_only)
    cancel = threading.Event()
    cancel.set()
    sink = io.BytesIO()
    with pytest.raises(JobCancelledError):
        rest(sim.url).download_to(sink, item.filename or "", item.subfolder, item.type, cancel=cancel)
    assert sink.getvalue() == b""


class CutServer:
    """Answers every request with a 200 promising 100,000 bytes, sends ``sent`` of them, then
    closes (``hang``: keeps the connection open and silent instead)."""

    def __init__(self, *, sent: int = 1000, hang: bool = False) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)  # accept() wakes to see close()
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sent, self.hang = sent, hang
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.release.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n" + b"x" * self.sent)
                if self.hang:
                    self.release.wait(10)

    def close(self) -> None:
        self.release.set()
        self.thread.join(5)
        self.listener.close()
        assert not self.thread.is_alive()


@pytest.fixture
def cut_server() -> Iterator[CutServer]:
    server = CutServer()
    yield server
    server.close()


def test_a_body_cut_short_is_a_transport_error_and_leaves_no_file(cut_server: CutServer, tmp_path: Path, rest: RestFactory) -> None:
    client = rest(cut_server.url, http=HTTPSettings(retries=0))
    item = OutputFile(node_id="9", kind="image", filename="big.png", subfolder="", type="output")
    with pytest.raises(OutputSaveError) as info:
        save_outputs(client, [item], tmp_path)
    assert info.value.failures[0]["error"].startswith("connection: ") and "/view" in info.value.failures[0]["error"]
    assert list(tmp_path.iterdir()) == []


def test_a_body_that_stalls_times_out_per_chunk(tmp_path: Path, rest: RestFactory) -> None:
    server = CutServer(hang=True)
    try:
        client = rest(server.url, http=HTTPSettings(retries=0, read_timeout=0.2))
        item = OutputFile(node_id="9", kind="image", filename="big.png", subfolder="", type="output")
        with pytest.raises(OutputSaveError) as info:
            save_outputs(client, [item], tmp_path)
        assert info.value.failures[0]["error"].startswith("transport_timeout: ")
        assert list(tmp_path.iterdir()) == []
    finally:
        server.close()
