"""The first hour of a user, against real processes: README's snippets as printed, the raw
stored FAILURE JSON, a plain ``send_task``, and Flower started the documented way."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
import requests
from celery import Celery

from tests.integration.celery_support import ROOT, WorkerProcess, app_for, env_for, finished, wait_for
from worker.app.processes import stop_process
from worker.simulator import ComfyUISimulator


def readme_python_snippets() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.MULTILINE | re.DOTALL)


def _raw(broker: str, task_id: str) -> dict[str, Any]:
    raw = redis.Redis.from_url(broker).get(f"celery-task-meta-{task_id}")
    assert raw is not None
    data: dict[str, Any] = json.loads(raw)
    return data


def test_readme_python_snippets_run_as_printed(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    snippets = readme_python_snippets()
    assert snippets, "README has no Python snippet"
    env = env_for(broker, sim.url)
    worker = WorkerProcess(app_for(env), env, log_path=tmp_path / "worker.log")
    try:
        # the user's shell: REDIS_URL only, none of Celery's own variables
        user_env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "COMFYUI_"))}
        user_env.update(REDIS_URL=broker)
        for snippet in snippets:
            done = subprocess.run(
                [sys.executable, "-c", snippet], cwd=ROOT, env=user_env, capture_output=True, text=True, timeout=60, check=False
            )
            assert done.returncode == 0, done.stderr[-2000:]
            if "print(result.state, result.info)" in snippet:  # the polling loop ends on the final state
                assert done.stdout.strip().splitlines()[-1].startswith("SUCCESS {"), done.stdout[-2000:]
    finally:
        worker.stop()


def test_a_plain_send_task_without_a_queue_is_picked_up(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    """What a backend writes from Celery's docs: no queue, no routes. Celery's default queue."""
    from tests.conftest import slow_workflow

    env = env_for(broker, sim.url)
    worker = WorkerProcess(app_for(env), env, log_path=tmp_path / "worker.log")
    plain = Celery(broker=broker, backend=broker, set_as_current=False)
    try:
        task = plain.send_task("comfy.run_workflow", args=[slow_workflow(steps=1)])
        assert task.get(timeout=20)["status"] == "success"
    finally:
        plain.close()
        worker.stop()


def test_the_raw_failure_json_carries_code_message_and_fields(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    """Read the Redis key with nothing but json: no import of our code to decode it."""
    from tasks.client import enqueue_workflow

    env = env_for(broker, sim.url)
    app = app_for(env)
    worker = WorkerProcess(app, env, log_path=tmp_path / "worker.log")
    failing = {
        "1": {"class_type": "LabSlowProgress", "inputs": {"steps": 1, "seconds_per_step": 0.1, "salt": 0}},
        "2": {"class_type": "LabRaiseError", "inputs": {"message": "raw-boom", "value": ["1", 0]}},
    }
    try:
        broken = enqueue_workflow(app, failing)
        bad_option = app.send_task("comfy.run_workflow", args=[failing], kwargs={"options": {"pod": "nope"}})
        for result in (broken, bad_option):
            wait_for(result, finished)
    finally:
        worker.stop()
    raw = _raw(broker, broken.id)
    assert (raw["status"], raw["result"]["exc_type"]) == ("FAILURE", "ExecutionError")
    message, fields = raw["result"]["exc_message"]
    assert fields["code"] == "execution" and fields["message"] == message
    assert (fields["node_id"], fields["node_type"], fields["exception_type"]) == ("2", "LabRaiseError", "RuntimeError")
    raw = _raw(broker, bad_option.id)
    message, fields = raw["result"]["exc_message"]
    assert (raw["result"]["exc_type"], fields["code"]) == ("WorkflowValidationError", "validation")
    assert message == "unknown pod 'nope'; configured: pod0"  # said once, not quoted twice


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _flower(args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, *args, f"--port={port}"], env=env, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1)
            return process, port
        except requests.ConnectionError:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.1)


def test_flower_with_an_empty_basic_auth_is_usable_through_the_launcher(broker: str, tmp_path: Path) -> None:
    """docker-compose passes FLOWER_BASIC_AUTH="" when unset: plain Flower then locks every page for good."""
    env = dict(env_for(broker, "http://127.0.0.1:9"), FLOWER_BASIC_AUTH="", FLOWER_UNAUTHENTICATED_API="false")
    plain, port = _flower(["-m", "celery", "-A", "tasks.app", "flower", "--address=127.0.0.1"], env, tmp_path / "plain.log")
    try:
        # Flower's own trap: the credential list [''] that no login matches
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 401
        assert requests.get(f"http://127.0.0.1:{port}/", auth=("", ""), timeout=5).status_code == 401
    finally:
        stop_process(plain, grace=10)
    launched, port = _flower(["-m", "worker.app.flower"], env, tmp_path / "launched.log")
    try:
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/api/workers", timeout=5).status_code == 401  # the API stays locked
    finally:
        stop_process(launched, grace=10)
    assert "listening on 127.0.0.1 only" in (tmp_path / "launched.log").read_text()


def test_flower_with_basic_auth_prompts_a_browser(broker: str, tmp_path: Path) -> None:
    env = dict(env_for(broker, "http://127.0.0.1:9"), FLOWER_BASIC_AUTH="ops:s3cret")
    flower, port = _flower(["-m", "worker.app.flower", "--address=127.0.0.1"], env, tmp_path / "flower.log")
    try:
        page = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert page.status_code == 401 and page.headers["WWW-Authenticate"].startswith("Basic")
        assert requests.get(f"http://127.0.0.1:{port}/", auth=("ops", "s3cret"), timeout=5).status_code == 200
    finally:
        stop_process(flower, grace=10)


def _cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _workflow_file(tmp_path: Path, steps: int = 2, seconds_per_step: float = 0.1) -> Path:
    from tests.conftest import slow_workflow

    path = tmp_path / "job.json"
    path.write_text(json.dumps(slow_workflow(steps=steps, seconds_per_step=seconds_per_step)))
    return path


def test_status_tells_an_unknown_id_from_a_queued_one(broker: str, tmp_path: Path) -> None:
    env = env_for(broker, "http://127.0.0.1:9")  # no worker at all
    submitted = _cli("submit", str(_workflow_file(tmp_path)), env=env)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    queued = _cli("status", task_id, env=env)
    assert queued.returncode == 0
    view = json.loads(queued.stdout)
    assert (view["state"], view["queued"]) == ("PENDING", {"queue": "comfyui", "position": 0})
    unknown = _cli("status", "no-such-task", env=env)
    assert unknown.returncode == 3
    assert json.loads(unknown.stdout)["note"].startswith("unknown task id")


def test_submit_wait_gives_up_when_no_worker_consumes_the_queue(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    env = env_for(broker, f"a={sim.url}")
    worker = WorkerProcess(app_for(env), env, log_path=tmp_path / "worker.log")  # consumes comfyui and celery only
    try:
        args = ("submit", str(_workflow_file(tmp_path)), "--wait", "--plain", "--pod", "a", "--queue-per-pod", "--no-worker-timeout", "1")
        done = _cli(*args, env=env)
    finally:
        worker.stop()
    assert done.returncode == 1
    assert "no worker consumes queue 'comfyui.a' (workers seen: " in done.stdout
    assert worker.name in done.stdout
    assert "cancel it: python3 -m worker cancel" in done.stderr


def test_submit_wait_reports_the_tasks_own_timeout(broker: str, sim: ComfyUISimulator, tmp_path: Path) -> None:
    env = env_for(broker, sim.url)
    worker = WorkerProcess(app_for(env), env, log_path=tmp_path / "worker.log")
    try:
        done = _cli(
            "submit", str(_workflow_file(tmp_path, steps=200, seconds_per_step=1.0)), "--wait", "--plain", "--timeout", "1", env=env
        )
    finally:
        worker.stop()
    assert done.returncode == 1
    view = json.loads(done.stderr[done.stderr.index("{") :])
    assert view["state"] == "FAILURE" and view["error"]["code"] == "timeout", view


def test_ctrl_c_on_submit_wait_says_the_job_keeps_running_and_cancel_revokes_it(broker: str, tmp_path: Path) -> None:
    import signal

    env = env_for(broker, "http://127.0.0.1:9")
    process = subprocess.Popen(
        [sys.executable, "-m", "worker", "submit", str(_workflow_file(tmp_path)), "--wait", "--plain", "--no-worker-timeout", "60"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    task_id = process.stdout.readline().strip()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130
    assert f"task {task_id} keeps running on the fleet" in stderr
    assert "everything" not in stderr
    cancelled = _cli("cancel", task_id, env=env)
    assert cancelled.returncode == 0 and "cancel sent" in cancelled.stdout


def _demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "COMFYUI_", "REDIS_URL"))}
    return dict(env, PYTHONPATH=str(ROOT))


def test_the_demo_with_an_unreachable_configured_broker_uses_a_private_one(tmp_path: Path) -> None:
    """Celery prefers CELERY_BROKER_URL over Celery(broker=…): the demo used to connect to the dead one."""
    env = dict(_demo_env(), CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    done = _cli("demo", "--plain", "--step-seconds", "0.05", "--output-dir", str(tmp_path / "out"), env=env, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "using a private redis-server instead" in done.stdout
    assert list((tmp_path / "out").rglob("*.png"))  # the demo's file store: outputs/<task id>/…


def test_two_ctrl_c_during_the_demo_stop_everything_it_started(tmp_path: Path) -> None:
    import signal

    # its own process group, like a shell's foreground job: Ctrl-C goes to the whole group
    demo = subprocess.Popen(
        [sys.executable, "-m", "worker", "demo", "--plain", "--step-seconds", "0.5", "--output-dir", str(tmp_path / "out")],
        cwd=ROOT,
        env=_demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert demo.stdout is not None
    worker_pid = None
    lines: list[str] = []
    for line in demo.stdout:
        lines.append(line)
        if line.strip().startswith("worker pid "):
            worker_pid = int(line.split()[-1])
        if line.startswith("4/5"):
            break
    assert worker_pid is not None, "".join(lines)
    os.killpg(demo.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(demo.pid, signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 130, "".join(lines) + rest
    assert "have stopped" in rest
    try:
        os.kill(worker_pid, 0)
    except ProcessLookupError:
        pass
    else:
        os.kill(worker_pid, signal.SIGKILL)
        raise AssertionError(f"the demo's worker {worker_pid} outlived the demo")
