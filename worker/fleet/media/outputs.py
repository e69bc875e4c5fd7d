"""Moving a finished prompt's files from the pod into the output store, one stream each.

Each file goes ``GET /view`` → hashing, sniffing, size-capping sink → store writer, one chunk
at a time: memory stays at a chunk (plus one S3 part) whatever the file's size. The key derives
from the task id, the node id and the file's index on that node; the pod's file name is only
reported (and its extension kept when it is a known media extension). After the object, a small
``.json`` record of its entry is written: a retried task that finds the record does not stream
the file again, and one that does not (the record comes last) simply replaces the object.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, TypeVar

from worker.comfyui.errors import ComfyUIError, HTTPStatusError, JobCancelledError, StorageError
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.comfyui.results import OutputFile
from worker.fleet.media.sniff import HEAD_BYTES, image_size, sniff
from worker.fleet.media.store import ObjectWriter, OutputStore

__all__ = ["OutputPolicy", "output_key", "store_file", "task_key_part", "with_retries"]

_SAFE_EXT = frozenset(
    {
        ".png",
        ".jpg",
        ".jpeg",
        ".webp",
        ".gif",
        ".mp4",
        ".webm",
        ".mov",
        ".mkv",
        ".wav",
        ".mp3",
        ".flac",
        ".ogg",
        ".m4a",
        ".glb",
        ".json",
        ".txt",
        ".safetensors",
    }
)
T = TypeVar("T")
_RECORD_LIMIT = 64 * 1024
_CHUNK = 1 << 16
_SAFE_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


@dataclass(frozen=True)
class OutputPolicy:
    max_bytes: int = 1024 * 1024 * 1024
    presign_seconds: int = 3600
    #: files up to this size also come inline as base64 (0: never)
    inline_max_bytes: int = 0


def _part(value: str) -> str:
    """``value`` if it is already a valid key part, else a short hash of it then its safe form.

    A plain replacement is not enough: ``9:1`` and ``9_1`` (or two long ids with one prefix)
    would share a key, the second file replacing the first; and an id starting with ``_`` or
    ``-`` (a caller may choose the task id) is not a valid key part at all."""
    if _SAFE_PART.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{digest}-{re.sub(r'[^A-Za-z0-9_-]', '_', value)[:64]}".rstrip("-")


def task_key_part(task_id: str) -> str:
    """A task id as one key part (ours are UUIDs; anything else is made safe)."""
    return _part(task_id)


def output_key(task_id: str, item: OutputFile, index: int) -> str:
    """``outputs/<task>/<node>_<index><ext>``: ours, stable across retries, safe as a path."""
    suffix = PurePosixPath(str(item.filename or "")).suffix.lower()
    return f"outputs/{_part(task_id)}/{_part(item.node_id)}_{index}{suffix if suffix in _SAFE_EXT else '.bin'}"


class _MeasuringSink:
    """Counts, hashes and keeps the head of what passes; refuses past ``limit`` bytes."""

    def __init__(self, target: ObjectWriter, limit: int, key: str, keep: int) -> None:
        self.target, self.limit, self.key, self.keep = target, limit, key, keep
        self.size = 0
        self.sha256 = hashlib.sha256()
        self.head = bytearray()
        self.kept: bytearray | None = bytearray() if keep > 0 else None

    def settle_type(self) -> str:
        """The sniffed type, handed to the writer before it creates the object (S3 needs it then)."""
        sniffed = sniff(bytes(self.head))
        self.target.content_type = sniffed.content_type if sniffed else "application/octet-stream"
        return self.target.content_type

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self.size > self.limit:
            raise StorageError(f"output {self.key} is larger than the {self.limit} bytes allowed", key=self.key, retryable=False)
        self.sha256.update(data)
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
            if len(self.head) >= HEAD_BYTES:
                self.settle_type()
        if self.kept is not None:
            if len(self.kept) + len(data) <= self.keep:
                self.kept += data
            else:
                self.kept = None  # too large to inline: stop keeping
        self.target.write(data)
        return len(data)


def _record_key(key: str) -> str:
    return key + ".json"


def _read_record(store: OutputStore, key: str) -> dict[str, Any] | None:
    raw = store.read_bytes(_record_key(key), _RECORD_LIMIT)
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None  # a damaged record: stream the file again
    return record if isinstance(record, dict) and record.get("key") == key else None


def _stream(
    client: ComfyUIRestClient, store: OutputStore, item: OutputFile, key: str, policy: OutputPolicy, *, cancel: threading.Event | None
) -> tuple[dict[str, Any], bytes | None]:
    assert item.filename is not None
    with store.writer(key, "application/octet-stream") as writer:
        sink = _MeasuringSink(writer, policy.max_bytes, key, policy.inline_max_bytes)
        # our cap, not the transport's default: the sink refuses the chunk that crosses it (the
        # transport's own check, one chunk later, is only a backstop)
        params = {"filename": item.filename, "subfolder": item.subfolder, "type": item.type}
        client.http.download("/view", sink, params=params, limit=policy.max_bytes + _CHUNK, cancel=cancel, chunk_size=_CHUNK)  # type: ignore[arg-type]
        content_type = sink.settle_type()
    size = image_size(bytes(sink.head), content_type)
    record = {
        "key": key,
        "size": sink.size,
        "sha256": sink.sha256.hexdigest(),
        "content_type": content_type,
        "width": size[0] if size else None,
        "height": size[1] if size else None,
    }
    store.put_bytes(_record_key(key), json.dumps(record).encode(), "application/json")
    return record, bytes(sink.kept) if sink.kept is not None else None


def store_file(
    client: ComfyUIRestClient,
    store: OutputStore,
    item: OutputFile,
    key: str,
    policy: OutputPolicy,
    *,
    cancel: threading.Event | None = None,
) -> dict[str, Any]:
    """The result entry of one output file, streaming it into the store unless a retry finds it there."""
    record = _read_record(store, key)
    inline: bytes | None = None
    if record is None:
        record, inline = _stream(client, store, item, key, policy, cancel=cancel)
    elif policy.inline_max_bytes and int(record.get("size") or 0) <= policy.inline_max_bytes:
        inline = store.read_bytes(key, policy.inline_max_bytes)
    entry: dict[str, Any] = {
        "node_id": item.node_id,
        "kind": item.kind,
        **record,
        "url": store.object_url(key),
        "presigned_url": store.presign(key, policy.presign_seconds),
        "filename": item.filename,
        "subfolder": item.subfolder,
        "type": item.type,
    }
    if inline is not None and policy.inline_max_bytes and len(inline) <= policy.inline_max_bytes:
        entry["base64"] = base64.b64encode(inline).decode("ascii")
    return entry


def with_retries(
    action: Callable[[], T],
    *,
    attempts: int,
    backoff: float,
    sleep: Callable[[float, threading.Event | None], bool],
    cancel: threading.Event | None,
    key: str,
) -> T:
    """Run ``action`` up to ``attempts`` times, waiting ``backoff * 2**n`` between; a failure to
    store ends as :class:`StorageError`. Cap violations are not retried (they would fail again).
    A cancel during a wait is a :class:`JobCancelledError`: a (retryable) storage error there
    would make the task adapter retry a job that was revoked or ran out of time."""
    last: StorageError | None = None
    for attempt in range(attempts):
        if attempt and sleep(backoff * 2 ** (attempt - 1), cancel):
            raise JobCancelledError(f"storing {key} was cancelled")
        try:
            return action()
        except StorageError as exc:
            if not exc.retryable:
                raise
            last = exc
        except ComfyUIError as exc:
            if exc.code == "cancelled":
                raise
            gone = isinstance(exc, HTTPStatusError) and exc.status == 404  # the pod lost the file: asking again will not help
            last = StorageError(f"fetching {key} from the pod failed: {exc.code}: {exc.message}", key=key, retryable=not gone)
            if gone:
                raise last from None
        except Exception as exc:  # noqa: BLE001 - a store library's error becomes ours, typed
            last = StorageError(f"storing {key} failed: {exc.__class__.__name__}", key=key)
    assert last is not None  # attempts >= 1, and every failed attempt sets it
    raise last
