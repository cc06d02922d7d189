"""Everything the CLI draws: results on stdout, people's lines on stderr.

stdout carries results only (file paths, JSON, tables); stderr carries
status, progress, hints and errors. Rich is used for terminals; pipes get
plain text with no escape codes. Rich's progress machinery is imported only
when a progress display is actually drawn.

Text from the server is untrusted: everything drawn for people passes through
`safe_text`, which makes control and invisible format characters visible as
escapes, so no model name, job id or error message can move the cursor, set
the window title, write the clipboard (OSC 52), reorder text (bidi) or break
a line. `dump_json` escapes the same characters, so `--json` stays exact JSON.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from collections import Counter

    from rich.console import Console

    from pixeldojo_cli.api.results import Job
    from pixeldojo_cli.core.errors import PixelDojoError
    from pixeldojo_cli.engine import Event, EventSink, JobResult
    from pixeldojo_cli.engine.webhooks import Delivery
    from pixeldojo_cli.store.files import DownloadedFile
    from pixeldojo_cli.store.ledger import LedgerFile, LedgerJob

from pixeldojo_cli.core.text import dump_json, safe_lines, safe_text


def silence_broken_pipe() -> None:
    """The reader of our output has gone (`| head -1`): point stdout and stderr at
    the null device, so that nothing more, not even the interpreter's final
    flush, fails. The caller then exits quietly, as Unix tools do on SIGPIPE."""
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(devnull, stream.fileno())
            finally:
                os.close(devnull)
        except (OSError, ValueError, AttributeError):  # not a real file: nothing to do
            continue


@functools.cache
def _safe_console_class() -> Callable[..., Console]:
    """Rich's Console, with every string it is asked to print passed through a filter."""
    from rich.console import Console

    class SafeConsole(Console):
        def __init__(self, tidy: Callable[[str], str], **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._tidy = tidy

        def print(self, *objects: Any, **kwargs: Any) -> None:
            tidied = [self._tidy(o) if isinstance(o, str) else o for o in objects]
            super().print(*tidied, **kwargs)

        def on_broken_pipe(self) -> None:
            # Rich would exit 1 here; the command's guard ends quietly instead.
            self.quiet = True
            raise BrokenPipeError

    return SafeConsole


# --- the JSON shapes: one per entity, used by every command ------------------


def rfc3339(when: datetime | None) -> str | None:
    """A timestamp as every JSON document here writes it: RFC 3339, UTC, `Z`."""
    if when is None:
        return None
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def file_document(file: DownloadedFile | LedgerFile) -> dict[str, Any]:
    """A saved file: its absolute path, size, SHA-256 (or null) and source URL."""
    from pathlib import Path

    return {
        "path": str(Path(file.path).resolve()),
        "size": file.size,
        "sha256": file.sha256,
        "url": file.url,
    }


def job_document(
    job: Job,
    files: Sequence[DownloadedFile | LedgerFile] = (),
    *,
    saved: bool | None = None,
) -> dict[str, Any]:
    """A job: the API's object as returned, plus `jobId`, `files` and, when known,
    `saved` (every output of it is on disk here)."""
    document: dict[str, Any] = {**job.raw, "jobId": job.id}
    document["files"] = [file_document(f) for f in files]
    if saved is not None:
        document["saved"] = saved
    return document


def delivery_document(delivery: Delivery) -> dict[str, Any]:
    """One job a webhook listener handled (`webhook listen --json`, JSON Lines):
    the job entity when the API confirmed it, with `outcome`, files as file
    objects, and `error` when it did not end well."""
    if delivery.job is not None:
        document = job_document(delivery.job, [f for f in delivery.files if hasattr(f, "size")])
    else:
        document = {"jobId": delivery.job_id, "files": []}
    if delivery.status is not None:
        document["status"] = delivery.status
    document["outcome"] = delivery.outcome
    if delivery.error is not None:
        document["error"] = delivery.error.to_json()["error"]
    return document


def local_job_document(job: LedgerJob, now: datetime) -> dict[str, Any]:
    """A job as the local ledger knows it (`jobs list --local`): the same keys
    as the API's job where they exist, plus what only this machine knows."""
    return {
        "jobId": job.id,
        "model": job.model,
        "status": job.status,
        "submittedAt": rfc3339(job.submitted_at),
        "expiresAt": rfc3339(job.expires_at),
        "estimatedCredits": job.estimated_credits,
        "creditCost": job.charged_credits,
        "inputs": job.inputs,
        "outputDir": job.output_dir,
        "files": [file_document(f) for f in job.files],
        "saved": job.downloaded,
        "expired": not job.downloaded and (job.lost or job.deadline() <= now),
        "baseUrl": job.base_url,
        "profile": job.profile,
    }


def result_document(result: JobResult) -> dict[str, Any]:
    """How one job ended (`jobs wait`, `download`, `run`): the job entity with
    `outcome` when it ended well; otherwise the error entity with `jobId` and
    `outcome`, and the job as last seen under `job` (so the API's own `error`
    field of a failed job is kept as it was sent)."""
    job: dict[str, Any] | None = None
    if result.job is not None:
        job = job_document(result.job, result.files, saved=result.saved)
    document: dict[str, Any]
    if result.error is None:
        document = job if job is not None else {"jobId": result.job_id, "files": []}
        document["outcome"] = str(result.outcome)
        return document
    document = result.error.to_json()
    document["jobId"] = result.job_id
    document["outcome"] = str(result.outcome)
    if job is not None:
        document["job"] = job
    return document


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

    def add_secret(self, secret: object) -> None:
        """Never print `secret` whole: errors and traces show it masked."""
        if isinstance(secret, str) and secret:
            self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        """`text` with every known secret masked (last 4 characters at most), in
        any of the forms it may take in a message (escaped, URL-encoded...)."""
        from pixeldojo_cli.core.redact import redact

        text = str(text)
        for secret in self._secrets:
            text = redact(text, secret)
        return text

    def for_people(self, text: str) -> str:
        """One line for stderr: secrets masked, nothing a terminal would act on."""
        return safe_text(self.scrub(text))

    def _tidy_lines(self, text: str) -> str:
        # Whatever reaches a console directly: secrets masked, line breaks kept.
        return safe_lines(self.scrub(text))

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
        color = color_wanted(self.no_color, stream)
        return _safe_console_class()(
            self._tidy_lines,
            file=stream,
            no_color=not color,
            color_system="auto" if color else None,
            highlight=False,
            markup=False,  # no Rich markup from server text, whoever prints it
            emoji=False,
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

    def row(self, cells: Sequence[str]) -> None:
        """One tab-separated line of results on stdout, each cell made safe."""
        self._write_stdout("\t".join(self._cell(cell) for cell in cells))

    def result(self, line: str) -> None:
        """One line of result (a path, a URL, an id) on stdout, made safe: a control
        character from the server shows as an escape and cannot break the line."""
        self._write_stdout(self.for_people(line))

    def _write_stdout(self, text: str) -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def json(self, value: Any) -> None:
        """One JSON document on stdout (`dump_json`: exact, and escaped for terminals),
        with any known secret masked in it."""
        self._write_stdout(self.scrub(dump_json(value)))

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
        sentence `empty` instead; a pipe gets nothing for no rows. Every cell is
        made safe (`safe_text`) before it is shown.
        """
        specs = [c if isinstance(c, Column) else Column(c) for c in columns]
        cells = [[self._cell(cell) for cell in row] for row in rows]
        if not self.stdout_is_terminal():
            for row in cells:
                self._write_stdout("\t".join(row))
            return
        if not rows and empty is not None:
            self.result(empty)
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(
            title=title, box=None, header_style="bold", pad_edge=False, padding=(0, GAP // 2)
        )
        layout = fit_columns(specs, cells, self.out_console.width)
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
        for row in cells:
            table.add_row(
                *(
                    Text(  # Text: no Rich markup from the server
                        _ascii_cut(row[index], width)
                        if ascii_only and not specs[index].wrap
                        else row[index]
                    )
                    for index, width in layout
                )
            )
        needed = sum(width for _, width in layout) + GAP * (len(layout) - 1)
        self.out_console.print(table, width=max(needed, self.out_console.width), crop=False)

    def _cell(self, cell: object) -> str:
        """A table cell: one line, no tabs (they separate TSV columns), nothing unsafe."""
        return self.for_people(str(cell).replace("\t", " ").replace("\n", " "))

    # --- people (stderr) -----------------------------------------------------

    def info(self, message: str) -> None:
        """A status line for people; silenced by --quiet."""
        if not self.quiet:
            self.err_console.print(self.for_people(message), markup=False)

    def note(self, message: str, style: str = "dim") -> None:
        if not self.quiet:
            self.err_console.print(self.for_people(message), style=style, markup=False)

    def warn(self, message: str) -> None:
        self.err_console.print(f"warning: {self.for_people(message)}", style="yellow", markup=False)

    def trace(self, line: str) -> None:
        self.err_console.print(self.for_people(line), style="dim", markup=False)

    def line_error(self, label: str, exc: PixelDojoError) -> None:
        """One item's error among many (a batch line): shown even with --quiet."""
        code = f" ({exc.code})" if exc.code else ""
        self.err_console.print(
            f"{label}: {self.scrub(exc.message)}{code}", style="red", markup=False
        )
        if exc.hint:
            self.err_console.print(f"  {self.scrub(exc.hint)}", markup=False)

    def error(self, exc: PixelDojoError, *, json_output: bool = False) -> None:
        """The error on stderr (one sentence, then what to do next); under --json, on stdout too."""
        code = f" ({exc.code})" if exc.code else ""
        message = self.scrub(exc.message)
        line = self.for_people(f"error: {message}{code}")
        self.err_console.print(line, style="bold red", markup=False)
        if exc.hint:
            self.err_console.print(self.for_people(exc.hint), markup=False)
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
    def batch_progress(
        self, counts: Callable[[], Counter[str]], total: int, mode: str
    ) -> Iterator[Callable[[], None]]:
        """One bar for a whole batch, with a count per state; a no-op off a terminal
        (plain mode prints a line per finished job instead)."""
        if mode != "rich":
            yield lambda: None
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        progress = Progress(
            TextColumn("batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}", markup=False),
            console=self.err_console,
            transient=True,
        )
        unfinished = ("queued", "running")
        separator = " · " if self.stderr_is_utf8() else ", "

        def refresh() -> None:
            now = counts()
            text = safe_text(
                separator.join(f"{n} {state}" for state, n in sorted(now.items()) if n)
            )
            done = sum(n for state, n in now.items() if state not in unfinished)
            progress.update(task, completed=done, description=text)

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
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

        # Braille dots need UTF-8; elsewhere they would print as `\u280b`.
        spinner = SpinnerColumn("dots" if self.stderr_is_utf8() else "line")
        with Progress(
            spinner,
            TextColumn("{task.description}", markup=False),
            BarColumn(bar_width=20),
            _tail_column(),
            console=self.err_console,
            transient=True,
        ) as progress:
            yield progress

    def notice_sink(self) -> EventSink:
        """An event sink that shows notices only (no live display)."""
        return lambda event: self.show_notice(event)

    def show_notice(self, event: Event) -> None:
        from pixeldojo_cli.engine import Notice

        if isinstance(event, Notice):
            if event.level == "warning":
                self.warn(event.message)
            else:
                self.info(event.message)

    @contextmanager
    def job_display(self, mode: str) -> Iterator[EventSink]:
        """The engine's events drawn: a live line per job (with its download bars)
        on a terminal, one plain line per status change otherwise."""
        with self._status_lines(mode) as progress:
            yield JobDisplay(self, mode, progress).handle


def _tail_column() -> Any:
    """Elapsed time and ETA for a job's line; bytes and speed for a file's."""
    from rich.filesize import decimal
    from rich.progress import ProgressColumn
    from rich.text import Text

    class TailColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            if task.fields.get("kind") == "file":
                done = decimal(int(task.completed))
                total = f"/{decimal(int(task.total))}" if task.total else ""
                return Text(f"{done}{total}", style="progress.download")
            tail = _clock(task.elapsed or 0)
            eta_until = task.fields.get("eta_until")
            if eta_until is not None:
                tail += f" (ETA {_clock(max(0.0, eta_until - time.monotonic()))})"
            return Text(tail, style="progress.elapsed")

    return TailColumn()


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


class JobDisplay:
    """The engine's events on stderr: a Rich line per job and per file being
    downloaded, or a plain line per status change (`job: status (3s)`)."""

    def __init__(self, renderer: Renderer, mode: str, progress: Any) -> None:
        self._renderer = renderer
        self._mode = mode
        self._progress = progress
        self._jobs: dict[str, JobProgress] = {}
        self._files: dict[tuple[str, int], Any] = {}

    def handle(self, event: Event) -> None:
        from pixeldojo_cli.engine import FileProgress, JobSeen

        if isinstance(event, JobSeen):
            job_id = event.job_id
            if job_id not in self._jobs:
                self._jobs[job_id] = JobProgress(self._renderer, job_id, self._mode, self._progress)
            self._jobs[job_id].update(event.job.status, event.eta)
        elif isinstance(event, FileProgress):
            self._file(event.job_id, event.index, event.done, event.total)
        else:
            self._renderer.show_notice(event)

    def _file(self, job_id: str, index: int, done: int, total: int | None) -> None:
        if self._progress is None:
            return
        key = (job_id, index)
        if key not in self._files:
            name = f"  {safe_text(job_id)}-{index}"
            self._files[key] = self._progress.add_task(name, kind="file")
        self._progress.update(self._files[key], completed=done, total=total)


class JobProgress:
    """Status updates for one job: a Rich spinner line, or one plain line per change."""

    def __init__(self, renderer: Renderer, job_id: str, mode: str, progress: Any) -> None:
        self._renderer = renderer
        self._job_id = safe_text(job_id)  # a newline in an id must not break the status line
        self._mode = mode
        self._progress = progress
        self._task = (
            progress.add_task(f"{self._job_id}: submitted", total=None, eta_until=None)
            if progress is not None
            else None
        )
        self._started = time.monotonic()
        self._last: str | None = None

    def update(self, status: str, eta: float | None = None) -> None:
        status = safe_text(status)
        elapsed = time.monotonic() - self._started
        from pixeldojo_cli.engine.schedule import format_eta

        left = f", {format_eta(eta)}" if eta is not None else ""
        if self._progress is not None:
            eta_until = None if eta is None else time.monotonic() + eta
            self._progress.update(
                self._task, description=f"{self._job_id}: {status}", eta_until=eta_until
            )
            return
        if status == self._last:
            return
        self._last = status
        if self._mode == "plain":
            self._renderer.info(f"{self._job_id}: {status} ({elapsed:.0f}s{left})")
