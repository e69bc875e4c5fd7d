"""Fault injection for the simulator, driven from Python or from ``POST /_sim/faults``.

Each fault mimics something real: a proxy refusing upgrades, a pod that drops sockets, a
half-open connection that stays silent, a slow or failing REST route, a restart that loses
queue and history, frames corrupted or reordered in transit, and a ``POST /prompt`` reply that
arrives after the prompt's first events.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["Faults", "RouteFault"]


@dataclass
class RouteFault:
    method: str
    path: str  # matched against the path without the /api prefix, as a prefix
    status: int | None = None
    delay: float = 0.0
    times: int | None = None  # None: until cleared

    def matches(self, method: str, path: str) -> bool:
        return self.method in ("*", method) and path.startswith(self.path)


class Faults:
    """The active faults. Thread-safe: tests arm them from another thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self.refuse_ws_times = 0
            self.refuse_ws_until = 0.0
            self.refuse_ws_status = 503
            self.handshake_delay = 0.0
            self.silent = False
            self.drop_after_messages: int | None = None
            self.drop_at_event: tuple[str, int] | None = None
            self.corrupt_frames = 0
            self.duplicate_frames = 0
            self.reorder_frames = 0
            #: when set, only frames of this message type are corrupted, duplicated or reordered
            self.mangle_only: str | None = None
            self.prompt_reply_delay = 0.0
            self.routes: list[RouteFault] = []
            self.drop_now_requested = False
            self.restart_requested = False

    # ---------------------------------------------------------------- arming

    def refuse_websocket(self, times: int | None = None, seconds: float | None = None, status: int = 503) -> None:
        """Answer upgrades with an HTTP error, ``times`` times or for ``seconds``."""
        with self._lock:
            self.refuse_ws_status = status
            if times is not None:
                self.refuse_ws_times = times
            if seconds is not None:
                self.refuse_ws_until = time.monotonic() + seconds

    def drop_sockets(self, *, after_messages: int | None = None, at_event: str | None = None, occurrence: int = 1) -> None:
        """Close every socket now, after ``after_messages`` more frames, or at the n-th ``at_event``."""
        with self._lock:
            if after_messages is None and at_event is None:
                self.drop_now_requested = True
            self.drop_after_messages = after_messages
            self.drop_at_event = (at_event, occurrence) if at_event else None

    def fail_route(self, method: str, path: str, *, status: int | None = None, delay: float = 0.0, times: int | None = None) -> None:
        with self._lock:
            self.routes.append(RouteFault(method.upper(), path, status, delay, times))

    def arm(self, spec: dict[str, Any]) -> None:
        """The HTTP control route's body: each key arms one fault."""
        if spec.get("clear"):
            self.clear()
        if "refuse_websocket" in spec:
            r = spec["refuse_websocket"]
            self.refuse_websocket(r.get("times"), r.get("seconds"), int(r.get("status", 503)))
        if "drop_sockets" in spec:
            d = spec["drop_sockets"]
            if d == "now":
                self.drop_sockets()
            else:
                self.drop_sockets(
                    after_messages=d.get("after_messages"), at_event=d.get("at_event"), occurrence=int(d.get("occurrence", 1))
                )
        with self._lock:
            if "silent" in spec:
                self.silent = bool(spec["silent"])
            if "handshake_delay" in spec:
                self.handshake_delay = float(spec["handshake_delay"])
            if "corrupt_frames" in spec:
                self.corrupt_frames = int(spec["corrupt_frames"])
            if "duplicate_frames" in spec:
                self.duplicate_frames = int(spec["duplicate_frames"])
            if "reorder_frames" in spec:
                self.reorder_frames = int(spec["reorder_frames"])
            if "mangle_only" in spec:
                self.mangle_only = spec["mangle_only"]
            if "prompt_reply_delay" in spec:
                self.prompt_reply_delay = float(spec["prompt_reply_delay"])
            if spec.get("restart"):
                self.restart_requested = True
        for route in spec.get("routes", []):
            self.fail_route(
                route["method"], route["path"], status=route.get("status"), delay=float(route.get("delay", 0)), times=route.get("times")
            )

    # ---------------------------------------------------------------- consulted by the server

    def take_ws_refusal(self) -> int | None:
        with self._lock:
            if self.refuse_ws_times > 0:
                self.refuse_ws_times -= 1
                return self.refuse_ws_status
            if time.monotonic() < self.refuse_ws_until:
                return self.refuse_ws_status
            return None

    def take_route_fault(self, method: str, path: str) -> RouteFault | None:
        with self._lock:
            for fault in self.routes:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self.routes.remove(fault)
                    return fault
            return None

    def take_drop_now(self) -> bool:
        with self._lock:
            requested, self.drop_now_requested = self.drop_now_requested, False
            return requested

    def take_restart(self) -> bool:
        with self._lock:
            requested, self.restart_requested = self.restart_requested, False
            return requested

    def count_message(self, event: str | None) -> bool:
        """Called per frame sent; True when the sockets should be dropped now."""
        with self._lock:
            if self.drop_after_messages is not None:
                self.drop_after_messages -= 1
                if self.drop_after_messages <= 0:
                    self.drop_after_messages = None
                    return True
            if self.drop_at_event is not None and event == self.drop_at_event[0]:
                name, left = self.drop_at_event
                if left <= 1:
                    self.drop_at_event = None
                    return True
                self.drop_at_event = (name, left - 1)
            return False

    def take_frame_mangling(self, event: str | None) -> str | None:
        with self._lock:
            if self.mangle_only is not None and event != self.mangle_only:
                return None
            if self.corrupt_frames > 0:
                self.corrupt_frames -= 1
                return "corrupt"
            if self.duplicate_frames > 0:
                self.duplicate_frames -= 1
                return "duplicate"
            if self.reorder_frames > 0:
                self.reorder_frames -= 1
                return "reorder"
            return None
