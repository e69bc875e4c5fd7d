"""Binary frames: previews (with or without metadata) and node text, parsed totally."""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from worker.comfyui.protocol._fields import MAX_FRAME_BYTES, ImageFormat

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4
FORMAT_JPEG = 1
FORMAT_PNG = 2


def sniff_image_format(image: bytes) -> ImageFormat:
    """The format from magic bytes; the server's format code is not to be trusted (§6.2)."""
    if image.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if image.startswith(b"\x89PNG"):
        return "png"
    if image[:4] == b"RIFF" and image[8:12] == b"WEBP":
        return "webp"
    return "unknown"


@dataclass(frozen=True, slots=True)
class PreviewImage:
    """Type 1: no node id, no prompt id — attribute it to the last node seen."""

    format_code: int
    format: ImageFormat
    image: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PreviewImageWithMetadata:
    """Type 4: the preview with its node and prompt ids."""

    metadata: Mapping[str, Any]
    format: ImageFormat
    image: bytes = field(repr=False)

    @property
    def prompt_id(self) -> str | None:
        value = self.metadata.get("prompt_id")
        return value if isinstance(value, str) else None

    @property
    def node_id(self) -> str | None:
        value = self.metadata.get("node_id")
        return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class ProgressText:
    """Type 3: text a node shows on itself; broadcast, with no prompt id."""

    node_id: str
    text: str


@dataclass(frozen=True, slots=True)
class UnknownBinary:
    event_type: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MalformedBinary:
    reason: str
    length: int


BinaryFrame = PreviewImage | PreviewImageWithMetadata | ProgressText | UnknownBinary | MalformedBinary


def parse_binary(frame: bytes | bytearray | memoryview, *, max_bytes: int = MAX_FRAME_BYTES) -> BinaryFrame:
    """Decode one binary frame. Never raises."""
    data = bytes(frame)
    if len(data) > max_bytes:
        return MalformedBinary(f"frame exceeds {max_bytes} bytes", len(data))
    if len(data) < 4:
        return MalformedBinary("shorter than 4 bytes", len(data))
    (kind,) = struct.unpack_from(">I", data, 0)
    if kind not in (PREVIEW_IMAGE, TEXT, PREVIEW_IMAGE_WITH_METADATA):
        return UnknownBinary(kind, data[4:])
    if len(data) < 8:
        return MalformedBinary(f"type {kind}: shorter than 8 bytes", len(data))
    (word,) = struct.unpack_from(">I", data, 4)
    if kind == PREVIEW_IMAGE:
        image = data[8:]
        return PreviewImage(word, sniff_image_format(image), image)
    end = 8 + word
    if end > len(data):
        return MalformedBinary(f"type {kind}: length {word} runs past the end", len(data))
    head, rest = data[8:end], data[end:]
    try:
        if kind == TEXT:
            return ProgressText(head.decode("utf-8"), rest.decode("utf-8"))
        meta = json.loads(head.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        return MalformedBinary(f"type {kind}: {exc.__class__.__name__}", len(data))
    if not isinstance(meta, dict):
        return MalformedBinary("type 4: metadata is not a JSON object", len(data))
    return PreviewImageWithMetadata(meta, sniff_image_format(rest), rest)


def encode_preview_image(image: bytes, format_code: int = FORMAT_JPEG) -> bytes:
    return struct.pack(">II", PREVIEW_IMAGE, format_code) + image


def encode_progress_text(node_id: str, text: str) -> bytes:
    node = node_id.encode("utf-8")
    return struct.pack(">II", TEXT, len(node)) + node + text.encode("utf-8")


def encode_preview_with_metadata(metadata: Mapping[str, Any], image: bytes) -> bytes:
    meta = json.dumps(dict(metadata)).encode("utf-8")
    return struct.pack(">II", PREVIEW_IMAGE_WITH_METADATA, len(meta)) + meta + image
