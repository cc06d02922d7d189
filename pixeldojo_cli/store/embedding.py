"""How a picture was made, written into the picture: a PNG gets `iTXt` chunks
(`pixeldojo`: our JSON document; `parameters`: a line of text as other image
tools write it), a JPEG an XMP `APP1` segment, a WebP an `XMP ` chunk (in an
extended `VP8X` container, made from a simple one when needed).

`embed` copies the file as served into a new one with the metadata added,
piece by piece in blocks (memory stays flat), never decoding or changing the
image data. It is applied to the download's temporary file before its final
rename (`partfile.PartFile.rewrite`). A file that is not a whole PNG, JPEG
or WebP (a video, a truncated or hostile file), or one too big, is left as
served: `embed` says False, and the sidecar alone records the job.

Metadata of ours already in the file as served (a server's claim) is dropped:
what the file says about its making is only ever what this client wrote.
"""

from __future__ import annotations

import struct
import zlib
from itertools import islice
from typing import BinaryIO

from pixeldojo_cli.store.containers import (
    JPEG_SOI,
    PNG_SIGNATURE,
    ContainerError,
    Piece,
    jpeg_pieces,
    picture_kind,
    png_pieces,
    read_exact,
    webp_pieces,
)
from pixeldojo_cli.store.provenance import Provenance, document, encode
from pixeldojo_cli.store.xmp import JPEG_XMP_EXTENSION, JPEG_XMP_HEADER, packet

PNG_KEYWORD = b"pixeldojo"
PARAMETERS_KEYWORD = b"parameters"
OUR_KEYWORDS = frozenset({PNG_KEYWORD, PARAMETERS_KEYWORD})
PNG_TEXT_KINDS = frozenset({b"tEXt", b"iTXt", b"zTXt"})
# Our document in a PNG or WebP file: far more than any job's inputs need.
MAX_DOCUMENT_BYTES = 256 * 1024
# One JPEG segment holds 65,535 bytes, its length and the XMP header included;
# the packet's own XML takes about a kilobyte of it, the prompt may take as much
# again as the document (dc:description).
JPEG_MAX_PACKET = 65535 - 2 - len(JPEG_XMP_HEADER)
JPEG_MAX_DOCUMENT = 16 * 1024
# A picture bigger than this keeps the sidecar only (copying it costs time).
MAX_EMBED_BYTES = 512 * 2**20
COPY_BLOCK = 2**20
MAX_WEBP_CHUNKS = 10_000
_APP0, _APP1 = 0xE0, 0xE1
_VP8X_XMP, _VP8X_ALPHA = 0x04, 0x10


def embed(
    source: BinaryIO,
    target: BinaryIO,
    size: int,
    made: Provenance,
    *,
    tool: str,
    secret: str | None,
) -> bool:
    """Write the picture in `source` (`size` bytes) with `made` in it to
    `target`, from its start. False (and `target` to be thrown away) when the
    file is not a whole PNG, JPEG or WebP, is too big, or the metadata does
    not fit. OSError when writing fails."""
    if size > MAX_EMBED_BYTES:
        return False
    source.seek(0)
    kind = picture_kind(source.read(12))
    if kind is None:
        return False
    value = document(made, tool=tool, secret=secret)
    inputs = value["inputs"]
    prompt = inputs.get("prompt") if isinstance(inputs.get("prompt"), str) else None
    try:
        if kind == "png":
            text = encode(value, MAX_DOCUMENT_BYTES)
            if text is None:
                return False
            chunks = [_itxt(PNG_KEYWORD, text), _itxt(PARAMETERS_KEYWORD, _parameters(value))]
            _png(source, target, size, b"".join(chunks))
            return True
        limit = JPEG_MAX_DOCUMENT if kind == "jpeg" else MAX_DOCUMENT_BYTES
        text = encode(value, limit)
        if text is None:
            return False
        if kind == "jpeg" and prompt is not None and len(prompt) > JPEG_MAX_DOCUMENT:
            prompt = prompt[:JPEG_MAX_DOCUMENT] + "..."
        xmp = packet(text.decode(), tool=tool, prompt=prompt, created=value.get("createdAt"))
        if kind == "jpeg":
            _jpeg(source, target, size, xmp)
        else:
            _webp(source, target, size, xmp)
    except ContainerError:
        return False
    return True


def copy_range(source: BinaryIO, target: BinaryIO, start: int, end: int) -> None:
    """Bytes `start` to `end` of `source` onto `target`, a block at a time."""
    source.seek(start)
    left = end - start
    while left > 0:
        block = source.read(min(COPY_BLOCK, left))
        if not block:
            raise ContainerError("the file ended while it was copied")
        target.write(block)
        left -= len(block)


# --- PNG ----------------------------------------------------------------------------


def _itxt(keyword: bytes, text: bytes) -> bytes:
    """An uncompressed `iTXt` chunk, no language tag: `keyword` holds UTF-8 `text`."""
    data = keyword + b"\x00\x00\x00" + b"\x00" + b"\x00" + text
    body = b"iTXt" + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _parameters(value: dict[str, object]) -> bytes:
    """The prompt, then `Seed: N, Model: M, Job: ID`: what other image tools show."""
    inputs = value["inputs"] if isinstance(value["inputs"], dict) else {}
    prompt = inputs.get("prompt")
    details = [
        f"Seed: {inputs['seed']}" if "seed" in inputs else "",
        f"Model: {value['model']}",
        f"Job: {value['jobId']}",
    ]
    line = ", ".join(detail for detail in details if detail)
    text = f"{prompt}\n{line}" if isinstance(prompt, str) else line
    return text.encode("utf-8", "replace")[:MAX_DOCUMENT_BYTES]


