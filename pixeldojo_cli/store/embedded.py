"""What a picture file says about its making, read within bounds: our document
(a PNG's `pixeldojo` iTXt chunk, a JPEG's or WebP's XMP packet), and any
other program's text metadata, kept as text only.

The file is any file: a truncated one, one from another program, one a
hostile server made. Only piece headers are read to walk it (`containers`);
a metadata piece is read only when small (`MAX_TEXT_BYTES`), and its CRC
checked (PNG); compressed text is inflated to a bound; our document is
decoded with a depth limit. What cannot be believed is ignored and said
(`problems`), never raised.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pixeldojo_cli.core.untrusted import loads, open_regular
from pixeldojo_cli.store.containers import (
    ContainerError,
    Piece,
    jpeg_pieces,
    picture_kind,
    png_pieces,
    read_data,
    read_exact,
    webp_pieces,
)
from pixeldojo_cli.store.provenance import (
    Provenance,
    from_document,
    from_sidecar,
    names_job,
    sidecar_job,
    stem_of,
)
from pixeldojo_cli.store.xmp import JPEG_XMP_HEADER, document_in

# A metadata piece bigger than this is not read (said in `problems`).
MAX_TEXT_BYTES = 2**20
# Nor is more than this read in all, whatever the number of pieces.
MAX_TOTAL_BYTES = 8 * 2**20
# Nor more than this many metadata pieces.
MAX_TEXTS = 1000
# Other programs' metadata: at most this many pieces, each cut to this many characters.
MAX_FOREIGN = 8
FOREIGN_CHARS = 2000
# Our document nests two levels; inputs a few more.
DOCUMENT_DEPTH = 16
_KEYWORD = "pixeldojo"


@dataclass(frozen=True)
class Embedded:
    """What one file holds: its type (`png`, `jpeg`, `webp`, or None for any
    other file), our document as a `Provenance`, other programs' text
    metadata as (label, text) pairs (cut, not yet made safe to show), and
    what was ignored and why."""

    kind: str | None
    provenance: Provenance | None = None
    foreign: tuple[tuple[str, str], ...] = ()
    problems: tuple[str, ...] = ()


class _Problems(list[str]):
    """What was ignored, and why: the first few (a hostile file may have a
    hundred thousand bad pieces)."""

    LIMIT = 8

    def append(self, problem: str) -> None:
        if len(self) < self.LIMIT and problem not in self:
            super().append(problem)


@dataclass(frozen=True)
class _Text:
    """One metadata piece: its label, its text, whether it is ours to decode."""

    label: str
    text: str
    ours: bool
    where: str


def read_embedded(path: Path) -> Embedded:
    """The metadata in the file at `path`. OSError when it cannot be opened as
    a regular file (a folder, a FIFO or a device is refused before any read)."""
    fd = open_regular(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        kind = picture_kind(stream.read(12))
        if kind is None:
            return Embedded(None)
        problems: list[str] = _Problems()
        texts = list(_bounded(_texts(kind, stream, size, problems), problems))
    return _read_texts(kind, texts, problems)


def read_provenance(path: Path) -> Provenance | None:
    """How the output at `path` was made: its embedded metadata when it is
    believed (`provenance_of`), else the sidecar beside it that names it;
    None when neither says. OSError when the file cannot be read (a folder, a
    FIFO, a device, missing). For `rerun`: `model` and `inputs` are what to
    submit again."""
    return provenance_of(path)[1]


def provenance_of(path: Path) -> tuple[Embedded, Provenance | None]:
    """What the file at `path` holds, and how it was made. Its embedded
    document is believed only when its job is the one the file's name says
    (`<jobId>-<n>.<ext>`) and, when a sidecar beside it lists the file, the
    sidecar's job too: a document a server planted in a file saved as served
    names another job, or none. One not believed is shown as another
    program's text (and said in `problems`); the sidecar then answers."""
    embedded = read_embedded(path)
    sidecar = from_sidecar(path)
    found = embedded.provenance
    if found is None:
        return embedded, sidecar
    why = _not_believed(path, found, sidecar)
    if why is None:
        return embedded, found
    summary = json.dumps(
        {"jobId": found.job_id, "model": found.model, "inputs": found.inputs},
        ensure_ascii=False,
        default=str,
    )
    doubted = Embedded(
        embedded.kind,
        None,
        (("pixeldojo (not verified)", _cut(summary)), *embedded.foreign)[:MAX_FOREIGN],
        (*embedded.problems, f"the pixeldojo metadata in the file was not believed: {why}"),
    )
    return doubted, sidecar


def _not_believed(path: Path, found: Provenance, sidecar: Provenance | None) -> str | None:
    """Why the document `found` in the file at `path` is not believed; None if it is."""
    stem = stem_of(path.name)
    if stem is None:
        return "the file's name is not <jobId>-<n>.<ext>, so its job cannot be checked"
    if not names_job(stem, found.job_id):
        return "it names another job than the file's name"
    listed_by = sidecar.job_id if sidecar is not None else sidecar_job(path)
    if listed_by is not None and listed_by != found.job_id:
        return "it names another job than the sidecar beside it, which lists the file"
    return None


def _read_texts(kind: str, texts: list[_Text], problems: list[str]) -> Embedded:
    found: Provenance | None = None
    others: list[_Text] = []
    for text in texts:
        made = _ours(text, problems) if text.ours and found is None else None
        if made is not None:
            found = made
        else:
            others.append(text)
    if found is not None:  # the `parameters` line written beside our document is ours too
        others = [text for text in others if text.label != "parameters"]
    foreign = tuple((text.label, _cut(text.text)) for text in others[:MAX_FOREIGN])
    return Embedded(kind, found, foreign, tuple(problems))


