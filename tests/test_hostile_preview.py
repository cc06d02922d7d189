"""Hostile pictures and terminals (issue 24, class 8): a preview decodes a picture at
about the size it is drawn, refuses one too large from its header, in one line and
never Pillow's, and no terminal size, however odd, fails a command after the job
was paid. The figures behind the memory budget are in benchmarks/preview_memory.py."""

from __future__ import annotations

import io
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from pixeldojo_cli.cli import preview
from pixeldojo_cli.cli.render import Renderer
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.emulator.png import render as emulator_png

from conftest import FAST, PYTHON, Invoke, as_served, run_in_pty, run_subprocess_env

Image = pytest.importorskip("PIL.Image")

PEAK_MB = 400  # generous: the preview's budget is 100 MB; the whole picture decoded is 1.1 GB
# A broken build must fail here, not take the machine's memory: the CLI's address space
# is capped. It is forked from a small launcher, which reports the CLI's own peak: a
# child started straight from the test process (vfork, then exec) would report the test
# process's peak when that is higher (a worker late in the suite).
CAPPED = """
import os, resource, sys
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))
    os.execv(sys.executable, [sys.executable, "-m", "pixeldojo_cli", *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
with open(os.environ["PIXELDOJO_TEST_PEAK_FILE"], "w") as report:
    report.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) & 255)
"""
ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
LIBRARY_TEXT = ("Warning", "warn(", "PIL", "site-packages", "Traceback", "DecompressionBomb")


