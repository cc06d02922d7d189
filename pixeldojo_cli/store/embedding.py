"""How a picture was made, written into the picture: a PNG gets `iTXt` chunks
(`pixeldojo`: our JSON document; `parameters`: a line of text as other image
tools write it), a JPEG an XMP `APP1` segment, a WebP an `XMP ` chunk (in an
extended `VP8X` container, made from a simple one when needed).

`embed` copies the file as served into a new one with the metadata added,
piece by piece in blocks (memory stays flat), never decoding or changing the
image data. It is applied to the download's temporary file before its final
rename (`partfile.PartFile.rewrite`). A file that is not a PNG, JPEG or WebP
(a video), or one too big, is left as served: `embed` says False, and the
sidecar alone records the job. So is a picture that is not whole (cut short,
hostile), or whose metadata does not fit, but for what must go (below).

What must go, with or without our metadata (`keeping`): metadata of ours
already in the file as served (a server's claim: what the file says about
its making is only ever what this client wrote), and metadata that holds the
API key, in any form `core.redact` masks, or that is too big to check. What
follows the picture's end (after IEND, EOI, the RIFF container) goes when
our metadata is added, in all three alike. Another program's XMP packet is
kept, ours added to it as an `rdf:Description` of its own (when both fit).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from pixeldojo_cli.store.containers import (
    JPEG_SOI,
    PNG_SIGNATURE,
    ContainerError,
    Piece,
    picture_kind,
    read_data,
    read_exact,
)
from pixeldojo_cli.store.keeping import CHECK_LIMIT, Layout, Sorter, layout, metadata_indices
from pixeldojo_cli.store.provenance import (
    SHRUNK_VALUE_CHARS,
    Provenance,
    document,
    encode,
    encodings,
)
from pixeldojo_cli.store.xmp import JPEG_XMP_HEADER, is_ours, merged, packet

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
# A WebP's XMP chunk: another program's packet (checked: at most 1 MiB) and ours.
WEBP_MAX_PACKET = 2 * CHECK_LIMIT
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
    made: Provenance | None,
    *,
    tool: str,
    secret: str | None,
) -> bool:
    """Write the picture in `source` (`size` bytes) to `target`, from its
    start, with `made` in it (None: nothing added), and without what must not
    be kept of what was served (`keeping`: metadata holding the key, or
    claiming to be ours). False (and `target` to be thrown away) when nothing
    is to change, or the file is not a PNG, JPEG or WebP picture, or too big;
    a file that is not whole, or whose metadata does not fit, only loses what
    must go. OSError when writing fails."""
    if size > MAX_EMBED_BYTES:
        return False
    source.seek(0)
    kind = picture_kind(source.read(12))
    if kind is None:
        return False
    try:
        found = layout(kind, source, size)
        adding = made is not None and found.whole
        plan = _plan(found, source, secret, adding=adding)
        ours = _ours(found, source, plan, made, tool=tool, secret=secret) if adding else None
        if ours is None:
            if adding:  # it did not fit: the file is only cleaned
                plan = _plan(found, source, secret, adding=False)
            if not plan.dropped and plan.rest_kept:
                return False  # nothing to add, nothing to take out: saved as served
        writer = {"png": _png, "jpeg": _jpeg, "webp": _webp}[kind]
        writer(source, target, size, found, plan, ours)
    except ContainerError:
        return False
    return True


@dataclass
class _Plan:
    """What of the served file is left out: pieces by index, the rest after
    the picture's end (`rest_kept`), and the XMP packet of another program
    ours is added to (`host`, by index; it leaves its own place)."""

    dropped: set[int]
    rest_kept: bool
    host: int | None = None


def _plan(found: Layout, source: BinaryIO, secret: str | None, *, adding: bool) -> _Plan:
    """Which pieces go: metadata of ours (a server's claim), holding the key,
    or not checkable; the rest after the picture goes when metadata is added
    (so it is in PNG, JPEG and WebP alike) or when it holds the key."""
    sorter = Sorter(source, secret)
    dropped: set[int] = set()
    host = None
    for index in metadata_indices(found):
        piece = found.pieces[index]
        if _claims_ours(found.kind, source, piece) or not sorter.keeps(found.kind, piece):
            dropped.add(index)
        elif host is None and found.kind != "png" and _is_xmp(found.kind, source, piece):
            host = index
    size = source.seek(0, 2)
    if found.end >= size:
        rest_kept = True
    elif found.whole:
        rest_kept = not adding and sorter.region_keeps(found.end, size)
    else:  # the unreadable rest of a broken file: kept unless it is small and holds the key
        rest_kept = size - found.end > CHECK_LIMIT or sorter.region_keeps(found.end, size)
    return _Plan(dropped, rest_kept, host if adding else None)


def _claims_ours(kind: str, source: BinaryIO, piece: Piece) -> bool:
    """A text chunk with our keyword, an XMP packet with our document: only
    this client writes those, so one in a file as served is a server's claim."""
    if kind == "png":
        return piece.kind in PNG_TEXT_KINDS and png_keyword(source, piece) in OUR_KEYWORDS
    if not _is_xmp(kind, source, piece):
        return False
    data = read_data(source, piece, CHECK_LIMIT)
    return data is None or is_ours(data)


def _is_xmp(kind: str, source: BinaryIO, piece: Piece) -> bool:
    """A JPEG's standard XMP segment (not a part of extended XMP), a WebP's XMP chunk."""
    if kind == "webp":
        return piece.kind == b"XMP "
    return piece.kind[0] == _APP1 and _head(source, piece).startswith(JPEG_XMP_HEADER)


def _ours(
    found: Layout,
    source: BinaryIO,
    plan: _Plan,
    made: Provenance | None,
    *,
    tool: str,
    secret: str | None,
) -> bytes | None:
    """What we add: PNG chunks, or an XMP packet (merged into `plan.host`,
    else our own; `plan.host` is cleared when it could not be). None when
    nothing is added (no `made`, a file not whole, nothing fits)."""
    if made is None or not found.whole:
        return None
    value = document(made, tool=tool, secret=secret)
    if found.kind == "png":
        text = encode(value, MAX_DOCUMENT_BYTES)
        if text is None:
            return None
        return _itxt(PNG_KEYWORD, text) + _itxt(PARAMETERS_KEYWORD, _parameters(value))
    host = None
    if plan.host is not None:
        host = read_data(source, found.pieces[plan.host], CHECK_LIMIT)
        host = host[len(JPEG_XMP_HEADER) :] if host and found.kind == "jpeg" else host
    limit = JPEG_MAX_PACKET if found.kind == "jpeg" else WEBP_MAX_PACKET
    for merge in ([host] if host else []) + [None]:
        packet_bytes = _fitting_packet(value, tool, merge, limit)
        if packet_bytes is not None:
            if merge is None:
                plan.host = None
            return packet_bytes
    return None


def _fitting_packet(
    value: dict[str, Any], tool: str, host: bytes | None, limit: int
) -> bytes | None:
    """The first XMP packet of at most `limit` bytes, sized after XML
    escaping: the whole document and prompt, then both cut, then the least
    document (job, model, seed, API, time) and no prompt. None if none fits."""
    inputs = value["inputs"] if isinstance(value.get("inputs"), dict) else {}
    prompt = inputs.get("prompt") if isinstance(inputs.get("prompt"), str) else None
    for level, text in enumerate(encodings(value)):
        if len(text) > MAX_DOCUMENT_BYTES:
            continue
        if host is not None:
            made = merged(host, text.decode())
        else:
            shown = _cut(prompt, (JPEG_MAX_DOCUMENT, SHRUNK_VALUE_CHARS, 0)[level])
            made = packet(text.decode(), tool=tool, prompt=shown, created=value.get("createdAt"))
        if made is not None and len(made) <= limit:
            return made
    return None


def _cut(prompt: str | None, chars: int) -> str | None:
    if prompt is None or chars == 0:
        return None
    return prompt if len(prompt) <= chars else prompt[:chars] + "..."


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


def _png(
    source: BinaryIO, target: BinaryIO, size: int, found: Layout, plan: _Plan, ours: bytes | None
) -> None:
    """Signature, IHDR, our chunks, then every other chunk kept as it was."""
    target.write(PNG_SIGNATURE)
    placed = ours is None
    for index, piece in enumerate(found.pieces):
        if index in plan.dropped:
            continue
        copy_range(source, target, piece.start, piece.end)
        if not placed and piece.kind == b"IHDR":  # (after the first IHDR only)
            target.write(ours or b"")
            placed = True
    _copy_rest(source, target, size, found, plan)


def _copy_rest(source: BinaryIO, target: BinaryIO, size: int, found: Layout, plan: _Plan) -> None:
    if plan.rest_kept:
        copy_range(source, target, found.end, size)


# --- JPEG ---------------------------------------------------------------------------


def _head(source: BinaryIO, piece: Piece, count: int = 40) -> bytes:
    return read_exact(source, piece.data_start, min(count, piece.data_len))


def _leads(source: BinaryIO, piece: Piece) -> bool:
    """A segment that stays before ours: JFIF's APP0, Exif's APP1."""
    if piece.kind[0] == _APP0 or piece.data_len == 0:
        return True
    return piece.kind[0] == _APP1 and _head(source, piece).startswith(b"Exif\x00")


def _jpeg(
    source: BinaryIO, target: BinaryIO, size: int, found: Layout, plan: _Plan, ours: bytes | None
) -> None:
    """SOI, the JFIF/Exif segments, our XMP segment, the other segments kept,
    then the image data as it was, to its EOI."""
    segment = b""
    if ours is not None:
        if len(ours) > JPEG_MAX_PACKET:
            raise ContainerError("the XMP packet does not fit in a JPEG segment")
        segment = b"\xff\xe1" + struct.pack(">H", 2 + len(JPEG_XMP_HEADER) + len(ours))
        segment += JPEG_XMP_HEADER + ours
    target.write(JPEG_SOI)
    for index, piece in enumerate(found.pieces):
        if index in plan.dropped or index == plan.host:
            continue
        if segment and not _leads(source, piece):
            target.write(segment)
            segment = b""
        copy_range(source, target, piece.start, piece.end)
    if found.whole:
        copy_range(source, target, found.image_start, found.end)
    _copy_rest(source, target, size, found, plan)


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


def _webp(
    source: BinaryIO, target: BinaryIO, size: int, found: Layout, plan: _Plan, ours: bytes | None
) -> None:
    """RIFF, a VP8X chunk (with the XMP flag set when ours is added), every
    other chunk kept as it was, then our XMP chunk."""
    pieces = [p for i, p in enumerate(found.pieces) if i not in plan.dropped and i != plan.host]
    if len(pieces) > MAX_WEBP_CHUNKS:
        raise ContainerError("a WebP file with too many chunks")
    vp8x = _vp8x(source, found, pieces, xmp=ours is not None)
    kept = [p for p in pieces if p.kind != b"VP8X"] if vp8x is not None else pieces
    written = [(_chunk_bytes(p), p) for p in kept]
    total = 4 + sum(length for length, _ in written)
    total += 0 if vp8x is None else len(vp8x)
    padded = b"" if ours is None else ours + b"\x00" * (len(ours) & 1)
    total += 0 if ours is None else 8 + len(padded)
    if not found.whole and plan.rest_kept:  # what the served header claimed past the walk
        claimed_end = 8 + int.from_bytes(read_exact(source, 4, 4), "little")
        total += max(0, claimed_end - found.end)
    if total > 0xFFFFFFFF:
        raise ContainerError("too big for a RIFF container")
    target.write(b"RIFF" + struct.pack("<I", total) + b"WEBP")
    if vp8x is not None:
        target.write(vp8x)
    for length, piece in written:
        copy_range(source, target, piece.start, piece.data_start + piece.data_len)
        target.write(b"\x00" * (length - 8 - piece.data_len))
    if ours is not None:
        target.write(b"XMP " + struct.pack("<I", len(ours)) + padded)
    _copy_rest(source, target, size, found, plan)


def _chunk_bytes(piece: Piece) -> int:
    """How many bytes a chunk takes once written: header, data, padding."""
    return 8 + piece.data_len + (piece.data_len & 1)


def _vp8x(source: BinaryIO, found: Layout, pieces: list[Piece], *, xmp: bool) -> bytes | None:
    """The VP8X chunk to write: the canvas, its flags said again for what is
    kept (ICC, EXIF, XMP); None for a simple file that stays one."""
    first = found.pieces[0] if found.pieces else None
    if first is None or (first.kind != b"VP8X" and not xmp):
        return None
    flags, width, height = _canvas(source, first)
    if not (1 <= width <= 2**24 and 1 <= height <= 2**24):
        raise ContainerError("a WebP canvas of no size")
    kinds = {p.kind for p in pieces}
    for kind, bit in ((b"ICCP", 0x20), (b"EXIF", 0x08), (b"XMP ", _VP8X_XMP)):
        flags = flags | bit if kind in kinds else flags & ~bit
    flags |= _VP8X_XMP if xmp else 0
    data = bytes([flags, 0, 0, 0])
    data += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"VP8X" + struct.pack("<I", len(data)) + data
