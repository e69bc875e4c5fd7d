"""Follow a task as a web backend would (poll ``AsyncResult``) and draw its progress."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from worker.app.progress_bar import render

__all__ = ["follow_task"]


def follow_task(
    read_state: Callable[[], tuple[str, Any]],
    *,
    timeout: float,
    out: TextIO = sys.stdout,
    interactive: bool | None = None,
    interval: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    on_pending: Callable[[], str | None] | None = None,
) -> str:
    """Poll until the task ends or ``timeout`` passes; return the final state ("TIMEOUT" if none).

    While the task is PENDING, ``on_pending`` may end the wait by returning a message (written
    on its own line; the result is then "NO_WORKER"): a task no worker consumes never starts.

    ``read_state`` returns (state, info) from one read (``tasks.client.task_state``), so a state
    and its meta always belong together. Interactive terminals get one redrawn line; logs and
    pipes get a line per change.
    """
    interactive = out.isatty() if interactive is None else interactive
    deadline = time.monotonic() + timeout
    last = ""
    last_meta: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state, info = read_state()
        stop = on_pending() if on_pending is not None and state == "PENDING" else None
        if stop is not None:
            out.write(("\n" if interactive and last else "") + stop + "\n")
            out.flush()
            return "NO_WORKER"
        info = info if state == "PROGRESS" else None
        if isinstance(info, dict):
            last_meta = info
        line = render(state, info if isinstance(info, dict) else None)
        if state == "SUCCESS":
            # the final PROGRESS may have lived only milliseconds: end on a full bar
            line = render("PROGRESS", {**last_meta, "progress": 100.0, "status": "completed", "node_type": None}) + "  done"
        # a pipe cannot redraw: a full bar before SUCCESS would print 100 % twice (the SUCCESS line says it)
        full = state == "PROGRESS" and isinstance(info, dict) and float(info.get("progress") or 0.0) >= 100.0
        if line != last and (interactive or not full):
            if interactive:
                out.write("\r\x1b[2K" + line)
            else:
                out.write(line + "\n")
            out.flush()
            last = line
        if state in ("SUCCESS", "FAILURE", "REVOKED"):
            if interactive:
                out.write("\n")
            return state
        sleep(interval)
    if interactive:
        out.write("\n")
    return "TIMEOUT"
