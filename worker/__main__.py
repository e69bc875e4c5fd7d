"""``python3 -m worker …``: creates the environment on first use, then runs the command line."""

from __future__ import annotations

from worker.app.bootstrap import ROOT, ensure_environment

if __name__ == "__main__":
    ensure_environment("worker", [ROOT / "requirements-local.txt", ROOT / "requirements.txt"])
    from worker.app.cli import main

    raise SystemExit(main())
