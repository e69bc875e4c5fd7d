"""ComfyUIPodClient through its injection points: a fake HTTP session, fake sockets, a FakeClock.

The same paths as the integration tests over real sockets, in milliseconds, with the request
counts ``bench.scenarios`` reports for them.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import websocket

from tests.fakes import FakeComfyUI, FakeSocket, Frame, SocketFactory, text
from tests.observers import PodEvents, ProgressLog
from tests.traces import TRACE_DIR, load_trace
from worker.comfyui.clock import FakeClock
from worker.comfyui.errors import JobCancelledError, JobTimeoutError
from worker.comfyui.job_request import JobRequest, PodClientSettings
from worker.comfyui.observer import FallbackEvent, JobObserver
from worker.comfyui.pod_client import ComfyUIPodClient, PodEvent
from worker.comfyui.progress import JobProgressState
from worker.comfyui.rest_client import SubmittedPrompt
from worker.comfyui.websocket_client import ConnectionEvent, WebSocketSettings

SETTINGS = PodClientSettings(
    websocket=WebSocketSettings(connect_timeout=1.0, reconnect_attempts=2, reconnect_delay=0.5, read_slice=0.01),
    poll_interval=2.0,
    job_timeout=30.0,
)


def recorded(trace: str) -> tuple[str, dict[str, Any], list[Frame]]:
    """A trace's prompt id, workflow and the text frames its socket heard after the greeting."""
    records = load_trace(TRACE_DIR / f"{trace}.jsonl")
    post = next(r for r in records if r["kind"] == "http" and r["path"] == "/prompt")
    frames = [text(r["msg"]) for r in records if r["kind"] == "ws_text" and r["conn"] == "A"][1:]
    return post["response"]["prompt_id"], post["request"]["prompt"], frames


class Pod:
    def __init__(self, *sockets: Any) -> None:
        self.server = FakeComfyUI()
        self.clock = FakeClock()
        self.sockets = SocketFactory(*sockets)
        self.events: list[PodEvent] = []
        self.progress: list[JobProgressState] = []
        self.client = ComfyUIPodClient(
            "http://pod.test:8188",
            settings=SETTINGS,
            clock=self.clock,
            session_factory=self.server.session,
            ws_factory=self.sockets,
            observers=[PodEvents(self.events)],
        )

    def run(
        self,
        prompt_id: str,
        workflow: dict[str, Any],
        observer: JobObserver | None = None,
        cancel: threading.Event | None = None,
        **options: Any,
    ) -> Any:
        observers = [ProgressLog(self.progress), *([observer] if observer else [])]
        return self.client.run(JobRequest(workflow, prompt_id=prompt_id, **options), observers=observers, cancel=cancel)


def test_websocket_path_from_a_recorded_run() -> None:
    prompt_id, workflow, frames = recorded("success-ksampler")
    pod = Pod()
    pod.sockets.sockets.append(FakeSocket(frames, gate=pod.server.submitted))
    pod.server.finish_after_polls = 1
    result = pod.run(prompt_id, workflow)
    assert (result.status, result.method, result.fallback_reason) == ("success", "websocket", None)
    assert dict(pod.server.counts) == {"GET /system_stats": 1, "POST /prompt": 1, "GET /history/{prompt_id}": 1}
    curve = [s.progress for s in pod.progress]
    assert curve == sorted(curve) and curve[-1] == 100.0 and result.progress_updates == len(curve)
    assert [e.kind for e in pod.events if isinstance(e, ConnectionEvent)] == ["connected"]
    assert f"clientId={pod.server.prompts[prompt_id]['client_id']}" in pod.sockets.urls[0]


def test_a_refused_upgrade_falls_back_to_polling_at_once() -> None:
    prompt_id, workflow, _ = recorded("success-image-only")
    pod = Pod(websocket.WebSocketBadStatusException("Handshake status %d %s", 503, "Service Unavailable"))
    pod.server.finish_after_polls = 2
    result = pod.run(prompt_id, workflow)
    assert (result.method, result.fallback_reason) == ("rest_polling", "connection_failed")
    assert [type(e) for e in pod.events] == [FallbackEvent]
    counts = dict(pod.server.counts)
    assert counts == {"GET /system_stats": 1, "POST /prompt": 1, "GET /history/{prompt_id}": 2, "GET /queue": 1}
    assert sum(pod.clock.sleeps) == pytest.approx(SETTINGS.poll_interval)  # one poll interval, slept on the fake clock


def test_a_drop_mid_job_reconnects_with_the_same_client_id_and_asks_history_at_once() -> None:
    prompt_id, workflow, frames = recorded("success-ksampler")
    pod = Pod()
    pod.sockets.sockets.extend([FakeSocket(frames[:6], gate=pod.server.submitted, drop=True), FakeSocket(frames[6:])])
    pod.server.finish_after_polls = 2
    result = pod.run(prompt_id, workflow)
    assert (result.status, result.method) == ("success", "websocket")
    assert [e.kind for e in pod.events if isinstance(e, ConnectionEvent)] == ["connected", "disconnected", "reconnected"]
    assert len(pod.sockets.urls) == 2 and pod.sockets.urls[0] == pod.sockets.urls[1]
    assert pod.server.counts["GET /queue"] == 1 and pod.server.counts["GET /history/{prompt_id}"] == 2


def test_cancel_once_submitted_interrupts_the_running_prompt() -> None:
    prompt_id, workflow, _ = recorded("success-image-only")
    pod = Pod(websocket.WebSocketBadStatusException("Handshake status %d %s", 503, "Service Unavailable"))
    cancel = threading.Event()

    class CancelOnSubmit(JobObserver):
        def on_submitted(self, submitted: SubmittedPrompt) -> None:
            cancel.set()

    with pytest.raises(JobCancelledError):
        pod.run(prompt_id, workflow, CancelOnSubmit(), cancel=cancel)
    assert pod.server.counts["POST /interrupt"] == 1 and pod.server.running == []
    assert pod.progress[-1].status.value == "cancelled"


def test_the_deadline_ends_a_prompt_that_never_finishes_on_the_fake_clock() -> None:
    prompt_id, workflow, _ = recorded("success-image-only")
    pod = Pod(websocket.WebSocketBadStatusException("Handshake status %d %s", 503, "Service Unavailable"))
    with pytest.raises(JobTimeoutError):
        pod.run(prompt_id, workflow, timeout=5.0)
    assert pod.server.counts["POST /interrupt"] == 1
    assert 5.0 <= sum(pod.clock.sleeps) < 5.0 + SETTINGS.poll_interval
