from __future__ import annotations

from pathlib import Path

import pytest

from worker.fleet.outputs import safe_output_path


@pytest.mark.parametrize(
    ("subfolder", "filename", "expected"),
    [
        ("", "ComfyUI_00001_.png", "ComfyUI_00001_.png"),
        ("run/a", "x.png", "run/a/x.png"),
        ("../../etc", "passwd", "etc/passwd"),
        ("", "../../../etc/passwd", "passwd"),
        ("", "/abs/path.png", "path.png"),
        ("..", "..", "_"),
        ("", "C:\\windows\\evil.png", "evil.png"),
        ("", "we;ird$name.png", "we_ird_name.png"),
    ],
)
def test_names_are_sanitised_and_stay_inside(tmp_path: Path, subfolder: str, filename: str, expected: str) -> None:
    path = safe_output_path(tmp_path, subfolder, filename)
    assert path == tmp_path.resolve() / expected
    assert tmp_path.resolve() in path.parents


def test_existing_files_are_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"1")
    (tmp_path / "a-1.png").write_bytes(b"2")
    assert safe_output_path(tmp_path, "", "a.png") == tmp_path.resolve() / "a-2.png"


def test_repeated_runs_get_shell_friendly_names(tmp_path: Path) -> None:
    """ComfyUI's own names end in ``_`` (``ComfyUI_00001_.png``): no space or parentheses added."""
    (tmp_path / "ComfyUI_00001_.png").write_bytes(b"1")
    path = safe_output_path(tmp_path, "", "ComfyUI_00001_.png")
    assert path.name == "ComfyUI_00001_-1.png"
    assert " " not in path.name and "(" not in path.name
