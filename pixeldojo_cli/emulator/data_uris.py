"""`data:` URIs in URL inputs, as the emulator takes them: base64, of a declared
picture, video or sound type, whose bytes are of that type (bounded: a URI
longer than `MAX_DATA_URI` is refused before decoding). The emulator's own
check, sharing nothing with the client's; a test keeps the two lists of types
the same (every type the client sends, the emulator takes)."""

from __future__ import annotations

import base64
import binascii
import re

MAX_DATA_URI = 30 * 1024 * 1024
_HEADER = re.compile(r"data:([a-z]+)/([a-z0-9.+-]+);base64,", re.IGNORECASE)
# What each type's first bytes are (matched at the start; `.` is any byte). RIFF
# and ISO-BMFF (`ftyp`) files say which kind they are past their first bytes.
_MAGIC = {
    mime: re.compile(pattern, re.DOTALL)
    for mime, pattern in {
        "image/png": rb"\x89PNG\r\n\x1a\n",
        "image/jpeg": rb"\xff\xd8\xff",
        "image/gif": rb"GIF8[79]a",
        "image/webp": rb"RIFF.{4}WEBP",
        "image/tiff": rb"II\*\x00|MM\x00\*",
        "image/avif": rb".{4}ftypavi[fs]",
        "image/heic": rb".{4}ftyphei[cx]",
        "image/heif": rb".{4}ftypmif1",
        "video/mp4": rb".{4}ftyp",
        "video/quicktime": rb".{4}ftyp",
        "video/webm": rb"\x1a\x45\xdf\xa3",
        "video/x-matroska": rb"\x1a\x45\xdf\xa3",
        "video/x-msvideo": rb"RIFF.{4}AVI ",
        "audio/mpeg": rb"ID3|\xff[\xfb\xf3\xf2]",
        "audio/wav": rb"RIFF.{4}WAVE",
        "audio/ogg": rb"OggS",
        "audio/flac": rb"fLaC",
        "audio/mp4": rb".{4}ftyp",
    }.items()
}


def data_uri_problem(value: str) -> str | None:
    """Why a `data:` URI is refused (None: it is a picture, video or sound of
    the type it declares)."""
    if len(value) > MAX_DATA_URI:
        return "data: URI too large"
    match = _HEADER.match(value)
    if match is None:
        return "data: URI must be base64 of an image, video or audio type"
    mime = f"{match.group(1)}/{match.group(2)}".lower()
    magic = _MAGIC.get(mime)
    if magic is None:
        return f"data: URI of an unsupported type {mime}"
    try:
        head = base64.b64decode(value[match.end() :], validate=True)[:64]
    except (binascii.Error, ValueError):
        return "data: URI is not valid base64"
    if not magic.match(head):
        return f"data: URI is not a {mime} file"
    return None
