"""See the picture: draw an image file in the terminal (`run --preview`,
`jobs show --preview`, or `config set preview true`).

The terminal's own graphics protocol where we can tell it has one (kitty,
iTerm2, sixel; from TERM, TERM_PROGRAM and friends, or PIXELDOJO_PREVIEW_PROTOCOL),
Unicode half-blocks in colour everywhere else (two pixels a cell). It draws on
stderr and only when stdout and stderr are both terminals, so the paths on
stdout stay the only stdout and a pipe or a log never gets escape codes.

It needs Pillow, the optional extra `pip install 'pixeldojo-cli[preview]'`, to
decode PNG, JPEG, WebP and GIF (at the size they are drawn, within a memory
budget: `picture.py`); without it, asking for a preview prints how to install it.
The protocols themselves are a few escape sequences, written here:
the terminal-image libraries on PyPI either pin old Pillow versions, draw
half-blocks only, or probe the terminal by reading its answers from stdin.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.cli.picture import NoPreview, load_reduced
from pixeldojo_cli.cli.terminal import cell_pixels, terminal_size

if TYPE_CHECKING:
    from pixeldojo_cli.cli.render import Renderer

INSTALL_HINT = "Preview needs Pillow: pip install 'pixeldojo-cli[preview]'"
PROTOCOLS = ("kitty", "iterm", "sixel", "blocks")
ENV_PROTOCOL = "PIXELDOJO_PREVIEW_PROTOCOL"
MAX_COLUMNS = 64  # a glance, not a viewer: --open shows it whole
MAX_ROWS = 20  # and it leaves the lines above it on the screen
# The most pixels a cell gets in a drawn picture: a HiDPI cell shows it a little smaller,
# and the picture stays at most 1024 x 640 (a sixel of that takes seconds to encode).
MAX_CELL_PIXELS = (16, 32)


def show_preview(path: Path, renderer: Renderer) -> None:
    """Draw the image at `path` on stderr, fitted to the terminal.

    Nothing at all when stdout or stderr is not a terminal (or with --quiet);
    a one-line note when Pillow is missing, colours are off, or the file is not
    a picture (a video, say). Never raises: a preview never fails a command.
    """
    if renderer.quiet or not (renderer.stdout_is_terminal() and renderer.stderr_is_terminal()):
        return
    try:
        import PIL  # noqa: F401 - only to say how to install it when it is missing
    except ImportError:
        renderer.note(INSTALL_HINT)
        return
    from pixeldojo_cli.cli.render import color_wanted

    protocol = detect_protocol(os.environ)
    if protocol == "blocks" and not color_wanted(renderer.no_color, renderer.stderr):
        renderer.note(f"No preview of {path.name}: colours are off (NO_COLOR or --no-color).")
        return
    terminal = terminal_size()
    cell = (1, 2) if protocol == "blocks" else _picture_cell()  # half-blocks: 2 pixels a cell

    def drawn_box(size: tuple[int, int]) -> tuple[int, int]:
        columns, rows = fit_cells(size, terminal)
        return columns * cell[0], rows * cell[1]

    try:
        picture = load_reduced(path, drawn_box)
    except NoPreview as why:
        renderer.note(f"No preview of {path.name}: {why}.")
        return
    columns, rows = fit_cells(picture.size, terminal)
    drawing = draw(picture, protocol, columns, rows, ascii_only=_ascii_only(renderer))
    renderer.stderr.write(drawing)
    renderer.stderr.flush()


def detect_protocol(env: Mapping[str, str]) -> str:
    """`kitty`, `iterm`, `sixel` or `blocks`, from what the environment says."""
    forced = env.get(ENV_PROTOCOL, "").strip().lower()
    if forced in PROTOCOLS:
        return forced
    term = env.get("TERM", "")
    program = env.get("TERM_PROGRAM", "")
    if env.get("TMUX") or term.startswith(("screen", "tmux")):
        return "blocks"  # a multiplexer does not pass graphics escapes through by default
    if env.get("KITTY_WINDOW_ID") or term in ("xterm-kitty", "xterm-ghostty"):
        return "kitty"
    if program == "ghostty":
        return "kitty"
    if program in ("iTerm.app", "WezTerm") or env.get("LC_TERMINAL") == "iTerm2":
        return "iterm"
    if "sixel" in term or term in ("foot", "foot-extra", "mlterm", "contour", "yaft-256color"):
        return "sixel"
    return "blocks"


def fit_cells(image_size: tuple[int, int], terminal: tuple[int, int]) -> tuple[int, int]:
    """(columns, rows) for the picture: as wide as allowed, its shape kept (a cell
    is about twice as tall as wide), never taller than the terminal."""
    width, height = max(1, image_size[0]), max(1, image_size[1])
    columns = max(1, min(MAX_COLUMNS, terminal[0] - 1))
    max_rows = max(1, min(MAX_ROWS, terminal[1] - 4))
    rows = max(1, round(columns * height / width / 2))
    if rows > max_rows:
        rows = max_rows
        columns = max(1, min(columns, round(rows * 2 * width / height)))
    return columns, rows


def draw(picture: Any, protocol: str, columns: int, rows: int, *, ascii_only: bool = False) -> str:
    """The escape sequences (or coloured text) that draw `picture` in columns x rows cells."""
    cell_width, cell_height = _picture_cell()
    box = (columns * cell_width, rows * cell_height)
    if protocol in ("kitty", "iterm"):  # the terminal scales it to the cells: no more is sent
        fitted = picture.copy()
        fitted.thumbnail(box)
        encode = kitty if protocol == "kitty" else iterm
        return encode(_png(fitted), columns, rows)
    if protocol == "sixel":  # drawn pixel for pixel
        return sixel(picture.resize(box))
    return half_blocks(picture, columns, ascii_only=ascii_only)


def _picture_cell() -> tuple[int, int]:
    """A cell's size in pixels for a picture drawn by a graphics protocol."""
    width, height = cell_pixels()
    return min(width, MAX_CELL_PIXELS[0]), min(height, MAX_CELL_PIXELS[1])


