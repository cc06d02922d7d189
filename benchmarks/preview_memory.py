"""Memory a `--preview` costs, picture by picture: peak RSS of a process that draws one.

Run by hand (not in CI; a minute or two, and up to ~2 GB with --whole):

    python benchmarks/preview_memory.py            # the preview as it is
    python benchmarks/preview_memory.py --whole    # also Pillow decoding each whole (the old way)

Each picture is drawn (half-blocks, 80 x 30 terminal) in a process of its own,
which reports its peak resident size (ru_maxrss) before and after: the growth is
what the preview cost. The pictures are made in a scratch folder: big ones that
are small on disk (a 12,000 x 12,000 PNG of ~450 kB; a GIF's or a WebP's header
naming a 12,000 x 12,000 canvas around a 1 x 1 frame) and ones just under the
preview's memory budget in each format, to show the budget holds where decoding
happens. The costs per pixel in `pixeldojo_cli/cli/picture.py` come from here.

Measured (Pillow 13, Python 3.11, Linux x86-64; growth of peak RSS, MB):

    picture                                 file     preview              whole (before)
    PNG 12000x12000 RGB (the emulator's)   443 kB    0, refused            1090
    PNG 12000x12000 16-bit RGB             842 kB    0, refused            1090
    PNG 12000x12000 palette                165 kB    0, refused             678
    GIF 12000x12000 screen, 1x1 frame       35 B     0, refused             541
    WebP 12000x12000 canvas, 1x1 frame      92 B     0, refused            2189
    PNG 5000x5000 RGB / 16-bit RGB          82 kB   94, drawn               182
    PNG 9000x9000 palette                   98 kB   86, drawn               377
    PNG 7000x7000 16-bit grey              109 kB   96, drawn               271
    JPEG 9000x9000 baseline (draft 1/8)   1517 kB    4, drawn               609
    JPEG 4000x4000 progressive             123 kB   38, drawn               114
    JPEG 6000x6000 progressive             253 kB    0, refused             266
    WebP 2500x2500                          13 kB   87, drawn                87
    WebP 3600x3600                          24 kB    0, refused             189
    GIF 9000x9000, 2 frames                602 kB   86, drawn               377

Pictures whose cost is in their structure, not their header (issue 24, class 8,
after review; growth MB and CPU s of the preview; "before": the preview as it was,
peak RSS of a whole `run --preview`, with the CLI's own ~50 MB):

    picture                                 file     preview              before
    JPEG 2000x2000, a scan per colour       45 kB   13, drawn
    JPEG 9400x9400, a scan per colour     1011 kB    0, refused         567 peak
    JPEG 7100x7100 grey, 100 scans         104 kB   87, 0.6 s, drawn
    JPEG 4096x4096 grey, 3000 scans        134 kB    0, refused         7.0 s CPU
    PNG 5000x5000 RGB interlaced            71 kB   91, drawn (as not interlaced)
    PNG 1x1, a 300 MB private chunk        300 MB    0, refused         651 peak
    GIF 1x1, a 300 MB comment              300 MB    0, refused         800 peak
    WebP 8x8, 300 MB after its end         300 MB    0, refused         655 peak
    JPEG 8x8, 300 MB of APP2 segments      300 MB    0, refused         356 peak
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def repeated_png(width: int, height: int, depth: int, colour: int, channels: int) -> bytes:
    """A PNG of one gradient row repeated (the `Up` filter: zero rows), any depth and type."""
    row_bytes = width * channels * depth // 8
    first = b"\x00" + bytes(x * 251 % 256 for x in range(row_bytes))
    raw_up = b"\x02" + bytes(row_bytes)
    deflate = zlib.compressobj(9)
    parts = [deflate.compress(first)]
    block = raw_up * max(1, 2**20 // len(raw_up))
    rows_left = height - 1
    while rows_left > 0:
        take = min(rows_left, len(block) // len(raw_up))
        parts.append(deflate.compress(block[: take * len(raw_up)]))
        rows_left -= take
    parts.append(deflate.flush())
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    palette = _chunk(b"PLTE", bytes(range(256)) * 3) if colour == 3 else b""
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + palette
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )


def gif_canvas(width: int, height: int) -> bytes:
    """A GIF whose header names a width x height screen around one 1 x 1 frame."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def webp_canvas(width: int, height: int) -> bytes:
    """An animated WebP whose header names a width x height canvas around a 1 x 1 frame."""
    from PIL import Image

    one = io.BytesIO()
    Image.new("RGB", (1, 1), "red").save(one, "WEBP", lossless=True)
    vp8l = one.getvalue()[12:]  # the VP8L chunk of a still picture
    frame = struct.pack("<I", 0)[:3] * 2 + (0).to_bytes(3, "little") * 2 + b"\x64\0\0\x00"
    anmf = b"ANMF" + struct.pack("<I", len(frame) + len(vp8l)) + frame + vp8l
    anim = b"ANIM" + struct.pack("<I", 6) + b"\0\0\0\0\0\0"
    flags = b"\x02\0\0\0"  # animation
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    vp8x = b"VP8X" + struct.pack("<I", 10) + flags + canvas
    body = b"WEBP" + vp8x + anim + anmf
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _segment(marker: int, data: bytes) -> bytes:
    return b"\xff" + bytes([marker]) + struct.pack(">H", len(data) + 2) + data


