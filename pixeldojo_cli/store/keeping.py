"""What of a served picture is kept when it is saved: its layout (the pieces
its container walks to, where the picture ends) and which metadata pieces go.

A server may put anything in a picture's metadata: the API key it was sent
(in any form `core.redact` masks), or a document of ours that claims how the
picture was made. So every metadata piece (a PNG's ancillary chunks, a JPEG's
APPn and COM segments, a WebP's chunks other than image data) is read and
checked for the key before it is kept; one too big to check (or past the
file's checking budget) is dropped, as is one holding the key. Image data is
never read for this, never changed.

The pieces are walked as far as they go: a file that is not whole (cut
short, a JPEG that ends before its image data) keeps its unreadable rest as
served, unless that rest is small and holds the key.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pixeldojo_cli.core.redact import holds_key
from pixeldojo_cli.store.containers import (
    ContainerError,
    Piece,
    jpeg_pieces,
    png_pieces,
    read_data,
    read_exact,
    webp_pieces,
)

# A metadata piece bigger than this is not checked for the key: it is dropped.
CHECK_LIMIT = 2**20
# Nor are more bytes than this checked in one file: later metadata is dropped.
CHECK_BUDGET = 4 * 2**20
# Chunks of a PNG or WebP that hold the picture itself: never read, never dropped.
WEBP_IMAGE = frozenset({b"VP8 ", b"VP8L", b"VP8X", b"ALPH", b"ANIM", b"ANMF"})
# An animated PNG's frames: ancillary chunks, yet image data.
PNG_IMAGE = frozenset({b"acTL", b"fcTL", b"fdAT"})
# PNG chunks whose data holds zlib-compressed text after a keyword.
PNG_COMPRESSED = frozenset({b"zTXt", b"iCCP"})
SCAN_BLOCK = 2**20
_EOI = b"\xff\xd9"


@dataclass
class Layout:
    """A served picture as walked: `pieces` (in order), whether the walk
    reached the picture's end (`whole`), and `end`: where the picture ends
    (after IEND, EOI or the RIFF container), or where the walk stopped."""

    kind: str
    pieces: list[Piece]
    whole: bool
    end: int
    image_start: int = 0  # JPEG: where the image data starts (after SOS)


def layout(kind: str, source: BinaryIO, size: int) -> Layout:
    """The layout of the `kind` picture in `source` (`size` bytes)."""
    walk = {"png": png_pieces, "jpeg": jpeg_pieces, "webp": webp_pieces}[kind]
    pieces: list[Piece] = []
    whole = True
    try:
        for piece in walk(source, size):
            pieces.append(piece)
    except ContainerError:
        whole = False
    start = {"png": 8, "jpeg": 2, "webp": 12}[kind]
    end = pieces[-1].end if pieces else start
    if kind == "png":
        whole = whole and bool(pieces) and pieces[-1].kind == b"IEND"
    if kind == "webp" and whole:
        end = 8 + int.from_bytes(read_exact(source, 4, 4), "little")
    if kind == "jpeg" and whole:
        return Layout(kind, pieces, True, _after_eoi(source, end, size), image_start=end)
    return Layout(kind, pieces, whole, end, image_start=end)


def _after_eoi(source: BinaryIO, start: int, size: int) -> int:
    """Where a JPEG's image data ends: after its EOI marker (in entropy-coded
    data a 0xFF byte is always followed by 0x00 or a marker, so the first
    FF D9 is EOI), or `size` when the file holds none (cut short)."""
    source.seek(start)
    position, carry = start, b""
    while position < size:
        block = source.read(min(SCAN_BLOCK, size - position))
        if not block:
            break
        found = (carry + block).find(_EOI)
        if found >= 0:
            return position - len(carry) + found + 2
        carry = block[-1:]
        position += len(block)
    return size


@dataclass
class Sorter:
    """Decides which metadata pieces of one served file are dropped: those
    holding `secret`, those too big to check, those past the budget."""

    source: BinaryIO
    secret: str | None
    checked: int = 0

    def keeps(self, kind: str, piece: Piece) -> bool:
        """Whether a metadata piece of a `kind` picture may be kept: small
        enough, within the budget, and without the key (in its bytes, nor in
        the text a PNG chunk holds compressed)."""
        data = read_data(self.source, piece, CHECK_LIMIT)
        if data is None:
            return False
        compressed = png_compressed_from(piece.kind, data) if kind == "png" else None
        return self.data_keeps(data, compressed)

    def data_keeps(self, data: bytes, compressed_after: int | None = None) -> bool:
        """`keeps` for bytes already read."""
        self.checked += len(data)
        if self.checked > CHECK_BUDGET or self._holds(data):
            return False
        if compressed_after is None:
            return True
        inflated = _inflate(data[compressed_after:])
        if inflated is None:
            return False
        self.checked += len(inflated)
        return self.checked <= CHECK_BUDGET and not self._holds(inflated)

    def region_keeps(self, start: int, end: int) -> bool:
        """Whether the bytes from `start` to `end` (a trailer) may be kept."""
        if end - start > CHECK_LIMIT:
            return False
        return self.data_keeps(read_exact(self.source, start, end - start))

    def _holds(self, data: bytes) -> bool:
        return holds_key(data.decode("latin-1"), self.secret)


def _inflate(data: bytes) -> bytes | None:
    """Compressed text, inflated; None when it does not inflate, or inflates
    past `CHECK_LIMIT` (it cannot be checked)."""
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(data, CHECK_LIMIT)
    except zlib.error:
        return None
    return None if inflater.unconsumed_tail else text


def png_compressed_from(kind: bytes, data: bytes) -> int | None:
    """Where the compressed text of a PNG chunk starts in its `data`, None
    for a chunk that holds none."""
    keyword_end = data.find(b"\x00")
    if keyword_end < 0:
        return None
    if kind in PNG_COMPRESSED:
        return keyword_end + 2
    if kind == b"iTXt" and data[keyword_end + 1 : keyword_end + 2] == b"\x01":
        at = keyword_end + 3
        for _ in range(2):  # the language tag, the translated keyword
            at = data.find(b"\x00", at)
            if at < 0:
                return None
            at += 1
        return at
    return None


def metadata_indices(found: Layout) -> Iterator[int]:
    """The indices of the pieces of `found` that are metadata (checked, may be dropped)."""
    for index, piece in enumerate(found.pieces):
        if _is_metadata(found.kind, piece.kind):
            yield index


def _is_metadata(kind: str, piece_kind: bytes) -> bool:
    """A PNG's ancillary chunk, a JPEG's APPn or COM segment, a WebP chunk but image data."""
    if kind == "png":
        return piece_kind[:1].islower() and piece_kind not in PNG_IMAGE
    if kind == "jpeg":
        return 0xE0 <= piece_kind[0] <= 0xEF or piece_kind[0] == 0xFE
    return piece_kind not in WEBP_IMAGE
