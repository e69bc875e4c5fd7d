"""The benches' tables stay clean: library log lines (and tracebacks) go to a file."""

from __future__ import annotations

import io
import logging

import pytest

from bench.logs import logs_to_file


def test_log_lines_and_tracebacks_go_to_the_file_and_the_root_logger_is_restored(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = (root.level, root.handlers[:])
    note = io.StringIO()
    with logs_to_file("unit", note=note) as path:
        logging.getLogger("worker.comfyui.job").warning("falling back to REST polling")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("aiohttp.server").exception("Error handling request")
        print("table row")
    text = path.read_text()
    assert "falling back to REST polling" in text and "RuntimeError: boom" in text
    captured = capsys.readouterr()
    assert captured.out == "table row\n" and "boom" not in captured.err and "falling back" not in captured.err
    assert str(path) in note.getvalue()
    assert (root.level, root.handlers) == before
    path.unlink()


def test_nothing_logged_leaves_no_file() -> None:
    note = io.StringIO()
    with logs_to_file("quiet", note=note) as path:
        pass
    assert not path.exists() and note.getvalue() == ""
