"""The output store: where a job's files go so a web backend never has to reach a pod.

One small interface, two implementations: :class:`FileStore` (``file:///path``, the embedded
default of the demo and the tests) here and :class:`~worker.fleet.media.s3.S3Store`
(``s3://bucket/prefix``, any S3-compatible service, through boto3). Both share the rules that
make retries safe:

* keys are ours (``outputs/<task id>/<node>_<index>.<ext>``), never a server's file name;
* a writer is committed only after the last byte: until then nothing is visible under the key
  (file: a temporary name, then an atomic rename; S3: one ``PUT`` or a multipart upload that is
  completed at the end and aborted on failure);
* writing a key again replaces it whole, so a retried job writes the same keys.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote

from worker.comfyui.errors import StorageError

__all__ = ["FileStore", "ObjectWriter", "OutputStore", "check_key"]

_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def check_key(key: str) -> str:
    """A key is ``/``-separated plain parts: no empty part, no ``.``/``..``, no odd characters."""
    parts = key.split("/")
    if not key or len(key) > 512 or not all(_KEY_PART.match(part) and part not in (".", "..") for part in parts):
        raise ValueError(f"not a valid store key: {key[:80]!r}")
    return key


class ObjectWriter(Protocol):
    #: may be changed until the first byte reaches the store (a sniffed type replaces a guess)
    content_type: str

    def write(self, data: bytes) -> int: ...


class OutputStore(Protocol):
    """What the media pipeline needs from a store."""

    #: ``file:///srv/outputs`` or ``s3://bucket/prefix``: shown in results and logs (no secrets)
    url: str

    def writer(self, key: str, content_type: str) -> contextlib.AbstractContextManager[ObjectWriter]:
        """A sink whose bytes become the object ``key`` when the block ends without an error."""
        ...

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...

    def read_bytes(self, key: str, limit: int) -> bytes | None:
        """The object (None if absent); more than ``limit`` bytes is a :class:`StorageError`."""
        ...

    def object_url(self, key: str) -> str: ...

    def presign(self, key: str, lifetime: int) -> str | None:
        """A time-limited HTTPS URL for ``key``, or None where the store has no such thing."""
        ...


class _FileWriter:
    def __init__(self, sink: BinaryIO, content_type: str) -> None:
        self._sink = sink
        self.content_type = content_type

    def write(self, data: bytes) -> int:
        return self._sink.write(data)


class FileStore:
    """Objects as files under ``root``; a partial write lives under a temporary name only."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = self.root.joinpath(*check_key(key).split("/"))
        if self.root not in path.parents:
            raise ValueError(f"key {key!r} leaves the store")
        return path

    @contextlib.contextmanager
    def writer(self, key: str, content_type: str) -> Iterator[ObjectWriter]:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
            sink = partial.open("xb")
        except OSError as exc:
            raise StorageError(f"file store: cannot write {key}: {exc.strerror or exc}", key=key) from None
        try:
            with sink:
                yield _FileWriter(sink, content_type)
                sink.flush()
                os.fsync(sink.fileno())
            os.replace(partial, path)
        except OSError as exc:
            raise StorageError(f"file store: writing {key} failed: {exc.strerror or exc}", key=key) from None
        finally:
            partial.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        with self.writer(key, content_type) as sink:
            sink.write(data)

    def read_bytes(self, key: str, limit: int) -> bytes | None:
        path = self._path(key)
        try:
            with path.open("rb") as source:
                data = source.read(limit + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"file store: reading {key} failed: {exc.strerror or exc}", key=key) from None
        if len(data) > limit:
            raise StorageError(f"file store: {key} is larger than the {limit} bytes allowed", key=key, retryable=False)
        return data

    def object_url(self, key: str) -> str:
        return f"{self.url}/{quote(check_key(key))}"

    def presign(self, key: str, lifetime: int) -> str | None:
        return None
