"""Everything the CLI draws: results on stdout, people's lines on stderr.

stdout carries results only (file paths, JSON, tables); stderr carries
status, progress, hints and errors. Rich is used for terminals; pipes get
plain text with no escape codes. Rich's progress machinery is imported only
when a progress display is actually drawn.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from collections import Counter

    from rich.console import Console

    from pixeldojo_cli.errors import PixelDojoError


def dump_json(value: Any) -> str:
    """The CLI's JSON: indented, UTF-8, anything unknown as a string."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def printable(text: str) -> str:
    """`text` with control characters (escape codes included) shown as `?`:
    for text that reaches a terminal without Rich, which strips them itself."""
    return "".join(
        ch if ch.isprintable() or ch in "\t" else ("?" if ch != "\n" else " ") for ch in text
    )


def plural(count: float, word: str) -> str:
    """`1 credit`, `2 credits`, `1.5 credits`, `0 jobs`."""
    number = f"{count:g}" if isinstance(count, float) else str(count)
    return f"{number} {word}" if count == 1 else f"{number} {word}s"


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


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def color_wanted(no_color_flag: bool, stream: TextIO) -> bool:
    """Colour only for a terminal, and never with --no-color, NO_COLOR or TERM=dumb.
    FORCE_COLOR turns it on even for a pipe."""
    if no_color_flag or os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    return _is_tty(stream)


