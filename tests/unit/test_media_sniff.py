"""Content sniffing and cheap image sizes: by magic bytes, never by name."""

from __future__ import annotations

import struct

import pytest

from worker.fleet.media.sniff import image_size, sniff
from worker.simulator.media import solid_gif, solid_jpeg, solid_png


@pytest.mark.parametrize(
    ("head", "content_type", "kind"),
    [
        (solid_png(3, 2, (1, 2, 3)), "image/png", "image"),
        (solid_jpeg(16), "image/jpeg", "image"),
        (solid_gif(4, 4), "image/gif", "image"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp", "image"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio/wav", "audio"),
        (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "video/mp4", "video"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x02\x00", "video/quicktime", "video"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x84webm", "video/webm", "video"),
        (b"fLaC\x00\x00\x00\x22", "audio/flac", "audio"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg", "audio"),
        (b"OggS\x00\x02", "audio/ogg", "audio"),
    ],
)
def test_known_formats(head: bytes, content_type: str, kind: str) -> None:
    found = sniff(head)
    assert found is not None and (found.content_type, found.kind) == (content_type, kind)


@pytest.mark.parametrize("head", [b"", b"<html><body>not an image</body></html>", b"%PDF-1.7", b"PK\x03\x04zip", b"\x89PNG"])
def test_not_media(head: bytes) -> None:
    assert sniff(head) is None


def test_png_gif_jpeg_sizes_from_their_headers() -> None:
    assert image_size(solid_png(640, 480, (0, 0, 0)), "image/png") == (640, 480)
    assert image_size(solid_gif(33, 17), "image/gif") == (33, 17)
    assert image_size(solid_jpeg(40), "image/jpeg") == (40, 40)  # rounded up to 8x8 blocks


def test_jpeg_size_skips_the_segments_before_the_frame() -> None:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
    frame = b"\xff\xc2" + struct.pack(">HBHHB", 11, 8, 300, 500, 1) + b"\x01\x11\x00"
    assert image_size(b"\xff\xd8" + app0 + frame, "image/jpeg") == (500, 300)
    assert image_size(b"\xff\xd8" + app0, "image/jpeg") is None  # truncated head: no guess


def test_webp_sizes() -> None:
    vp8x = (
        b"RIFF\x00\x00\x00\x00WEBPVP8X"
        + b"\x0a\x00\x00\x00"
        + b"\x00\x00\x00\x00"
        + (1023).to_bytes(3, "little")
        + (767).to_bytes(3, "little")
    )
    assert image_size(vp8x, "image/webp") == (1024, 768)
    bits = (99 & 0x3FFF) | ((49 & 0x3FFF) << 14)
    vp8l = b"RIFF\x00\x00\x00\x00WEBPVP8L" + b"\x00\x00\x00\x00" + b"\x2f" + bits.to_bytes(4, "little")
    assert image_size(vp8l, "image/webp") == (100, 50)


def test_no_size_for_video_or_garbage() -> None:
    assert image_size(b"\x00\x00\x00\x18ftypisom", "video/mp4") is None
    assert image_size(b"\x89PNG\r\n\x1a\n" + b"\x00" * 4, "image/png") is None
