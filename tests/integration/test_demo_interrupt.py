"""Ctrl-C (twice) while the demo's poller follows a running job: the demo ends quietly and at once.

The poller's unfinished ``AsyncResult`` stays subscribed to its result channel; it used to be
garbage-collected only after the demo had stopped its private Redis, and its ``__del__`` then
retried the dead server 20 times a second apart, printing ``Connection to Redis lost`` and a
``RuntimeError`` traceback after the line that says everything has stopped.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.integration.celery_support import ROOT


def _demo_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "COMFYUI_", "REDIS_URL"))}
    return dict(env, PYTHONPATH=str(ROOT))


def test_ctrl_c_while_following_leaves_no_reconnect_noise(tmp_path: Path) -> None:
    demo = subprocess.Popen(
        [sys.executable, "-m", "worker", "demo", "--plain", "--step-seconds", "0.5", "--output-dir", str(tmp_path / "out")],
        cwd=ROOT,
        env=_demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, like a shell's foreground job
    )
    assert demo.stdout is not None
    lines: list[str] = []
    for line in demo.stdout:
        lines.append(line)
        if "KSampler" in line:  # the poller has seen PROGRESS: its result is subscribed
            break
    assert any("KSampler" in line for line in lines), "".join(lines)
    os.killpg(demo.pid, signal.SIGINT)
    time.sleep(0.2)  # people press it twice: the second lands while the demo stops its children
    os.killpg(demo.pid, signal.SIGINT)
    rest, _ = demo.communicate(timeout=60)
    output = "".join(lines) + rest
    assert demo.returncode == 130, output
    tail = rest.split("have stopped", 1)[-1]
    assert "have stopped" in rest, output
    assert "Connection to Redis lost" not in tail, output
    assert "Traceback" not in tail, output