class Renderer:
    """The one place that writes to the user. `quiet` silences info lines."""

    def __init__(
        self, *, quiet: bool = False, no_color: bool = False, verbose: bool = False
    ) -> None:
        self.quiet = quiet
        self.no_color = no_color
        self.verbose = verbose
        self._stderr_console: Console | None = None
        self._stdout_console: Console | None = None
        self._secrets: set[str] = set()
        self._said_rich_needs_a_terminal = False

    def add_secret(self, secret: str | None) -> None:
        """Never print `secret` whole: errors and traces show it masked."""
        if secret:
            self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        """`text` with every known secret masked (last 4 characters at most)."""
        from pixeldojo_cli.redact import redact

        for secret in self._secrets:
            text = redact(text, secret)
        return text

    # --- streams -------------------------------------------------------------

    @property
    def stdout(self) -> TextIO:
        return sys.stdout

    @property
    def stderr(self) -> TextIO:
        return sys.stderr

    def stderr_is_terminal(self) -> bool:
        return _is_tty(self.stderr) and os.environ.get("TERM") != "dumb"

    def stdout_is_terminal(self) -> bool:
        return _is_tty(self.stdout)

    def stderr_is_utf8(self) -> bool:
        """Whether stderr can show characters beyond ASCII (spinners, `·`)."""
        encoding = (getattr(self.stderr, "encoding", None) or "").lower().replace("-", "")
        return encoding.startswith("utf")

    def _console(self, stream: TextIO) -> Console:
        from rich.console import Console

        color = color_wanted(self.no_color, stream)
        return Console(
            file=stream,
            no_color=not color,
            color_system="auto" if color else None,
            highlight=False,
            soft_wrap=True,
            force_terminal=True if color and not _is_tty(stream) else None,
        )

    @property
    def err_console(self) -> Console:
        if self._stderr_console is None or self._stderr_console.file is not self.stderr:
            self._stderr_console = self._console(self.stderr)
        return self._stderr_console

    @property
    def out_console(self) -> Console:
        if self._stdout_console is None or self._stdout_console.file is not self.stdout:
            self._stdout_console = self._console(self.stdout)
        return self._stdout_console

    # --- results (stdout) ----------------------------------------------------

    def result(self, line: str) -> None:
        """One line of result (a path, a URL, an id) on stdout."""
        self.stdout.write(line + "\n")
        self.stdout.flush()

    def json(self, value: Any) -> None:
        self.result(dump_json(value))

    def table(
        self,
        columns: Sequence[str | Column],
        rows: Sequence[Sequence[str]],
        *,
        title: str | None = None,
        empty: str | None = None,
    ) -> None:
        """A table on stdout: Rich for a terminal, tab-separated lines for a pipe.

        On a terminal, ids stay whole (see `Column`), and an empty table is the
        sentence `empty` instead; a pipe gets nothing for no rows.
        """
        specs = [c if isinstance(c, Column) else Column(c) for c in columns]
        if not self.stdout_is_terminal():
            for row in rows:
                self.result("\t".join(cell.replace("\t", " ").replace("\n", " ") for cell in row))
            return
        if not rows and empty is not None:
            self.result(empty)
            return
        from rich.table import Table

        table = Table(
            title=title, box=None, header_style="bold", pad_edge=False, padding=(0, GAP // 2)
        )
        layout = fit_columns(specs, rows, self.out_console.width)
        for index, width in layout:
            spec = specs[index]
            table.add_column(
                spec.header,
                width=width,
                no_wrap=not spec.wrap,
                overflow="fold" if spec.wrap else "ellipsis",
                justify=spec.justify,
            )
        ascii_only = self.out_console.options.ascii_only
        for row in rows:
            table.add_row(
                *(
                    _ascii_cut(row[index], width)
                    if ascii_only and not specs[index].wrap
                    else row[index]
                    for index, width in layout
                )
            )
        needed = sum(width for _, width in layout) + GAP * (len(layout) - 1)
        self.out_console.print(table, width=max(needed, self.out_console.width), crop=False)

    # --- people (stderr) -----------------------------------------------------

    def info(self, message: str) -> None:
        """A status line for people; silenced by --quiet."""
        if not self.quiet:
            self.err_console.print(message, markup=False)

    def note(self, message: str, style: str = "dim") -> None:
        if not self.quiet:
            self.err_console.print(message, style=style, markup=False)

    def warn(self, message: str) -> None:
        self.err_console.print(f"warning: {message}", style="yellow", markup=False)

    def trace(self, line: str) -> None:
        self.err_console.print(self.scrub(line), style="dim", markup=False)

    def error(self, exc: PixelDojoError, *, json_output: bool = False) -> None:
        """The error on stderr (one sentence, then what to do next); under --json, on stdout too."""
        code = f" ({exc.code})" if exc.code else ""
        message = self.scrub(exc.message)
        self.err_console.print(f"error: {message}{code}", style="bold red", markup=False)
        if exc.hint:
            self.err_console.print(self.scrub(exc.hint), markup=False)
        if json_output:
            document = exc.to_json()
            document["error"]["message"] = message
            self.json(document)

    # --- progress ------------------------------------------------------------

    def progress_mode(self, requested: str = "auto") -> str:
        """`rich` for a terminal, `plain` lines otherwise, `none` with --quiet.

        `--progress rich` without a terminal on stderr would draw nothing but a
        blank line: plain lines instead, and a note saying so (once)."""
        if self.quiet or requested == "none":
            return "none"
        if requested == "rich" and not self.stderr_is_terminal():
            if not self._said_rich_needs_a_terminal:
                self._said_rich_needs_a_terminal = True
                self.note("--progress rich needs a terminal on stderr: showing plain lines.")
            return "plain"
        if requested in ("rich", "plain"):
            return requested
        if os.environ.get("CI"):  # CI logs keep every frame of a live display: lines read better
            return "plain"
        return "rich" if self.stderr_is_terminal() else "plain"

    @contextmanager
    def download_progress(
        self, job_id: str, count: int, mode: str
    ) -> Iterator[Callable[[int, int, int | None], None]]:
        """Per-file progress bars on a terminal; nothing for pipes (paths say it all)."""
        if mode != "rich" or count == 0:
            yield _NoProgress()
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=self.err_console,
            transient=True,
        )
        with progress:
            yield DownloadBars(progress, job_id, count)

    @contextmanager
    def batch_progress(
        self, counts: Callable[[], Counter[str]], total: int
    ) -> Iterator[Callable[[], None]]:
        """One bar for a whole batch, with a count per state; a no-op off a terminal
        (plain mode prints a line per finished job instead)."""
        if self.progress_mode() != "rich":
            yield lambda: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        progress = Progress(
            TextColumn("batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            console=self.err_console,
            transient=True,
        )
        finished = ("saved", "failed", "error", "skipped", "submitted", "unfinished")
        separator = " · " if self.stderr_is_utf8() else ", "

        def refresh() -> None:
            now = counts()
            text = separator.join(f"{n} {state}" for state, n in sorted(now.items()) if n)
            progress.update(task, completed=sum(now[s] for s in finished), description=text)

        with progress:
            task = progress.add_task("", total=total)
            refresh()
            yield refresh

    @contextmanager
    def _status_lines(self, mode: str) -> Iterator[Any]:
        """Rich's live spinner lines on a terminal (`rich`); None otherwise."""
        if mode != "rich":
            yield None
            return
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        # Braille dots need UTF-8; elsewhere they would print as `\u280b`.
        spinner = SpinnerColumn("dots" if self.stderr_is_utf8() else "line")
        with Progress(
            spinner,
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=self.err_console,
            transient=True,
        ) as progress:
            yield progress

    @contextmanager
    def jobs_progress(self, mode: str) -> Iterator[JobsBoard]:
        """A live line per job while several jobs run (`jobs wait A B C`)."""
        with self._status_lines(mode) as progress:
            yield JobsBoard(self, mode, progress)

    @contextmanager
    def job_progress(self, job_id: str, mode: str) -> Iterator[JobProgress]:
        """A live display of one job's status while it runs."""
        with self._status_lines(mode) as progress:
            yield JobProgress(self, job_id, mode, progress)


class _NoProgress:
    def __call__(self, index: int, done: int, total: int | None) -> None:
        pass


class DownloadBars:
    """One Rich bar per file, fed from the download threads (Rich locks for us)."""

    def __init__(self, progress: Any, job_id: str, count: int) -> None:
        self._progress = progress
        self._tasks = {
            n: progress.add_task(f"{job_id}-{n}", total=None) for n in range(1, count + 1)
        }

    def __call__(self, index: int, done: int, total: int | None) -> None:
        task = self._tasks.get(index)
        if task is not None:
            self._progress.update(task, completed=done, total=total)


class JobsBoard:
    """Status lines for several jobs: one JobProgress each, on one display."""

    def __init__(self, renderer: Renderer, mode: str, progress: Any) -> None:
        self._renderer = renderer
        self._mode = mode
        self._progress = progress
        self._jobs: dict[str, JobProgress] = {}

    def update(self, job_id: str, status: str) -> None:
        if job_id not in self._jobs:
            self._jobs[job_id] = JobProgress(self._renderer, job_id, self._mode, self._progress)
        self._jobs[job_id].update(status)


class JobProgress:
    """Status updates for one job: a Rich spinner line, or one plain line per change."""

    def __init__(self, renderer: Renderer, job_id: str, mode: str, progress: Any) -> None:
        self._renderer = renderer
        self._job_id = job_id
        self._mode = mode
        self._progress = progress
        self._task = progress.add_task(f"{job_id}: submitted") if progress is not None else None
        self._started = time.monotonic()
        self._last: str | None = None

    def update(self, status: str) -> None:
        if status == self._last:
            return
        self._last = status
        elapsed = time.monotonic() - self._started
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self._job_id}: {status}")
        elif self._mode == "plain":
            self._renderer.info(f"{self._job_id}: {status} ({elapsed:.0f}s)")

    def downloading(self, count: int) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, description=f"{self._job_id}: downloading {plural(count, 'file')}"
            )
        elif self._mode == "plain":
            self._renderer.info(f"{self._job_id}: downloading {plural(count, 'file')}")
