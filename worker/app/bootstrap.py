"""Make ``python3 -m worker …`` and ``python3 -m tests`` work on a machine with only Python 3.11.

Standard library only: this runs before any dependency is installed. Outside a virtual
environment it creates ``.venv`` in the checkout, installs the requirement files (again only
when they changed, one stamp per command) and re-executes the same command inside it. Inside a virtual environment
(CI, or a user's own) it does nothing.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_MARKER = "COMFY_CELERY_BOOTSTRAPPED"


def _in_virtualenv() -> bool:
    return sys.prefix != sys.base_prefix


def install_needed(venv: Path, module: str, requirement_files: list[Path]) -> tuple[Path, str] | None:
    """(stamp file, digest) when ``module``'s requirement set is not installed yet, else None.

    One stamp per command (``worker``, ``tests``): with a single stamp for two different
    requirement sets, switching between ``python3 -m worker`` and ``python3 -m tests``
    reinstalled everything every time."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in requirement_files)).hexdigest()
    stamp = venv / f".requirements-{module}.sha256"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return None
    return stamp, digest


def ensure_environment(module: str, requirement_files: list[Path]) -> None:
    """Re-exec ``python -m module`` inside ``ROOT/.venv`` unless already in a virtual environment."""
    if _in_virtualenv() or os.environ.get(_MARKER):
        return
    if sys.version_info < (3, 11):  # noqa: UP036 - this runs under whatever python3 the user has
        sys.exit(f"comfy-celery needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    venv = ROOT / ".venv"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        print(f"[bootstrap] creating a virtual environment in {venv}", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pending = install_needed(venv, module, requirement_files)
    if pending is not None:
        stamp, digest = pending
        names = " + ".join(str(p.relative_to(ROOT)) for p in requirement_files)
        print(
            f"[bootstrap] installing {names} into {venv} (about a minute the first time; pip's progress follows)",
            file=sys.stderr,
            flush=True,
        )
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
        args = [str(python), "-m", "pip", "install", "--progress-bar", "off"]
        for path in requirement_files:
            args += ["-r", str(path)]
        subprocess.run(args, check=True)
        stamp.write_text(digest)
        print("[bootstrap] done; later runs start at once", file=sys.stderr, flush=True)
    env = dict(os.environ, **{_MARKER: "1"})
    os.chdir(ROOT)
    os.execve(str(python), [str(python), "-m", module, *sys.argv[1:]], env)
