"""Delivery of a WebSocket client's frames and events to its handlers.

The client's receive loop hands every parsed frame to :class:`Dispatcher`; the sans-I/O
:class:`~worker.comfyui.follower.PromptFollower` decides what it means, and the dispatcher
carries each decision to the handlers registered for it. A handler that raises is logged and
breaks neither the loop nor the other handlers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, assert_never

from worker.comfyui import protocol as p
from worker.comfyui.errors import ConnectionLostError
from worker.comfyui.follower import (
    BranchBlocked,
    Decision,
    Features,
    Malformed,
    PreviewFor,
    ProgressChanged,
    PromptEnded,
    PromptFollower,
)
from worker.comfyui.websocket_types import ConnectionEvent

__all__ = ["Dispatcher", "HandlerList", "Unsubscribe"]

Unsubscribe = Callable[[], None]


class HandlerList:
    """Thread-safe handler lists whose entries may filter by prompt id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[Callable[[Any], None], str | None]] = []

    def add(self, handler: Callable[[Any], None], prompt_id: str | None) -> Unsubscribe:
        entry = (handler, prompt_id)
        with self._lock:
            self._items.append(entry)

        def remove() -> None:
            with self._lock:
                if entry in self._items:
                    self._items.remove(entry)

        return remove

    def matching(self, prompt_id: str | None) -> list[Callable[[Any], None]]:
        with self._lock:
            return [h for h, wanted in self._items if wanted is None or wanted == prompt_id]

    def every(self) -> list[Callable[[Any], None]]:
        with self._lock:
            return [h for h, _ in self._items]


class Dispatcher:
    """The handler lists of one client, and the follower that decides who hears a frame."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self.follower = PromptFollower()
        self.progress = HandlerList()
        self.completion = HandlerList()
        self.errors = HandlerList()
        self.messages = HandlerList()
        self.previews = HandlerList()
        self.connection = HandlerList()
        self.server_features: Mapping[str, Any] = {}

    def frame(self, message: p.ComfyUIMessage | p.BinaryFrame) -> None:
        for handler in self.messages.matching(None):
            self.call(handler, message)
        for decision in self.follower.feed(message):
            self._act(decision)

    def connection_event(self, event: ConnectionEvent) -> None:
        for handler in self.connection.matching(None):
            self.call(handler, event)

    def lost(self, error: ConnectionLostError) -> None:
        """The connection's final loss concerns every prompt on this socket."""
        for handler in self.errors.every():
            self.call(handler, error)

    def _act(self, decision: Decision) -> None:
        match decision:
            case ProgressChanged(state):
                for handler in self.progress.matching(state.prompt_id):
                    self.call(handler, state)
            case PromptEnded(completion, error):
                if error is not None:
                    for handler in self.errors.matching(completion.prompt_id):
                        self.call(handler, error)
                for handler in self.completion.matching(completion.prompt_id):
                    self.call(handler, completion)
            case PreviewFor(prompt_id, frame):
                for handler in self.previews.matching(prompt_id):
                    self.call(handler, frame)
            case Features(flags):
                self.server_features = flags
            case Malformed(reason):
                self._log.warning("comfyui websocket: skipping malformed frame (%s)", reason)
            case BranchBlocked(node_id, text):
                self._log.info("comfyui: node %s blocked its branch: %s", node_id, text)
            case _:
                assert_never(decision)

    def call(self, handler: Callable[[Any], None], value: Any) -> None:
        """A handler that raises is logged; it breaks neither the loop nor the other handlers."""
        try:
            handler(value)
        except Exception:  # noqa: BLE001 - isolation is the point
            self._log.exception("comfyui websocket handler %r failed", getattr(handler, "__qualname__", handler))
