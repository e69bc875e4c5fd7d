"""Observers for tests: they keep what a job told them."""

from __future__ import annotations

from worker.comfyui.observer import FallbackEvent, JobObserver
from worker.comfyui.progress import JobProgressState
from worker.comfyui.websocket_client import ConnectionEvent


class PodEvents(JobObserver):
    """Connection and fallback events, in the order they came (the old ``listener``)."""

    def __init__(self, events: list[ConnectionEvent | FallbackEvent]) -> None:
        self.events = events

    def on_connection_event(self, event: ConnectionEvent) -> None:
        self.events.append(event)

    def on_fallback(self, event: FallbackEvent) -> None:
        self.events.append(event)


class ProgressLog(JobObserver):
    """Every progress update delivered."""

    def __init__(self, states: list[JobProgressState]) -> None:
        self.states = states

    def on_progress(self, state: JobProgressState) -> None:
        self.states.append(state)
