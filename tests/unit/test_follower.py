"""The sans-I/O PromptFollower on the recorded ComfyUI 0.8 traces, with a fake clock."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from tests.traces import TRACE_DIR, load_trace
from worker.comfyui import protocol as p
from worker.comfyui.clock import FakeClock
from worker.comfyui.errors import ExecutionError, PromptInterruptedError
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
from worker.comfyui.progress import RUNNING_CAP, JobStatus, ProgressTracker

JPEG = b"\xff\xd8\xff" + bytes(16)

#: per trace, the outcome of each submitted prompt in submission order (None: no end on the socket)
OUTCOMES: dict[str, list[str | None]] = {
    "success-ksampler": ["success"],
    "success-image-only": ["success"],
    "success-image-preview": ["success"],
    "slow-progress": ["success"],
    "feature-flags": ["success"],
    "cached-rerun": ["success", "success", "success"],
    "two-prompts-queued": ["success", "success"],
    "other-client": ["success", "success", "success"],
    "execution-error": ["error"],
    "interrupted": ["interrupted"],
    "interrupted-slowprogress": ["interrupted"],
    "reconnect-midrun": ["success"],
    "reconnect-midrun-ksampler": ["success"],
    # the same-clientId hazard: the new socket hears nothing, not even the end (protocol §4.6)
    "reconnect-overlap": [None],
    # no client_id: the prompt's events go to nobody (a history probe must find the end)
    "no-client-id": [None],
    "validation-error": [],
}


def frame_of(record: dict[str, Any]) -> p.ComfyUIMessage | p.BinaryFrame:
    """The parsed frame a recorded one stands for (binary images are not recorded: a stand-in)."""
    if record["kind"] == "ws_text":
        return p.parse_text(json.dumps(record["msg"]))
    kind = record["event_type"]
    if kind == p.PREVIEW_IMAGE:
        return p.parse_binary(p.encode_preview_image(JPEG, record["image_format"]))
    if kind == p.TEXT:
        return p.parse_binary(p.encode_progress_text(record["node_id"], record["text"]))
    return p.parse_binary(p.encode_preview_with_metadata(record["metadata"], JPEG))


class Replay:
    """Every prompt the trace submitted, watched; every frame of every socket, fed in order."""

    def __init__(self, path: Path) -> None:
        self.clock = FakeClock()
        self.follower = PromptFollower()
        self.records = load_trace(path)
        self.prompts: list[str] = []
        for record in self.records:
            if record["kind"] == "http" and (record["method"], record["path"], record["status"]) == ("POST", "/prompt", 200):
                prompt_id = record["response"]["prompt_id"]
                self.prompts.append(prompt_id)
                self.follower.watch(ProgressTracker(prompt_id, record["request"]["prompt"], clock=self.clock))
        self.decisions: list[Decision] = []

    def run(self) -> Replay:
        started = self.records[0]["t_ms"]
        for record in self.records:
            if record["kind"] in ("ws_text", "ws_binary"):
                self.clock.advance(max(0.0, (record["t_ms"] - started) / 1000.0 - (self.clock.monotonic() - 1000.0)))
                self.decisions += self.follower.feed(frame_of(record))
        return self

    def ends(self, prompt_id: str) -> list[PromptEnded]:
        return [d for d in self.decisions if isinstance(d, PromptEnded) and d.completion.prompt_id == prompt_id]

    def progress(self, prompt_id: str) -> list[ProgressChanged]:
        return [d for d in self.decisions if isinstance(d, ProgressChanged) and d.state.prompt_id == prompt_id]


@pytest.mark.parametrize("trace", sorted(OUTCOMES), ids=str)
def test_each_prompt_ends_once_with_the_recorded_outcome(trace: str) -> None:
    replay = Replay(TRACE_DIR / f"{trace}.jsonl").run()
    outcomes = []
    for prompt_id in replay.prompts:
        ends = replay.ends(prompt_id)
        assert len(ends) <= 1, f"{prompt_id} ended {len(ends)} times"
        outcomes.append(ends[0].completion.outcome if ends else None)
    assert outcomes == OUTCOMES[trace]


@pytest.mark.parametrize("trace", sorted(OUTCOMES), ids=str)
def test_progress_only_goes_up_and_stays_below_100_while_running(trace: str) -> None:
    replay = Replay(TRACE_DIR / f"{trace}.jsonl").run()
    for prompt_id in replay.prompts:
        curve = [d.state.progress for d in replay.progress(prompt_id)]
        assert curve == sorted(curve)
        assert all(value <= RUNNING_CAP for value in curve)


def test_an_execution_error_carries_the_failing_node() -> None:
    replay = Replay(TRACE_DIR / "execution-error.jsonl").run()
    (ended,) = replay.ends(replay.prompts[0])
    assert isinstance(ended.error, ExecutionError)
    assert ended.error.node_id and ended.error.details["prompt_id"] == replay.prompts[0]
    assert replay.progress(replay.prompts[0])[-1].state.status is JobStatus.FAILED


def test_an_interrupt_is_a_prompt_interrupted_error() -> None:
    replay = Replay(TRACE_DIR / "interrupted.jsonl").run()
    (ended,) = replay.ends(replay.prompts[0])
    assert isinstance(ended.error, PromptInterruptedError) and ended.error.details["prompt_id"] == replay.prompts[0]


def test_a_replayed_stream_ends_nothing_twice() -> None:
    replay = Replay(TRACE_DIR / "success-ksampler.jsonl").run()
    first = len(replay.ends(replay.prompts[0]))
    replay.run()
    assert (first, len(replay.ends(replay.prompts[0]))) == (1, 1)


def test_previews_belong_to_the_prompt_running_or_the_one_their_metadata_names() -> None:
    plain = Replay(TRACE_DIR / "success-ksampler.jsonl").run()
    tagged = Replay(TRACE_DIR / "feature-flags.jsonl").run()
    plain_previews = [d for d in plain.decisions if isinstance(d, PreviewFor)]
    tagged_previews = [d for d in tagged.decisions if isinstance(d, PreviewFor)]
    assert plain_previews and {d.prompt_id for d in plain_previews} == {plain.prompts[0]}
    assert tagged_previews and {d.prompt_id for d in tagged_previews} == {tagged.prompts[0]}
    assert all(d.frame.format == "jpeg" and d.frame.image == JPEG for d in plain_previews + tagged_previews)
    assert any(isinstance(d, Features) and d.flags.get("supports_preview_metadata") for d in tagged.decisions)


def test_an_unwatched_prompt_ends_but_reports_no_progress() -> None:
    replay = Replay(TRACE_DIR / "two-prompts-queued.jsonl")
    replay.follower.unwatch(replay.prompts[1])
    replay.run()
    assert replay.progress(replay.prompts[1]) == [] and len(replay.ends(replay.prompts[1])) == 1


def test_malformed_frames_and_blocked_branches_are_decisions_not_exceptions() -> None:
    follower = PromptFollower()
    assert follower.feed(p.parse_text("{not json")) == [Malformed("not JSON: JSONDecodeError")]
    blocked = p.ExecutionErrorData(
        prompt_id="x", node_id="5", node_type="SaveImage", exception_message=" blocked ", exception_type="ExecutionBlocked"
    )
    assert follower.feed(p.parse_text(p.encode_text(blocked))) == [BranchBlocked("5", "blocked")]
    fatal = follower.feed(p.parse_text(p.encode_text(dataclasses.replace(blocked, exception_type="RuntimeError"))))
    assert [type(d) for d in fatal] == [PromptEnded]
