"""``python -m worker``: the demo, and what users do by hand with the fleet.

    python -m worker demo                       the whole loop on this machine
    python -m worker submit job.json --wait     enqueue a workflow, show progress, save outputs
    python -m worker status TASK_ID             state, progress, result or error of a task (JSON)
    python -m worker simulator --port 8188      run the ComfyUI simulator

``submit`` and ``status`` use the same environment variables as the worker (README).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from celery.result import AsyncResult

from config.settings import Settings, SettingsError
from worker.comfyui.errors import ComfyUIError
from worker.comfyui.results import WorkflowResult

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    from worker.app.demo import DemoError, run_demo  # noqa: PLC0415 - keeps `status` fast

    try:
        return run_demo(
            output_dir=args.output_dir, step_seconds=args.step_seconds, timeout=args.timeout, interactive=False if args.plain else None
        )
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1


def _submit(args: argparse.Namespace) -> int:
    from config.wiring import pod_pool  # noqa: PLC0415
    from tasks.app import create_app  # noqa: PLC0415
    from tasks.client import enqueue_workflow, job_status, task_state  # noqa: PLC0415
    from worker.app.follow import follow_task  # noqa: PLC0415
    from worker.fleet.outputs import save_outputs  # noqa: PLC0415

    settings = Settings.from_env()
    try:
        workflow = json.loads(args.workflow.read_text())
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.workflow}: {exc}", file=sys.stderr)
        return 2
    app = create_app(settings)
    queue = settings.pod(args.pod).queue if args.pod and args.queue_per_pod else None
    result = enqueue_workflow(app, workflow, job_type=args.job_type, pod=args.pod, timeout=args.timeout, queue=queue)
    print(result.id)
    if not args.wait:
        return 0
    state = follow_task(
        lambda: task_state(result), timeout=args.timeout or settings.job_hard_time_limit + 60, interactive=False if args.plain else None
    )
    status = job_status(result)
    if state != "SUCCESS":
        print(json.dumps(status, indent=2, default=str), file=sys.stderr)
        return 1
    output = WorkflowResult.from_dict(status["result"])
    pool = pod_pool(settings)
    client = pool.client(pool.get(status["result"].get("pod") or settings.pods[0].name))
    for path in save_outputs(client, output.files, args.output_dir):
        print(f"saved {path}")
    pool.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    from tasks.app import create_app  # noqa: PLC0415
    from tasks.client import job_status  # noqa: PLC0415

    app = create_app(Settings.from_env())
    result: AsyncResult = AsyncResult(args.task_id, app=app)  # type: ignore[type-arg]
    print(json.dumps(job_status(result), indent=2, default=str))
    return 0


def _simulator(args: argparse.Namespace) -> int:
    from worker.simulator.__main__ import main as simulator_main  # noqa: PLC0415

    return simulator_main(["--host", args.host, "--port", str(args.port), "--step-seconds", str(args.step_seconds)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker", description="comfy-celery: ComfyUI workflows on a Celery fleet")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole loop on this machine (simulator, broker, worker, poller)")
    demo.add_argument("--output-dir", type=Path, default=Path("demo-output"), help="where outputs are saved (default: demo-output)")
    demo.add_argument("--step-seconds", type=float, default=0.8, help="simulated seconds per sampler step (default 0.8)")
    demo.add_argument("--timeout", type=float, default=180.0, help="give up after this many seconds (default 180)")
    demo.add_argument("--plain", action="store_true", help="one line per update instead of a redrawn bar (for logs and CI)")
    demo.set_defaults(run=_demo)

    submit = sub.add_parser("submit", help="enqueue an API-format workflow file")
    submit.add_argument("workflow", type=Path, help="the workflow JSON (ComfyUI 'Save (API Format)')")
    submit.add_argument("--wait", action="store_true", help="show progress until the end, then save the outputs")
    submit.add_argument("--output-dir", type=Path, default=Path("outputs"), help="where --wait saves outputs (default: outputs)")
    submit.add_argument("--job-type", default="image_generation", choices=["image_generation", "lora_training", "face_swap"])
    submit.add_argument("--pod", default=None, help="run on this pod (a name from COMFYUI_SERVERS)")
    submit.add_argument("--queue-per-pod", action="store_true", help="send to the pod's own queue (comfyui.<pod>)")
    submit.add_argument("--timeout", type=float, default=None, help="job deadline in seconds")
    submit.add_argument("--plain", action="store_true", help="one line per update instead of a redrawn bar")
    submit.set_defaults(run=_submit)

    status = sub.add_parser("status", help="show a task's state, progress, result or error as JSON")
    status.add_argument("task_id")
    status.set_defaults(run=_status)

    simulator = sub.add_parser("simulator", help="run the ComfyUI simulator")
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8188)
    simulator.add_argument("--step-seconds", type=float, default=0.5)
    simulator.set_defaults(run=_simulator)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # A process started with SIGINT ignored (a background job, nohup, some supervisors) would
    # otherwise never see Ctrl-C, and the demo could not stop what it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code: int = args.run(args)
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except ComfyUIError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: everything this command started has been stopped", file=sys.stderr)
        return 130
    return code
