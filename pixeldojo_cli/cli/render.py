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
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from collections import Counter

    from rich.console import Console

    from pixeldojo_cli.errors import PixelDojoError

# Unicode categories Cc (C0, DEL, C1), Cf (bidi controls, zero-width and other
# invisible format characters), Cs (lone surrogates), Zl and Zp (U+2028/2029),
# written out so that importing this module stays cheap; a test checks the set
# against `unicodedata`.
_FORMAT_CHARS = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
_UNSAFE = re.compile(f"[\x00-\x1f\x7f-\x9f{_FORMAT_CHARS}]")
# The same, less what `json.dumps` escapes itself (C0) or writes as layout (newlines).
_UNSAFE_IN_JSON = re.compile(f"[\x7f-\x9f{_FORMAT_CHARS}]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    """One unsafe character as a JSON-style escape (`\\n`, `\\u001b`, a surrogate pair)."""
    char = match.group()
    short = _SHORT_ESCAPES.get(char)
    if short is not None:
        return short
    code = ord(char)
    if code > 0xFFFF:
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def safe_text(text: str) -> str:
    """`text` with every control, format and line-separator character made visible
    as an escape (`\\u001b`, `\\n`), so it is one line that cannot drive a terminal.

    The escapes are JSON's, so a JSON document passed through it stays valid
    JSON with the same meaning.
    """
    text = str(text)
    return _UNSAFE.sub(_escape, text) if _UNSAFE.search(text) else text


def safe_lines(text: str) -> str:
    """`safe_text` for each line of a message whose line breaks are our own."""
    return "\n".join(safe_text(line) for line in str(text).split("\n"))


def dump_json(value: Any) -> str:
    """The CLI's JSON: indented, UTF-8, anything unknown as a string.

    Beyond what `json.dumps` escapes, C1 controls, DEL, U+2028/2029, bidi and
    other format characters and lone surrogates are written as `\\uXXXX`: the
    same JSON value, and nothing in it a terminal would act on.
    """
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return _UNSAFE_IN_JSON.sub(_escape, text)


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

    def add_secret(self, secret: object) -> None:
        """Never print `secret` whole: errors and traces show it masked."""
        if isinstance(secret, str) and secret:
            self._secrets.add(secret)

    def scrub(self, text: str) -> str:
        """`text` with every known secret masked (last 4 characters at most), in
        any of the forms it may take in a message (escaped, URL-encoded...)."""
        from pixeldojo_cli.redact import redact

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
        self, columns: Sequence[str], rows: Sequence[Sequence[str]], *, title: str | None = None
    ) -> None:
        """A table on stdout: Rich for a terminal, tab-separated lines for a pipe."""
        cells = [[self._cell(cell) for cell in row] for row in rows]
        if not self.stdout_is_terminal():
            for row in cells:
                self._write_stdout("\t".join(row))
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=title, show_edge=False, header_style="bold", pad_edge=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in cells:
            table.add_row(*(Text(cell) for cell in row))  # Text: no Rich markup from the server
        self.out_console.print(table)

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
        """`rich` for a terminal, `plain` lines otherwise, `none` with --quiet."""
        if self.quiet or requested == "none":
            return "none"
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
            TextColumn("{task.description}", markup=False),
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
            TextColumn("{task.description}", markup=False),
            console=self.err_console,
            transient=True,
        )
        finished = ("saved", "failed", "error", "skipped", "submitted", "unfinished")

        def refresh() -> None:
            now = counts()
            text = safe_text(" · ".join(f"{n} {state}" for state, n in sorted(now.items()) if n))
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

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
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
        name = safe_text(job_id)
        self._tasks = {n: progress.add_task(f"{name}-{n}", total=None) for n in range(1, count + 1)}

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
        self._job_id = safe_text(job_id)  # a newline in an id must not break the status line
        self._mode = mode
        self._progress = progress
        self._task = (
            progress.add_task(f"{self._job_id}: submitted") if progress is not None else None
        )
        self._started = time.monotonic()
        self._last: str | None = None

    def update(self, status: str) -> None:
        if status == self._last:
            return
        self._last = status
        elapsed = time.monotonic() - self._started
        status = safe_text(status)
        if self._progress is not None:
            self._progress.update(self._task, description=f"{self._job_id}: {status}")
        elif self._mode == "plain":
            self._renderer.info(f"{self._job_id}: {status} ({elapsed:.0f}s)")

    def downloading(self, count: int) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, description=f"{self._job_id}: downloading {count} file(s)"
            )
        elif self._mode == "plain":
            self._renderer.info(f"{self._job_id}: downloading {count} file(s)")
