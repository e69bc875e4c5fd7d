"""The media pipeline's cost: ``python -m bench.media [--mb 200]``.

1. one large video output streamed from the simulator into the file store and into a moto S3
   server process: wall time and peak Python memory (tracemalloc) of the worker side;
2. the per-job overhead of storing a 1 MB PNG (both stores, mean over 20 jobs);
3. inputs of 10 x 5 MB images by URL from a local HTTP server: fetch, sniff, upload to the pod.
"""

from __future__ import annotations

import argparse
import http.server
import os
import struct
import tempfile
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from tests.integration.media_support import FileServer, free_port, handler_class, start_s3_server
from worker.app.processes import stop_process
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.comfyui.results import OutputFile
from worker.fleet.media import AddressGuard, FileStore, MediaPipeline, OutputPolicy, OutputStore, URLFetcher
from worker.fleet.media.fetch import FetchSettings
from worker.fleet.media.outputs import store_file
from worker.simulator import ComfyUISimulator

MB = 1024 * 1024


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def noisy_png(size: int) -> bytes:
    """A valid PNG of about ``size`` bytes (random pixels, stored uncompressed)."""
    side = int((size / 3) ** 0.5)
    rows = b"".join(b"\x00" + os.urandom(side * 3) for _ in range(side))
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows, 0)) + _chunk(b"IEND", b"")


def write_video(path: Path, size: int) -> None:
    block = os.urandom(MB)
    with path.open("wb") as out:
        out.write(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")
        written = 24
        while written < size:
            out.write(block[: min(MB, size - written)])
            written += min(MB, size - written)


def measured(action: Callable[[], Any]) -> tuple[float, float, Any]:
    """(seconds, peak MiB of Python allocations, result)."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        value = action()
    finally:
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] / MB
        tracemalloc.stop()
    return elapsed, peak, value


def main(size_mb: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-media-"))
    s3 = start_s3_server(tmp / "moto.log")
    try:
        with ComfyUISimulator(root=tmp / "sim") as sim:
            client = ComfyUIRestClient(sim.url)
            bucket = s3.bucket()
            stores: dict[str, OutputStore] = {"file": FileStore(tmp / "store"), "s3": type(s3.store())(s3.client(), bucket, "bench")}
            policy = OutputPolicy(max_bytes=2 * size_mb * MB)

            write_video(tmp / "sim" / "output" / "big.mp4", size_mb * MB)
            video = OutputFile("9", "video", filename="big.mp4")
            for name, store in stores.items():
                seconds, peak, entry = measured(partial(store_file, client, store, video, "outputs/bench/9_0.mp4", policy))
                print(
                    f"{size_mb} MB video -> {name:4}: {seconds:6.2f} s ({size_mb / seconds:6.1f} MB/s), "
                    f"peak Python memory {peak:5.1f} MiB, stored {entry['size']} bytes"
                )

            (tmp / "sim" / "output" / "one.png").write_bytes(noisy_png(MB))
            png = OutputFile("9", "image", filename="one.png")
            for name, store in stores.items():
                started = time.perf_counter()
                for job in range(20):
                    store_file(client, store, png, f"outputs/job{job}/9_0.png", OutputPolicy())
                print(
                    f"1 MB PNG -> {name:4}: {(time.perf_counter() - started) / 20 * 1000:6.1f} ms per job (download, hash, store, record)"
                )
            client.close()

            files = FileServer(f"http://127.0.0.1:{free_port()}")
            image = noisy_png(5 * MB)
            workflow = {}
            for i in range(10):
                files.routes[f"/in{i}.png"] = image
                workflow[str(i)] = {"class_type": "LoadImage", "inputs": {"image": f"input:img{i}"}}
            port = int(files.url.rsplit(":", 1)[1])
            httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler_class(files))
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            pod = ComfyUIRestClient(sim.url)
            media = MediaPipeline(None, URLFetcher(AddressGuard(("127.0.0.1",)), FetchSettings(max_bytes=6 * MB)))
            inputs = {f"img{i}": {"url": f"{files.url}/in{i}.png"} for i in range(10)}
            seconds, peak, _ = measured(lambda: media.prepare_inputs(workflow, inputs, pod, "bench-inputs"))
            print(f"inputs 10 x 5 MB by URL -> pod: {seconds:6.2f} s, peak Python memory {peak:5.1f} MiB")
            httpd.shutdown()
            pod.close()
    finally:
        stop_process(s3.process)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200, help="size of the large output in MB")
    main(parser.parse_args().mb)
