"""The simulator's prompt queue, history, node cache and executor.

It runs one prompt at a time, FIFO by priority number, and emits events in the order the real
server does (see ``tests/data/comfyui-traces``): ``status`` when taken, ``execution_start``,
``execution_cached``, per node ``progress_state`` (running) → ``executing`` → steps →
``executed`` → ``progress_state`` (finished), then ``execution_success``, the history entry,
``status`` and the final ``executing`` with ``node: null``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from worker.comfyui.protocol import (
    ExecutedMessageData,
    ExecutingData,
    ExecutionCachedData,
    ExecutionErrorData,
    ExecutionInterruptedData,
    ExecutionStartData,
    ExecutionSuccessData,
    KnownMessage,
    NodeProgress,
    ProgressData,
    ProgressStateMessageData,
    StatusData,
    encode_preview_image,
    encode_preview_with_metadata,
    encode_progress_text,
)
from worker.simulator.files import FileStore
from worker.simulator.graph import ExecutionOrder, cache_keys
from worker.simulator.media import solid_jpeg
from worker.simulator.nodes import NODE_CLASSES, NodeFailure, NodeOutcome
from worker.simulator.prompt_records import QueueItem, history_entry, node_error, now_ms
from worker.simulator.timing_profile import TimingProfile

__all__ = ["Emitter", "Engine", "SimulatorTiming"]

PREVIEW_JPEG = solid_jpeg(64)


@dataclass
class SimulatorTiming:
    """How long simulated work takes. Tests use milliseconds, demos about a second per step."""

    node_seconds: float = 0.0
    sampler_step_seconds: float = 0.02
    #: multiplies durations that come from node inputs (``LabSlowProgress.seconds_per_step``)
    input_time_scale: float = 1.0
    #: preview encoding time before each preview frame (JPEG encoding takes a few ms on a real pod)
    preview_seconds: float = 0.0
    #: delay between ``execution_cached`` and the first node (cache and graph set-up on a real server)
    setup_seconds: float = 0.0
    #: delay between ``execution_success`` and the history write (the real gap is tiny)
    history_delay_seconds: float = 0.0
    per_class_seconds: dict[str, float] = field(default_factory=dict)
    #: durations by node class and inputs (e.g. ``RealisticTiming``), instead of the flat ones above
    profile: TimingProfile | None = None


class Emitter(Protocol):
    def send(self, message: KnownMessage, client_id: str | None) -> None:
        """To the socket of ``client_id``; to every socket when ``client_id`` is None."""
        ...

    def send_binary(self, frame: bytes, client_id: str | None) -> None: ...

    def wants_metadata(self, client_id: str) -> bool: ...


class _Interrupted(Exception):
    pass


class _Restarted(Exception):
    """The simulated server restarted under a running prompt: it stops without a word."""


class Engine:
    """Queue, history, cache and the single worker task."""

    def __init__(self, emitter: Emitter, root: Path, timing: SimulatorTiming) -> None:
        self.emitter = emitter
        self.timing = timing
        self.files = FileStore(root)
        self._heap: list[tuple[float, int, QueueItem]] = []
        self._tiebreak = itertools.count()
        self._counter = 0
        self.running: QueueItem | None = None
        self.history: dict[str, dict[str, Any]] = {}
        #: ComfyUI's MAXIMUM_HISTORY_SIZE: past it, each new entry drops the oldest (so one more can exist)
        self.max_history = 10_000
        self._cache: dict[str, tuple[tuple[Any, ...], dict[str, Any] | None]] = {}
        self._wakeup = asyncio.Event()
        self._free_after_prompt = False
        self._interrupt = False
        self.last_node_id: str | None = None
        self.running_client_id: str | None = None
        self.generation = 0  # bumped on restart: a stale run stops emitting
        #: called with (event name, prompt id) after each emitted event, for fault triggers
        self.on_event: Callable[[str, str], None] = lambda name, prompt_id: None

    # ------------------------------------------------------------ queue

    def queue_remaining(self) -> int:
        return len(self._heap) + (1 if self.running is not None else 0)

    def status(self) -> StatusData:
        return StatusData(self.queue_remaining())

    def broadcast_status(self) -> None:
        self.emitter.send(self.status(), None)

    def submit(
        self, *, prompt_id: str, prompt: dict[str, Any], extra_data: dict[str, Any], outputs: list[str], number: float | None, front: bool
    ) -> float:
        if number is None:
            number = -self._counter if front else self._counter
            self._counter += 1
        item = QueueItem(number, prompt_id, prompt, extra_data, outputs)
        heapq.heappush(self._heap, (number, next(self._tiebreak), item))
        self.broadcast_status()
        self._wakeup.set()
        return number

    def pending(self) -> list[QueueItem]:
        return [entry[2] for entry in self._heap]

    def delete_pending(self, prompt_ids: list[str]) -> None:
        for prompt_id in prompt_ids:
            for index, entry in enumerate(self._heap):
                if entry[2].prompt_id == prompt_id:
                    self._heap.pop(index)
                    heapq.heapify(self._heap)
                    self.broadcast_status()
                    break

    def clear_pending(self) -> None:
        self._heap.clear()
        self.broadcast_status()

    def interrupt(self, prompt_id: str | None) -> None:
        if self.running is None:
            return
        if prompt_id is None or prompt_id == self.running.prompt_id:
            self._interrupt = True

    def restart(self) -> None:
        """Lose queue, history, cache and the running prompt, as a server restart does."""
        self.generation += 1
        self._heap.clear()
        self.history.clear()
        self._cache.clear()
        self.running = None
        self.last_node_id = None
        self.running_client_id = None
        self._interrupt = False
        self.files.reset_temp()

    # ------------------------------------------------------------ worker

    async def run_forever(self) -> None:
        while True:
            if not self._heap:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            _, _, item = heapq.heappop(self._heap)
            self.running = item
            self._interrupt = False
            generation = self.generation
            self.broadcast_status()
            try:
                await self._execute(item, generation)
            except _Restarted:
                pass
            finally:
                if self.generation == generation:
                    self.running = None
                    self.last_node_id = None
                    self.running_client_id = None
                if self._free_after_prompt:
                    self._free_after_prompt = False
                    self._cache.clear()

    def free(self, *, free_memory: bool) -> None:
        """``POST /free``: ``free_memory`` empties the node cache, after the running prompt if any
        (§8.6; models are not simulated, so ``unload_models`` alone changes nothing)."""
        if not free_memory:
            return
        if self.running is None:
            self._cache.clear()
        else:
            self._free_after_prompt = True
        if self.timing.profile is not None:
            self.timing.profile.unload()

    def _emit(self, message: KnownMessage, client_id: str | None, broadcast_without_client: bool, generation: int) -> None:
        if generation != self.generation:
            raise _Restarted
        target = client_id
        if client_id is None and not broadcast_without_client:
            return
        self.emitter.send(message, target)
        prompt_id = getattr(message, "prompt_id", None)
        self.on_event(message.TYPE, prompt_id or "")

    async def _execute(self, item: QueueItem, generation: int) -> None:
        prompt_id, prompt = item.prompt_id, item.prompt
        client_id = item.extra_data.get("client_id")
        client = client_id if isinstance(client_id, str) else None
        self.running_client_id = client
        messages: list[list[Any]] = []

        def emit(message: KnownMessage, broadcast: bool = False) -> None:
            self._emit(message, client, broadcast, generation)

        def record(
            message: ExecutionStartData | ExecutionCachedData | ExecutionSuccessData | ExecutionErrorData | ExecutionInterruptedData,
        ) -> None:
            messages.append([message.TYPE, message.to_wire()])

        start = ExecutionStartData(prompt_id, now_ms())
        record(start)
        emit(start)
        keys = cache_keys(prompt)
        # the classic cache keeps only what the current prompt can use
        wanted = set(keys.values())
        self._cache = {k: v for k, v in self._cache.items() if k in wanted}
        cached = [n for n in prompt if keys[n] in self._cache]
        cached_msg = ExecutionCachedData(tuple(cached), prompt_id, now_ms())
        record(cached_msg)
        emit(cached_msg)

        order = ExecutionOrder(prompt, item.outputs, lambda n: keys[n] in self._cache)
        if self.timing.setup_seconds:
            await asyncio.sleep(self.timing.setup_seconds)
        states: dict[str, NodeProgress] = {}
        outputs_ui: dict[str, dict[str, Any]] = {}
        # cached nodes do not run: their outputs come from the cache, for the nodes that use them
        values: dict[str, tuple[Any, ...]] = {n: self._cache[keys[n]][0] for n in cached}
        executed: list[str] = []

        def snapshot(node_id: str, value: float, maximum: float, state: str) -> None:
            states[node_id] = NodeProgress(node_id, value, maximum, state, prompt_id, node_id, None, node_id)  # type: ignore[arg-type]
            emit(ProgressStateMessageData(prompt_id, dict(states)), broadcast=True)

        failure: KnownMessage | None = None
        while (node_id := order.next()) is not None:
            node = prompt[node_id]
            cls = NODE_CLASSES[node["class_type"]]
            key = keys[node_id]
            if key in self._cache:  # a cached output node: replay its UI
                values[node_id], ui = self._cache[key]
                emit(ExecutedMessageData(node_id, ui, prompt_id, node_id))
                if ui is not None:
                    outputs_ui[node_id] = ui
                snapshot(node_id, 1, 1, "finished")
                order.done(node_id)
                continue
            snapshot(node_id, 0.0, 1.0, "running")
            self.last_node_id = node_id
            emit(ExecutingData(node_id, prompt_id, node_id))
            inputs = self._resolve(node, values)
            try:
                self._check_interrupt()
                await self._work(
                    class_type=cls.class_type,
                    node_id=node_id,
                    inputs=inputs,
                    client=client,
                    prompt_id=prompt_id,
                    snapshot=snapshot,
                    emit=emit,
                )
                outcome: NodeOutcome = cls.run(inputs, self.files)
            except _Interrupted:
                failure = ExecutionInterruptedData(prompt_id, node_id, cls.class_type, tuple(executed), now_ms())
                break
            except NodeFailure as exc:
                failure = node_error(item, node_id=node_id, class_type=cls.class_type, exc=exc, executed=executed, inputs=inputs)
                break
            if outcome.text is not None:
                self.emitter.send_binary(encode_progress_text(node_id, outcome.text), None)
            values[node_id] = outcome.outputs
            self._cache[key] = (outcome.outputs, outcome.ui)
            if outcome.ui:
                outputs_ui[node_id] = outcome.ui
                emit(ExecutedMessageData(node_id, outcome.ui, prompt_id, node_id))
            states[node_id] = NodeProgress(node_id, states[node_id].max, states[node_id].max, "finished", prompt_id, node_id, None, node_id)
            emit(ProgressStateMessageData(prompt_id, dict(states)), broadcast=True)
            executed.append(node_id)
            order.done(node_id)

        if failure is None:
            success = ExecutionSuccessData(prompt_id, now_ms())
            record(success)
            emit(success)
        else:
            assert isinstance(failure, ExecutionErrorData | ExecutionInterruptedData)
            record(failure)
            emit(failure, broadcast=isinstance(failure, ExecutionInterruptedData))
        await asyncio.sleep(self.timing.history_delay_seconds)
        if generation != self.generation:
            return
        if len(self.history) > self.max_history:
            self.history.pop(next(iter(self.history)))
        self.history[prompt_id] = history_entry(item, outputs_ui, messages, failed=failure is not None)
        self.running = None
        self.last_node_id = None
        self.broadcast_status()
        emit(ExecutingData(None, prompt_id))

    def _resolve(self, node: Mapping[str, Any], values: Mapping[str, tuple[Any, ...]]) -> dict[str, Any]:
        inputs: dict[str, Any] = {}
        for name, value in node.get("inputs", {}).items():
            if isinstance(value, list) and len(value) == 2:
                produced = values.get(str(value[0]))
                inputs[name] = produced[int(value[1])] if produced and int(value[1]) < len(produced) else None
            else:
                inputs[name] = value
        return inputs

    def _check_interrupt(self) -> None:
        if self._interrupt:
            self._interrupt = False
            raise _Interrupted

    async def _work(
        self,
        *,
        class_type: str,
        node_id: str,
        inputs: Mapping[str, Any],
        client: str | None,
        prompt_id: str,
        snapshot: Callable[[str, float, float, str], None],
        emit: Callable[..., None],
    ) -> None:
        cls = NODE_CLASSES[class_type]
        steps = int(inputs.get(cls.progress_input, 0)) if cls.progress_input else 0
        fixed, profiled_step = self.timing.profile.durations(class_type, inputs) if self.timing.profile else (None, None)
        if steps <= 0:
            await self._sleep(fixed if fixed is not None else self.timing.per_class_seconds.get(class_type, self.timing.node_seconds))
            return
        if cls.step_seconds_input is not None:
            step = float(inputs.get(cls.step_seconds_input, 0.0)) * self.timing.input_time_scale
        else:
            step = profiled_step if profiled_step is not None else self.timing.sampler_step_seconds
        await self._sleep(fixed or 0.0)
        metadata = client is not None and self.emitter.wants_metadata(client)
        for k in range(1, steps + 1):
            await self._sleep(step)
            self._check_interrupt()
            snapshot(node_id, k, steps, "running")
            progress = ProgressData(k, steps, prompt_id, node_id)
            if cls.previews and metadata:
                meta = {
                    "node_id": node_id,
                    "prompt_id": prompt_id,
                    "display_node_id": node_id,
                    "parent_node_id": None,
                    "real_node_id": node_id,
                    "image_type": "image/jpeg",
                }
                await self._sleep(self.timing.preview_seconds)
                self.emitter.send_binary(encode_preview_with_metadata(meta, PREVIEW_JPEG), client)
                emit(progress, True)
            else:
                emit(progress, True)
                if cls.previews:
                    await self._sleep(self.timing.preview_seconds)
                    self.emitter.send_binary(encode_preview_image(PREVIEW_JPEG), client)
            if inputs.get("emit_text"):
                self.emitter.send_binary(encode_progress_text(node_id, f"step {k}/{steps}"), client)

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
