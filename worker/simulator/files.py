"""The simulated server's folders (output, temp, input) and ComfyUI-style file names.

Apart from the engine because it is the one thing a running node touches besides its inputs
(the ``NodeContext`` it saves and loads through), and the only part that writes to disk.
"""

from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

from worker.simulator.media import solid_gif, solid_png
from worker.simulator.node_types import NodeContext, SimImage
from worker.simulator.uploads import input_path, read_image_file

__all__ = ["FileStore"]


class FileStore(NodeContext):
    """Output/temp/input folders and ComfyUI-style file names."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for kind in ("output", "temp", "input"):
            (root / kind).mkdir(parents=True, exist_ok=True)
        self._counters: dict[str, int] = {}

    def _next(self, prefix: str) -> int:
        self._counters[prefix] = self._counters.get(prefix, 0) + 1
        return self._counters[prefix]

    def save_image(self, image: SimImage, prefix: str, kind: str) -> list[dict[str, Any]]:
        if kind == "temp":
            prefix = "ComfyUI_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        files = []
        for _ in range(max(1, image.batch)):
            name = f"{prefix}_{self._next(prefix):05}_.png"
            (self.root / kind / name).write_bytes(solid_png(image.width, image.height, image.rgb))
            files.append({"filename": name, "subfolder": "", "type": kind})
        return files

    def save_video(self, image: SimImage, prefix: str, frame_rate: float) -> dict[str, Any]:
        counter = self._next(prefix)
        name = f"{prefix}_{counter:05}.gif"
        (self.root / "output" / name).write_bytes(solid_gif(min(image.width, 64), min(image.height, 64), frames=max(2, image.batch)))
        return {
            "filename": name,
            "subfolder": "",
            "type": "output",
            "format": "image/gif",
            "frame_rate": frame_rate,
            "workflow": f"{prefix}_{counter:05}.png",
            "fullpath": str(self.root / "output" / name),
        }

    def load_image(self, name: str) -> SimImage | None:
        path = input_path(self.root, name)
        found = read_image_file(path) if path is not None else None
        return SimImage(found[0], found[1], 1, found[2]) if found else None

    def input_files(self) -> frozenset[str]:
        base = self.root / "input"
        return frozenset(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())

    def reset_temp(self) -> None:
        for path in (self.root / "temp").glob("*"):
            if path.is_file():
                path.unlink()
