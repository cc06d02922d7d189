"""What a picture file holds besides its pixels, read from its structure before Pillow
opens it: a walk over its chunks, blocks or segments that never decodes anything
and never holds more than a block of the file.

Pillow keeps in memory whatever a file carries besides the picture (a PNG's private
chunks, a GIF's comments, a JPEG's APP segments; a WebP it reads whole), at about
twice its size; and libjpeg, for a JPEG whose first scan does not hold every colour
(a progressive one, or a baseline one with a scan per colour), keeps every
coefficient of the picture whatever scale it draws at, and goes through the whole
picture once a scan. None of that shows in a header. So the walk counts, without
decoding: the bytes besides the pixels, the picture's size as Pillow will take it
(the last PNG header; a GIF frame past its screen), and a JPEG's scans and whether
they cover every colour. `picture.py` holds that against its limits and budget.
"""

from __future__ import annotations

import re
import struct
from typing import BinaryIO, NamedTuple

BLOCK = 2**20  # the most of the file held at a time (the JPEG walk's window)
MAX_PARTS = 100_000  # chunks, blocks or segments a walk visits: more is not a picture


class Malformed(Exception):
    """The file's structure is not one a picture of its format has."""


class Structure(NamedTuple):
    """What the walk found. `extra` counts the bytes Pillow may hold besides the pixels."""

    extra: int = 0
    held: int = 0  # the bytes of the file Pillow holds at once (WebP: all of it)
    size: tuple[int, int] | None = None  # the size the decoder will allocate, when known
    scans: int = 0  # JPEG: how many scans (SOS segments)
    buffered: bool = False  # JPEG: libjpeg keeps every coefficient (a multi-scan file)
    components: int = 0  # JPEG: colours (components) in the frame


def walk(file: BinaryIO, format_: str, file_size: int, *, max_scans: int = MAX_PARTS) -> Structure:
    """The structure of `file` (`file_size` bytes) in `format_` (PNG, GIF, JPEG or
    WEBP); a JPEG's is walked no further than `max_scans` + 1 scans. Raises
    `Malformed` for a structure no such picture has."""
    file.seek(0)
    try:
        if format_ == "JPEG":
            return _jpeg(file, max_scans)
        walker = {"PNG": _png, "GIF": _gif, "WEBP": _webp}[format_]
        return walker(file, file_size)
    except (struct.error, IndexError, ValueError) as error:  # a part cut short
        raise Malformed(str(error)) from None


def _read(file: BinaryIO, count: int) -> bytes:
    data = file.read(count)
    if len(data) < count:
        raise Malformed("the file ends inside a part")
    return data


# --- PNG: chunks ------------------------------------------------------------------------

_PNG_PIXELS = {b"IDAT", b"fdAT"}  # read by the decoder a block at a time
_PNG_STRUCTURE = {b"IHDR", b"PLTE", b"IEND", b"acTL", b"fcTL"}  # small, fixed size


def _png(file: BinaryIO, file_size: int) -> Structure:
    file.seek(8)  # the signature
    extra, size, parts = 0, None, 0
    while True:
        head = file.read(8)
        if len(head) < 8:
            break  # cut short: Pillow says what it makes of that
        length, kind = struct.unpack(">I4s", head)
        parts += 1
        if length > 2**31 - 1 or parts > MAX_PARTS:
            raise Malformed("a chunk longer than PNG allows, or too many chunks")
        if kind == b"IHDR":
            if size is not None or length != 13:  # Pillow would take the last header's size
                raise Malformed("two PNG headers, or one of the wrong length")
            size = struct.unpack(">II", _read(file, 8))
            file.seek(length - 8 + 4, 1)
        else:
            file.seek(length + 4, 1)  # the data and its CRC
        if kind not in _PNG_PIXELS and kind not in _PNG_STRUCTURE:
            extra += length
        if kind == b"IEND":
            break
    return Structure(extra=extra, held=extra, size=size)


# --- GIF: blocks --------------------------------------------------------------------------


def _gif(file: BinaryIO, file_size: int) -> Structure:
    screen = _read(file, 13)
    width, height, flags = struct.unpack("<HHB", screen[6:11])
    if flags & 0x80:
        file.seek(3 << ((flags & 7) + 1), 1)  # the global colour table
    extra, parts, frame = 0, 0, None
    while (introducer := file.read(1)) not in (b"", b"\x3b"):
        parts += 1
        if parts > MAX_PARTS:
            raise Malformed("too many blocks")
        if introducer == b"\x21":  # an extension: comments, application data, text
            label = _read(file, 1)
            length = _skip_sub_blocks(file)
            if label != b"\xf9":  # all but the frame's small control block
                extra += length
        elif introducer == b"\x2c":  # a frame, which Pillow draws on a canvas that holds it
            left, top, frame_width, frame_height, frame_flags = struct.unpack(
                "<HHHHB", _read(file, 9)
            )
            if frame is None:  # the first frame is the one a preview decodes
                frame = (left + frame_width, top + frame_height)
            if frame_flags & 0x80:
                file.seek(3 << ((frame_flags & 7) + 1), 1)  # the local colour table
            _read(file, 1)  # the LZW code size
            _skip_sub_blocks(file)
        else:
            break  # not a GIF block: Pillow stops here too
    canvas = (max(width, frame[0]), max(height, frame[1])) if frame else (width, height)
    return Structure(extra=extra, held=extra, size=canvas)


