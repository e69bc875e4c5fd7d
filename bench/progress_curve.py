"""The progress curve of the txt2img workflow on the simulator: ours against the seed's naive
formula, and WebSocket reconnect timings and threads after close(): ``python -m bench.progress_curve``."""

from __future__ import annotations

import itertools
import json
import threading
import time

import requests

from bench.logs import logs_to_file
from tests.traces import load_workflow
from worker.comfyui import protocol as p
from worker.comfyui.clock import SystemClock
from worker.comfyui.progress import ProgressTracker, naive_progress
from worker.comfyui.websocket_client import ComfyUIWebSocketClient, WebSocketSettings
from worker.simulator import ComfyUISimulator, SimulatorTiming


def curve() -> None:
    workflow = load_workflow("txt2img-sd15-random.json")
    timing = SimulatorTiming(node_seconds=0.05, sampler_step_seconds=0.2, per_class_seconds={"CheckpointLoaderSimple": 0.3})
    with ComfyUISimulator(timing=timing) as sim:
        client = ComfyUIWebSocketClient(sim.url)
        rows: list[tuple[float, float, float]] = []
        done = threading.Event()
        start = time.monotonic()
        tracker = ProgressTracker("curve", workflow, clock=SystemClock())  # fed here, frame by frame

        def on_message(message: object) -> None:
            if isinstance(message, p.KnownMessage):
                tracker.apply(message)
            if isinstance(message, p.ProgressStateMessageData) and message.prompt_id == "curve":
                rows.append((time.monotonic() - start, naive_progress(message), tracker.state().progress))

        client.on_message(on_message)
        client.on_completion(lambda c: done.set(), "curve")
        client.connect()
        requests.post(f"{sim.url}/prompt", json={"prompt": workflow, "client_id": client.client_id, "prompt_id": "curve"}, timeout=5)
        done.wait(30)
        client.close()
    print("t (s)   naive %   ours %")
    for t, naive, ours in rows:
        print(f"{t:5.2f}   {naive:7.1f}   {ours:6.1f}")
    print(json.dumps({"naive_monotonic": all(b[1] >= a[1] for a, b in itertools.pairwise(rows)), "frames": len(rows)}))


def reconnects() -> None:
    settings = WebSocketSettings(reconnect_delay=0.05, ping_interval=0.5, idle_timeout=2.0, read_slice=0.05)
    with ComfyUISimulator() as sim:
        client = ComfyUIWebSocketClient(sim.url, settings=settings)
        events: list[tuple[float, str]] = []
        client.on_connection(lambda e: events.append((time.monotonic(), e.kind)))
        client.connect()
        gaps = []
        for _ in range(10):
            before = len(events)
            dropped = time.monotonic()
            sim.drop_sockets()
            while not any(kind == "reconnected" for _, kind in events[before:]):
                time.sleep(0.001)
            gaps.append(next(t for t, kind in events[before:] if kind == "reconnected") - dropped)
        threads_before_close = threading.active_count()
        t0 = time.monotonic()
        client.close()
        close_ms = (time.monotonic() - t0) * 1000
        print(f"reconnect after drop (delay setting 0.05 s), 10 drops: min {min(gaps) * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms")
        print(
            f"close(): {close_ms:.0f} ms; threads before close {threads_before_close}, after {threading.active_count()} (main + simulator)"
        )


if __name__ == "__main__":
    with logs_to_file("progress_curve"):
        curve()
        reconnects()
