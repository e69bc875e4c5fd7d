"""``python -m worker.simulator --port 8188``: run the simulator in the foreground."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from worker.simulator import ComfyUISimulator, SimulatorTiming


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8188, help="port (0 picks a free one; default 8188)")
    parser.add_argument("--step-seconds", type=float, default=0.5, help="seconds per sampler step (default 0.5)")
    parser.add_argument("--node-seconds", type=float, default=0.1, help="seconds per plain node (default 0.1)")
    parser.add_argument("--data-dir", type=Path, default=None, help="where output/temp/input files go (default: a temp dir)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    timing = SimulatorTiming(node_seconds=args.node_seconds, sampler_step_seconds=args.step_seconds)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ComfyUISimulator(args.host, args.port, timing, args.data_dir) as sim:
        print(f"ComfyUI simulator listening on {sim.url} (Ctrl-C to stop)", flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
