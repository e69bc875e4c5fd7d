"""``python3 -m tests``: create the environment if needed, then run the whole test suite."""

from __future__ import annotations

import sys

from worker.app.bootstrap import ROOT, ensure_environment


def main() -> int:
    ensure_environment("tests", [ROOT / "requirements-local.txt", ROOT / "requirements.txt", ROOT / "tests" / "requirements.txt"])
    import pytest

    code = int(pytest.main(["-q", *sys.argv[1:]] if len(sys.argv) > 1 else ["-q", str(ROOT / "tests")]))
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        print("no tests were collected: that is a failure here", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
