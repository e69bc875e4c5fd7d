"""``python3 -m tests``: create the environment if needed, then run the whole test suite."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from worker.app.bootstrap import ROOT, ensure_environment

REQUIREMENTS = [
    ROOT / "requirements-local.txt",
    ROOT / "requirements.txt",
    ROOT / "examples" / "webapp" / "requirements.txt",
    ROOT / "tests" / "requirements.txt",
]


def ensure_browser() -> None:
    """The browser tests drive Debian's chromium through its chromedriver (nothing downloaded).

    On a fresh Debian machine run as root (a container, CI) they are installed here, once, with
    apt-get; elsewhere the two browser tests fail with the command to run, and say so first."""
    if shutil.which("chromium") and shutil.which("chromedriver"):
        return
    if os.name == "posix" and os.geteuid() == 0 and shutil.which("apt-get"):
        print("[tests] installing Debian's chromium and chromium-driver for the browser tests (apt-get, once)", file=sys.stderr, flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True, env=env, stdout=subprocess.DEVNULL)
        return
    print(
        "[tests] chromium and chromium-driver are missing: the two browser tests will fail. "
        "Install them (Debian: sudo apt-get install chromium chromium-driver).",
        file=sys.stderr,
        flush=True,
    )


def main() -> int:
    ensure_environment("tests", REQUIREMENTS)
    ensure_browser()
    import pytest

    code = int(pytest.main(["-q", *sys.argv[1:]] if len(sys.argv) > 1 else ["-q", str(ROOT / "tests")]))
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("no tests were collected: that is a failure here", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
