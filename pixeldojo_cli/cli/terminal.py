"""The terminal's size, however odd the answer: every reader of it in the CLI asks here.

`COLUMNS` and `LINES` come from anyone's environment (`COLUMNS=99999999999999999999`,
`0`, `-5`, `1.5`, `²`), and a terminal answers TIOCGWINSZ with whatever it likes.
Left alone, Rich parses COLUMNS itself (`²` passes its digit check and then fails
`int()`: every command that prints ended in "this is a bug"), and a cell size of
65535 pixels made the sixel preview ask Pillow for a picture of terabytes. So the
help pages, tables, progress lines and previews all take their size from here,
within `SANE_COLUMNS` and `SANE_LINES`: Rich reads an environment whose COLUMNS
and LINES are the clamped size, and every size it measures is clamped too.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping

FALLBACK = (80, 24)  # what a terminal that says nothing is taken to be
SANE_COLUMNS = (1, 4096)  # wider or taller than any screen: a setting, not a terminal
SANE_LINES = (1, 4096)
CELL_PIXELS = (10, 20)  # a terminal cell's size in pixels when the terminal does not say
SANE_CELL_WIDTH = (2, 64)  # the pixels a cell may have, as a terminal may report them
SANE_CELL_HEIGHT = (4, 128)


def _clamp(value: int, bounds: tuple[int, int]) -> int:
    return max(bounds[0], min(value, bounds[1]))


def terminal_size() -> tuple[int, int]:
    """(columns, lines): COLUMNS/LINES when they are whole numbers, else the terminal's
    answer on stdout, else 80 x 24; then clamped to `SANE_COLUMNS` x `SANE_LINES`."""
    try:
        size = shutil.get_terminal_size(FALLBACK)
        columns, lines = int(size.columns), int(size.lines)
    except (ValueError, OverflowError, OSError):  # an answer no terminal gives
        columns, lines = FALLBACK
    return clamp_size(columns, lines)


def rich_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for Rich's Console: COLUMNS and LINES, wherever set, replaced by
    the clamped size. Rich parses each of them itself (`isdigit()`, then `int()`: `²`
    and a number of 5,000 digits pass the one and fail the other) when it is built and
    again whenever it measures the terminal, whichever of the two it was given."""
    environ = os.environ if environ is None else environ
    tidy = dict(environ)
    columns, lines = terminal_size()
    for name, value in (("COLUMNS", columns), ("LINES", lines)):
        if name in tidy:
            tidy[name] = str(value)
    return tidy


def clamp_size(columns: int, lines: int) -> tuple[int, int]:
    """A size a terminal reported (65535 columns, say), within `SANE_COLUMNS` x `SANE_LINES`."""
    return _clamp(columns, SANE_COLUMNS), _clamp(lines, SANE_LINES)


def cell_pixels(fd: int | None = None) -> tuple[int, int]:
    """A cell's size in pixels (width, height), from the terminal on `fd` (stderr by
    default) when it tells and the answer is plausible; `CELL_PIXELS` otherwise."""
    try:
        import fcntl
        import struct
        import sys
        import termios

        fd = sys.stderr.fileno() if fd is None else fd
        packed = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
        rows, columns, width, height = struct.unpack("HHHH", packed)
    except (ImportError, OSError, ValueError, AttributeError):
        return CELL_PIXELS
    if not (rows and columns and width and height):
        return CELL_PIXELS
    cell = (width // columns, height // rows)
    if cell != (_clamp(cell[0], SANE_CELL_WIDTH), _clamp(cell[1], SANE_CELL_HEIGHT)):
        return CELL_PIXELS  # a size no font has: the answer is not to be believed
    return cell
