"""A plain clone runs the suite: the recorded traces live in the repository, not beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_traces_are_found_inside_the_repository_by_default() -> None:
    env = {k: v for k, v in os.environ.items() if k != "COMFY_TRACES_DIR"}
    code = "from tests.traces import TRACE_DIR, trace_files; print(TRACE_DIR); print(len(trace_files()))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=dict(env, PYTHONPATH=str(ROOT)), capture_output=True, text=True, check=True
    )
    trace_dir, count = done.stdout.split()
    assert Path(trace_dir).resolve() == ROOT / "tests" / "data" / "comfyui-traces"
    assert int(count) >= 10
    tracked = subprocess.run(["git", "ls-files", "tests/data/comfyui-traces"], cwd=ROOT, capture_output=True, text=True, check=False)
    if tracked.returncode == 0:  # a checkout (not an sdist or an image): the traces are committed, not just present
        assert len([line for line in tracked.stdout.splitlines() if line.endswith(".jsonl")]) == int(count)


def test_nothing_reads_the_shared_folder_beside_the_checkout() -> None:
    for path in [*ROOT.glob("tests/**/*.py"), *ROOT.glob("worker/**/*.py"), ROOT / ".ci" / "run"]:
        if path.name == "test_standalone.py":
            continue
        text = path.read_text()
        assert "../shared" not in text and "/work/shared" not in text, path
