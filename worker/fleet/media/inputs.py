"""A task's input files: parse the specs, get the bytes, check what they are, upload to the pod.

``inputs`` is ``{name: {"url": …} | {"base64": …} | {"store_key": …}}``. Every source is
bounded by ``max_bytes``; the content is sniffed and must be an image, video or audio file.
Everything that is the caller's fault is a ``validation`` error, raised before the prompt is
submitted, so a bad input never loops through retries. Uploads go to a subfolder named after
the task, with a name derived from the input's name and its sniffed type, and ``overwrite``:
a redelivered task uploads the same bytes under the same name, and two tasks never collide.
"""

from __future__ import annotations

import base64
import binascii
import collections
import dataclasses
import hashlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.comfyui.errors import StorageError, WorkflowValidationError
from worker.comfyui.rest_client import ComfyUIRestClient
from worker.fleet.media.fetch import URLFetcher, public_url
from worker.fleet.media.outputs import task_key_part
from worker.fleet.media.s3 import S3Store
from worker.fleet.media.sniff import HEAD_BYTES, Sniffed, extension_for, sniff
from worker.fleet.media.store import OutputStore, check_key

__all__ = ["InputFile", "InputSource", "parse_inputs", "upload_inputs"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DATA_URI = re.compile(r"^data:(?P<type>[\w.+/-]*)(?:;[\w=.+-]+)*;base64,", re.IGNORECASE)
_KINDS = {"url", "base64", "store_key"}


def _invalid(message: str, error_type: str = "invalid_input") -> WorkflowValidationError:
    return WorkflowValidationError(message, error_type=error_type)


@dataclass(frozen=True)
class InputSource:
    name: str
    kind: str
    value: str
    #: the uploaded file's name before its sniffed extension; unique among the task's inputs
    stem: str = ""

    def describe(self) -> str:
        """For error messages: never the whole value (a base64 blob, a presigned query, a token
        in the fragment or the userinfo)."""
        if self.kind == "base64":
            return f"input {self.name!r} (base64)"
        shown = public_url(self.value) if self.kind == "url" else self.value
        return f"input {self.name!r} ({self.kind} {shown[:200]})"


@dataclass(frozen=True)
class InputFile:
    name: str
    content: bytes
    sniffed: Sniffed
    stem: str = ""

    @property
    def filename(self) -> str:
        return (self.stem or _stem(self.name)) + extension_for(self.sniffed.content_type)


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0]


def _unique_stems(names: list[str]) -> dict[str, str]:
    """name -> its upload stem. ``photo.png`` and ``photo.jpg`` (or ``photo``) share the stem
    ``photo``: sniffed as the same type, they were uploaded under one file name, the second
    replacing the first, and both loaders got the second file. Those get a hash of the name."""
    counts = collections.Counter(_stem(name) for name in names)

    def stem_of(name: str) -> str:
        stem = _stem(name)
        return f"{stem}-{hashlib.sha256(name.encode()).hexdigest()[:8]}" if counts[stem] > 1 else stem

    return {name: stem_of(name) for name in names}


def parse_inputs(inputs: Mapping[str, Any] | None) -> list[InputSource]:
    """Check the shape of the ``inputs`` task argument (no network): names and one source each."""
    if inputs is None:
        return []
    if not isinstance(inputs, Mapping):
        raise _invalid("inputs must be an object: name -> {url | base64 | store_key}")
    sources: list[InputSource] = []
    for name, spec in inputs.items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise _invalid(f"input name {str(name)[:40]!r} must be letters, digits, '.', '_' or '-' (64 at most)")
        if not isinstance(spec, Mapping) or len(spec) != 1 or next(iter(spec)) not in _KINDS:
            raise _invalid(f"input {name!r} must be exactly one of {{'url': …}}, {{'base64': …}}, {{'store_key': …}}")
        kind, value = next(iter(spec.items()))
        if not isinstance(value, str) or not value:
            raise _invalid(f"input {name!r}: {kind} must be a non-empty string")
        sources.append(InputSource(name, kind, value))
    stems = _unique_stems([source.name for source in sources])
    return [dataclasses.replace(source, stem=stems[source.name]) for source in sources]


def _decode_base64(source: InputSource, limit: int) -> bytes:
    text = source.value.strip()
    match = _DATA_URI.match(text)
    if match:
        text = text[match.end() :]
    if len(text) > (limit // 3 + 1) * 4 + 4:
        raise _invalid(f"{source.describe()} is over the {limit} bytes allowed", "input_too_large")
    try:
        data = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise _invalid(f"{source.describe()} is not valid base64", "input_bad_base64") from None
    if len(data) > limit:
        raise _invalid(f"{source.describe()} is over the {limit} bytes allowed", "input_too_large")
    return data


def _from_store(source: InputSource, store: OutputStore | None, limit: int) -> bytes:
    if store is None:
        raise _invalid(f"{source.describe()}: no output store is configured (OUTPUT_STORE)", "input_unavailable")
    data: bytes | None
    try:
        if source.kind == "store_key":
            data = store.read_bytes(check_key(source.value), limit)
        else:
            bucket, _, key = source.value.removeprefix("s3://").partition("/")
            if not isinstance(store, S3Store) or bucket != store.bucket or not key:
                raise _invalid(f"{source.describe()}: only s3:// URLs of the configured store's bucket are read", "input_bad_url")
            data = store.read_object(key, limit)
    except ValueError as exc:
        raise _invalid(f"{source.describe()}: {exc}", "input_bad_key") from None
    except StorageError as exc:
        if exc.retryable:
            raise
        raise _invalid(f"{source.describe()}: {exc.message}", "input_too_large") from None
    if data is None:
        raise _invalid(f"{source.describe()} is not in the store", "input_unavailable")
    return data


def resolve_input(
    source: InputSource, *, fetcher: URLFetcher, store: OutputStore | None, cancel: threading.Event | None = None
) -> InputFile:
    """The bytes of one input, sniffed; a validation error for anything the caller got wrong."""
    limit = fetcher.settings.max_bytes
    if source.kind == "base64":
        content = _decode_base64(source, limit)
    elif source.kind == "store_key" or source.value.startswith("s3://"):
        content = _from_store(source, store, limit)
    else:
        content = fetcher.fetch(source.value, cancel=cancel)
    sniffed = sniff(content[:HEAD_BYTES])
    if sniffed is None or sniffed.kind not in ("image", "video", "audio"):
        raise _invalid(f"{source.describe()} is not an image, video or audio file (checked by content)", "input_bad_content")
    return InputFile(source.name, content, sniffed, source.stem)


def task_subfolder(task_id: str) -> str:
    """One folder per task (the output keys' task part: distinct ids never share a folder)."""
    return f"comfy-celery/{task_key_part(task_id)}"


def upload_inputs(client: ComfyUIRestClient, files: list[InputFile], task_id: str) -> dict[str, str]:
    """Upload each file; input name -> the value a loader node takes (``subfolder/name``)."""
    subfolder = task_subfolder(task_id)
    names: dict[str, str] = {}
    for item in files:
        answer = client.upload_image(item.content, item.filename, subfolder=subfolder, overwrite=True)
        stored_sub = str(answer.get("subfolder") or "")
        names[item.name] = f"{stored_sub}/{answer['name']}" if stored_sub else str(answer["name"])
    return names
