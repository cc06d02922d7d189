"""Valid PNG pictures from the standard library alone (zlib + struct).

The picture is derived from the prompt and seed, so the same request gives
the same bytes, and its size follows the aspect ratio.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterator
from functools import lru_cache

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def size_for(aspect_ratio: str | None, long_side: int = 256) -> tuple[int, int]:
    """(width, height) for an aspect ratio like `16:9`; square when unknown."""
    try:
        w_text, h_text = (aspect_ratio or "1:1").split(":")
        w, h = float(w_text), float(h_text)
        if not (w > 0 and h > 0):
            raise ValueError
    except ValueError:
        w, h = 1.0, 1.0
    if w >= h:
        return long_side, max(1, round(long_side * h / w))
    return max(1, round(long_side * w / h)), long_side


def encode_png(width: int, height: int, rows: list[bytes]) -> bytes:
    """An 8-bit RGB PNG from raw rows of width*3 bytes."""
    raw = b"".join(b"\x00" + row for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


@lru_cache(maxsize=4)
def big_picture(width: int, height: int) -> bytes:
    """A valid 8-bit RGB PNG of width x height pixels that is small on the wire:
    a gradient row, then rows that repeat it (PNG's `Up` filter: all zeros).
    12,000 x 12,000 pixels (432 MB decoded) is about 430 kB: for testing what
    a client does with a picture far larger than it will draw."""
    first = b"\x00" + bytes(x * 255 // max(1, width - 1) for x in range(width) for _ in "rgb")
    up = b"\x02" + bytes(width * 3)
    per_block = max(1, 2**20 // len(up))  # whole rows, about 1 MiB a block
    blocks, rest = divmod(height - 1, per_block)
    rows = up * per_block
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    # A full flush restarts the compressor: each block's bytes are the same, made once.
    head = deflate.compress(first) + deflate.flush(zlib.Z_FULL_FLUSH)
    block = deflate.compress(rows) + deflate.flush(zlib.Z_FULL_FLUSH)
    tail = deflate.compress(up * rest) + deflate.flush(zlib.Z_FINISH)
    adler = zlib.adler32(first)
    for _ in range(blocks):
        adler = zlib.adler32(rows, adler)
    adler = zlib.adler32(up * rest, adler)
    stream = b"\x78\xda" + head + block * blocks + tail + struct.pack(">I", adler)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")


@lru_cache(maxsize=64)
def render(prompt: str, seed: int, index: int, width: int, height: int) -> bytes:
    """A diagonal two-colour gradient with a disc: a picture of the prompt and seed."""
    digest = hashlib.sha256(f"{prompt}\0{seed}\0{index}".encode()).digest()
    a, b, disc = digest[0:3], digest[3:6], digest[6:9]
    cx, cy = width * (0.25 + digest[9] / 512), height * (0.25 + digest[10] / 512)
    radius2 = (min(width, height) * (0.15 + digest[11] / 1024)) ** 2
    span = max(1, width + height - 2)
    rows = []
    for y in range(height):
        row = bytearray(width * 3)
        dy2 = (y - cy) ** 2
        for x in range(width):
            if (x - cx) ** 2 + dy2 <= radius2:
                r, g, bl = disc
            else:
                t = (x + y) / span
                r = int(a[0] + (b[0] - a[0]) * t)
                g = int(a[1] + (b[1] - a[1]) * t)
                bl = int(a[2] + (b[2] - a[2]) * t)
            row[x * 3 : x * 3 + 3] = bytes((r, g, bl))
        rows.append(bytes(row))
    return encode_png(width, height, rows)


# An ancillary, private, safe-to-copy chunk type: viewers skip it, the PNG stays valid.
PADDING_CHUNK = b"pdJo"
_ZEROS = bytes(1024 * 1024)


class PaddedPNG:
    """A valid PNG of `size` bytes or more, made of a small picture and one big
    chunk of zeros, produced piece by piece so that a 1 GiB output never sits in
    memory. For benchmarks of downloads at line rate."""

    def __init__(self, picture: bytes, size: int) -> None:
        header_end = 8 + 25  # signature + IHDR
        padding = max(0, size - len(picture) - 12)
        crc = zlib.crc32(PADDING_CHUNK)
        for start in range(0, padding, len(_ZEROS)):
            crc = zlib.crc32(_ZEROS[: min(len(_ZEROS), padding - start)], crc)
        self._head = picture[:header_end] + struct.pack(">I", padding) + PADDING_CHUNK
        self._padding = padding
        self._tail = struct.pack(">I", crc & 0xFFFFFFFF) + picture[header_end:]

    def __len__(self) -> int:
        return len(self._head) + self._padding + len(self._tail)

    def pieces(self, start: int = 0) -> Iterator[bytes]:
        """The bytes from `start` to the end, in pieces of at most 1 MiB."""
        head, pad_end = len(self._head), len(self._head) + self._padding
        if start < head:
            yield self._head[start:]
        position = max(start, head)
        while position < pad_end:
            step = min(len(_ZEROS), pad_end - position)
            yield _ZEROS[:step]
            position += step
        yield self._tail[max(0, start - pad_end) :]
