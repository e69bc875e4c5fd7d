"""What ``LoadImage`` reads: the file a client uploaded with ``POST /upload/image``.

ComfyUI resolves the node's ``image`` value against the input directory (``"name"`` or
``"subfolder/name"``; an annotation ``" [output]"``/``" [temp]"`` picks another base, protocol
§8.11) and decodes the file. The simulator only needs what flows downstream: the size and a
colour, read from the PNG/GIF/JPEG header and, for PNG, the first pixel (always stored unfiltered
in the first row's terms, whatever the row's filter), so an img2img graph's output follows its input.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

__all__ = ["input_path", "read_image_file"]

_GREY = (128, 128, 128)
_ANNOTATIONS = {" [input]": "input", " [output]": "output", " [temp]": "temp"}


def input_path(root: Path, value: str) -> Path | None:
    """The file ``value`` names under ``root``'s input (or annotated) folder; None if it escapes."""
    kind = "input"
    for suffix, folder in _ANNOTATIONS.items():
        if value.endswith(suffix):
            value, kind = value[: -len(suffix)], folder
    base = (root / kind).resolve()
    path = (base / value).resolve()
    return path if os.path.commonpath([base, path]) == str(base) else None


def _png(data: bytes) -> tuple[int, int, tuple[int, int, int]] | None:
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    rgb = _GREY
    offset, idat = 8, bytearray()
    while offset + 8 <= len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        if data[offset + 4 : offset + 8] == b"IDAT":
            idat += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    if depth == 8 and colour in (0, 2, 6) and idat:
        with_filter = zlib.decompressobj().decompress(bytes(idat), 8)
        pixel = with_filter[1:4] if colour in (2, 6) else with_filter[1:2] * 3
        if len(pixel) == 3:
            rgb = (pixel[0], pixel[1], pixel[2])
    return int(width), int(height), rgb


def _jpeg(data: bytes) -> tuple[int, int, tuple[int, int, int]] | None:
    offset = 2
    while offset + 9 <= len(data) and data[offset] == 0xFF:
        marker = data[offset + 1]
        (length,) = struct.unpack(">H", data[offset + 2 : offset + 4])
        if marker in (0xC0, 0xC1, 0xC2):
            height, width = struct.unpack(">HH", data[offset + 5 : offset + 9])
            return int(width), int(height), _GREY
        offset += 2 + length
    return None


def read_image_file(path: Path) -> tuple[int, int, tuple[int, int, int]] | None:
    """(width, height, rgb) of an uploaded image, or None when it is no image we can read."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
        return _png(data)
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return int(width), int(height), _GREY
    if data.startswith(b"\xff\xd8"):
        return _jpeg(data)
    return None
