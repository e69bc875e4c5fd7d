"""``python3 -m examples.webapp``: serve the example app.

With ``--local-fleet`` it also starts the simulator, a private Redis and a worker (nothing else
needed); otherwise it talks to the broker in ``CELERY_BROKER_URL`` / ``REDIS_URL``, where your
workers (for instance ``python3 -m worker demo``'s, or ``celery -A tasks.app worker``) listen.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys

import uvicorn

from examples.webapp.app import create_app
from examples.webapp.fleet import local_fleet
from tasks.client import ComfyClient


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m examples.webapp", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--local-fleet", action="store_true", help="also start the simulator, a private Redis and a worker")
    parser.add_argument("--step-seconds", type=float, default=0.3, help="simulated seconds per sampler step (--local-fleet)")
    args = parser.parse_args(argv)
    # uvicorn re-raises SIGTERM after its graceful shutdown: make that an exit that runs the cleanup
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    with contextlib.ExitStack() as stack:
        if args.local_fleet:
            fleet = stack.enter_context(local_fleet(step_seconds=args.step_seconds))
            client = ComfyClient.from_url(fleet.broker)
            sys.stdout.write(f"local fleet: simulator {fleet.simulator_url}, broker {fleet.broker}, worker log {fleet.worker_log}\n")
        else:
            client = ComfyClient.from_env()
        stack.callback(client.close)
        sys.stdout.write(f"serving on http://{args.host}:{args.port}/\n")
        sys.stdout.flush()
        uvicorn.run(create_app(client), host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
