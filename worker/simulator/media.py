"""Small but real image files, written with the standard library only.

The simulator must hand out files a client can open (PNG outputs, JPEG previews, an animated
GIF for the video node) without pulling Pillow into the worker's dependencies.
"""

from __future__ import annotations

import struct
import zlib

__all__ = ["solid_gif", "solid_jpeg", "solid_png"]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def solid_png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """An RGB PNG of one colour."""
    width, height = max(1, width), max(1, height)
    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(row * height, 6)) + _png_chunk(b"IEND", b"")
    )


def _jpeg_segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def solid_jpeg(size: int = 64) -> bytes:
    """A baseline greyscale JPEG of uniform mid-grey, ``size`` rounded up to whole 8x8 blocks.

    Every block codes "DC difference 0, end of block", so one-code Huffman tables suffice and
    the entropy-coded data is a run of zero bits.
    """
    blocks = max(1, -(-size // 8))
    side = blocks * 8
    quant = _jpeg_segment(0xDB, b"\x00" + bytes([1] * 64))
    frame = _jpeg_segment(0xC0, struct.pack(">BHHB", 8, side, side, 1) + b"\x01\x11\x00")
    one_code = bytes([1] + [0] * 15)
    huff_dc = _jpeg_segment(0xC4, b"\x00" + one_code + b"\x00")  # category 0 -> '0'
    huff_ac = _jpeg_segment(0xC4, b"\x10" + one_code + b"\x00")  # EOB -> '0'
    scan = _jpeg_segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    bits = 2 * blocks * blocks
    data = bytearray(b"\x00" * (bits // 8))
    if bits % 8:
        data.append(0xFF >> (bits % 8))  # pad the last byte with one-bits
    return b"\xff\xd8" + quant + frame + huff_dc + huff_ac + scan + bytes(data) + b"\xff\xd9"


def _gif_frame_data(pixels: int, colour_index: int) -> bytes:
    """LZW data that never grows the code table: a clear code before every pair of pixels."""
    clear, end, width = 4, 5, 3
    codes: list[int] = []
    for i in range(pixels):
        if i % 2 == 0:
            codes.append(clear)
        codes.append(colour_index)
    codes.append(end)
    acc = nbits = 0
    out = bytearray()
    for code in codes:
        acc |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    blocks = bytearray([2])  # LZW minimum code size
    for start in range(0, len(out), 255):
        chunk = out[start : start + 255]
        blocks += bytes([len(chunk)]) + chunk
    return bytes(blocks + b"\x00")


def solid_gif(width: int, height: int, frames: int = 2, delay_cs: int = 10) -> bytes:
    """An animated GIF alternating between two colours, ``frames`` long."""
    width, height = max(1, width), max(1, height)
    palette = bytes([0x33, 0x66, 0xCC, 0xCC, 0x99, 0x33, 0, 0, 0, 0xFF, 0xFF, 0xFF])
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", width, height, 0xF1, 0, 0) + palette)
    out += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"  # loop forever
    for index in range(max(1, frames)):
        out += b"\x21\xf9\x04\x00" + struct.pack("<H", delay_cs) + b"\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
        out += _gif_frame_data(width * height, index % 2)
    return bytes(out + b"\x3b")