def _cut(text: str) -> str:
    return text[:FOREIGN_CHARS] + ("..." if len(text) > FOREIGN_CHARS else "")


def _ours(text: _Text, problems: list[str]) -> Provenance | None:
    """Our document in `text`, or None (and why, in `problems`)."""
    raw = document_in(text.text) if text.where.endswith("XMP") else text.text
    if raw is None:
        return None
    try:
        value = loads(raw, max_depth=DOCUMENT_DEPTH, parse_constant=_unknown)
    except ValueError as exc:
        problems.append(f"{text.where} is not a readable pixeldojo document ({exc}); ignored")
        return None
    made = from_document(value, where=text.where)
    if made is None:
        problems.append(f"{text.where} is not a pixeldojo document of this version; ignored")
    return made


def _unknown(_constant: str) -> None:
    """NaN, Infinity and -Infinity in a document: not numbers JSON knows; unknown."""
    return None


def _bounded(texts: Iterator[_Text], problems: list[str]) -> Iterator[_Text]:
    """The texts up to `MAX_TOTAL_BYTES` (and `MAX_TEXTS`) in all."""
    total = 0
    for count, text in enumerate(texts):
        total += len(text.text)
        if total > MAX_TOTAL_BYTES or count >= MAX_TEXTS:
            problems.append("more metadata than is read; the rest was skipped")
            return
        yield text


def _texts(kind: str, stream: BinaryIO, size: int, problems: list[str]) -> Iterator[_Text]:
    walk = {"png": _png_texts, "jpeg": _jpeg_texts, "webp": _webp_texts}[kind]
    try:
        yield from walk(stream, size, problems)
    except ContainerError as exc:
        problems.append(f"the file is damaged or cut short ({exc})")


def _small(stream: BinaryIO, piece: Piece, label: str, problems: list[str]) -> bytes | None:
    data = read_data(stream, piece, MAX_TEXT_BYTES)
    if data is None:
        problems.append(f"a {label} of {piece.data_len:,} bytes is too big to read; skipped")
    return data


# --- PNG ----------------------------------------------------------------------------


def _png_texts(stream: BinaryIO, size: int, problems: list[str]) -> Iterator[_Text]:
    for piece in png_pieces(stream, size):
        if piece.kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        name = piece.kind.decode()
        data = _small(stream, piece, f"{name} chunk", problems)
        if data is None:
            continue
        (crc,) = struct.unpack(">I", read_exact(stream, piece.data_start + piece.data_len, 4))
        if zlib.crc32(piece.kind + data) & 0xFFFFFFFF != crc:
            problems.append(f"a {name} chunk with a wrong CRC was ignored")
            continue
        parsed = _png_text(piece.kind, data, problems)
        if parsed is not None:
            keyword, text = parsed
            where = f'PNG {name} chunk "{keyword[:40]}"'
            yield _Text(keyword, text, keyword == _KEYWORD and name == "iTXt", where)


def _png_text(kind: bytes, data: bytes, problems: list[str]) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt, zTXt or iTXt chunk's data; None when damaged."""
    keyword, sep, rest = data.partition(b"\x00")
    if not sep:
        problems.append(f"a {kind.decode()} chunk without a keyword was ignored")
        return None
    name = keyword.decode("latin-1")
    if kind == b"tEXt":
        return name, rest.decode("latin-1")
    if kind == b"zTXt":
        text = _inflate(rest[1:], problems)
        return None if text is None else (name, text.decode("latin-1"))
    if len(rest) < 2:
        problems.append("an iTXt chunk cut short was ignored")
        return None
    compressed, body = rest[0], rest[2:]
    _language, _, body = body.partition(b"\x00")
    _translated, _, body = body.partition(b"\x00")
    if compressed:
        inflated = _inflate(body, problems)
        if inflated is None:
            return None
        body = inflated
    return name, body.decode("utf-8", "replace")


def _inflate(data: bytes, problems: list[str]) -> bytes | None:
    """Compressed text, inflated to at most `MAX_TEXT_BYTES` (a bomb stops there)."""
    try:
        inflater = zlib.decompressobj()
        text = inflater.decompress(data, MAX_TEXT_BYTES)
    except zlib.error:
        problems.append("a compressed text chunk that does not inflate was ignored")
        return None
    if inflater.unconsumed_tail:
        problems.append("a compressed text chunk inflates past the limit; it was cut")
    return text


# --- JPEG and WebP: XMP -------------------------------------------------------------


def _jpeg_texts(stream: BinaryIO, size: int, problems: list[str]) -> Iterator[_Text]:
    for piece in jpeg_pieces(stream, size):
        if piece.kind == b"\xfe":  # COM: a comment
            data = _small(stream, piece, "comment", problems)
            if data is not None:
                yield _Text("comment", data.decode("utf-8", "replace"), False, "JPEG comment")
        elif piece.kind == b"\xe1":
            data = _small(stream, piece, "APP1 segment", problems)
            if data is not None and data.startswith(JPEG_XMP_HEADER):
                xmp = data[len(JPEG_XMP_HEADER) :].decode("utf-8", "replace")
                yield _Text("XMP", xmp, True, "JPEG XMP")


def _webp_texts(stream: BinaryIO, size: int, problems: list[str]) -> Iterator[_Text]:
    for piece in webp_pieces(stream, size):
        if piece.kind == b"XMP ":
            data = _small(stream, piece, "XMP chunk", problems)
            if data is not None:
                yield _Text("XMP", data.decode("utf-8", "replace"), True, "WebP XMP")
