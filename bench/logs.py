"""Keep a bench's table readable: the library's log lines go to a file, not between the rows.

The benches provoke what the library logs about on purpose (fallbacks, reconnects, a scripted
server's refused upgrade and aiohttp's traceback for it). Without a handler, Python prints
every warning on stderr, which a terminal interleaves with the table. Inside
:func:`logs_to_file` the root logger writes to a temporary file instead; at the end one line on
stderr says where it is (the file is removed if nothing was logged).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["logs_to_file"]


@contextlib.contextmanager
def logs_to_file(name: str, *, note: TextIO | None = None, level: int = logging.INFO) -> Iterator[Path]:
    """Route every log record (``level`` and up) to ``bench-<name>-*.log`` while the block runs."""
    fd, raw = tempfile.mkstemp(prefix=f"bench-{name}-", suffix=".log")
    os.close(fd)
    path = Path(raw)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s"))
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, root.handlers[:]
    for old in saved_handlers:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        for old in saved_handlers:
            root.addHandler(old)
        root.setLevel(saved_level)
        with path.open(encoding="utf-8") as log:
            lines = sum(1 for _ in log)
        if lines:
            print(f"({lines} log line{'s' if lines != 1 else ''} from the library in {path})", file=note or sys.stderr)
        else:
            path.unlink()
