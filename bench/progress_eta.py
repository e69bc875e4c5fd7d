"""Progress as a time estimate against the step-weighted one, on the simulator with realistic
node durations: ``python -m bench.progress_eta [--scale 0.5] [--curves]``.

Two workflows (txt2img 512 x 512, and a multi-node one: a batch of 4 frames, a sampler and a
refiner, decode, upscale, blur, save and a video), each run 4 times on one simulator: cold,
warm with a new seed, warm with a new prompt text, then cold again after ``POST /free``. The
learned node timings of each run (an in-memory store) feed the next. Sampled every 20 ms:

* truth: the fraction of the run (``execution_start`` to ``execution_success``) elapsed;
* ours: the tracker's time estimate (``ProgressTracker``, ``estimate="time"``, the default);
* steps: the step-weighted tracker (``estimate="steps"``: a sampler weighs its steps, any other node 1).

Per run: mean absolute difference to the truth (points) for both, and the ETA error from 30 %
of the run on: ``|eta_s - true seconds left| / true seconds left`` over samples with the truth
between 30 % and 95 % (mean and max), and the finish-time error ``|elapsed + eta_s - run time|
/ run time`` (mean). Targets: MAD <= 5 and ETA error <= 20 % from the second run on.
"""

from __future__ import annotations

import argparse
import copy
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import requests

from tests.traces import load_workflow
from worker.comfyui import protocol as p
from worker.comfyui.clock import SystemClock
from worker.comfyui.progress import ProgressTracker
from worker.comfyui.websocket_client import ComfyUIWebSocketClient
from worker.fleet.node_timings import MemoryTimingStore, NodeTimings
from worker.simulator import ComfyUISimulator, SimulatorTiming
from worker.simulator.timing_profile import RealisticTiming

SAMPLE_EVERY = 0.02


def txt2img() -> dict[str, Any]:
    workflow = load_workflow("txt2img-sd15-random.json")
    workflow["5"]["inputs"].update(width=512, height=512)
    workflow["3"]["inputs"].update(steps=20)
    return workflow


def multi_node() -> dict[str, Any]:
    workflow = txt2img()
    workflow["5"]["inputs"]["batch_size"] = 4
    workflow["10"] = {"class_type": "KSampler", "inputs": {**workflow["3"]["inputs"], "steps": 8, "denoise": 0.5, "latent_image": ["3", 0]}}
    workflow["8"]["inputs"]["samples"] = ["10", 0]
    workflow["11"] = {
        "class_type": "ImageScale",
        "inputs": {"image": ["8", 0], "upscale_method": "bilinear", "width": 1024, "height": 1024, "crop": "disabled"},
    }
    workflow["12"] = {"class_type": "ImageBlur", "inputs": {"image": ["11", 0], "blur_radius": 2, "sigma": 1.0}}
    workflow["9"]["inputs"]["images"] = ["12", 0]
    workflow["13"] = {
        "class_type": "VHS_VideoCombine",
        "inputs": {
            "images": ["8", 0],
            "frame_rate": 8,
            "loop_count": 0,
            "filename_prefix": "bench",
            "format": "image/gif",
            "pingpong": False,
            "save_output": True,
        },
    }
    return workflow


@dataclass
class Sample:
    t: float
    ours: float
    steps: float
    eta: float | None


@dataclass
class Run:
    label: str
    samples: list[Sample]
    start: float
    end: float

    def truth(self, t: float) -> float:
        return 100.0 * min(1.0, max(0.0, (t - self.start) / (self.end - self.start)))

    def inside(self) -> list[Sample]:
        return [s for s in self.samples if self.start <= s.t <= self.end]

    def mad(self, field: str) -> float:
        rows = self.inside()
        return sum(abs(float(getattr(s, field)) - self.truth(s.t)) for s in rows) / max(1, len(rows))

    def eta_errors(self) -> tuple[float, float, float]:
        duration = self.end - self.start
        rows = [s for s in self.inside() if 30.0 <= self.truth(s.t) <= 95.0 and s.eta is not None]
        rel = [abs(s.eta - (self.end - s.t)) / (self.end - s.t) for s in rows if s.eta is not None]
        finish = [abs((s.t - self.start) + s.eta - duration) / duration for s in rows if s.eta is not None]
        if not rel:
            return float("nan"), float("nan"), float("nan")
        return 100 * sum(rel) / len(rel), 100 * max(rel), 100 * sum(finish) / len(finish)


