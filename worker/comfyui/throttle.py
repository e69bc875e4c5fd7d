"""A trailing throttle: at most one delivery per interval, and the latest value never lost.

ComfyUI sends a ``progress_state`` and a ``progress`` per sampler step (tens per second on a
fast GPU). A web backend wants at most one update a second — but always the last one, and the
final one at once. Pure and clock-driven: the owner calls :meth:`poll` from its wait loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from worker.comfyui.clock import Clock

__all__ = ["Throttle"]

T = TypeVar("T")


class Throttle(Generic[T]):
    def __init__(
        self,
        deliver: Callable[[T], None],
        *,
        clock: Clock,
        interval: float = 1.0,
        same: Callable[[T, T], bool] = lambda a, b: a == b,
    ) -> None:
        if interval < 0:
            raise ValueError("interval must be >= 0")
        self._deliver = deliver
        self._clock = clock
        self.interval = interval
        self._same = same
        self._last: T | None = None
        self._last_at: float | None = None
        self._pending: T | None = None
        self._has_pending = False
        self.delivered = 0

    def submit(self, value: T, *, final: bool = False) -> None:
        """Offer a value. The first goes at once; then at most one per ``interval``; ``final`` at once."""
        if self._last_at is not None and self._last is not None and self._same(value, self._last):
            self._has_pending = False  # back to what was delivered: nothing to send later
            self._pending = None
            return
        now = self._clock.monotonic()
        if final or self._last_at is None or now - self._last_at >= self.interval:
            self._send(value, now)
        else:
            self._pending, self._has_pending = value, True

    def poll(self) -> None:
        """Deliver the trailing value once its window has passed."""
        if self._has_pending and self._last_at is not None and self._clock.monotonic() - self._last_at >= self.interval:
            self.flush()

    def flush(self) -> None:
        """Deliver the pending value now, if any."""
        if self._has_pending:
            value = self._pending
            self._has_pending, self._pending = False, None
            assert value is not None
            self._send(value, self._clock.monotonic())

    def seconds_until_due(self) -> float | None:
        """How long the owner may wait before calling :meth:`poll` (None: nothing pending)."""
        if not self._has_pending or self._last_at is None:
            return None
        return max(0.0, self.interval - (self._clock.monotonic() - self._last_at))

    def _send(self, value: T, now: float) -> None:
        self._has_pending, self._pending = False, None
        self._last, self._last_at = value, now
        self.delivered += 1
        self._deliver(value)
