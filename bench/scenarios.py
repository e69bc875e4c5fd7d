"""ComfyUIPodClient per scenario: the path used, the time from the simulator's final message to
the result, and the HTTP requests made: ``python -m bench.scenarios``."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable

from bench.logs import logs_to_file
from tests.traces import load_workflow
from worker.comfyui.errors import ComfyUIError
from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.job_request import ExecutionPath
from worker.comfyui.observer import FallbackEvent, JobObserver
from worker.comfyui.pod_client import ComfyUIPodClient, PodClientSettings
from worker.comfyui.websocket_client import ConnectionEvent, WebSocketSettings
from worker.simulator import ComfyUISimulator, SimulatorTiming

_SALT = itertools.count(1)
SETTINGS = PodClientSettings(
    http=HTTPSettings(connect_timeout=1.0, read_timeout=5.0, retries=2, retry_backoff=0.05),
    websocket=WebSocketSettings(
        connect_timeout=1.0, reconnect_attempts=3, reconnect_delay=0.1, ping_interval=0.5, idle_timeout=30.0, read_slice=0.05
    ),
    poll_interval=0.5,
    history_probe_interval=1.0,
)


def slow(steps: int = 10) -> dict[str, object]:
    return {
        "1": {"class_type": "LabSlowProgress", "inputs": {"steps": steps, "seconds_per_step": 0.1, "salt": next(_SALT)}},
        "2": {"class_type": "LabTextOutput", "inputs": {"text": "done", "value": ["1", 0]}},
    }


class _Names(JobObserver):
    """The class names of the connection and fallback events, in order."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def on_connection_event(self, event: ConnectionEvent) -> None:
        self.names.append(type(event).__name__)

    def on_fallback(self, event: FallbackEvent) -> None:
        self.names.append(type(event).__name__)


def run(
    name: str,
    arm: Callable[[ComfyUISimulator, list[str]], None],
    workflow: dict[str, object],
    path: ExecutionPath = "auto",
    settings: PodClientSettings = SETTINGS,
) -> None:
    with ComfyUISimulator(timing=SimulatorTiming(node_seconds=0.01, sampler_step_seconds=0.05)) as sim:
        last_event: dict[str, float] = {}
        engine = sim.sim.engine
        engine.on_event = lambda event, prompt: last_event.__setitem__("t", time.monotonic())
        connected: list[str] = []
        client = ComfyUIPodClient(sim.url, settings=settings, observers=[_Names(connected)])
        arm(sim, connected)
        try:
            result = client.execute_workflow(workflow, path=path, prompt_id=name)
            outcome = f"{result.method:<12} {(time.monotonic() - last_event['t']) * 1000:7.0f} ms"
        except ComfyUIError as exc:
            outcome = f"{exc.code:<12} {(time.monotonic() - last_event.get('t', time.monotonic())) * 1000:7.0f} ms"
        counts = {k: v for k, v in sim.request_counts().items() if not k.startswith("GET /_sim")}
        client.close()
    print(f"{name:<34} {outcome}   {dict(sorted(counts.items()))}")


def after_connect(action: Callable[[], None]) -> Callable[[ComfyUISimulator, list[str]], None]:
    def arm(sim: ComfyUISimulator, events: list[str]) -> None:
        def wait() -> None:
            while not events:
                time.sleep(0.001)
            action()

        threading.Thread(target=wait, daemon=True).start()

    return arm


def drop_then_refuse(occurrence: int, **refusal: float) -> Callable[[ComfyUISimulator, list[str]], None]:
    """Drop the socket at the n-th progress; refuse reconnects (armed once the first socket is up)."""

    def arm(sim: ComfyUISimulator, events: list[str]) -> None:
        sim.faults.drop_sockets(at_event="progress", occurrence=occurrence)
        after_connect(lambda: sim.faults.refuse_websocket(**refusal))(sim, events)  # type: ignore[arg-type]

    return arm


def after_connect_delayed(seconds: float, action: Callable[[], None]) -> Callable[[ComfyUISimulator, list[str]], None]:
    """``action`` ``seconds`` after the first socket is up (about when the job starts)."""

    def later() -> None:
        time.sleep(seconds)
        action()

    return after_connect(later)


def faults_at_defaults() -> None:
    """Issue 14's fault cases with the default settings (reconnect 3 x 5 s, history probe 5 s, poll 2 s)."""
    defaults = PodClientSettings()
    print(f"\n{'default settings, 3 s job':<34} {'path':<12} {'job end → result':>10}   HTTP requests")
    run("healthy socket", lambda s, e: None, slow(30), settings=defaults)
    run("socket dropped 1 s in", lambda s, e: s.faults.drop_sockets(at_event="progress", occurrence=10), slow(30), settings=defaults)
    run("dropped, reconnects refused 20 s", drop_then_refuse(10, seconds=20), slow(30), settings=defaults)
    run(
        "silent socket from 1 s in",
        lambda s, e: after_connect_delayed(1.0, lambda: setattr(s.faults, "silent", True))(s, e),
        slow(30),
        settings=defaults,
    )
    run("POST reply 3 s late, job 0.6 s", lambda s, e: setattr(s.faults, "prompt_reply_delay", 3.0), slow(6), settings=defaults)
    run("polling only", lambda s, e: None, slow(30), "polling", settings=defaults)


def main() -> None:
    print(f"{'scenario':<34} {'path':<12} {'final msg → result':>10}   HTTP requests")
    txt2img = load_workflow("txt2img-sd15-random.json")
    run("websocket", lambda s, e: None, txt2img)
    run("polling-only path", lambda s, e: None, txt2img, "polling")
    run("ws refused → fallback", lambda s, e: s.faults.refuse_websocket(times=1), txt2img)
    run("handshake timeout → fallback", lambda s, e: setattr(s.faults, "handshake_delay", 2.0), txt2img)
    run("drop mid-job, reconnect ok", lambda s, e: s.faults.drop_sockets(at_event="progress", occurrence=3), slow())
    run("drop mid-job, reconnect refused", drop_then_refuse(3, times=10), slow())
    run("finishes while disconnected", drop_then_refuse(9, seconds=0.3), slow())
    run("finishes before POST reply", lambda s, e: setattr(s.faults, "prompt_reply_delay", 1.0), slow(3))
    run("silent socket (history probe)", lambda s, e: after_connect(lambda: setattr(s.faults, "silent", True))(s, e), slow())
    run(
        "history 500 x3 then ok (polling)",
        lambda s, e: s.faults.fail_route("GET", "/history", status=500, times=3),
        slow(),
        "polling",
    )
    run(
        "history 500 on the ws probes",
        lambda s, e: after_connect(lambda: s.faults.fail_route("GET", "/history", status=500, times=3))(s, e),
        slow(20),
    )
    run("history written 0.5 s late", lambda s, e: setattr(s.sim.timing, "history_delay_seconds", 0.5), slow())
    faults_at_defaults()


if __name__ == "__main__":
    with logs_to_file("scenarios"):
        main()
