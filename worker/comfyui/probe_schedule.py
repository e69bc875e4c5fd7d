"""When to look at ``/history`` while a prompt is followed: rarely on a healthy socket, at once
and then often while the socket is down, most often when the job should be ending.

On a healthy socket the events say everything, and a probe every ``healthy_s`` only covers the
case where the socket is open but deaf (another socket took our client id). When the socket
drops, events are lost until it is back (ComfyUI buffers nothing), and the reconnect waits
several seconds: a job that ends meanwhile is only seen through ``/history``. So a drop probes
at once, and then every ``eta_share`` of the estimated seconds left, between ``down_min_s`` and
``down_max_s`` (and just after the estimated end when that comes first): a job far from its
end costs a request every couple of seconds, one about to end is seen within ``down_min_s``. A reconnect probes at once too (what happened
while we were away), then the healthy pace resumes. Pure: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ProbeSchedule", "ProbeTimes"]


@dataclass(frozen=True, slots=True)
class ProbeTimes:
    healthy_s: float = 5.0
    down_min_s: float = 0.3
    down_max_s: float = 2.0
    eta_share: float = 0.2

    #: a probe this long after the estimated end, when that comes before the next regular one
    end_lead_s: float = 0.05

    def down_interval(self, eta_s: float | None) -> float:
        """The pause between probes while the socket is down; unknown ETA: the slow end.

        When the estimated end falls before the next regular probe, the probe goes just after
        it instead (once: an estimate already overdue reads a few hundredths of a second, and
        those never shorten the pause below ``down_min_s``)."""
        if eta_s is None:
            return self.down_max_s
        interval = min(self.down_max_s, max(self.down_min_s, eta_s * self.eta_share))
        if eta_s >= 2 * self.end_lead_s and eta_s + self.end_lead_s < interval:
            return eta_s + self.end_lead_s
        return interval


class ProbeSchedule:
    def __init__(self, times: ProbeTimes, first_at: float) -> None:
        self.times = times
        self.next_at = first_at
        self.connected = True

    def down(self, now: float) -> None:
        """The socket dropped (or went silent): look now."""
        self.connected = False
        self.next_at = now

    def up(self, now: float) -> None:
        """The socket is back: look now, for what happened while it was away."""
        self.connected = True
        self.next_at = now

    def due(self, now: float) -> bool:
        return now >= self.next_at

    def wait(self, now: float) -> float:
        return max(0.0, self.next_at - now)

    def probed(self, now: float, eta_s: float | None) -> None:
        interval = self.times.healthy_s if self.connected else self.times.down_interval(eta_s)
        self.next_at = now + interval