def _skip_sub_blocks(file: BinaryIO) -> int:
    """Past a run of GIF sub-blocks (a length byte, then that many bytes; 0 ends it),
    read a block of the file at a time: the bytes they hold."""
    total = 0
    while True:
        start = file.tell()
        window = file.read(BLOCK)
        if not window:
            raise Malformed("the file ends inside a GIF block")
        position = 0
        while position < len(window):
            length = window[position]
            if length == 0:
                file.seek(start + position + 1)
                return total
            total += length
            position += length + 1
        file.seek(start + position)  # the next length byte, in the next window


# --- JPEG: segments and scans -------------------------------------------------------------

# SOF markers; C2, C6, CA and CE are progressive. (C4 is DHT, C8 reserved, CC DAC.)
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_PROGRESSIVE = {0xC2, 0xC6, 0xCA, 0xCE}
_NOT_EXTRA = _SOF | {0xC4, 0xCC, 0xDA, 0xDB, 0xDD}  # tables, frame, scans: small, needed
# In entropy-coded data, 0xFF is followed by 0x00 (a stuffed byte), an RST marker, or
# more 0xFF (fill): anything else is the next marker.
_NEXT_MARKER = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


def _jpeg(file: BinaryIO, max_scans: int) -> Structure:
    file.seek(2)  # SOI
    extra, scans, parts, frame_components = 0, 0, 0, 0
    buffered, progressive, size = False, False, None
    while True:
        marker = _next_marker(file, after_scan=scans > 0)
        parts += 1
        if marker is None or marker == 0xD9 or scans > max_scans:  # the end (EOI), or enough
            break
        if parts > MAX_PARTS:  # Pillow reads each segment before the first scan in Python
            raise Malformed("too many segments")
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # TEM, RSTn, SOI: no segment
            continue
        length = struct.unpack(">H", _read(file, 2))[0]
        if length < 2:
            raise Malformed("a JPEG segment shorter than its length field")
        body = _read(file, length - 2) if marker in _SOF or marker == 0xDA else b""
        if not body:
            file.seek(length - 2, 1)
        if marker in _SOF:
            if size is not None:  # Pillow would take the last one's size, libjpeg neither
                raise Malformed("two JPEG frame headers")
            height, width, frame_components = struct.unpack(">HHB", body[1:6])
            size, progressive = (width, height), marker in _PROGRESSIVE
        elif marker == 0xDA:
            scans += 1
            buffered = buffered or body[0] < frame_components  # a scan without every colour
        elif marker not in _NOT_EXTRA:  # APPn, COM and whatever else Pillow keeps
            extra += length
    return Structure(
        extra=extra,
        held=extra,
        size=size,
        scans=scans,
        buffered=buffered or progressive,
        components=frame_components,
    )


def _next_marker(file: BinaryIO, *, after_scan: bool) -> int | None:
    """The next marker's second byte, the file left just after it; None at the end.
    After a scan, its entropy-coded data is passed over a window at a time."""
    if not after_scan:
        pair = file.read(2)
        if len(pair) < 2:
            return None
        if pair[0] != 0xFF:
            raise Malformed("no marker where a JPEG segment starts")
        while pair[1] == 0xFF:  # fill bytes before a marker
            pair = pair[1:] + _read(file, 1)
        return pair[1]
    size = 4096  # most scans end within a few kB: a window grows only while none is found
    while True:
        start = file.tell()
        window = file.read(size)
        if len(window) < 2:
            return None
        found = _NEXT_MARKER.search(window)
        if found is not None:
            file.seek(start + found.end())
            return window[found.end() - 1]
        file.seek(start + len(window) - 1)  # a 0xFF at the window's end starts the next
        size = min(size * 2, BLOCK)


# --- WebP: RIFF chunks --------------------------------------------------------------------

_WEBP_PIXELS = {b"VP8 ", b"VP8L", b"ANMF", b"ALPH"}
_WEBP_STRUCTURE = {b"VP8X", b"ANIM"}


def _webp(file: BinaryIO, file_size: int) -> Structure:
    """Pillow reads a WebP file whole: everything but its pictures is extra, data past
    the RIFF's end included."""
    riff_size = struct.unpack("<I", _read(file, 12)[4:8])[0]
    end = min(file_size, 8 + riff_size)
    pictures, parts = 0, 0
    while file.tell() + 8 <= end:
        kind, length = struct.unpack("<4sI", _read(file, 8))
        parts += 1
        if parts > MAX_PARTS:
            raise Malformed("too many chunks")
        if kind in _WEBP_PIXELS:
            pictures += length
        elif kind not in _WEBP_STRUCTURE:
            pass  # EXIF, XMP, ICCP and unknown chunks: extra, counted below
        file.seek(length + (length & 1), 1)
    return Structure(extra=max(0, file_size - 12 - pictures), held=file_size)
