"""What a file is, from its first bytes: never from its name or a server's Content-Type.

A task's input URL can end in ``.png`` and serve HTML; a pod's output named ``x.png`` can be
anything. The magic bytes decide. Image dimensions come from the headers where that is cheap
(PNG IHDR, GIF screen descriptor, WebP VP8/VP8L/VP8X, JPEG SOF markers within the head), so
no image library is needed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

__all__ = ["HEAD_BYTES", "MediaKind", "Sniffed", "extension_for", "image_size", "sniff"]

MediaKind = Literal["image", "video", "audio", "other"]

#: how much of a file's start the sniffer and the size parser look at
HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Sniffed:
    content_type: str
    kind: MediaKind


_EXTENSIONS = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/webp": ".webp",
    "image/gif": ".gif",
    "image/bmp": ".bmp",
    "image/tiff": ".tiff",
    "video/mp4": ".mp4",
    "video/quicktime": ".mov",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/x-msvideo": ".avi",
    "audio/wav": ".wav",
    "audio/mpeg": ".mp3",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/mp4": ".m4a",
    "application/json": ".json",
    "text/plain": ".txt",
}


def extension_for(content_type: str) -> str:
    return _EXTENSIONS.get(content_type, ".bin")


def _riff(head: bytes) -> Sniffed | None:
    form = head[8:12]
    if form == b"WEBP":
        return Sniffed("image/webp", "image")
    if form == b"WAVE":
        return Sniffed("audio/wav", "audio")
    if form == b"AVI ":
        return Sniffed("video/x-msvideo", "video")
    return None


def _iso_media(head: bytes) -> Sniffed | None:
    """ISO base media (MP4, MOV, M4A): an ``ftyp`` box first, its major brand says which."""
    brand = head[8:12]
    if brand == b"qt  ":
        return Sniffed("video/quicktime", "video")
    if brand in (b"M4A ", b"M4B "):
        return Sniffed("audio/mp4", "audio")
    return Sniffed("video/mp4", "video")


def _ebml(head: bytes) -> Sniffed:
    """Matroska and WebM share the EBML header; the DocType string tells them apart."""
    return Sniffed("video/webm", "video") if b"webm" in head[:64] else Sniffed("video/x-matroska", "video")


def _mp3(head: bytes) -> bool:
    if head.startswith(b"ID3"):
        return True
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0


def sniff(head: bytes) -> Sniffed | None:
    """The media type of a file starting with ``head``, or None when it is no media we know."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image/png", "image")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image/jpeg", "image")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return Sniffed("image/gif", "image")
    if head.startswith(b"BM") and len(head) >= 14:
        return Sniffed("image/bmp", "image")
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return Sniffed("image/tiff", "image")
    if head.startswith(b"RIFF") and len(head) >= 12:
        return _riff(head)
    if head[4:8] == b"ftyp":
        return _iso_media(head)
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return _ebml(head)
    if head.startswith(b"fLaC"):
        return Sniffed("audio/flac", "audio")
    if head.startswith(b"OggS"):
        return Sniffed("audio/ogg", "audio")
    if _mp3(head):
        return Sniffed("audio/mpeg", "audio")
    return None


def _png_size(head: bytes) -> tuple[int, int] | None:
    if len(head) >= 24 and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    return None


def _gif_size(head: bytes) -> tuple[int, int] | None:
    if len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return int(width), int(height)
    return None


def _webp_size(head: bytes) -> tuple[int, int] | None:
    chunk = head[12:16]
    if chunk == b"VP8 " and len(head) >= 30 and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return int(width) & 0x3FFF, int(height) & 0x3FFF
    if chunk == b"VP8L" and len(head) >= 25 and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


#: start-of-frame markers (baseline, progressive, lossless …); not DHT (C4), JPG (C8) or DAC (CC)
_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    """Walk the marker segments from SOI to the first SOF: no entropy-coded data is read."""
    offset = 2
    while offset + 4 <= len(head):
        if head[offset] != 0xFF:
            return None
        marker = head[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            offset += 2
            continue
        (length,) = struct.unpack(">H", head[offset + 2 : offset + 4])
        if marker in _SOF:
            if offset + 9 > len(head):
                return None
            height, width = struct.unpack(">HH", head[offset + 5 : offset + 9])
            return int(width), int(height)
        if length < 2 or marker == 0xDA:  # start of scan before any frame header
            return None
        offset += 2 + length
    return None


def image_size(head: bytes, content_type: str) -> tuple[int, int] | None:
    """(width, height) from the file's head, where the format makes that cheap; else None."""
    parser = {"image/png": _png_size, "image/gif": _gif_size, "image/webp": _webp_size, "image/jpeg": _jpeg_size}.get(content_type)
    size = parser(head) if parser is not None else None
    if size is None or size[0] <= 0 or size[1] <= 0:
        return None
    return size
