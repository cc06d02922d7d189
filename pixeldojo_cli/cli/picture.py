"""A picture for a preview: decoded at about the size it is drawn, in bounded memory.

A downloaded file is the API's, not ours: a 450 kB PNG can say 12,000 x 12,000
pixels (432 MB decoded), a GIF's or a WebP's header can name a canvas of any
size, and Pillow prints its own warnings (with the file's path) when it meets
one. So, before anything is decoded, the picture's size is read from its
header (ours for PNG, GIF and WebP, whose decoder allocates the canvas as soon
as the file is opened; Pillow's, which decodes nothing, for JPEG), and what
decoding it would cost is held against `MEMORY_BUDGET`; and the file's
structure is walked (`picture_structure.py`) for what costs memory or time
beyond the pixels: metadata and trailing data Pillow holds, a JPEG's scans
(libjpeg keeps every coefficient of a multi-scan one, and passes over the
whole picture once a scan). A file larger than any picture the API makes, or
past a limit, is refused unread. JPEG is decoded reduced (`draft`: 1/2, 1/4
or 1/8 of its size, by the decoder); other formats cannot be reduced while
decoding, so they are decoded whole within the budget, then reduced a strip
at a time. Only the formats the API makes are opened.
Every failure, and every warning, is one sentence (`NoPreview`), never Pillow's.
The figures behind the costs are in `benchmarks/preview_memory.py`.
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from pixeldojo_cli.cli.picture_structure import Malformed, Structure, walk

FORMATS = ("PNG", "JPEG", "WEBP", "GIF")  # what the API makes; nothing else is decoded
MEMORY_BUDGET = 100 * 2**20  # bytes a preview may use while decoding
# What decoding costs, a pixel (measured: benchmarks/preview_memory.py): Pillow keeps
# 1 byte for palette and grey pictures, 2 for 16-bit grey, 4 for the rest; libwebp
# keeps its canvas and the frame beside Pillow's copy; libjpeg keeps every
# coefficient (2 bytes each, 64 an 8 x 8 block, each colour) of a JPEG whose first
# scan does not hold every colour (progressive, or a scan per colour), whatever scale
# it draws at; and the bytes of the file Pillow holds (extra chunks; a WebP whole)
# cost about twice their size, as it reads them.
WEBP_FACTOR = 4
COEFFICIENT_BYTES = 2
HELD_FACTOR = 3
# What no picture the API makes needs: a 4096 x 4096 RGBA picture stored without any
# compression is 64 MiB; a few MB of metadata (an ICC profile, EXIF, text); a hundred
# scans (libjpeg's progressive pictures have about ten; djpeg's -maxscans is the idea).
# Each scan of a progressive JPEG is a pass over the whole picture: with the budget's
# pixels, a hundred take a second or so (benchmarks/preview_memory.py).
MAX_FILE_BYTES = 64 * 2**20
MAX_EXTRA_BYTES = 8 * 2**20
MAX_SCANS = 100
# The formats an extension names (a name that names none, `.bin`, is read by content).
EXTENSIONS = {".png": "PNG", ".gif": "GIF", ".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG"}
STRIP_PIXELS = 2**20  # reduced a strip of about this many pixels at a time

Box = tuple[int, int]


class NoPreview(Exception):
    """Why a picture is not previewed: one short clause, for `No preview of NAME: ...`."""


class Header(NamedTuple):
    """What a picture's first bytes say: its format, the mode Pillow decodes it in, its size."""

    format: str
    mode: str
    width: int
    height: int


_PNG_MODES = {0: "L", 3: "P", 4: "LA"}  # by colour type; 16-bit grey is I;16, the rest RGB(A)


