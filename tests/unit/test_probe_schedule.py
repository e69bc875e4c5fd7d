"""The history probe schedule: rare on a healthy socket, at once on a drop or a reconnect, then by the ETA."""

from __future__ import annotations

import pytest

from worker.comfyui.probe_schedule import ProbeSchedule, ProbeTimes

TIMES = ProbeTimes(healthy_s=5.0, down_min_s=0.4, down_max_s=2.0, eta_share=0.2, end_lead_s=0.05)


def test_a_healthy_socket_is_probed_every_healthy_interval() -> None:
    schedule = ProbeSchedule(TIMES, first_at=0.5)
    assert not schedule.due(0.4) and schedule.due(0.5)
    schedule.probed(0.5, eta_s=1.0)
    assert schedule.wait(0.5) == pytest.approx(5.0)  # the ETA does not matter while the socket works


def test_a_drop_probes_at_once_then_faster_as_the_end_nears() -> None:
    schedule = ProbeSchedule(TIMES, first_at=5.0)
    schedule.down(1.0)
    assert schedule.due(1.0)
    waits = []
    for eta in (30.0, 5.0, 1.0, 0.2, 0.02, 0.0, None):
        schedule.probed(1.0, eta)
        waits.append(round(schedule.wait(1.0), 3))
    # 0.2 s left: just after the estimated end; overdue (0.02, 0): never below the minimum
    assert waits == [2.0, 1.0, 0.4, 0.25, 0.4, 0.4, 2.0]


def test_a_reconnect_probes_at_once_and_restores_the_healthy_pace() -> None:
    schedule = ProbeSchedule(TIMES, first_at=5.0)
    schedule.down(1.0)
    schedule.probed(1.0, 10.0)
    schedule.up(2.5)
    assert schedule.due(2.5)
    schedule.probed(2.5, 10.0)
    assert schedule.wait(2.5) == pytest.approx(5.0)
