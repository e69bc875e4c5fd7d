"""``python -m worker``: the demo, and what users do by hand with the fleet.

    python -m worker demo                       the whole loop on this machine
    python -m worker submit job.json --wait     enqueue a workflow, show progress, save outputs
    python -m worker status TASK_ID             state, progress, result or error of a task (JSON)
    python -m worker cancel TASK_ID             revoke a task: its prompt is removed from the pod
    python -m worker simulator --port 8188      run the ComfyUI simulator

``submit`` and ``status`` use the same environment variables as the worker (README).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from config.settings import Settings, SettingsError
from worker.app.preflight import BrokerUnreachableError
from worker.comfyui.errors import ComfyUIError, OutputSaveError
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.comfyui.results import WorkflowResult
from worker.comfyui.urls import ServerURL

__all__ = ["UsageError", "main"]

CELERY_DEFAULT_QUEUE = "celery"  # tasks.app's; not imported at module level, to keep `--help` fast


class UsageError(RuntimeError):
    """The command cannot run as asked (an unknown pod, say); the message says why."""


def _demo(args: argparse.Namespace) -> int:
    from worker.app.demo import DemoError, run_demo  # noqa: PLC0415 - keeps `status` fast

    try:
        return run_demo(
            output_dir=args.output_dir, step_seconds=args.step_seconds, timeout=args.timeout, interactive=False if args.plain else None
        )
    except DemoError as exc:
        print(f"\ndemo failed: {exc}", file=sys.stderr)
        return 1


def _app_for_command() -> tuple[Settings, Celery]:
    """Settings, then an app whose broker and result backend answered (else one clear line)."""
    from tasks.app import create_app  # noqa: PLC0415 - keeps `--help` fast
    from worker.app.preflight import check_broker  # noqa: PLC0415

    settings = Settings.from_env()
    app = create_app(settings)
    # short socket timeouts for a command line: a dead backend host must not hang a poll for minutes
    app.conf.update(redis_socket_connect_timeout=3, redis_socket_timeout=10, broker_connection_timeout=3)
    check_broker(app, settings, os.environ)
    return settings, app


def _pod_queue(settings: Settings, args: argparse.Namespace) -> str:
    if args.pod is not None:
        try:
            pod = settings.pod(args.pod)
        except KeyError:
            names = ", ".join(p.name for p in settings.pods)
            raise UsageError(f"unknown pod {args.pod!r}: COMFYUI_SERVERS names {names}") from None
        if args.queue_per_pod:
            return pod.queue
    elif args.queue_per_pod:
        raise UsageError("--queue-per-pod needs --pod NAME")
    return settings.default_queue


def _download_client(settings: Settings, result: Mapping[str, Any]) -> ComfyUIRestClient:
    """The pod that ran the job, from the result: this machine's COMFYUI_SERVERS may not list it
    (or may map the name elsewhere). Our own entry for that URL is preferred: same server."""
    from config.wiring import pod_client_settings  # noqa: PLC0415

    server_url = str(result.get("server_url") or "")
    known = next((p for p in settings.pods if p.safe_url == server_url), None)
    url: ServerURL | str = known.server if known is not None else server_url
    if not url:
        raise UsageError("the result names no server to download from")
    return ComfyUIRestClient(url, headers=settings.auth_headers(), http=pod_client_settings(settings).http)


def _wait_bound(settings: Settings, timeout: float | None) -> float:
    """How long --wait follows a task: past its own deadline, so that the task's final state
    (FAILURE timeout, after the prompt was interrupted) is what the client reports."""
    soft = timeout if timeout is not None else settings.job_time_limit
    return soft + (settings.job_hard_time_limit - settings.job_time_limit) + 30.0


def _read_workflow(path: Path) -> dict[str, object]:
    """The file, at most one byte past the cap read (a huge file is refused, not loaded), bounded and checked."""
    from worker.comfyui.workflow import MAX_WORKFLOW_BYTES, parse_workflow  # noqa: PLC0415

    with path.open("rb") as source:
        return parse_workflow(source.read(MAX_WORKFLOW_BYTES + 1))


def _submit(args: argparse.Namespace) -> int:
    from tasks.client import enqueue_workflow  # noqa: PLC0415

    try:
        workflow = _read_workflow(args.workflow)
    except (OSError, ComfyUIError) as exc:  # a 10,000-deep file is one line too, never a RecursionError traceback
        print(f"cannot read {args.workflow}: {exc}", file=sys.stderr)
        return 2
    settings = Settings.from_env()
    queue = _pod_queue(settings, args)
    settings, app = _app_for_command()
    result = enqueue_workflow(app, workflow, job_type=args.job_type, pod=args.pod, timeout=args.timeout, queue=queue)
    # the id is printed inside the try: a Ctrl-C right after it must still say the job runs on
    try:
        print(result.id, flush=True)
        if not args.wait:
            return 0
        return _follow(settings, app, result, queue, args)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: stopped following; task {result.id} keeps running on the fleet.\n"
            f"  follow it: python3 -m worker status {result.id}\n  cancel it: python3 -m worker cancel {result.id}",
            file=sys.stderr,
        )
        return 130


def _follow(settings: Settings, app: Celery, result: AsyncResult, queue: str, args: argparse.Namespace) -> int:  # type: ignore[type-arg]
    from tasks.client import job_status, task_state  # noqa: PLC0415
    from worker.app.follow import follow_task  # noqa: PLC0415
    from worker.app.preflight import QueueWatch, active_queues  # noqa: PLC0415
    from worker.fleet.outputs import save_outputs  # noqa: PLC0415

    watch = QueueWatch(queue, lambda: active_queues(app), grace=args.no_worker_timeout, say=lambda line: print(line, file=sys.stderr))
    state = follow_task(
        lambda: task_state(result),
        timeout=_wait_bound(settings, args.timeout),
        interactive=False if args.plain else None,
        on_pending=watch,
    )
    if state in ("TIMEOUT", "NO_WORKER"):
        if state == "TIMEOUT":
            print(f"stopped waiting after {_wait_bound(settings, args.timeout):g} s; the task still runs", file=sys.stderr)
        print(f"  follow it: python3 -m worker status {result.id}\n  cancel it: python3 -m worker cancel {result.id}", file=sys.stderr)
        return 1
    status = job_status(result)
    if state != "SUCCESS":
        print(json.dumps(status, indent=2, default=str), file=sys.stderr)
        return 1
    output = WorkflowResult.from_dict(status["result"])
    client = _download_client(settings, status["result"])
    try:
        for path in save_outputs(client, output.files, args.output_dir):
            print(f"saved {path}")
    except OutputSaveError as exc:  # some saved, some not: each one said
        for path in exc.details.get("saved", []):
            print(f"saved {path}")
        for failure in exc.failures:
            print(f"not saved {failure.get('filename')!r}: {failure.get('error')}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


def _status(args: argparse.Namespace) -> int:
    from tasks.client import job_status  # noqa: PLC0415
    from worker.app.preflight import find_queued  # noqa: PLC0415

    settings, app = _app_for_command()
    result: AsyncResult = AsyncResult(args.task_id, app=app)  # type: ignore[type-arg]
    view = job_status(result)
    if view["state"] != "PENDING":
        print(json.dumps(view, indent=2, default=str))
        return 0
    queues = [settings.default_queue, CELERY_DEFAULT_QUEUE, *(p.queue for p in settings.pods)]
    found = find_queued(settings, args.task_id, queues)
    if found is not None:
        view["queued"] = {"queue": found[0], "position": found[1]}
        view["note"] = f"queued on {found[0]!r} (position {found[1]}, 0 = next): no worker has taken it yet"
        print(json.dumps(view, indent=2, default=str))
        return 0
    view["note"] = (
        "unknown task id: not in any queue and no result (never enqueued on this broker, its result expired after "
        "RESULT_EXPIRES, or a worker has just taken it)"
        if settings.broker_is_redis
        else "unknown task id, or no worker has taken it yet (the broker cannot be searched)"
    )
    print(json.dumps(view, indent=2, default=str))
    return 3


def _cancel(args: argparse.Namespace) -> int:
    from tasks.client import task_state  # noqa: PLC0415

    _, app = _app_for_command()
    state, _ = task_state(AsyncResult(args.task_id, app=app))
    if state in ("SUCCESS", "FAILURE", "REVOKED"):
        print(f"task {args.task_id} already ended as {state}: nothing to cancel", file=sys.stderr)
        return 1
    # SIGUSR1: the task deletes its prompt from the pod's queue (or interrupts it) and ends REVOKED
    app.control.revoke(args.task_id, terminate=True, signal="SIGUSR1")
    print(f"cancel sent for {args.task_id} ({state}): the worker removes its prompt from the pod; the task ends as REVOKED")
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
    submit.add_argument(
        "--no-worker-timeout",
        type=float,
        default=10.0,
        help="with --wait, give up after this many seconds in which no worker consumes the queue (default 10)",
    )
    submit.set_defaults(run=_submit)

    status = sub.add_parser("status", help="show a task's state, progress, result or error as JSON")
    status.add_argument("task_id")
    status.set_defaults(run=_status)

    cancel = sub.add_parser("cancel", help="cancel a task: its prompt is deleted from the pod's queue or interrupted")
    cancel.add_argument("task_id")
    cancel.set_defaults(run=_cancel)

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
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokerUnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    except ComfyUIError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return code