def _jpeg_tables(ac_symbol: int) -> bytes:
    one_code = bytes([1]) + bytes(15)  # one Huffman code, the bit `0`
    return (
        _segment(0xDB, b"\x00" + bytes([1]) * 64)
        + _segment(0xC4, b"\x00" + one_code + b"\x00")
        + _segment(0xC4, b"\x10" + one_code + bytes([ac_symbol]))
    )


def jpeg_scan_per_colour(width: int, height: int) -> bytes:
    """A baseline colour JPEG with each colour in a scan of its own (grey)."""
    blocks = -(-width // 8) * -(-height // 8)
    frame = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    scans = b"".join(
        _segment(0xDA, bytes([1, colour, 0, 0, 63, 0])) + bytes(-(-blocks * 2 // 8))
        for colour in (1, 2, 3)
    )
    return b"\xff\xd8" + _jpeg_tables(0) + _segment(0xC0, frame) + scans + b"\xff\xd9"


def jpeg_progressive_scans(width: int, height: int, scans: int) -> bytes:
    """A grey progressive JPEG: a DC scan, then scans - 1 AC scans of end-of-band runs."""
    blocks = -(-width // 8) * -(-height // 8)
    frame = struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"
    dc = _segment(0xDA, bytes([1, 1, 0, 0, 0, 0])) + bytes(-(-blocks // 8))
    bits = ("0" + "1" * 14) * -(-blocks // 32767)
    bits += "1" * (-len(bits) % 8)
    data = int(bits, 2).to_bytes(len(bits) // 8, "big").replace(b"\xff", b"\xff\x00")
    ac = _segment(0xDA, bytes([1, 1, 0, 1, 63, 0])) + data
    head = b"\xff\xd8" + _jpeg_tables(0xE0) + _segment(0xC2, frame)
    return head + dc + ac * (scans - 1) + b"\xff\xd9"


def interlaced_png(width: int, height: int) -> bytes:
    """A black RGB PNG stored interlaced (Adam7: seven passes of zero rows)."""
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2)]
    passes.append((0, 1, 1, 2))
    deflate = zlib.compressobj(9)
    parts = []
    for x0, y0, dx, dy in passes:
        columns, rows = -(-(width - x0) // dx), -(-(height - y0) // dy)
        parts.append(deflate.compress(bytes((1 + columns * 3) * rows)))
    parts.append(deflate.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    body = _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    return PNG_SIGNATURE + body


def pillow_file(path: Path, size: tuple[int, int], format_: str, **options: object) -> None:
    """A picture made by Pillow, in a process of its own (the memory goes with it)."""
    code = (
        "import sys; from PIL import Image; w, h = int(sys.argv[2]), int(sys.argv[3]);"
        "im = Image.linear_gradient('L').resize((w, h)).convert(sys.argv[5]);"
        f"frames = [im.point(lambda v: 255 - v)] if sys.argv[4] == 'GIF' else [];"
        f"im.save(sys.argv[1], sys.argv[4], append_images=frames, **{options!r})"
    )
    mode = "P" if format_ == "GIF" else "RGB"
    subprocess.run(
        [sys.executable, "-c", code, str(path), *map(str, size), format_, mode], check=True
    )


def make_pictures(folder: Path) -> list[tuple[str, Path]]:
    from pixeldojo_cli.emulator.png import big_picture

    made: list[tuple[str, Path]] = []

    def put(label: str, name: str, data: bytes | None = None) -> Path:
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        made.append((label, path))
        return path

    put("PNG 12000x12000 RGB (emulator)", "big.png", big_picture(12_000, 12_000))
    put("PNG 12000x12000 16-bit RGB", "big16.png", repeated_png(12_000, 12_000, 16, 2, 3))
    put("PNG 12000x12000 palette", "bigp.png", repeated_png(12_000, 12_000, 8, 3, 1))
    put("GIF 12000x12000 screen, 1x1 frame", "big.gif", gif_canvas(12_000, 12_000))
    put("WebP 12000x12000 canvas, 1x1 frame", "big.webp", webp_canvas(12_000, 12_000))
    put("PNG 5000x5000 RGB", "5k.png", repeated_png(5_000, 5_000, 8, 2, 3))
    put("PNG 5000x5000 16-bit RGB", "5k16.png", repeated_png(5_000, 5_000, 16, 2, 3))
    put("PNG 9000x9000 palette", "9kp.png", repeated_png(9_000, 9_000, 8, 3, 1))
    put("PNG 7000x7000 16-bit grey", "7k16g.png", repeated_png(7_000, 7_000, 16, 0, 1))
    pillow_file(put("JPEG 9000x9000 baseline", "9k.jpg"), (9_000, 9_000), "JPEG", quality=90)
    pillow_file(
        put("JPEG 4000x4000 progressive", "4kp.jpg"), (4_000, 4_000), "JPEG", progressive=True
    )
    pillow_file(
        put("JPEG 6000x6000 progressive", "6kp.jpg"), (6_000, 6_000), "JPEG", progressive=True
    )
    put("JPEG 2000x2000 a scan per colour", "2kms.jpg", jpeg_scan_per_colour(2_000, 2_000))
    put("JPEG 9400x9400 a scan per colour", "9kms.jpg", jpeg_scan_per_colour(9_400, 9_400))
    put("JPEG 7100x7100 grey, 100 scans", "7k100.jpg", jpeg_progressive_scans(7_100, 7_100, 100))
    put("JPEG 4096x4096 grey, 3000 scans", "4k3k.jpg", jpeg_progressive_scans(4_096, 4_096, 3_000))
    put("PNG 5000x5000 RGB interlaced", "5ki.png", interlaced_png(5_000, 5_000))
    pillow_file(put("WebP 2500x2500", "2500.webp"), (2_500, 2_500), "WEBP", quality=80)
    pillow_file(put("WebP 3600x3600", "3600.webp"), (3_600, 3_600), "WEBP", quality=80)
    pillow_file(put("GIF 9000x9000, 2 frames", "9k.gif"), (9_000, 9_000), "GIF", save_all=True)
    return made


MEASURE = """
import io, os, resource, sys
from pathlib import Path
from pixeldojo_cli.cli import preview
from pixeldojo_cli.cli.render import Renderer
screen = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
Renderer.stderr = property(lambda self: screen)
Renderer.stdout_is_terminal = lambda self: True
Renderer.stderr_is_terminal = lambda self: True
import PIL.Image, PIL.PngImagePlugin, PIL.JpegImagePlugin, PIL.WebPImagePlugin, PIL.GifImagePlugin
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cpu = sum(os.times()[:2])
if sys.argv[2] == "whole":
    import warnings; warnings.simplefilter("ignore")
    try:
        PIL.Image.open(sys.argv[1]).convert("RGB")
        outcome = "decoded whole"
    except Exception as exc:
        outcome = type(exc).__name__
else:
    preview.show_preview(Path(sys.argv[1]), Renderer())
    screen.flush()
    drawn = screen.buffer.getvalue().decode()
    outcome = "drawn" if "\\u2580" in drawn else drawn.strip().split(": ", 1)[-1][:70]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
cpu = sum(os.times()[:2]) - cpu
print(f"{before / 1024:.0f}\\t{after / 1024:.0f}\\t{cpu:.1f}\\t{outcome}")
"""


def measure(path: Path, how: str) -> str:
    env = {
        **os.environ,
        "FORCE_COLOR": "1",
        "TERM": "xterm-256color",
        "COLUMNS": "80",
        "LINES": "30",
        "PIXELDOJO_PREVIEW_PROTOCOL": "blocks",
    }
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(path), how],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if done.returncode:
        return f"failed (exit {done.returncode}): {done.stderr.strip()[-120:]}"
    before, after, cpu, outcome = done.stdout.strip().split("\t")
    return f"{int(after) - int(before):>5} MB  (peak {after:>4} MB, {cpu} s CPU)  {outcome}"


def main() -> None:
    whole = "--whole" in sys.argv[1:]
    with tempfile.TemporaryDirectory(prefix="pixeldojo-preview-") as scratch:
        pictures = make_pictures(Path(scratch))
        print(f"{'picture':36} {'kB':>6}  preview: growth, peak, outcome")
        for label, path in pictures:
            size = path.stat().st_size // 1024
            print(f"{label:36} {size:>6}  {measure(path, 'preview')}", flush=True)
            if whole:
                print(f"{'':36} {'':>6}  whole:   {measure(path, 'whole')}", flush=True)


if __name__ == "__main__":
    main()
