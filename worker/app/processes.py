"""Stopping a child process we started: ask with a signal, wait, then kill.

The demo's worker, the private ``redis-server`` and the tests' worker processes all end this
way; only the signal and the patience differ. A Ctrl-C that arrives while a child is being
stopped (people press it twice) is held until the child is gone, then raised: interrupting the
wait used to leave the child running, orphaned, after we claimed to have stopped it.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["sigint_deferred", "stop_process"]


@contextlib.contextmanager
def sigint_deferred() -> Iterator[list[int]]:
    """Hold SIGINT for the block (main thread only); raise KeyboardInterrupt after it if one came.

    Yields the list of held signals, so a caller can tell the user it is still stopping."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def stop_process(process: subprocess.Popen[Any], *, sig: int = signal.SIGTERM, grace: float = 5.0) -> bool:
    """Send ``sig`` and wait up to ``grace`` seconds; a process still running is then killed.

    Returns whether the process has ended (it has, unless even SIGKILL did not take within 5 s)."""
    with sigint_deferred():
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)
        return process.poll() is not None
