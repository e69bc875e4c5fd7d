"""No Python module of ours is over 400 lines (the project's standard, issue 10).

A long module is one that grew a second concept; the limit makes the split happen when the
second concept arrives rather than in a later clean-up. Every ``.py`` file under our source
folders counts, tests and benchmarks included.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("worker", "tasks", "config", "bench", "examples", "tests")
MAX_LINES = 400


def _line_count(path: Path) -> int:
    """Lines as ``wc -l`` counts them for a file that ends in a newline (a last line without one counts too)."""
    return len(path.read_bytes().splitlines())


def _modules() -> list[Path]:
    # a folder that does not exist yet (examples/ before its first app) simply has no modules
    return sorted(path for folder in FOLDERS for path in (ROOT / folder).rglob("*.py"))


def test_the_source_folders_hold_modules() -> None:
    # guards the size check below against passing because it found nothing to check
    names = {path.relative_to(ROOT).as_posix() for path in _modules()}
    assert {"worker/comfyui/clock.py", "tasks/app.py", "config/settings.py", "tests/unit/test_module_sizes.py"} <= names


def test_no_module_is_over_400_lines() -> None:
    counts = {path.relative_to(ROOT).as_posix(): _line_count(path) for path in _modules()}
    offenders = {name: count for name, count in sorted(counts.items()) if count > MAX_LINES}
    assert not offenders, "modules over 400 lines (split each along its concepts): " + ", ".join(
        f"{name} ({count})" for name, count in offenders.items()
    )


def test_the_count_is_the_number_of_lines(tmp_path: Path) -> None:
    exact = tmp_path / "exact.py"
    exact.write_text("a = 1\n" * MAX_LINES)
    unterminated = tmp_path / "unterminated.py"
    unterminated.write_text("a = 1\n" * MAX_LINES + "b = 2")
    assert (_line_count(exact), _line_count(unterminated)) == (MAX_LINES, MAX_LINES + 1)