def run_once(sim: ComfyUISimulator, workflow: dict[str, Any], timings: NodeTimings, label: str) -> Run:
    prompt_id = str(uuid.uuid4())
    ours = ProgressTracker(prompt_id, workflow, clock=SystemClock(), durations=timings.model_for(workflow))
    steps = ProgressTracker(prompt_id, workflow, clock=SystemClock(), estimate="steps")
    marks: dict[str, float] = {}
    done = threading.Event()

    def on_message(message: object) -> None:
        now = time.monotonic()
        if not isinstance(message, p.KnownMessage):
            return
        ours.apply(message)
        steps.apply(message)
        if isinstance(message, p.ExecutionStartData) and message.prompt_id == prompt_id:
            marks["start"] = now
        if isinstance(message, p.ExecutionSuccessData) and message.prompt_id == prompt_id:
            marks["end"] = now
            done.set()

    client = ComfyUIWebSocketClient(sim.url)
    client.on_message(on_message)
    client.connect()
    samples: list[Sample] = []
    try:
        requests.post(f"{sim.url}/prompt", json={"prompt": workflow, "client_id": client.client_id, "prompt_id": prompt_id}, timeout=5)
        deadline = time.monotonic() + 120
        while not done.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            state = ours.state(stamp=False)
            if state.elapsed_s is not None:
                samples.append(Sample(now, state.progress, steps.state(stamp=False).progress, state.eta_s))
            done.wait(SAMPLE_EVERY)
    finally:
        client.close()
    ours.complete()  # as the pod client does once history confirms; then the fleet learns
    timings.learn(ours.observations())
    return Run(label, samples, marks["start"], marks["end"])


def report(run: Run, curves: bool) -> dict[str, float]:
    eta_mean, eta_max, finish = run.eta_errors()
    numbers = {
        "run_s": round(run.end - run.start, 2),
        "mad_ours": round(run.mad("ours"), 1),
        "mad_steps": round(run.mad("steps"), 1),
        "eta_err_mean_pct": round(eta_mean, 1),
        "eta_err_max_pct": round(eta_max, 1),
        "finish_err_pct": round(finish, 1),
    }
    print(f"{run.label:<28} {json.dumps(numbers)}")
    if curves:
        print("    t (s)   truth %   ours %   steps %   eta_s   true left")
        rows = run.inside()
        for sample in rows[:: max(1, len(rows) // 20)]:
            eta = "   -  " if sample.eta is None else f"{sample.eta:6.2f}"
            print(
                f"    {sample.t - run.start:5.2f}   {run.truth(sample.t):7.1f}   {sample.ours:6.1f}   {sample.steps:7.1f}"
                f"   {eta}   {run.end - sample.t:6.2f}"
            )
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=0.5, help="multiplies the realistic durations (1 = a real pod)")
    parser.add_argument("--curves", action="store_true", help="print each run's curve (20 rows)")
    args = parser.parse_args()
    summary: dict[str, list[dict[str, float]]] = {}
    for name, make in (("txt2img", txt2img), ("multi-node", multi_node)):
        timing = SimulatorTiming(profile=RealisticTiming(scale=args.scale, seed=7))
        timings = NodeTimings(MemoryTimingStore())
        base = make()
        with ComfyUISimulator(timing=timing) as sim:
            for index, variant in enumerate(("cold", "warm, new seed", "warm, new prompt", "cold after /free")):
                workflow = copy.deepcopy(base)
                for node in workflow.values():
                    if node["class_type"] == "KSampler":
                        node["inputs"]["seed"] = 1000 + index
                if variant == "warm, new prompt":
                    workflow["6"]["inputs"]["text"] += ", at night"
                if variant.startswith("cold after"):
                    requests.post(f"{sim.url}/free", json={"free_memory": True}, timeout=5)
                run = run_once(sim, workflow, timings, f"{name} #{index + 1} {variant}")
                summary.setdefault(name, []).append(report(run, args.curves))
    for name, rows in summary.items():
        later = rows[1:]
        print(
            f"{name}: from run 2 on, MAD ours max {max(r['mad_ours'] for r in later)} (steps {min(r['mad_steps'] for r in later)}"
            f"-{max(r['mad_steps'] for r in later)}), ETA error mean max {max(r['eta_err_mean_pct'] for r in later)} %"
        )


if __name__ == "__main__":
    main()
