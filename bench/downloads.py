"""Output download cost: ``python -m bench.downloads [MB]``.

A large file (a video, say) is served by the simulator's ``/view``; it is fetched once into
memory (``download``) and once streamed to disk (``download_to``, what ``save_outputs`` uses).
Peak Python memory is traced for each, with throughput over 127.0.0.1.
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from worker.comfyui.http_transport import HTTPSettings
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.simulator import ComfyUISimulator


def _measure(label: str, size: int, fetch: Callable[[], object]) -> None:
    tracemalloc.start()
    start = time.perf_counter()
    fetch()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"{label:<34} {elapsed * 1000:7.0f} ms  {size / elapsed / 1e6:7.0f} MB/s  peak Python memory {peak / 1e6:8.2f} MB")


def main(megabytes: int = 200) -> None:
    size = megabytes * 1_000_000
    with tempfile.TemporaryDirectory() as tmp, ComfyUISimulator(root=Path(tmp) / "sim") as sim:
        (sim.root / "output").mkdir(parents=True, exist_ok=True)
        (sim.root / "output" / "big.mp4").write_bytes(b"\0" * size)
        client = ComfyUIRestClient(sim.url, http=HTTPSettings(max_download_bytes=2 * size))
        target = Path(tmp) / "big.mp4"
        print(f"a {megabytes} MB output over 127.0.0.1:")
        _measure("download() into memory", size, lambda: client.download("big.mp4"))
        with target.open("wb") as sink:
            _measure("download_to() streamed to a file", size, lambda: client.download_to(sink, "big.mp4"))
        assert target.stat().st_size == size
        client.close()


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]))
