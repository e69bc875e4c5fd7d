"""Parser throughput on the recorded traces: ``python -m bench.parser``.

Every text frame of every trace is parsed repeatedly; binary frames are rebuilt from their
recorded headers (the traces do not store image bytes) at their recorded sizes.
"""

from __future__ import annotations

import json
import time
import tracemalloc

from tests.traces import load_trace, trace_files
from worker.comfyui import protocol as p


def main(rounds: int = 50) -> None:
    texts: list[str] = []
    binaries: list[bytes] = []
    for path in trace_files():
        for record in load_trace(path):
            if record["kind"] == "ws_text":
                texts.append(json.dumps(record["msg"]))
            elif record["kind"] == "ws_binary" and record["event_type"] == 1:
                binaries.append(p.encode_preview_image(b"\xff\xd8\xff" + bytes(record["length"] - 11), 1))
            elif record["kind"] == "ws_binary" and record["event_type"] == 4:
                binaries.append(p.encode_preview_with_metadata(record["metadata"], b"\xff\xd8\xff" + bytes(record["image_bytes"] - 3)))
            elif record["kind"] == "ws_binary" and record["event_type"] == 3:
                binaries.append(p.encode_progress_text(record["node_id"], record["text"]))
    text_bytes = sum(len(t) for t in texts)
    start = time.perf_counter()
    for _ in range(rounds):
        for text in texts:
            p.parse_text(text)
    elapsed = time.perf_counter() - start
    rate, throughput = len(texts) * rounds / elapsed, text_bytes * rounds / elapsed / 1e6
    print(f"text frames:   {len(texts)} x {rounds} in {elapsed:.3f} s = {rate:,.0f} frames/s, {throughput:.1f} MB/s")
    start = time.perf_counter()
    for _ in range(rounds):
        for frame in binaries:
            p.parse_binary(frame)
    elapsed = time.perf_counter() - start
    print(f"binary frames: {len(binaries)} x {rounds} in {elapsed:.3f} s = {len(binaries) * rounds / elapsed:,.0f} frames/s")
    tracemalloc.start()
    for text in texts:
        p.parse_text(text)
    _, peak = tracemalloc.get_traced_memory()
    print(f"peak memory parsing all text frames once: {peak / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
