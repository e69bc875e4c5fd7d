"""The command line when things are not there: a dead broker, an unknown pod, a queue nobody
consumes, a result from a pod this machine does not list. One line, a non-zero exit, fast."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config.settings import Settings
from worker.app.cli import UsageError, _download_client, _pod_queue, _wait_bound
from worker.app.follow import follow_task
from worker.app.preflight import QueueWatch, url_source

ROOT = Path(__file__).resolve().parents[2]
DEAD = "redis://127.0.0.1:1/0"


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "COMFYUI_", "REDIS_URL"))}
    clean.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "worker", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize("command", [["submit", "worker/app/samples/txt2img.json", "--wait"], ["status", "x"], ["cancel", "x"]])
def test_a_dead_broker_fails_fast_in_one_line(command: list[str]) -> None:
    started = time.monotonic()
    done = _run(*command, CELERY_BROKER_URL=DEAD)
    assert done.returncode == 3
    assert time.monotonic() - started < 15  # it used to retry for 20 s, then print 130 lines
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: cannot reach the broker at {DEAD} (CELERY_BROKER_URL)")
    assert "Start it, or point CELERY_BROKER_URL at a running one." in lines[0]
    assert done.stdout == ""  # nothing was enqueued


def test_an_unknown_pod_is_one_line_with_or_without_queue_per_pod() -> None:
    for extra in ([], ["--queue-per-pod"]):
        done = _run("submit", "worker/app/samples/txt2img.json", "--pod", "nope", *extra, CELERY_BROKER_URL=DEAD)
        assert done.returncode == 2
        assert done.stderr.strip() == "error: unknown pod 'nope': COMFYUI_SERVERS names pod0"


def test_queue_choice() -> None:
    settings = Settings.from_env({"COMFYUI_SERVERS": "a=http://a:1,b=http://b:1"})

    def ns(pod: str | None, per_pod: bool) -> argparse.Namespace:
        return argparse.Namespace(pod=pod, queue_per_pod=per_pod)

    assert _pod_queue(settings, ns(None, False)) == "comfyui"
    assert _pod_queue(settings, ns("b", False)) == "comfyui"
    assert _pod_queue(settings, ns("b", True)) == "comfyui.b"
    with pytest.raises(UsageError, match="needs --pod"):
        _pod_queue(settings, ns(None, True))


def test_wait_outlasts_the_jobs_own_deadline() -> None:
    settings = Settings.from_env({"JOB_TIME_LIMIT": "100", "JOB_HARD_TIME_LIMIT": "130"})
    assert _wait_bound(settings, 2.0) > 2.0 + 30  # the FAILURE timeout arrives after the interrupt
    assert _wait_bound(settings, None) > 130


def test_downloads_come_from_the_pod_that_ran_the_job() -> None:
    settings = Settings.from_env({"COMFYUI_API_KEY": "k"})  # COMFYUI_SERVERS unset: 127.0.0.1:8188
    client = _download_client(settings, {"pod": "gpu7", "server_url": "https://pod-7.example:8443/comfy"})
    try:
        assert client.server_url == "https://pod-7.example:8443/comfy"
    finally:
        client.close()


def test_url_source_names_the_variable() -> None:
    assert url_source({"REDIS_URL": "redis://r/0"}) == "REDIS_URL"
    assert url_source({"REDIS_URL": "redis://r/0", "CELERY_BROKER_URL": "redis://b/0"}) == "CELERY_BROKER_URL"


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_queue_watch_gives_up_when_nobody_consumes_the_queue_and_names_who_was_seen() -> None:
    clock = _Clock()
    said: list[str] = []
    watch = QueueWatch("comfyui.a", lambda: {"w1@h": ["comfyui", "celery"]}, grace=10, every=2, clock=clock, say=said.append)
    assert watch() is None
    clock.now = 10.5
    message = watch()
    assert message is not None
    assert "no worker consumes queue 'comfyui.a'" in message and "w1@h [comfyui, celery]" in message
    assert "-Q comfyui.a" in message


def test_queue_watch_waits_on_while_a_worker_consumes_the_queue() -> None:
    clock = _Clock()
    said: list[str] = []
    watch = QueueWatch("comfyui", lambda: {"w1@h": ["comfyui"]}, grace=1, every=0.5, clock=clock, say=said.append)
    for step in range(20):
        clock.now = step * 1.0
        assert watch() is None
    assert said == ["queued on 'comfyui': waiting for a free worker (workers: w1@h [comfyui])"]


def test_follow_stops_with_the_pending_message() -> None:
    out = io.StringIO()
    calls = iter([None, None, "no worker consumes queue 'q'"])
    state = follow_task(
        lambda: ("PENDING", None), timeout=5, out=out, interactive=False, sleep=lambda s: None, on_pending=lambda: next(calls)
    )
    assert state == "NO_WORKER"
    assert out.getvalue().splitlines()[-1] == "no worker consumes queue 'q'"