def png_keyword(source: BinaryIO, piece: Piece) -> bytes:
    """The keyword of a text chunk (at most 79 bytes, before its NUL)."""
    head = read_exact(source, piece.data_start, min(piece.data_len, 80))
    return head.split(b"\x00", 1)[0]


def _png(source: BinaryIO, target: BinaryIO, size: int, chunks: bytes) -> None:
    """Signature, IHDR, our chunks, then every other chunk as it was."""
    target.write(PNG_SIGNATURE)
    for piece in png_pieces(source, size):
        if piece.kind in PNG_TEXT_KINDS and png_keyword(source, piece) in OUR_KEYWORDS:
            continue
        copy_range(source, target, piece.start, piece.end)
        if piece.kind == b"IHDR":
            target.write(chunks)


# --- JPEG ---------------------------------------------------------------------------


def _head(source: BinaryIO, piece: Piece, count: int = 40) -> bytes:
    return read_exact(source, piece.data_start, min(count, piece.data_len))


def _is_xmp(source: BinaryIO, piece: Piece) -> bool:
    """An APP1 segment holding an XMP packet (or a part of an extended one)."""
    return piece.kind[0] == _APP1 and _head(source, piece).startswith(
        (JPEG_XMP_HEADER, JPEG_XMP_EXTENSION)
    )


def _leads(source: BinaryIO, piece: Piece) -> bool:
    """A segment that stays before ours: JFIF's APP0, Exif's APP1."""
    if piece.kind[0] == _APP0 or piece.data_len == 0:
        return True
    return piece.kind[0] == _APP1 and _head(source, piece).startswith(b"Exif\x00")


def _jpeg(source: BinaryIO, target: BinaryIO, size: int, xmp: bytes) -> None:
    """SOI, the JFIF/Exif segments, our XMP segment, the other segments (an
    XMP packet already there dropped), then the image data as it was."""
    if len(xmp) > JPEG_MAX_PACKET:
        raise ContainerError("the XMP packet does not fit in a JPEG segment")
    segment = b"\xff\xe1" + struct.pack(">H", 2 + len(JPEG_XMP_HEADER) + len(xmp))
    segment += JPEG_XMP_HEADER + xmp
    target.write(JPEG_SOI)
    placed = False
    last_end = 2
    for piece in jpeg_pieces(source, size):
        last_end = piece.end
        if _is_xmp(source, piece):
            continue
        if not placed and not _leads(source, piece):
            target.write(segment)
            placed = True
        copy_range(source, target, piece.start, piece.end)
    copy_range(source, target, last_end, size)


# --- WebP ---------------------------------------------------------------------------


def _canvas(source: BinaryIO, first: Piece) -> tuple[int, int, int]:
    """(VP8X flags, width, height) of a WebP file from its first chunk."""
    if first.kind == b"VP8X" and first.data_len >= 10:
        data = read_exact(source, first.data_start, 10)
        width = 1 + int.from_bytes(data[4:7], "little")
        return data[0], width, 1 + int.from_bytes(data[7:10], "little")
    if first.kind == b"VP8 " and first.data_len >= 10:
        data = read_exact(source, first.data_start, 10)
        if data[3:6] != b"\x9d\x01\x2a":
            raise ContainerError("a VP8 chunk without a key frame")
        width, height = struct.unpack("<HH", data[6:10])
        return 0, width & 0x3FFF, height & 0x3FFF
    if first.kind == b"VP8L" and first.data_len >= 5:
        data = read_exact(source, first.data_start, 5)
        if data[0] != 0x2F:
            raise ContainerError("a VP8L chunk without its signature")
        bits = int.from_bytes(data[1:5], "little")
        alpha = _VP8X_ALPHA if bits >> 28 & 1 else 0
        return alpha, (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    raise ContainerError("a WebP file that starts with no image chunk")


def _webp(source: BinaryIO, target: BinaryIO, size: int, xmp: bytes) -> None:
    """RIFF, a VP8X chunk with the XMP flag set, every chunk as it was (but
    VP8X and XMP), then our XMP chunk."""
    pieces = list(islice(webp_pieces(source, size), MAX_WEBP_CHUNKS + 1))
    if not pieces or len(pieces) > MAX_WEBP_CHUNKS:
        raise ContainerError("a WebP file with no chunks, or too many")
    flags, width, height = _canvas(source, pieces[0])
    if not (1 <= width <= 2**24 and 1 <= height <= 2**24):
        raise ContainerError("a WebP canvas of no size")
    kept = [p for p in pieces if p.kind not in (b"VP8X", b"XMP ")]
    vp8x = bytes([flags | _VP8X_XMP, 0, 0, 0])
    vp8x += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    padded_xmp = xmp + b"\x00" * (len(xmp) & 1)
    total = 4 + 8 + len(vp8x) + sum(8 + p.data_len + (p.data_len & 1) for p in kept)
    total += 8 + len(padded_xmp)
    if total > 0xFFFFFFFF:
        raise ContainerError("too big for a RIFF container")
    target.write(b"RIFF" + struct.pack("<I", total) + b"WEBP")
    target.write(b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x)
    for piece in kept:
        copy_range(source, target, piece.start, piece.data_start + piece.data_len)
        if piece.data_len & 1:
            target.write(b"\x00")
    target.write(b"XMP " + struct.pack("<I", len(xmp)) + padded_xmp)
