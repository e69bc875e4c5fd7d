"""Saving a job's output files locally, safely.

File names come from the server: a hostile or buggy pod could send ``../../etc/x`` or an
absolute path. Every name is reduced to safe parts, the result must stay inside the chosen
directory, and an existing file is never overwritten (a numbered name is used instead).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from worker.comfyui.rest_client import ComfyUIRestClient
from worker.comfyui.results import OutputFile

__all__ = ["safe_output_path", "save_outputs"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


def _clean(part: str) -> str:
    part = _UNSAFE.sub("_", part.replace("\\", "/").split("/")[-1]).strip(" .")
    return part or "_"


def safe_output_path(base: Path, subfolder: str, filename: str) -> Path:
    """A path under ``base`` for a server-supplied (subfolder, filename) that does not exist yet."""
    root = base.resolve()
    parts = [_clean(p) for p in subfolder.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    name = _clean(filename)
    target = root.joinpath(*parts, name)
    if root not in target.resolve().parents:
        raise ValueError(f"refusing to write outside {root}: {filename!r}")
    stem, suffix = target.stem, target.suffix
    counter = 1
    while target.exists():
        target = target.with_name(f"{stem}-{counter}{suffix}")  # shell-friendly: no space, no parentheses
        counter += 1
    return target


def _download_atomically(client: ComfyUIRestClient, item: OutputFile, path: Path) -> None:
    """Stream into ``<name>.part`` and rename when complete: a failed download leaves no file."""
    assert item.filename is not None
    partial = path.with_name(path.name + ".part")
    try:
        with partial.open("wb") as sink:
            client.download_to(sink, item.filename, item.subfolder, item.type)
        partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)


def save_outputs(client: ComfyUIRestClient, files: Iterable[OutputFile], directory: Path) -> list[Path]:
    """Download every file output (texts are written as .txt) into ``directory``.

    Files are streamed to disk, never held whole in memory; a download that fails leaves nothing behind."""
    saved: list[Path] = []
    directory.mkdir(parents=True, exist_ok=True)
    for index, item in enumerate(files):
        if item.kind == "text" and item.text is not None:
            path = safe_output_path(directory, "", f"node{item.node_id}_text_{index}.txt")
            path.write_text(item.text, encoding="utf-8")
        elif item.filename:
            path = safe_output_path(directory, item.subfolder, item.filename)
            path.parent.mkdir(parents=True, exist_ok=True)
            _download_atomically(client, item, path)
        else:
            continue
        saved.append(path)
    return saved
