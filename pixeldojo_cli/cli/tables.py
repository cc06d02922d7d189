"""Tables a person reads on a terminal: which columns fit, ids never cut, and
sizes and numbers as people write them. Rich is imported only to draw one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from rich.console import Console


def human_size(size: int) -> str:
    """`1.2 MB`: a byte count as people read it (decimal units, as `ls -h --si`)."""
    from rich.filesize import decimal

    return decimal(size)


def number_text(value: float) -> str:
    """A number as written: integers whole (`2147483647`, never `2.14748e+09`)."""
    if float(value).is_integer() and abs(value) < 1e18:
        return str(int(value))
    return f"{value:g}"


@dataclass(frozen=True)
class Column:
    """A table column, and what may happen to it when the terminal is narrow.

    `key` (a job or model id): never wrapped, cut or dropped. Other columns are
    dropped before the table would cut an id, the highest `drop` first (0: never
    dropped); until then they are shown whole, except that a `wrap` column wraps
    at words and a column with `least` may be cut with an ellipsis down to that
    many cells. `whole` says it outright for another id.
    """

    header: str
    key: bool = False
    whole: bool = False
    drop: int = 0
    wrap: bool = False
    justify: Literal["left", "right"] = "left"
    least: int = 0  # the narrowest it is worth showing, cut with an ellipsis


GAP = 2  # spaces between table columns


def _cell_width(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.splitlines()), default=0)


def fit_columns(
    columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
) -> list[tuple[int, int]]:
    """(column index, width) of the columns to draw in `width` cells: drop the
    most droppable column until every id fits whole, then shorten the widest
    of the others."""
    natural = [
        max([_cell_width(c.header), *(_cell_width(row[i]) for row in rows)])
        for i, c in enumerate(columns)
    ]

    def least(i: int) -> int:
        column = columns[i]
        if column.wrap:
            return min(natural[i], max(column.least, _cell_width(column.header), 10))
        if column.least and not (column.key or column.whole):
            return min(natural[i], max(column.least, _cell_width(column.header)))
        return natural[i]  # short cells are shown whole, or the column is dropped

    keep = list(range(len(columns)))
    while sum(least(i) for i in keep) + GAP * (len(keep) - 1) > width:
        droppable = [i for i in keep if columns[i].drop > 0]
        if not droppable:
            break
        keep.remove(max(droppable, key=lambda i: (columns[i].drop, i)))
    widths = {i: natural[i] for i in keep}
    excess = sum(widths.values()) + GAP * (len(keep) - 1) - width
    while excess > 0:
        shrinkable = [i for i in keep if widths[i] > least(i)]
        if not shrinkable:
            break
        widths[max(shrinkable, key=lambda i: widths[i])] -= 1
        excess -= 1
    return [(i, widths[i]) for i in keep]


def _ascii_cut(text: str, width: int) -> str:
    """Rich's ellipsis is `…`, which an ASCII-only stream cannot print: `...` instead."""
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def draw_table(
    console: Console,
    columns: Sequence[Column],
    cells: Sequence[Sequence[str]],
    title: str | None = None,
) -> None:
    """`cells` (already made safe) as a Rich table on `console`: the columns that
    fit (`fit_columns`), each cell as plain text, never Rich markup."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, box=None, header_style="bold", pad_edge=False, padding=(0, GAP // 2))
    layout = fit_columns(columns, cells, console.width)
    for index, width in layout:
        spec = columns[index]
        table.add_column(
            spec.header,
            width=width,
            no_wrap=not spec.wrap,
            overflow="fold" if spec.wrap else "ellipsis",
            justify=spec.justify,
        )
    ascii_only = console.options.ascii_only
    for row in cells:
        table.add_row(
            *(
                Text(  # Text: no Rich markup from the server
                    _ascii_cut(row[index], width)
                    if ascii_only and not columns[index].wrap
                    else row[index]
                )
                for index, width in layout
            )
        )
    needed = sum(width for _, width in layout) + GAP * (len(layout) - 1)
    console.print(table, width=max(needed, console.width), crop=False)
