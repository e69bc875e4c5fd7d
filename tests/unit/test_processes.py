"""Stopping children survives repeated Ctrl-C: the child is gone before the interrupt is raised."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pytest

from worker.app.processes import sigint_deferred, stop_process

# a child that ignores SIGTERM for a while, as a Celery worker finishing a job does
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


def test_two_ctrl_c_during_a_stop_do_not_orphan_the_child() -> None:
    child = subprocess.Popen([sys.executable, "-c", STUBBORN], stdout=subprocess.PIPE)
    assert child.stdout is not None and child.stdout.readline() == b"up\n"
    timers = [threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT)) for delay in (0.1, 0.2)]
    for timer in timers:
        timer.start()
    with pytest.raises(KeyboardInterrupt):  # raised, but only once the child is gone
        stop_process(child, grace=0.5)
    for timer in timers:
        timer.join()
    assert child.poll() is not None
    child.stdout.close()


def test_a_stop_without_interrupts_returns_quietly() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    assert stop_process(child, grace=5) is True
    assert child.returncode == -signal.SIGTERM


def test_sigint_deferred_restores_the_handler() -> None:
    before = signal.getsignal(signal.SIGINT)
    with sigint_deferred() as held:
        assert held == []
    assert signal.getsignal(signal.SIGINT) is before