def _png(picture: Any) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


def _ascii_only(renderer: Renderer) -> bool:
    encoding = (getattr(renderer.stderr, "encoding", None) or "").lower().replace("-", "")
    return not encoding.startswith("utf")


# --- the protocols ---------------------------------------------------------------------


def half_blocks(picture: Any, columns: int, *, ascii_only: bool = False) -> str:
    """`▀` cells, the upper pixel as the foreground colour and the lower one as the
    background: two pixels a cell, 24-bit colour. With an ASCII-only stream,
    spaces on a background colour (one pixel a cell)."""
    width, height = picture.size
    pixel_rows = max(2, round(columns * height / width))
    pixel_rows += pixel_rows % 2
    if ascii_only:
        small = picture.resize((columns, pixel_rows // 2))
        return "".join(
            "".join("\x1b[48;2;{};{};{}m ".format(*small.getpixel((x, y))) for x in range(columns))
            + "\x1b[0m\n"
            for y in range(pixel_rows // 2)
        )
    small = picture.resize((columns, pixel_rows))
    lines = []
    for y in range(0, pixel_rows, 2):
        cells = []
        for x in range(columns):
            top = small.getpixel((x, y))
            bottom = small.getpixel((x, y + 1))
            cells.append("\x1b[38;2;{};{};{}m\x1b[48;2;{};{};{}m\u2580".format(*top, *bottom))
        lines.append("".join(cells) + "\x1b[0m\n")
    return "".join(lines)


def kitty(png: bytes, columns: int, rows: int) -> str:
    """The kitty graphics protocol: the PNG itself, base64 in 4096-byte chunks,
    placed in columns x rows cells (q=2: the terminal sends no answer)."""
    data = base64.standard_b64encode(png).decode("ascii")
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)] or [""]
    parts = []
    for n, chunk in enumerate(chunks):
        more = int(n < len(chunks) - 1)
        keys = f"a=T,f=100,q=2,c={columns},r={rows},m={more}" if n == 0 else f"m={more}"
        parts.append(f"\x1b_G{keys};{chunk}\x1b\\")
    return "".join(parts) + "\n"


def iterm(png: bytes, columns: int, rows: int) -> str:
    """iTerm2's inline image (also WezTerm's): OSC 1337 with the file in base64."""
    data = base64.standard_b64encode(png).decode("ascii")
    return (
        f"\x1b]1337;File=inline=1;size={len(png)};width={columns};height={rows};"
        f"preserveAspectRatio=1:{data}\x07\n"
    )


_RUNS = re.compile(r"(.)\1{3,}")


def sixel(picture: Any, colours: int = 255) -> str:
    """DEC sixel: the picture quantised to a palette, six pixel rows a band,
    one pass per colour in each band, runs compressed."""
    indexed = picture.quantize(colors=colours)
    width, height = indexed.size
    palette = indexed.getpalette() or []
    pixels = indexed.tobytes()
    used = sorted(set(pixels))
    out = [f'\x1bPq"1;1;{width};{height}']
    for index in used:
        r, g, b = palette[index * 3 : index * 3 + 3]
        out.append(f"#{index};2;{r * 100 // 255};{g * 100 // 255};{b * 100 // 255}")
    for top in range(0, height, 6):
        bits: dict[int, bytearray] = {}
        for dy in range(min(6, height - top)):
            row = pixels[(top + dy) * width : (top + dy + 1) * width]
            for x, index in enumerate(row):
                band = bits.get(index)
                if band is None:
                    band = bits[index] = bytearray(width)
                band[x] |= 1 << dy
        passes = []
        for index, band in bits.items():
            text = bytes(63 + b for b in band).decode("ascii").rstrip("?")
            text = _RUNS.sub(lambda m: f"!{len(m.group(0))}{m.group(1)}", text)
            passes.append(f"#{index}{text}")
        out.append("$".join(passes) + "-")
    out.append("\x1b\\")
    return "".join(out) + "\n"
