"""What the pod client's integration tests share: settings for fast jobs, a job runner that
keeps its progress, request counts, and a hook on the first connection."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.observers import ProgressLog
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.job_request import ExecutionPath
from worker.comfyui.pod_client import ComfyUIPodClient, PodClientSettings, PodEvent
from worker.comfyui.progress import JobProgressState
from worker.comfyui.websocket_client import ConnectionEvent, WebSocketSettings
from worker.simulator import ComfyUISimulator

SETTINGS = PodClientSettings(
    http=HTTPSettings(connect_timeout=1.0, read_timeout=2.0, retries=2, retry_backoff=0.02),
    websocket=WebSocketSettings(
        connect_timeout=1.0, reconnect_attempts=3, reconnect_delay=0.05, ping_interval=0.1, idle_timeout=0.5, read_slice=0.05
    ),
    poll_interval=0.05,
    history_probe_interval=0.3,
    history_confirm_timeout=1.0,
    job_timeout=10.0,
    wait_slice=0.05,
    health_timeout=1.0,
)


class Job:
    """Runs one workflow on a client and keeps what came back."""

    def __init__(self, client: ComfyUIPodClient) -> None:
        self.client = client
        self.progress: list[JobProgressState] = []
        self.cancel = threading.Event()

    def run(self, workflow: dict[str, Any], path: ExecutionPath = "auto", **options: Any) -> Any:
        return self.client.execute_workflow(workflow, path=path, observer=ProgressLog(self.progress), cancel=self.cancel, **options)


def counts(sim: ComfyUISimulator) -> dict[str, int]:
    return {k: v for k, v in sim.request_counts().items() if not k.startswith("GET /_sim")}


def when_connected(events: list[PodEvent], action: Any) -> None:
    """Run ``action`` once the job's socket is up (faults armed before would hit the first connect)."""

    def wait() -> None:
        while not any(isinstance(e, ConnectionEvent) for e in events):
            time.sleep(0.005)
        action()

    threading.Thread(target=wait, daemon=True).start()
