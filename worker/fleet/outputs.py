"""Saving a job's output files locally, safely.

File names come from the server: a hostile or buggy pod could send ``../../etc/x``, an absolute
path, a 300-character name, or a name that collides with a directory. Every name is reduced to
safe parts no longer than a file system allows, the result must stay inside the chosen
directory, and nothing existing is ever overwritten or followed: neither the file (a numbered
name is used instead) nor its ``<name>.part`` (created with ``O_EXCL | O_NOFOLLOW``, so a symlink
planted there cannot send the bytes out of the directory). A file that cannot be saved does not
stop the others: :class:`OutputSaveError` names each failure once all were tried.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from worker.comfyui.errors import ComfyUIError, OutputSaveError
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.comfyui.results import MAX_OUTPUT_FILES, OutputFile

__all__ = ["MAX_NAME_BYTES", "safe_output_path", "save_outputs"]

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")
#: a name part, in bytes (file systems allow 255; room is left for " (n)" and ".part")
MAX_NAME_BYTES = 200
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def _shorten(part: str, limit: int = MAX_NAME_BYTES) -> str:
    """Cut a (safe, ASCII) name to ``limit`` characters, keeping a short suffix such as ``.png``."""
    if len(part) <= limit:
        return part
    stem, dot, suffix = part.rpartition(".")
    if dot and stem and len(suffix) <= 16:
        return f"{stem[: limit - len(suffix) - 1]}.{suffix}"
    return part[:limit]


def _clean(part: str) -> str:
    part = _UNSAFE.sub("_", part.replace("\\", "/").split("/")[-1]).strip(" .")
    return _shorten(part) or "_"


def _taken(path: Path) -> bool:
    """The name or its ``.part`` exists, as anything (a dangling symlink included)."""
    return os.path.lexists(path) or os.path.lexists(path.with_name(path.name + ".part"))


def safe_output_path(base: Path, subfolder: str, filename: str) -> Path:
    """A path under ``base`` for a server-supplied (subfolder, filename) that does not exist yet."""
    root = base.resolve()
    parts = [_clean(p) for p in subfolder.replace("\\", "/").split("/") if p not in ("", ".", "..")][:16]
    name = _clean(filename)
    target = root.joinpath(*parts, name)
    if root not in target.resolve().parents:
        raise ValueError(f"refusing to write outside {root}: {filename[:80]!r}")
    stem, suffix = target.stem, target.suffix
    counter = 1
    while _taken(target):
        target = target.with_name(f"{stem}-{counter}{suffix}")  # shell-friendly: no space, no parentheses
        counter += 1
    return target


def _create_exclusive(path: Path) -> int:
    """A new file at ``path``, never an existing one and never through a symlink."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)


def _publish(partial: Path, path: Path) -> None:
    """Move the complete ``.part`` to its name without replacing anything that appeared meanwhile."""
    try:
        os.link(partial, path)  # fails if ``path`` exists, unlike rename
    except OSError as exc:
        if isinstance(exc, FileExistsError):
            raise
        partial.rename(path)  # a file system without hard links
    else:
        partial.unlink()


def _download_atomically(client: ComfyUIRestClient, item: OutputFile, path: Path) -> None:
    """Stream into ``<name>.part`` and publish when complete: a failed download leaves no file."""
    assert item.filename is not None
    partial = path.with_name(path.name + ".part")
    fd = _create_exclusive(partial)  # ours from here on: only now may we delete it
    try:
        with os.fdopen(fd, "wb") as sink:
            client.download_to(sink, item.filename, item.subfolder, item.type)
        _publish(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _save_one(client: ComfyUIRestClient, item: OutputFile, index: int, directory: Path) -> Path | None:
    if item.kind == "text" and item.text is not None:
        path = safe_output_path(directory, "", f"node{_clean(item.node_id)[:40]}_text_{index}.txt")
        with os.fdopen(_create_exclusive(path), "w", encoding="utf-8") as sink:
            sink.write(item.text)
        return path
    if not item.filename:
        return None
    path = safe_output_path(directory, item.subfolder, item.filename)
    path.parent.mkdir(parents=True, exist_ok=True)
    _download_atomically(client, item, path)
    return path


def save_outputs(client: ComfyUIRestClient, files: Iterable[OutputFile], directory: Path) -> list[Path]:
    """Download every file output (texts are written as .txt) into ``directory``; return the paths.

    Files are streamed to disk, never held whole in memory; a download that fails leaves nothing
    behind and the next file is tried. If any failed, :class:`OutputSaveError` is raised at the
    end, its details holding ``failures`` (file name and reason) and ``saved`` (the paths)."""
    saved: list[Path] = []
    failures: list[dict[str, str]] = []
    directory.mkdir(parents=True, exist_ok=True)
    for index, item in enumerate(files):
        if index >= MAX_OUTPUT_FILES:
            failures.append({"filename": "", "error": f"more than {MAX_OUTPUT_FILES} outputs: the rest were not saved"})
            break
        try:
            path = _save_one(client, item, index, directory)
        except (OSError, ValueError, ComfyUIError) as exc:
            reason = exc.to_dict()["code"] + f": {exc}" if isinstance(exc, ComfyUIError) else f"{exc.__class__.__name__}: {exc}"
            log.warning("output %r not saved: %s", (item.filename or "")[:80], reason)
            failures.append({"filename": (item.filename or item.kind)[:200], "error": reason[:300]})
            continue
        if path is not None:
            saved.append(path)
    if failures:
        raise OutputSaveError(
            f"{len(failures)} output(s) could not be saved ({len(saved)} saved)",
            {"saved": [str(p) for p in saved]},
            failures=failures,
        )
    return saved