def run_on_terminal(
    args: list[str], env: dict[str, str], cwd: Path, winsize: tuple[int, ...] = (50, 80, 0, 0)
) -> tuple[int, str, float]:
    """`pixeldojo ARGS` with stdout and stderr on a pseudo-terminal of `winsize` (rows,
    columns, pixel width, pixel height): (exit code, what the terminal got, peak MB)."""
    import fcntl
    import pty
    import termios

    peak_file = Path(tempfile.mkdtemp(prefix="pixeldojo-peak-")) / "peak"
    env = {**env, "PIXELDOJO_TEST_PEAK_FILE": str(peak_file)}
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *winsize))
    proc = subprocess.Popen(
        [PYTHON, "-c", CAPPED, *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=cwd,
        process_group=0,  # the launcher and the CLI, killed together when they hang
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    os.close(master)
    try:
        peak = int(peak_file.read_text())
    except (OSError, ValueError):  # the launcher was killed: its own peak bounds the CLI's
        peak = usage.ru_maxrss
    shutil.rmtree(peak_file.parent, ignore_errors=True)
    return proc.returncode, b"".join(chunks).decode(errors="replace"), peak / 1024


def terminal_env(emulator: Emulator, **extra: str) -> dict[str, str]:
    env = run_subprocess_env(emulator, TERM="xterm-256color", COLUMNS="80", LINES="30")
    env.pop("NO_COLOR", None)
    env["PIXELDOJO_PREVIEW_PROTOCOL"] = "blocks"
    env.update(extra)
    return env


def skip_lines(screen: str) -> list[str]:
    return [line for line in ESCAPES.sub("", screen).splitlines() if "No preview" in line]


def gif_canvas(width: int, height: int) -> bytes:
    """A GIF whose header names a width x height screen around one 1 x 1 frame (~40 bytes)."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def webp_canvas(width: int, height: int) -> bytes:
    """An animated WebP whose header names a width x height canvas around a 1 x 1 frame:
    libwebp allocates the whole canvas as soon as Pillow opens it."""
    one = io.BytesIO()
    Image.new("RGB", (1, 1), "red").save(one, "WEBP", lossless=True)
    vp8l = one.getvalue()[12:]
    frame = bytes(12) + b"\x64\0\0\0"  # at 0,0; 1 x 1; 100 ms
    anmf = b"ANMF" + struct.pack("<I", len(frame) + len(vp8l)) + frame + vp8l
    canvas = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x02\0\0\0" + canvas
    body = b"WEBP" + vp8x + b"ANIM" + struct.pack("<I", 6) + bytes(6) + anmf
    return b"RIFF" + struct.pack("<I", len(body)) + body


# --- big pictures, from the API -------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "jobs show"])
def test_a_big_png_is_refused_from_its_header_in_bounded_memory_with_one_line(
    emulator: Emulator, cli: Invoke, tmp_path: Path, command: str
) -> None:
    emulator.add_fault("picture", target="files", count=-1)  # 12,000 x 12,000, ~450 kB
    if command == "run":
        args = ["run", "flux-dev", "a fox", "--preview", *FAST]
    else:
        saved = Path(cli("run", "flux-dev", "a fox", *FAST).stdout.strip())
        args = ["jobs", "show", saved.name.rsplit("-", 1)[0], "--preview"]
    code, screen, peak = run_on_terminal(args, terminal_env(emulator), tmp_path)
    assert code == 0, screen
    [saved] = tmp_path.glob("job_*-1.png")
    assert saved.stat().st_size < 2**20  # the file is saved whole: small on the wire
    assert peak < PEAK_MB, f"{peak:.0f} MB"
    assert skip_lines(screen) == [
        f"No preview of {saved.name}: 12000 x 12000 pixels is more than a preview decodes"
        " (about 26 million pixels of this PNG)."
    ]
    assert not any(text in screen for text in LIBRARY_TEXT), screen


@pytest.mark.parametrize(
    ("name", "picture"),
    [("canvas.gif", gif_canvas(12_000, 12_000)), ("canvas.webp", webp_canvas(12_000, 12_000))],
    ids=["gif", "webp"],
)
def test_a_header_naming_a_huge_canvas_is_refused_before_the_decoder_allocates_it(
    make_emulator: Callable[..., Emulator], tmp_path: Path, name: str, picture: bytes
) -> None:
    emulator = make_emulator(output_name=name)
    emulator.add_fault("status", target="files", status=200, body=picture, count=-1)
    args = ["run", "flux-dev", "a fox", "--preview", *FAST]
    code, screen, peak = run_on_terminal(args, terminal_env(emulator), tmp_path)
    assert code == 0, screen
    assert peak < PEAK_MB, f"{peak:.0f} MB"
    [line] = skip_lines(screen)
    assert "12000 x 12000 pixels is more than a preview decodes" in line
    assert not any(text in screen for text in LIBRARY_TEXT), screen


@pytest.mark.parametrize(
    ("served", "reason"),
    [
        ("corrupt", "not a picture Pillow can read"),
        ("jpeg", "a JPEG picture named .png"),
    ],
)
def test_a_picture_that_cannot_be_read_as_named_is_one_skip_line_and_exit_0(
    emulator: Emulator, tmp_path: Path, served: str, reason: str
) -> None:
    png = emulator_png("a fox", 1, 1, 64, 64)
    if served == "corrupt":
        body = png[:100] + bytes([png[100] ^ 0xFF]) + png[101:]
    else:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), "red").save(buffer, "JPEG")
        body = buffer.getvalue()
    emulator.add_fault("status", target="files", status=200, body=body, count=-1)
    args = ["run", "flux-dev", "a fox", "--preview", *FAST]
    code, screen, _ = run_on_terminal(args, terminal_env(emulator), tmp_path)
    assert code == 0, screen
    [saved] = tmp_path.glob("job_*-1.png")
    assert as_served(saved.read_bytes()) == body
    assert skip_lines(screen) == [f"No preview of {saved.name}: {reason}."]
    assert "\u2580" not in screen


# --- odd terminals ----------------------------------------------------------------------

ODD_SIZES = ["99999999999999999999", "0", "-5", "abc", "1.5", "", " ", "\u00b2", "1e3", "70000"]


@pytest.mark.parametrize("value", ODD_SIZES)
def test_any_columns_and_lines_with_preview_end_in_exit_0_with_the_picture(
    emulator: Emulator, tmp_path: Path, value: str
) -> None:
    env = terminal_env(emulator, COLUMNS=value, LINES=value)
    args = ["run", "flux-dev", "a fox", "--preview", *FAST]
    code, screen, _ = run_on_terminal(args, env, tmp_path)
    assert code == 0, screen
    assert "\u2580" in screen and "bug" not in screen


@pytest.mark.parametrize("winsize", [(1, 1, 65535, 65535), (50, 80, 65535, 65535), (0, 0, 9, 9)])
def test_a_terminal_reporting_absurd_cell_pixels_still_gets_its_sixel_preview(
    emulator: Emulator, tmp_path: Path, winsize: tuple[int, ...]
) -> None:
    env = terminal_env(emulator, PIXELDOJO_PREVIEW_PROTOCOL="sixel")
    args = ["run", "flux-dev", "a fox", "--preview", *FAST]
    code, screen, peak = run_on_terminal(args, env, tmp_path, winsize)
    assert code == 0, screen
    assert "\x1bPq" in screen and peak < PEAK_MB


@pytest.mark.parametrize("value", ["\u00b2", "99999999999999999999", "0", "1"])
@pytest.mark.parametrize("args", [["models"], ["jobs", "list"], ["run", "--help"]])
def test_tables_and_help_read_any_columns_without_failing(
    emulator: Emulator, cli: Invoke, tmp_path: Path, value: str, args: list[str]
) -> None:
    cli("run", "flux-dev", "a fox", *FAST)  # a job for `jobs list`
    env = terminal_env(emulator, COLUMNS=value, LINES=value)
    code, screen = run_in_pty(args, env, tmp_path, stdout_too=True)
    assert code == 0, screen
    assert "bug" not in screen


# --- pictures on disk: every kind of unreadable file, in one line --------------------


def drawn_on_a_terminal(path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """What `show_preview` writes on a (pretend) 80 x 30 UTF-8 terminal, escapes removed."""
    stderr = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    monkeypatch.setattr(Renderer, "stderr", property(lambda self: stderr))
    monkeypatch.setattr(Renderer, "stdout_is_terminal", lambda self: True)
    monkeypatch.setattr(Renderer, "stderr_is_terminal", lambda self: True)
    for name, value in {"FORCE_COLOR": "1", "COLUMNS": "80", "LINES": "30"}.items():
        monkeypatch.setenv(name, value)
    preview.show_preview(path, Renderer())
    stderr.flush()
    buffer = stderr.buffer
    assert isinstance(buffer, io.BytesIO)
    return ESCAPES.sub("", buffer.getvalue().decode())


def _encoded(format_: str, mode: str = "RGB", **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (16, 16)).save(buffer, format_, **options)
    return buffer.getvalue()


PNG = emulator_png("a fox", 1, 1, 64, 64)
JPEG = _encoded("JPEG")
_SOF = JPEG.index(b"\xff\xc0") + 5  # where a baseline JPEG says its height and width
UNREADABLE = {
    "empty.png": b"",
    "truncated.png": PNG[: len(PNG) // 2],
    "header-only.png": PNG[:33],
    "flipped-byte.png": PNG[:100] + bytes([PNG[100] ^ 0xFF]) + PNG[101:],
    "zero-width.png": PNG[:16] + b"\0\0\0\0" + PNG[20:],
    "html.png": b"<html><body>502 Bad Gateway</body></html>",
    "jpeg.png": JPEG,
    "gif.webp": _encoded("GIF", "P"),
    "tiff.png": _encoded("TIFF"),
    "bmp.jpg": _encoded("BMP"),
    "eps.png": b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n",
    "big-canvas.gif": gif_canvas(65535, 65535),
    "claims-60000x60000.jpg": JPEG[:_SOF] + struct.pack(">HH", 60000, 60000) + JPEG[_SOF + 4 :],
    "unknown-chunk.webp": b"RIFF\x16\0\0\0WEBPVP8Q" + bytes(14),
}


@pytest.mark.parametrize("name", sorted(UNREADABLE))
def test_an_unreadable_or_misnamed_picture_is_one_line_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(UNREADABLE[name])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shown = drawn_on_a_terminal(path, monkeypatch)
    assert shown.count("\n") == 1 and shown.startswith(f"No preview of {name}: "), shown
    assert str(tmp_path) not in shown
    assert caught == []


@pytest.mark.parametrize("name", ["palette-with-byte-transparency.png", "corrupt-exif.jpg"])
def test_a_picture_pillow_warns_about_is_drawn_without_the_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    path = tmp_path / name
    if name.startswith("palette"):
        picture = Image.new("P", (32, 32))
        picture.putpalette(list(range(256)) * 3)
        picture.save(path, "PNG", transparency=bytes(range(256)))
    else:
        Image.new("RGB", (32, 32)).save(path, "JPEG", exif=b"Exif\0\0MM\0\x2a\0\0\0\x08\xff\xff")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shown = drawn_on_a_terminal(path, monkeypatch)
    assert "\u2580" in shown and "No preview" not in shown
    assert caught == []
