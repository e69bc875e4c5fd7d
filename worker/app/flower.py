"""``python -m worker.app.flower``: Flower with defaults that are safe and usable.

Two traps of running ``celery flower`` directly, both met by operators:

* Flower reads every ``FLOWER_*`` variable, empty ones included: an empty
  ``FLOWER_BASIC_AUTH`` (what docker-compose's ``${FLOWER_BASIC_AUTH:-}`` gives) becomes the
  credential list ``['']``, and every page answers 401 without ``WWW-Authenticate``, so a
  browser never even prompts. Empty ``FLOWER_*`` variables are dropped here.
* On a platform that routes ``PORT`` to the internet, ``--address=0.0.0.0`` with no
  authentication opens the UI (task arguments: workflows) to anyone. Unless told an address,
  Flower binds ``0.0.0.0`` only with ``FLOWER_BASIC_AUTH`` (or ``FLOWER_AUTH``) set, and
  127.0.0.1 otherwise (saying so on stderr).

Everything else on the command line goes to ``celery -A tasks.app flower`` unchanged.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

__all__ = ["flower_command", "main"]

_AUTH_VARIABLES = ("FLOWER_BASIC_AUTH", "FLOWER_AUTH")


def flower_command(argv: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str], str | None]:
    """(argv for ``python -m celery``, the environment, a notice for stderr or None)."""
    parser = argparse.ArgumentParser(prog="python -m worker.app.flower", add_help=False)
    parser.add_argument("--address", default=None)
    parser.add_argument("--port", default=None)
    known, rest = parser.parse_known_args(list(argv))
    clean = {k: v for k, v in env.items() if not (k.startswith("FLOWER_") and not v.strip())}
    authenticated = any(clean.get(name) for name in _AUTH_VARIABLES)
    address = known.address or clean.get("FLOWER_ADDRESS")
    notice = None
    if not address:
        address = "0.0.0.0" if authenticated else "127.0.0.1"  # only behind authentication
        if not authenticated:
            notice = "flower: no FLOWER_BASIC_AUTH set, so listening on 127.0.0.1 only (set it, or pass --address, to open it)"
    port = known.port or clean.get("FLOWER_PORT") or clean.get("PORT") or "5555"
    command = ["-m", "celery", "-A", "tasks.app", "flower", f"--address={address}", f"--port={port}", *rest]
    return command, clean, notice


def main(argv: Sequence[str] | None = None) -> None:
    command, env, notice = flower_command(sys.argv[1:] if argv is None else argv, os.environ)
    if notice:
        sys.stderr.write(notice + "\n")
        sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *command], env)


if __name__ == "__main__":
    main()
