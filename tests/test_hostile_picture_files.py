"""Hostile picture files, read by their structure (issue 24, class 8, after review): a
JPEG whose scans make libjpeg keep every coefficient is charged for them, one with
more scans than a preview decodes is refused before decoding, and what a file
carries besides its pixels (private chunks, comments, APP segments, trailing
data), or a file larger than any picture the API makes, is refused before Pillow
reads it. The figures are in benchmarks/preview_memory.py."""

from __future__ import annotations

import io
import os
import struct
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from test_hostile_preview import drawn_on_a_terminal, run_on_terminal, skip_lines, terminal_env

from pixeldojo_cli.emulator import Emulator

from conftest import FAST, Invoke

Image = pytest.importorskip("PIL.Image")

# The CLI's own peak with a preview is about 50 MB; a picture decoded within the budget
# adds at most about 100 MB. A picture refused before decoding adds next to nothing.
DECODED_PEAK_MB = 200
REFUSED_PEAK_MB = 120


# --- pictures, made byte by byte ----------------------------------------------------------


def _segment(marker: int, data: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data


def _tables(ac_symbol: int) -> bytes:
    """A quantisation table, and one-symbol Huffman tables: DC `0` (no difference) and AC
    `ac_symbol`, each coded as the one bit `0`."""
    one_code = bytes([1]) + bytes(15)
    return (
        _segment(0xDB, b"\x00" + bytes([1]) * 64)
        + _segment(0xC4, b"\x00" + one_code + b"\x00")
        + _segment(0xC4, b"\x10" + one_code + bytes([ac_symbol]))
    )


def jpeg_scan_per_colour(width: int, height: int) -> bytes:
    """A baseline (sequential) colour JPEG with each colour in a scan of its own: grey,
    a bit a coefficient block, a few hundred kB for millions of pixels."""
    blocks = -(-width // 8) * -(-height // 8)
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    scans = b"".join(
        _segment(0xDA, bytes([1, colour, 0x00, 0, 63, 0])) + bytes(-(-blocks * 2 // 8))
        for colour in (1, 2, 3)
    )
    return b"\xff\xd8" + _tables(0x00) + _segment(0xC0, frame) + scans + b"\xff\xd9"


def jpeg_progressive_scans(width: int, height: int, scans: int) -> bytes:
    """A grey progressive JPEG: its DC scan, then `scans` - 1 AC scans of end-of-band runs."""
    blocks = -(-width // 8) * -(-height // 8)
    frame = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    dc = _segment(0xDA, bytes([1, 1, 0x00, 0, 0, 0])) + bytes(-(-blocks // 8))
    bits = ("0" + "1" * 14) * -(-blocks // 32767)  # EOB14 and 14 one bits: 32767 blocks
    bits += "1" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")
    ac = _segment(0xDA, bytes([1, 1, 0x00, 1, 63, 0])) + data
    return b"\xff\xd8" + _tables(0xE0) + _segment(0xC2, frame) + dc + ac * (scans - 1) + b"\xff\xd9"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_HEADER = _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
PNG_END = _png_chunk(b"IDAT", zlib.compress(b"\0\0\0\0")) + _png_chunk(b"IEND", b"")


def png_with_private_chunks(count: int, size: int) -> bytes:
    """A 1 x 1 PNG with `count` private chunks of `size` bytes before its pixels."""
    private = _png_chunk(b"prIv", bytes(size))
    return PNG_SIGNATURE + PNG_HEADER + private * count + PNG_END


def sparse_png_with_private_chunk(path: Path, size: int) -> None:
    """A 1 x 1 PNG with one private chunk of `size` zero bytes, written sparse: the disk
    holds a few kB whatever `size` is. (Its CRC is wrong: Pillow reads it all first.)"""
    with path.open("wb") as file:
        file.write(PNG_SIGNATURE + PNG_HEADER + struct.pack(">I", size) + b"prIv")
        file.seek(size + 4, os.SEEK_CUR)
        file.write(PNG_END)


def gif_with_comment(size: int) -> bytes:
    """A 1 x 1 GIF with a comment of `size` bytes (in sub-blocks of 255)."""
    screen = b"GIF89a" + struct.pack("<HHBBB", 1, 1, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    comment = b"\x21\xfe" + (b"\xff" + b"c" * 255) * (size // 255) + b"\x00"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + comment + frame + b"\x3b"


def _encoded(format_: str, size: tuple[int, int] = (8, 8), **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format_, **options)
    return buffer.getvalue()


def webp_with_trailing_data(size: int) -> bytes:
    return _encoded("WEBP", lossless=True) + bytes(size)


def jpeg_with_app_segments(size: int) -> bytes:
    """An 8 x 8 JPEG with `size` bytes of APP2 segments (an ICC profile's, say)."""
    jpeg = _encoded("JPEG")
    app = _segment(0xE2, b"ICC_PROFILE\0\x01\xff" + bytes(65_000))
    return jpeg[:2] + app * -(-size // 65_000) + jpeg[2:]


def served(make_emulator: Callable[..., Emulator], name: str, body: bytes) -> Emulator:
    """An emulator whose every output is `body`, named `name` in its URL."""
    emulator = make_emulator(output_name=name)
    emulator.add_fault("status", target="files", status=200, body=body, count=-1)
    return emulator


# --- JPEG: what libjpeg keeps, and how many passes it makes --------------------------------


def test_a_jpeg_with_a_scan_per_colour_is_charged_every_coefficient(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = served(make_emulator, "x.jpg", jpeg_scan_per_colour(8000, 8000))  # ~750 kB
    args = ["run", "flux-dev", "a fox", "--preview", *FAST]
    code, screen, peak = run_on_terminal(args, terminal_env(emulator), tmp_path)
    assert code == 0, screen
    assert peak < REFUSED_PEAK_MB, f"{peak:.0f} MB"  # decoded at 1/8, it held 400 MB
    [line] = skip_lines(screen)
    assert "8000 x 8000 pixels is more than a preview decodes" in line
    assert "of this multi-scan JPEG" in line


def test_a_small_jpeg_with_a_scan_per_colour_is_still_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixeldojo_cli.cli.picture_structure import walk

    path = tmp_path / "scans.jpg"
    path.write_bytes(jpeg_scan_per_colour(2000, 2000))
    assert walk(path.open("rb"), "JPEG", path.stat().st_size).buffered
    assert "\u2580" in drawn_on_a_terminal(path, monkeypatch)


@pytest.mark.parametrize(("scans", "refused"), [(101, True), (100, False)])
def test_a_jpeg_with_more_scans_than_a_preview_decodes_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scans: int, refused: bool
) -> None:
    # Each scan is a pass over the whole picture: 3,000 of them took 8 s of CPU.
    path = tmp_path / "scans.jpg"
    path.write_bytes(jpeg_progressive_scans(256, 256, scans))
    shown = drawn_on_a_terminal(path, monkeypatch)
    if refused:
        assert shown == (
            "No preview of scans.jpg: more than 100 scans is more than a preview decodes.\n"
        )
    else:
        assert "\u2580" in shown and "No preview" not in shown


# --- what a file carries besides its pixels -------------------------------------------------

NINE_MB = 9 * 2**20  # past the 8 MiB a preview reads besides the pixels
BESIDES = {
    "one-private-chunk.png": lambda: png_with_private_chunks(1, NINE_MB),
    "many-private-chunks.png": lambda: png_with_private_chunks(9, 2**20),
    "comment.gif": lambda: gif_with_comment(NINE_MB),
    "trailing-data.webp": lambda: webp_with_trailing_data(NINE_MB),
    "icc-segments.jpg": lambda: jpeg_with_app_segments(NINE_MB),
}


@pytest.mark.parametrize("name", sorted(BESIDES))
def test_data_besides_the_pixels_past_what_a_preview_reads_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(BESIDES[name]())
    shown = drawn_on_a_terminal(path, monkeypatch)
    assert shown.startswith(f"No preview of {name}: it carries 9 MB besides its pixels"), shown
    assert shown.count("\n") == 1


@pytest.mark.parametrize(
    ("size", "reason"),
    [
        (300 * 2**20, "the file is 315 MB, more than a preview reads"),
        (60 * 2**20, "it carries 63 MB besides its pixels"),
    ],
    ids=["larger-than-a-picture", "private-chunk"],
)
def test_a_big_file_is_refused_before_pillow_reads_it_in_bounded_memory(
    emulator: Emulator, cli: Invoke, tmp_path: Path, size: int, reason: str
) -> None:
    saved = Path(cli("run", "flux-dev", "a fox", *FAST).stdout.strip())
    sparse_png_with_private_chunk(saved, size)  # planted where the output was saved
    args = ["jobs", "show", saved.name.rsplit("-", 1)[0], "--preview"]
    code, screen, peak = run_on_terminal(args, terminal_env(emulator), tmp_path)
    assert code == 0, screen
    assert peak < REFUSED_PEAK_MB, f"{peak:.0f} MB"  # Pillow held the file twice: 650 MB
    [line] = skip_lines(screen)
    assert reason in line


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_something_not_a_file_handed_to_the_preview_is_one_line_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    # `jobs show` looks first, but a file can change between the look and the opening.
    path = tmp_path / "planted.png"
    if kind == "fifo":  # opening it to read would wait for a writer, for ever
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    shown: list[str] = []
    worker = threading.Thread(
        target=lambda: shown.append(drawn_on_a_terminal(path, monkeypatch)), daemon=True
    )
    worker.start()
    worker.join(30)
    if worker.is_alive():  # let the stuck open go: a writer comes, and leaves
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert shown == ["No preview of planted.png: not a regular file.\n"]
