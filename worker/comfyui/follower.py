"""``PromptFollower``: what the frames of a ComfyUI event stream mean for the prompts we follow.

Sans-I/O: the WebSocket client reads and parses frames, the follower decides. Feed it parsed
frames (:meth:`PromptFollower.feed`) and it returns :data:`Decision` values: a watched
prompt's progress changed, a prompt finished (with the error it stands for, if any), a preview
belongs to a prompt, the server told its features, a frame was malformed. No sockets, no
threads, no clock of its own (the trackers have theirs), so it is tested on recorded traces
with a fake clock. Both closed unions (text and binary frames) are consumed with ``match`` and
``assert_never``: a new message type that nobody handles fails mypy, not a job.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, assert_never

from worker.comfyui import protocol as p
from worker.comfyui.errors import ComfyUIError, ExecutionError, PromptInterruptedError
from worker.comfyui.progress import JobProgressState, ProgressTracker

__all__ = [
    "BranchBlocked",
    "Decision",
    "Features",
    "Malformed",
    "PreviewFor",
    "ProgressChanged",
    "PromptCompletion",
    "PromptEnded",
    "PromptFollower",
]


@dataclass(frozen=True)
class PromptCompletion:
    """A prompt reached its end on the socket. ``unknown``: only the final ``executing`` was seen."""

    prompt_id: str
    outcome: Literal["success", "error", "interrupted", "unknown"]
    message: p.KnownMessage


@dataclass(frozen=True)
class ProgressChanged:
    """A watched prompt's progress changed."""

    state: JobProgressState


@dataclass(frozen=True)
class PromptEnded:
    """A prompt finished (once per prompt); ``error`` is what an error or interrupt stands for."""

    completion: PromptCompletion
    error: ComfyUIError | None = None


@dataclass(frozen=True)
class PreviewFor:
    """A preview image and the prompt it belongs to (type 1 frames: the prompt last heard of)."""

    prompt_id: str | None
    frame: p.PreviewImage | p.PreviewImageWithMetadata


@dataclass(frozen=True)
class Features:
    flags: Mapping[str, Any]


@dataclass(frozen=True)
class Malformed:
    """A frame that could not be read: logged and skipped."""

    reason: str


@dataclass(frozen=True)
class BranchBlocked:
    """A non-fatal ``execution_error``: one node blocked its branch, the prompt goes on."""

    node_id: str
    message: str


Decision = ProgressChanged | PromptEnded | PreviewFor | Features | Malformed | BranchBlocked

_PromptEvent = (
    p.ExecutionStartData
    | p.ExecutionCachedData
    | p.ExecutingData
    | p.ProgressData
    | p.ProgressStateMessageData
    | p.ExecutedMessageData
    | p.ExecutionSuccessData
    | p.ExecutionErrorData
    | p.ExecutionInterruptedData
)


class PromptFollower:
    """Folds a stream of parsed frames into decisions about the watched prompts.

    Thread-safe for :meth:`watch`/:meth:`unwatch` from other threads while one thread feeds."""

    def __init__(self, *, remembered: int = 1024) -> None:
        self._lock = threading.Lock()
        self._trackers: dict[str, ProgressTracker] = {}
        self._finished: deque[str] = deque(maxlen=remembered)
        #: the prompt of the last progress or ``executing``: a type-1 preview belongs to it
        self.current_prompt: str | None = None

    def watch(self, tracker: ProgressTracker) -> None:
        with self._lock:
            self._trackers[tracker.prompt_id] = tracker

    def unwatch(self, prompt_id: str) -> None:
        with self._lock:
            self._trackers.pop(prompt_id, None)

    @property
    def watching(self) -> bool:
        """Some prompt is watched (its socket is then kept under a closer liveness check)."""
        with self._lock:
            return bool(self._trackers)

    def feed(self, frame: p.ComfyUIMessage | p.BinaryFrame) -> list[Decision]:
        match frame:
            case p.MalformedMessage() | p.MalformedBinary():
                return [Malformed(frame.reason)]
            case p.UnknownMessage() | p.UnknownBinary() | p.ProgressText() | p.StatusData() | p.LogsData():
                return []
            case p.PreviewImage():
                return [PreviewFor(self.current_prompt, frame)]
            case p.PreviewImageWithMetadata():
                return [PreviewFor(frame.prompt_id, frame)]
            case p.FeatureFlagsData():
                return [Features(frame.flags)]
            case (
                p.ExecutionStartData()
                | p.ExecutionCachedData()
                | p.ExecutingData()
                | p.ProgressData()
                | p.ProgressStateMessageData()
                | p.ExecutedMessageData()
                | p.ExecutionSuccessData()
                | p.ExecutionErrorData()
                | p.ExecutionInterruptedData()
            ):
                return self._prompt_event(frame)
            case _:
                assert_never(frame)

    def _prompt_event(self, message: _PromptEvent) -> list[Decision]:
        prompt_id = message.prompt_id
        if isinstance(message, p.ExecutingData | p.ProgressData | p.ProgressStateMessageData) and prompt_id:
            self.current_prompt = prompt_id
        decisions: list[Decision] = [ProgressChanged(t.state()) for t in self._trackers_for(message) if t.apply(message)]
        if prompt_id is None:
            return decisions
        return decisions + self._ending(prompt_id, message)

    def _trackers_for(self, message: _PromptEvent) -> list[ProgressTracker]:
        with self._lock:
            if isinstance(message, p.ExecutingData) and message.is_reconnect_replay:
                return list(self._trackers.values())  # ``{"node": id}`` names no prompt: ours is running
            tracker = self._trackers.get(message.prompt_id) if message.prompt_id else None
            return [tracker] if tracker else []

    def _ending(self, prompt_id: str, message: _PromptEvent) -> list[Decision]:
        match message:
            case p.ExecutionSuccessData():
                ended = PromptEnded(PromptCompletion(prompt_id, "success", message))
            case p.ExecutionErrorData() if not message.is_fatal:
                return [BranchBlocked(message.node_id, message.exception_message.strip())]
            case p.ExecutionErrorData():
                ended = PromptEnded(PromptCompletion(prompt_id, "error", message), ExecutionError.from_event(message))
            case p.ExecutionInterruptedData():
                ended = PromptEnded(PromptCompletion(prompt_id, "interrupted", message), PromptInterruptedError.from_event(message))
            case p.ExecutingData() if message.is_completion:
                ended = PromptEnded(PromptCompletion(prompt_id, "unknown", message))
            case _:
                return []
        if prompt_id in self._finished:
            return []  # one prompt, one completion (a replayed or late end is not news)
        self._finished.append(prompt_id)
        return [ended]
