"""``s3://bucket/prefix``: any S3-compatible store (AWS, MinIO, Cloudflare R2) through boto3.

The client is injected (config/wiring builds it from the endpoint/region settings and boto3's
standard credential chain: ``AWS_ACCESS_KEY_ID``…, profiles, instance roles), so credentials
are never ours to handle. Streaming: bytes are gathered into parts of ``part_size`` (5 MiB, the
S3 minimum); a file that fits in one part is a single ``PutObject`` at the end, a larger one a
multipart upload completed after the last part and aborted on any failure. Either way, nothing
is visible under the key before the whole file is there, and memory stays at one part.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from worker.comfyui.errors import StorageError
from worker.fleet.media.store import ObjectWriter, check_key

__all__ = ["S3Store"]

MIN_PART = 5 * 1024 * 1024


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error") or {}
        return f"{error.get('Code', exc.__class__.__name__)}: {error.get('Message', '')}".rstrip(": ")
    return exc.__class__.__name__


class _MultipartWriter:
    def __init__(self, client: Any, bucket: str, key: str, content_type: str, part_size: int) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self.content_type = content_type
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def write(self, data: bytes) -> int:
        self._buffer += data
        if len(self._buffer) >= self._part_size:  # parts need not be equal: send it whole, no copy
            part, self._buffer = self._buffer, bytearray()
            self._upload_part(part)
        return len(data)

    def _upload_part(self, part: bytes | bytearray) -> None:
        if self._upload_id is None:
            created = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key, ContentType=self.content_type)
            self._upload_id = str(created["UploadId"])
        number = len(self._parts) + 1
        answer = self._client.upload_part(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=part)
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def commit(self) -> None:
        if self._upload_id is None:
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=self._buffer, ContentType=self.content_type)
            return
        if self._buffer:
            part, self._buffer = self._buffer, bytearray()
            self._upload_part(part)
        self._client.complete_multipart_upload(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )

    def abort(self) -> None:
        self._buffer.clear()
        if self._upload_id is not None:
            with contextlib.suppress(Exception):  # best effort: a lifecycle rule cleans up the rest
                self._client.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)


class S3Store:
    """Objects under ``s3://bucket/prefix``; ``client`` is a boto3 S3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, part_size: int = MIN_PART) -> None:
        if part_size < MIN_PART:
            raise ValueError("S3 parts are at least 5 MiB")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def full_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    @contextlib.contextmanager
    def writer(self, key: str, content_type: str) -> Iterator[ObjectWriter]:
        full = self.full_key(key)
        sink = _MultipartWriter(self.client, self.bucket, full, content_type, self.part_size)
        try:
            yield sink
            sink.commit()
        except BaseException as exc:
            sink.abort()
            if _is_client_error(exc):
                raise StorageError(f"S3 {self.url}: storing {key} failed: {_describe(exc)}", key=key) from None
            raise

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        with self.writer(key, content_type) as sink:
            sink.write(data)

    def read_bytes(self, key: str, limit: int) -> bytes | None:
        return self.read_object(self.full_key(key), limit, shown=key)

    def read_object(self, full_key: str, limit: int, *, shown: str | None = None, bucket: str | None = None) -> bytes | None:
        """An object by its full key (``s3://`` inputs name those); None if absent."""
        shown = shown or full_key
        try:
            answer = self.client.get_object(Bucket=bucket or self.bucket, Key=full_key)
        except Exception as exc:
            if _is_client_error(exc) and _describe(exc).split(":")[0] in ("NoSuchKey", "404", "NoSuchBucket"):
                return None
            if _is_client_error(exc):
                raise StorageError(f"S3 {self.url}: reading {shown} failed: {_describe(exc)}", key=shown) from None
            raise
        body = answer["Body"]
        try:
            if int(answer.get("ContentLength") or 0) > limit:
                raise StorageError(f"S3 object {shown} is larger than the {limit} bytes allowed", key=shown, retryable=False)
            data = bytes(body.read(limit + 1))
        finally:
            body.close()
        if len(data) > limit:
            raise StorageError(f"S3 object {shown} is larger than the {limit} bytes allowed", key=shown, retryable=False)
        return data

    def object_url(self, key: str) -> str:
        return f"s3://{self.bucket}/{quote(self.full_key(key))}"

    def presign(self, key: str, lifetime: int) -> str | None:
        url = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self.full_key(key)}, ExpiresIn=int(lifetime)
        )
        return str(url)


def _is_client_error(exc: BaseException) -> bool:
    """botocore's errors (ClientError, connection and credential errors) without importing botocore here."""
    return any(cls.__module__.startswith("botocore") for cls in type(exc).__mro__)
