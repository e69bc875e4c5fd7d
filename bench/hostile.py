"""Hostile-server harness: ``python -m bench.hostile``.

Each case of issue 15 ("hostile input, hostile servers") is reproduced against a scripted
server on 127.0.0.1 and the client's outcome printed as a table: the typed error code (or
"ok"), wall time, the peak of Python allocations (tracemalloc) and what the server managed to
do. The library's defaults are used except where a case says otherwise.
"""

from __future__ import annotations

import json
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.logs import logs_to_file
from tests.hostile_servers import ScriptedServer, echo_headers, endless_body, huge_frame, redirect_to, trickle
from worker.comfyui.errors import ComfyUIError
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.comfyui.results import OutputFile, files_from_outputs
from worker.comfyui.websocket_client import ComfyUIWebSocketClient, WebSocketSettings
from worker.comfyui.workflow import parse_workflow, validate_workflow
from worker.fleet.outputs import save_outputs

TOKEN = "tok-bench-Secret-42424242"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Row:
    case: str
    outcome: str
    seconds: float
    peak_mb: float
    note: str


def measure(case: str, action: Callable[[], str]) -> Row:
    """Run ``action``; its return value (or the error's code) is the outcome."""
    tracemalloc.start()
    started = time.monotonic()
    note = ""
    try:
        note = action()
        outcome = "ok"
    except ComfyUIError as exc:
        outcome = exc.code
        note = note or str(exc)[:70]
    except Exception as exc:  # noqa: BLE001 - an untyped failure is exactly what the table must show
        outcome = f"UNTYPED {exc.__class__.__name__}"
        note = str(exc)[:70]
    seconds = time.monotonic() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return Row(case, outcome, seconds, peak / 1e6, note)


def ws_redirect() -> Row:
    with ScriptedServer(echo_headers(404)) as target:
        with ScriptedServer(redirect_to(f"ws://127.0.0.1:{target.port}/ws")) as server:
            row = measure("ws upgrade 302 to another port", lambda: str(ComfyUIWebSocketClient(server.url, headers=AUTH).connect()))
        row.note = f"requests reaching the target: {len(target.requests)}"
    return row


def ws_frame(announced: int, label: str) -> Row:
    with ScriptedServer(huge_frame(announced, send_bytes=256 * 1024 * 1024)) as server:
        client = ComfyUIWebSocketClient(server.url, settings=WebSocketSettings(reconnect_attempts=0))
        row = measure(f"ws frame header announcing {label}", lambda: str(client.connect()))
        client.close()
        row.note = f"cap {64} MB; server could push {server.sent / 1e6:.0f} MB before the socket closed"
    return row


def huge_history() -> Row:
    with ScriptedServer(endless_body(limit=1 << 30)) as server:
        client = ComfyUIRestClient(server.url)
        row = measure("endless /history body (1 GB offered)", lambda: str(client.get_history("p1")))
        client.close()
        row.note = f"cap 32 MB; server pushed {server.sent / 1e6:.0f} MB"
    return row


def million_outputs() -> Row:
    body = json.dumps({"p1": {"outputs": {"9": {"images": [{"filename": f"{i}.png", "type": "output"} for i in range(10**6)]}}}})

    def serve(conn: Any, head: bytes, server: ScriptedServer) -> None:
        conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body.encode())

    with ScriptedServer(serve) as server:
        client = ComfyUIRestClient(server.url)
        row = measure(f"history entry, 10**6 outputs ({len(body) / 1e6:.0f} MB)", lambda: str(len(client.get_history("p1") or {})))
        client.close()
    return row


def many_outputs() -> Row:
    outputs = {"9": {"images": [{"filename": f"{i}.png"} for i in range(20_000)]}}
    return measure("history entry, 20,000 outputs (1 MB)", lambda: str(len(files_from_outputs(outputs))))


def secret_echo() -> Row:
    with ScriptedServer(echo_headers(500)) as server:
        client = ComfyUIRestClient(server.url, headers=AUTH, http=HTTPSettings(retries=0))
        leaked: list[bool] = []

        def call() -> str:
            try:
                client.get_queue()
            except ComfyUIError as exc:
                leaked.append(TOKEN in json.dumps(exc.to_dict()) or TOKEN[:10] in json.dumps(exc.to_dict()))
                raise
            return ""

        row = measure("500 page echoing the bearer token", call)
        client.close()
    row.note = f"token in the error's details: {leaked[0] if leaked else '?'}"
    return row


def trickling_view() -> Row:
    with ScriptedServer(trickle(0.5, content_length=100)) as server:
        client = ComfyUIRestClient(server.url, http=HTTPSettings(retries=0, download_timeout=3.0))
        row = measure("/view trickling 1 byte / 0.5 s", lambda: str(len(client.download("x.png"))))
        client.close()
        row.note = f"download_timeout 3 s (default 600 s); {server.sent} bytes came"
    return row


def hostile_names() -> Row:
    def serve(conn: Any, head: bytes, server: ScriptedServer) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nPNG!")

    tmp = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    out = tmp / "out"
    out.mkdir()
    outside = tmp / "outside.txt"
    outside.write_text("untouched")
    (out / "evil.png.part").symlink_to(outside)
    (out / "dir").write_text("a file where a directory is wanted")
    items = [
        OutputFile("9", "image", filename="../../etc/passwd"),
        OutputFile("9", "image", filename="n" * 300 + ".png"),
        OutputFile("9", "image", filename="evil.png"),
        OutputFile("9", "image", filename="x.png", subfolder="dir"),
        OutputFile("9", "image", filename="/abs/ok.png"),
    ]
    with ScriptedServer(serve) as server:
        client = ComfyUIRestClient(server.url)
        saved: list[Any] = []

        def run() -> str:
            try:
                saved.extend(save_outputs(client, items, out))
            except ComfyUIError as exc:
                saved.extend(exc.details.get("saved", []))
                raise
            return ""

        row = measure("hostile names (.., 300 chars, .part symlink, dir clash)", run)
        client.close()
    row.note = f"{len(saved)}/5 saved inside; outside file {outside.read_text()!r}"
    return row


def deep_workflow() -> Row:
    text = '{"1": {"class_type": "X", "inputs": {"v": ' + "[" * 100_000 + "]" * 100_000 + "}}}"
    return measure("workflow JSON 100,000 deep (CLI reader)", lambda: str(len(parse_workflow(text))))


def deep_value() -> Row:
    value: list[Any] = []
    for _ in range(100_000):
        value = [value]
    return measure(
        "workflow value 100,000 deep (client check)",
        lambda: str(len(validate_workflow({"1": {"class_type": "X", "inputs": {"v": value}}}))),
    )


def main() -> None:
    rows = [
        ws_redirect(),
        ws_frame(2**62, "2**62 bytes"),
        ws_frame(200 * 1024 * 1024, "200 MB"),
        huge_history(),
        million_outputs(),
        many_outputs(),
        secret_echo(),
        trickling_view(),
        hostile_names(),
        deep_workflow(),
        deep_value(),
    ]
    width = max(len(r.case) for r in rows)
    print(f"{'case':<{width}}  {'outcome':<18} {'time s':>7} {'peak MB':>8}  note")
    for r in rows:
        print(f"{r.case:<{width}}  {r.outcome:<18} {r.seconds:7.2f} {r.peak_mb:8.1f}  {r.note}")


if __name__ == "__main__":
    with logs_to_file("hostile"):
        main()