def header_size(head: bytes) -> Header | None:
    """The size (and format, and Pillow's mode) from the first 30 bytes of a PNG, GIF
    or WebP file; None for anything else (a JPEG's size is further in: Pillow finds it)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) >= 26:
        width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
        mode = "I;16" if (colour, depth) == (0, 16) else _PNG_MODES.get(colour, "RGBA")
        return Header("PNG", mode, width, height)
    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return Header("GIF", "P", width, height)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and len(head) >= 30:
        return _webp_header(head)
    return None


def _webp_header(head: bytes) -> Header | None:
    chunk = head[12:16]
    if chunk == b"VP8X":  # the canvas of an extended (animated, alpha...) file
        width, height = int.from_bytes(head[24:27], "little"), int.from_bytes(head[27:30], "little")
        return Header("WEBP", "RGBA", width + 1, height + 1)
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = int.from_bytes(head[21:25], "little")
        return Header("WEBP", "RGBA", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return Header("WEBP", "RGB", width & 0x3FFF, height & 0x3FFF)
    return None


def load_reduced(path: Path, box_for: Callable[[Box], Box]) -> Any:
    """The picture at `path` as an RGB image no smaller than the box (in pixels)
    that `box_for(its size)` says it is drawn in, and at most about twice it.

    Raises `NoPreview` for a picture too large to decode within `MEMORY_BUDGET`, or
    past a limit on what a file carries besides its pixels (decided from its
    structure, before decoding), an empty one, one in a format the API does not
    make, something not a file, and anything Pillow cannot read or warns about.
    """
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a library's warning is never printed...
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # ...a bomb is refused
        try:
            with _open_file(path) as file:
                structure = _inspect(path, file)
                file.seek(0)
                with Image.open(file, formats=FORMATS) as opened:
                    _check_extension(path, str(opened.format))
                    return _decode(opened, box_for, structure)
        except NoPreview:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise NoPreview("the picture is too large to preview") from None
        except Exception:  # whatever a hostile file makes Pillow raise: a preview never fails
            raise NoPreview("not a picture Pillow can read") from None


def _open_file(path: Path) -> BinaryIO:
    """`path` open for reading, if it is a regular file: a FIFO planted there would
    block the open (and the command) until someone writes to it; `/dev/zero` never ends."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NoPreview("not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _inspect(path: Path, file: BinaryIO) -> Structure:
    """What the file holds, from its header and its structure, held against the limits
    and the budget before Pillow reads more than its first bytes (libwebp allocates
    its canvas on opening; Pillow keeps a PNG's, GIF's or JPEG's extra chunks as it opens)."""
    file_size = os.fstat(file.fileno()).st_size
    head = file.read(30)
    sniffed = header_size(head)
    format_ = sniffed.format if sniffed else "JPEG" if head[:3] == b"\xff\xd8\xff" else None
    if format_ is None:
        raise NoPreview("not a picture Pillow can read")
    _check_extension(path, format_)
    if file_size > MAX_FILE_BYTES:
        raise NoPreview(f"the file is {_megabytes(file_size)}, more than a preview reads")
    try:
        structure = walk(file, format_, file_size, max_scans=MAX_SCANS)
    except Malformed:
        raise NoPreview("not a picture Pillow can read") from None
    if structure.extra > MAX_EXTRA_BYTES:
        raise NoPreview(
            f"it carries {_megabytes(structure.extra)} besides its pixels (metadata,"
            f" comments or other data), more than a preview reads"
        )
    if structure.scans > MAX_SCANS:
        raise NoPreview(f"more than {MAX_SCANS} scans is more than a preview decodes")
    if sniffed is not None:
        size = structure.size or (sniffed.width, sniffed.height)
        _check_cost(format_, sniffed.mode, size, size, structure)
    return structure


def _megabytes(count: int) -> str:
    return f"{count / 1e6:.0f} MB" if count >= 10**6 else f"{count} bytes"


def _check_extension(path: Path, format_: str) -> None:
    """Refuse a picture that is not what its name says (a GIF named `.png`)."""
    named = EXTENSIONS.get(path.suffix.lower())
    actual = "JPEG" if format_ == "MPO" else format_  # a JPEG with more pictures in it
    if named is not None and named != actual:
        raise NoPreview(f"a {_display(actual)} picture named {path.suffix}")


def _display(format_: str) -> str:
    return {"WEBP": "WebP"}.get(format_, format_)


def _decode(opened: Any, box_for: Callable[[Box], Box], structure: Structure) -> Any:
    """`opened` (read as far as its header) decoded reduced to its box, in RGB."""
    size = opened.size
    if min(size) < 1:
        raise NoPreview("the picture is empty (0 pixels)")
    box = box_for(size)
    opened.draft(None, box)  # JPEG: the decoder scales by 1/2, 1/4 or 1/8 (others: no-op)
    if opened.format in ("JPEG", "MPO") and opened.info.get("progressive"):
        structure = structure._replace(buffered=True)  # Pillow's word, should ours miss it
    _check_cost(str(opened.format), opened.mode, size, opened.size, structure)
    return _shrink(opened, box)


def decode_cost(
    format_: str, mode: str, size: Box, decoded: Box, structure: Structure | None = None
) -> int:
    """The bytes decoding a `size` picture at `decoded` pixels holds at its peak,
    with what `structure` says the file makes the decoder keep besides."""
    structure = structure or Structure()
    held = 1 if mode in ("1", "L", "P") else 2 if mode.startswith("I;16") else 4
    per_pixel = held * WEBP_FACTOR if format_ == "WEBP" else held
    extra = structure.held * HELD_FACTOR
    if structure.buffered:  # libjpeg keeps every coefficient, at full size, of every colour
        blocks = -(-size[0] // 16) * -(-size[1] // 16) * 4  # 8 x 8 blocks, MCUs padded
        extra += blocks * 64 * COEFFICIENT_BYTES * max(1, structure.components)
    return decoded[0] * decoded[1] * per_pixel + extra


def _check_cost(
    format_: str, mode: str, size: Box, decoded: Box, structure: Structure | None = None
) -> None:
    """Refuse a picture whose decoding would cost more than `MEMORY_BUDGET`."""
    cost = decode_cost(format_, mode, size, decoded, structure)
    if cost <= MEMORY_BUDGET:
        return
    pixels = size[0] * size[1]
    kind = _display(format_)
    if structure is not None and structure.buffered:
        kind = f"multi-scan {kind}"  # progressive, or a scan per colour
    raise NoPreview(
        f"{size[0]} x {size[1]} pixels is more than a preview decodes"
        f" (about {MEMORY_BUDGET * pixels // cost / 1e6:.0f} million pixels of this {kind})"
    )


def _shrink(picture: Any, box: Box) -> Any:
    """`picture` in RGB, reduced by a whole factor to no smaller than `box`: a strip at
    a time, since a converted copy of the whole would double what it holds."""
    from PIL import Image

    width, height = picture.size
    factor = max(1, min(width // max(1, box[0]), height // max(1, box[1])))
    if factor == 1:
        return picture.convert("RGB")
    reduced = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    step = factor * max(1, STRIP_PIXELS // (width * factor))
    for top in range(0, height, step):
        strip = picture.crop((0, top, width, min(height, top + step))).convert("RGB")
        reduced.paste(strip.reduce(factor), (0, top // factor))
    return reduced
