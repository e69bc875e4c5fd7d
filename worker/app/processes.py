"""Stopping a child process we started: ask with a signal, wait, then kill.

The demo's worker, the private ``redis-server`` and the tests' worker processes all end this
way; only the signal and the patience differ.
"""

from __future__ import annotations

import signal
import subprocess
from typing import Any

__all__ = ["stop_process"]


def stop_process(process: subprocess.Popen[Any], *, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
    """Send ``sig`` and wait up to ``grace`` seconds; a process still running is then killed."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
