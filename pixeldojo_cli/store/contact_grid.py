"""The contact sheet as one PNG: labelled tiles (a thumbnail, the model, the seed,
the job id), under their group headings; for CI artifacts and chat.

Needs Pillow (the `[preview]` extra), imported only in `render_grid`. Pictures
are decoded by the `load` the caller hands in (the CLI's bounded decoder), so
a hostile file costs what any preview costs; one that cannot be decoded is a
grey tile that says so. At most `MAX_TILES` tiles: the HTML sheet has them all.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pixeldojo_cli.core.text import safe_text
from pixeldojo_cli.store.contact_sheet import Group, Tile

THUMB = 200  # a tile's picture area, square
LABEL_LINES = 3
FONT_SIZE = 12
LINE = 16
PAD = 8
COLUMNS = 6
MAX_TILES = 240
HEADING = 28
BACKGROUND = (244, 244, 241)
CARD = (255, 255, 255)
WELL = (226, 226, 220)
INK = (28, 28, 30)
MUTED = (107, 107, 112)


def write_grid(
    path: Path, title: str, groups: Sequence[Group], load: Callable[[Path, tuple[int, int]], Any]
) -> int:
    """Write the grid PNG to `path` atomically; how many tiles were left out."""
    from pixeldojo_cli.store.files import write_bytes_atomic

    data, left_out = render_grid(title, groups, load)
    write_bytes_atomic(path, data)
    return left_out


def _cut(groups: Sequence[Group]) -> tuple[list[Group], int]:
    """The groups holding at most `MAX_TILES` tiles, and how many were left out."""
    kept: list[Group] = []
    room = MAX_TILES
    total = sum(len(group.tiles) for group in groups)
    for group in groups:
        if room <= 0:
            break
        tiles = group.tiles[:room]
        room -= len(tiles)
        if tiles:
            kept.append(Group(group.label, tiles))
    return kept, total - (MAX_TILES - room)


def render_grid(
    title: str, groups: Sequence[Group], load: Callable[[Path, tuple[int, int]], Any]
) -> tuple[bytes, int]:
    """The PNG's bytes, and how many tiles were left out of it."""
    from PIL import Image, ImageDraw

    kept, left_out = _cut(groups)
    font = _font()
    tile_w, tile_h = THUMB + 2 * PAD, THUMB + 2 * PAD + LABEL_LINES * LINE
    columns = max(1, min(COLUMNS, max((len(g.tiles) for g in kept), default=1)))
    rows = sum(-(-len(g.tiles) // columns) for g in kept)
    headed = sum(1 for g in kept if g.label)
    width = columns * (tile_w + PAD) + PAD
    height = HEADING + PAD + headed * HEADING + rows * (tile_h + PAD) + PAD
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    draw.text((PAD, PAD), _fit(draw, font, title, width - 2 * PAD), fill=INK, font=font)
    y = HEADING + PAD
    for group in kept:
        if group.label:
            draw.text((PAD, y + 8), _fit(draw, font, group.label, width), fill=INK, font=font)
            y += HEADING
        for i, tile in enumerate(group.tiles):
            column, row = i % columns, i // columns
            origin = (PAD + column * (tile_w + PAD), y + row * (tile_h + PAD))
            _draw_tile(canvas, draw, font, tile, origin, load)
        y += -(-len(group.tiles) // columns) * (tile_h + PAD)
    out = io.BytesIO()
    canvas.save(out, "PNG", optimize=True)
    return out.getvalue(), left_out


def _font() -> Any:
    """Pillow's own font: at FONT_SIZE where it can scale it (FreeType, Pillow 10.1+)."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=FONT_SIZE)
    except (TypeError, ImportError, OSError):  # an older Pillow, or one without FreeType
        return ImageFont.load_default()


def _draw_tile(
    canvas: Any,
    draw: Any,
    font: Any,
    tile: Tile,
    origin: tuple[int, int],
    load: Callable[[Path, tuple[int, int]], Any],
) -> None:
    x, y = origin
    draw.rectangle((x, y, x + THUMB + 2 * PAD - 1, y + THUMB + 2 * PAD + LABEL_LINES * LINE - 1),
                   fill=CARD)  # fmt: skip
    box = (x + PAD, y + PAD)
    picture, why = _thumbnail(tile, load)
    if picture is None:
        draw.rectangle((box[0], box[1], box[0] + THUMB - 1, box[1] + THUMB - 1), fill=WELL)
        draw.text((box[0] + 6, box[1] + THUMB // 2 - 6), why, fill=MUTED, font=font)
    else:
        offset = ((THUMB - picture.width) // 2, (THUMB - picture.height) // 2)
        canvas.paste(picture, (box[0] + offset[0], box[1] + offset[1]))
    label_y = y + PAD + THUMB + 4
    seed = f"seed {tile.seed}" if tile.seed is not None else "no seed"
    output = f"  ({tile.output[0]}/{tile.output[1]})" if tile.output else ""
    for n, line in enumerate((tile.model, seed, tile.job_id + output)):
        fitted = _fit(draw, font, line, THUMB)
        draw.text((box[0], label_y + n * LINE), fitted, fill=INK if n == 0 else MUTED, font=font)


def _thumbnail(tile: Tile, load: Callable[[Path, tuple[int, int]], Any]) -> tuple[Any, str]:
    """The tile's picture fitted in THUMB x THUMB, or None and why not."""
    media = tile.media
    if media is None:
        return None, "no file"
    if not media.present:
        return None, "file missing"
    if media.kind != "image":
        return None, media.kind
    try:
        picture = load(media.path, (THUMB, THUMB)).convert("RGB")
        picture.thumbnail((THUMB, THUMB))
    except Exception:  # a picture that cannot be decoded is a tile that says so
        return None, "cannot be read"
    return picture, ""


def _fit(draw: Any, font: Any, text: str, width: int) -> str:
    """`text` on one line, printable in the font, cut with `…` to `width` pixels."""
    from PIL import ImageFont

    line = safe_text(str(text))[:200]  # control characters as escapes, as on the page
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    if not isinstance(font, ImageFont.FreeTypeFont):  # the bitmap font: Latin-1 only
        line = line.encode("latin-1", "replace").decode("latin-1")
    if draw.textlength(line, font=font) <= width:
        return line
    ellipsis = "…" if isinstance(font, ImageFont.FreeTypeFont) else "..."
    while line and draw.textlength(line + ellipsis, font=font) > width:
        line = line[:-1]
    return line + ellipsis
