"""The S3 store against a real S3 server process (moto's server mode), presigned URLs over HTTP."""

from __future__ import annotations

import hashlib
import os

import pytest
import requests

from tests.integration.media_support import S3Server
from worker.comfyui.errors import StorageError
from worker.simulator.media import solid_png


def test_small_object_and_its_presigned_url(s3_server: S3Server) -> None:
    store = s3_server.store()
    png = solid_png(4, 4, (1, 2, 3))
    with store.writer("outputs/t1/9_0.png", "application/octet-stream") as sink:
        sink.content_type = "image/png"  # sniffed before the first byte reaches S3
        sink.write(png)
    url = store.presign("outputs/t1/9_0.png", 60)
    assert url is not None and url.startswith(s3_server.endpoint)
    answer = requests.get(url, timeout=5)
    assert answer.status_code == 200 and answer.content == png
    assert answer.headers["Content-Type"] == "image/png"
    assert store.object_url("outputs/t1/9_0.png") == f"s3://{store.bucket}/jobs/outputs/t1/9_0.png"
    assert store.read_bytes("outputs/t1/9_0.png", 1024) == png
    assert store.read_bytes("outputs/t1/missing.png", 1024) is None
    with pytest.raises(StorageError) as exc:
        store.read_bytes("outputs/t1/9_0.png", 10)
    assert not exc.value.retryable


def test_a_large_object_streams_as_multipart(s3_server: S3Server) -> None:
    store = s3_server.store()
    chunk = os.urandom(1 << 16)
    digest = hashlib.sha256()
    with store.writer("outputs/t2/video.mp4", "video/mp4") as sink:
        for _ in range(12 * 16):  # 12 MiB: three parts
            sink.write(chunk)
            digest.update(chunk)
    url = store.presign("outputs/t2/video.mp4", 60)
    assert url is not None
    body = requests.get(url, timeout=30).content
    assert len(body) == 12 * 1024 * 1024 and hashlib.sha256(body).hexdigest() == digest.hexdigest()
    head = s3_server.client().head_object(Bucket=store.bucket, Key="jobs/outputs/t2/video.mp4")
    assert head["ETag"].strip('"').endswith("-3")  # a multipart object


def test_a_failed_stream_leaves_nothing_under_the_key(s3_server: S3Server) -> None:
    store = s3_server.store()
    with pytest.raises(RuntimeError), store.writer("outputs/t3/v.mp4", "video/mp4") as sink:
        sink.write(b"\x00" * (6 * 1024 * 1024))  # one part uploaded already
        raise RuntimeError("the pod went away")
    client = s3_server.client()
    assert client.list_objects_v2(Bucket=store.bucket).get("KeyCount") == 0
    assert client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []


def test_an_unknown_bucket_is_a_storage_error(s3_server: S3Server) -> None:
    from worker.fleet.media import S3Store

    store = S3Store(s3_server.client(), "no-such-bucket-here", "x")
    with pytest.raises(StorageError) as exc, store.writer("outputs/t/a.png", "image/png") as sink:
        sink.write(b"x")
    assert exc.value.code == "storage" and "NoSuchBucket" in exc.value.message
