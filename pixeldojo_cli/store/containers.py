"""PNG, JPEG and WebP files as their containers see them: a list of pieces
(chunks, segments), found by reading each piece's header and seeking past its
data, with the standard library alone.

Every length is checked against the file's size before it is believed, and
the number of pieces is capped, so a truncated or hostile file ends the walk
with `ContainerError` (never a crash, a read past the end, or a read of a
piece's data that was not asked for). Reading a piece's data is capped by
the caller (`read_data`).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
# Far more pieces than any picture has: past it, the file is not a picture.
MAX_PIECES = 200_000
# Of a JPEG: segments before the image data (a real file has a few dozen).
MAX_SEGMENTS = 10_000
PNG_MAX_LENGTH = 2**31 - 1  # the PNG spec's bound on one chunk's length
SOS, EOI = 0xDA, 0xD9
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8), 0xD8})  # markers without a length


class ContainerError(ValueError):
    """The file is not a whole PNG, JPEG or WebP as its headers say."""


@dataclass(frozen=True, slots=True)
class Piece:
    """One chunk (PNG, WebP) or segment (JPEG): its type, where it starts (its
    header), where its data is, and where the next piece starts."""

    kind: bytes
    start: int
    data_start: int
    data_len: int
    end: int


def picture_kind(head: bytes) -> str | None:
    """`png`, `jpeg` or `webp` from a file's first 12 bytes; None for anything else."""
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SOI + b"\xff"):
        return "jpeg"
    if len(head) >= 12 and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    return None


def read_exact(stream: BinaryIO, at: int, count: int) -> bytes:
    """`count` bytes at offset `at`; `ContainerError` when the file ends first."""
    stream.seek(at)
    data = stream.read(count)
    if len(data) != count:
        raise ContainerError("the file ends in the middle of a piece")
    return data


def read_data(stream: BinaryIO, piece: Piece, limit: int) -> bytes | None:
    """A piece's data, or None when it is longer than `limit` (never read)."""
    if piece.data_len > limit:
        return None
    return read_exact(stream, piece.data_start, piece.data_len)


def png_pieces(stream: BinaryIO, size: int) -> Iterator[Piece]:
    """The chunks of a PNG, IHDR first to IEND (included)."""
    if read_exact(stream, 0, 8) != PNG_SIGNATURE:
        raise ContainerError("not a PNG")
    position = 8
    for count in range(MAX_PIECES):
        length, kind = struct.unpack(">I4s", read_exact(stream, position, 8))
        end = position + 12 + length
        if length > PNG_MAX_LENGTH or end > size:
            raise ContainerError("a chunk runs past the end of the file")
        if count == 0 and kind != b"IHDR":
            raise ContainerError("the PNG does not start with IHDR")
        yield Piece(kind, position, position + 8, length, end)
        if kind == b"IEND":
            return
        position = end
    raise ContainerError("too many chunks")


def jpeg_pieces(stream: BinaryIO, size: int) -> Iterator[Piece]:
    """The segments of a JPEG from the first after SOI to SOS (included): what
    follows SOS is image data, to be copied as it is. `kind` is the marker."""
    if read_exact(stream, 0, 2) != JPEG_SOI:
        raise ContainerError("not a JPEG")
    position = 2
    for _ in range(MAX_SEGMENTS):
        start = position
        marker = _jpeg_marker(stream, position)
        position += 2
        while marker == 0xFF:  # fill bytes before a marker
            marker = read_exact(stream, position, 1)[0]
            position += 1
            if position - start > 64:
                raise ContainerError("a run of fill bytes")
        if marker in _STANDALONE:
            yield Piece(bytes([marker]), start, position, 0, position)
            continue
        if marker == EOI:
            raise ContainerError("the JPEG ends before its image data")
        (length,) = struct.unpack(">H", read_exact(stream, position, 2))
        end = position + length
        if length < 2 or end > size:
            raise ContainerError("a segment runs past the end of the file")
        yield Piece(bytes([marker]), start, position + 2, length - 2, end)
        if marker == SOS:
            return
        position = end
    raise ContainerError("too many segments")


def _jpeg_marker(stream: BinaryIO, position: int) -> int:
    first, marker = read_exact(stream, position, 2)
    if first != 0xFF:
        raise ContainerError("a JPEG segment does not start with a marker")
    return marker


def webp_pieces(stream: BinaryIO, size: int) -> Iterator[Piece]:
    """The chunks of a WebP file's RIFF container, in order. A chunk's `end`
    counts its padding byte (odd lengths), as far as the RIFF size goes."""
    head = read_exact(stream, 0, 12)
    if head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        raise ContainerError("not a WebP file")
    riff_end = 8 + struct.unpack("<I", head[4:8])[0]
    if riff_end > size:
        raise ContainerError("the RIFF container runs past the end of the file")
    position = 12
    for _ in range(MAX_PIECES):
        if position + 8 > riff_end:
            return
        kind, length = struct.unpack("<4sI", read_exact(stream, position, 8))
        data_end = position + 8 + length
        if data_end > riff_end:
            raise ContainerError("a chunk runs past the end of the RIFF container")
        end = min(riff_end, data_end + (length & 1))
        yield Piece(kind, position, position + 8, length, end)
        position = end
    raise ContainerError("too many chunks")


def pieces_of(kind: str, stream: BinaryIO, size: int) -> Iterator[Piece]:
    """The pieces of a file of `kind` (see `picture_kind`)."""
    walk = {"png": png_pieces, "jpeg": jpeg_pieces, "webp": webp_pieces}[kind]
    return walk(stream, size)
