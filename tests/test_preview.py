"""See the picture: half-blocks, the kitty/iTerm2/sixel protocols, and when to draw nothing."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pixeldojo_cli.cli import preview
from pixeldojo_cli.cli.render import Renderer
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.emulator.png import render as emulator_png

from conftest import FAST, PYTHON, Invoke, run_subprocess_env

Image = pytest.importorskip("PIL.Image")

CELL = re.compile(r"\x1b\[38;2;(\d+);(\d+);(\d+)m\x1b\[48;2;(\d+);(\d+);(\d+)m\u2580")


@pytest.fixture
def picture_file(tmp_path: Path) -> Path:
    """A 48x27 PNG exactly as the emulator makes its outputs."""
    path = tmp_path / "job_test-1.png"
    path.write_bytes(emulator_png("a lighthouse at dusk", 7, 1, 48, 27))
    return path


def test_half_blocks_draw_two_pixels_a_cell_in_24_bit_colour(picture_file: Path) -> None:
    picture = Image.open(picture_file).convert("RGB")
    drawing = preview.half_blocks(picture, 16)
    lines = drawing.splitlines()
    expected = picture.resize((16, 2 * len(lines)))
    assert len(lines) == 5  # 16 columns of a 48x27 picture: 9 pixel rows, rounded up to 10
    for y, line in enumerate(lines):
        cells = CELL.findall(line)
        assert len(cells) == 16 and line.endswith("\x1b[0m")
        for x, cell in enumerate(cells):
            colours = tuple(int(v) for v in cell)
            top, bottom = expected.getpixel((x, 2 * y)), expected.getpixel((x, 2 * y + 1))
            assert colours == (*top, *bottom)


def test_an_ascii_only_stream_gets_coloured_spaces(picture_file: Path) -> None:
    picture = Image.open(picture_file).convert("RGB")
    drawing = preview.half_blocks(picture, 8, ascii_only=True)
    assert drawing.isascii() and drawing.count(" ") == 8 * len(drawing.splitlines())


def test_the_protocol_comes_from_the_terminal_it_runs_in() -> None:
    detect = preview.detect_protocol
    assert detect({"TERM": "xterm-kitty"}) == "kitty"
    assert detect({"KITTY_WINDOW_ID": "1", "TERM": "xterm-256color"}) == "kitty"
    assert detect({"TERM_PROGRAM": "iTerm.app"}) == "iterm"
    assert detect({"TERM_PROGRAM": "WezTerm"}) == "iterm"
    assert detect({"TERM": "foot"}) == "sixel"
    assert detect({"TERM": "xterm-256color"}) == "blocks"
    assert detect({"TERM": "xterm-kitty", "TMUX": "/tmp/tmux-0/default,1,0"}) == "blocks"
    assert detect({"TERM": "xterm", "PIXELDOJO_PREVIEW_PROTOCOL": "sixel"}) == "sixel"


def test_kitty_and_iterm_carry_the_png_itself(picture_file: Path) -> None:
    png = picture_file.read_bytes() * 40  # long enough for several kitty chunks
    drawing = preview.kitty(png, 20, 6)
    chunks = re.findall(r"\x1b_G([^;]*);([^\x1b]*)\x1b\\", drawing)
    assert chunks[0][0] == "a=T,f=100,q=2,c=20,r=6,m=1" and chunks[-1][0] == "m=0"
    assert all(len(data) <= 4096 for _, data in chunks)
    assert base64.b64decode("".join(data for _, data in chunks)) == png
    inline = preview.iterm(png, 20, 6)
    assert inline.startswith(f"\x1b]1337;File=inline=1;size={len(png)};width=20;height=6;")
    assert base64.b64decode(inline.split(":", 1)[1].rstrip("\x07\n")) == png


def decode_sixel(data: str, width: int, height: int) -> list[list[int]]:
    """The palette index of every pixel of a sixel image (enough of DEC's format for ours)."""
    body = data[data.index("q") + 1 : data.rindex("\x1b\\")]
    pixels = [[-1] * width for _ in range(height)]
    colour, x, band = 0, 0, 0
    for token in re.findall(r'"[\d;]+|#\d+(?:;\d+)*|!\d+.|[?-~]|\$|-', body):
        if token.startswith('"'):
            continue
        if token.startswith("#"):
            if ";" not in token:
                colour = int(token[1:])
            continue
        if token == "$":
            x = 0
        elif token == "-":
            x, band = 0, band + 1
        else:
            count, char = (int(token[1:-1]), token[-1]) if token.startswith("!") else (1, token)
            for _ in range(count):
                bits = ord(char) - 63
                for dy in range(6):
                    if bits >> dy & 1:
                        pixels[band * 6 + dy][x] = colour
                x += 1  # noqa: SIM113
    return pixels


def test_sixel_encodes_every_pixel_in_its_palette_colour(picture_file: Path) -> None:
    picture = Image.open(picture_file).convert("RGB")
    drawing = preview.sixel(picture, colours=16)
    assert drawing.startswith('\x1bPq"1;1;48;27') and drawing.endswith("\x1b\\\n")
    quantised = picture.quantize(colors=16)
    expected = [[quantised.getpixel((x, y)) for x in range(48)] for y in range(27)]
    assert decode_sixel(drawing, 48, 27) == expected


class Screen(io.TextIOWrapper):
    """A UTF-8 stream to stand for the terminal's stderr."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8")

    def getvalue(self) -> str:
        self.flush()
        buffer = self.buffer
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue().decode()


def fake_terminal(monkeypatch: pytest.MonkeyPatch) -> tuple[Renderer, Screen]:
    renderer = Renderer()
    stderr = Screen()
    monkeypatch.setattr(Renderer, "stderr", property(lambda self: stderr))
    monkeypatch.setattr(Renderer, "stdout_is_terminal", lambda self: True)
    monkeypatch.setattr(Renderer, "stderr_is_terminal", lambda self: True)
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setenv("LINES", "30")
    return renderer, stderr


def test_show_preview_draws_on_stderr_fitted_to_the_terminal(
    picture_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renderer, stderr = fake_terminal(monkeypatch)
    preview.show_preview(picture_file, renderer)
    lines = stderr.getvalue().splitlines()  # 39 columns of a 48x27 picture: 11 rows
    assert len(lines) == 11 and all(len(CELL.findall(line)) == 39 for line in lines)


def test_show_preview_draws_nothing_unless_stdout_and_stderr_are_terminals(
    picture_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renderer, stderr = fake_terminal(monkeypatch)
    monkeypatch.setattr(Renderer, "stdout_is_terminal", lambda self: False)
    preview.show_preview(picture_file, renderer)
    assert stderr.getvalue() == ""


def test_without_pillow_a_preview_says_how_to_install_it(
    picture_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renderer, stderr = fake_terminal(monkeypatch)
    notes: list[str] = []
    monkeypatch.setattr(Renderer, "note", lambda self, message, style="dim": notes.append(message))
    monkeypatch.setitem(sys.modules, "PIL", None)  # `from PIL import Image` now fails
    preview.show_preview(picture_file, renderer)
    assert notes == ["Preview needs Pillow: pip install 'pixeldojo-cli[preview]'"]
    assert stderr.getvalue() == ""


def test_jobs_show_preview_in_a_pipe_prints_no_escape_codes(cli: Invoke) -> None:
    path = Path(cli("run", "flux-dev", "x", *FAST).stdout.strip())
    shown = cli("jobs", "show", path.name.rsplit("-", 1)[0], "--preview")
    assert shown.exit_code == 0
    assert "\x1b" not in shown.output and "\u2580" not in shown.output
    assert cli("config", "set", "preview", "true").exit_code == 0
    assert cli("config", "get", "preview").stdout.strip() == "true"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
def test_jobs_show_preview_draws_the_picture_in_a_real_terminal(
    emulator: Emulator, cli: Invoke, tmp_path: Path
) -> None:
    path = Path(cli("run", "flux-dev", "a lighthouse at dusk", *FAST).stdout.strip())
    job_id = path.name.rsplit("-", 1)[0]
    env = run_subprocess_env(emulator)
    env.pop("NO_COLOR", None)
    env.pop("TMUX", None)  # run inside tmux or not, this test's server is its own
    # A server of our own (its own socket, no config file): a session on someone
    # else's server would run with that server's environment, not this test's.
    tmux = ["tmux", "-L", f"pixeldojo-test-{os.getpid()}-{tmp_path.name}", "-f", os.devnull]
    session = "preview"
    command = f"{PYTHON} -m pixeldojo_cli jobs show {job_id} --preview; sleep 30"
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session, "-x", "80", "-y", "40", command],
        env={**env, "TERM": "xterm-256color"},
        cwd=tmp_path,
        check=True,
    )
    try:
        screen, previous = "", None
        deadline = time.time() + 30
        # Until the picture is there and the screen has stopped changing (drawn in full).
        while time.time() < deadline and ("\u2580" * 10 not in screen or screen != previous):
            time.sleep(0.1)
            previous = screen
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-e", "-t", session],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
    finally:
        socket = subprocess.run(
            [*tmux, "display-message", "-p", "#{socket_path}"], capture_output=True, text=True
        ).stdout.strip()
        subprocess.run([*tmux, "kill-server"], check=False, capture_output=True)
        if socket:  # tmux leaves its socket file behind
            Path(socket).unlink(missing_ok=True)
    assert f"Job:        {job_id}" in screen and "Prompt:     a lighthouse at dusk" in screen
    drawn = [line for line in screen.splitlines() if "\u2580" in line]
    assert len(drawn) == preview.MAX_ROWS  # a square picture, as tall as a preview gets
    assert all(line.count("\u2580") == 2 * preview.MAX_ROWS for line in drawn)
    assert "\x1b[38;2;" in screen or "\x1b[38;5;" in screen  # coloured


def test_run_preview_draws_the_picture_after_the_path_on_a_terminal(
    emulator: Emulator, tmp_path: Path
) -> None:
    from conftest import run_in_pty

    env = {**run_subprocess_env(emulator), "TERM": "xterm-256color", "COLUMNS": "80"}
    env.pop("NO_COLOR", None)
    env["PIXELDOJO_PREVIEW_PROTOCOL"] = "blocks"
    args = ["run", "flux-dev", "a fox", "--preview", *FAST]
    code, screen = run_in_pty(args, env, tmp_path, stdout_too=True)
    assert code == 0, screen
    [saved] = list(tmp_path.glob("job_*-1.png"))
    assert saved.name in screen
    assert screen.index(saved.name) < screen.index("\u2580")  # the path first, then the picture
    assert screen.count("\u2580") >= 2 * preview.MAX_ROWS


def test_run_preview_in_a_pipe_prints_only_the_paths(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "a fox", "--preview", *FAST)
    assert result.exit_code == 0, result.output
    assert "\u2580" not in result.output and "\x1b" not in result.stdout
    assert Path(result.stdout.strip()).is_file()


@pytest.mark.parametrize("other", ["--no-download", "--no-wait"])
def test_run_preview_with_nothing_to_show_is_refused(
    cli: Invoke, emulator: Emulator, other: str
) -> None:
    result = cli("run", "flux-dev", "a fox", "--preview", other)
    assert result.exit_code == 2 and "--preview" in result.stderr
    assert not emulator.requests_to("POST")
