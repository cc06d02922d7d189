"""`data:` URIs in URL inputs, as the emulator takes them: base64, of a declared
picture, video or sound type, whose bytes are of that type (bounded: a URI
longer than `MAX_DATA_URI` is refused before decoding). The emulator's own
check, sharing nothing with the client's."""

from __future__ import annotations

import base64
import binascii
import re

MAX_DATA_URI = 30 * 1024 * 1024
_HEADER = re.compile(r"data:([a-z]+)/([a-z0-9.+-]+);base64,", re.IGNORECASE)
_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
    "video/mp4": (b"ftyp",),
    "video/quicktime": (b"ftyp",),
    "video/webm": (b"\x1a\x45\xdf\xa3",),
    "audio/mpeg": (b"ID3", b"\xff\xfb", b"\xff\xf3", b"\xff\xf2"),
    "audio/wav": (b"RIFF",),
    "audio/ogg": (b"OggS",),
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
    at = head[4:] if mime.startswith("video/") and mime != "video/webm" else head
    if not any(at.startswith(m) for m in magic):
        return f"data: URI is not a {mime} file"
    return None
