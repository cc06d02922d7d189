"""The progress display on stderr: a live Rich line per job (with a bar per file
being downloaded) and one bar for a batch on a terminal, or one plain line per
status change elsewhere. Rich's progress machinery is imported only when a
live display is actually drawn."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from pixeldojo_cli.core.text import safe_text

if TYPE_CHECKING:
    from collections import Counter

    from rich.console import Console

    from pixeldojo_cli.engine import Event, EventSink


class StatusWriter(Protocol):
    """What the display needs of the renderer: its stderr console and status lines."""

    @property
    def err_console(self) -> Console: ...

    def stderr_is_utf8(self) -> bool: ...

    def info(self, message: str) -> None: ...

    def show_notice(self, event: Event) -> None: ...


@contextmanager
def job_display(out: StatusWriter, mode: str) -> Iterator[EventSink]:
    """The engine's events drawn: a live line per job (with its download bars)
    on a terminal (`rich`), one plain line per status change otherwise."""
    with _status_lines(out, mode) as progress:
        yield JobDisplay(out, mode, progress).handle


@contextmanager
def batch_progress(
    out: StatusWriter, counts: Callable[[], Counter[str]], total: int, mode: str
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
        console=out.err_console,
        transient=True,
    )
    unfinished = ("queued", "running")
    separator = " · " if out.stderr_is_utf8() else ", "

    def refresh() -> None:
        now = counts()
        text = safe_text(separator.join(f"{n} {state}" for state, n in sorted(now.items()) if n))
        done = sum(n for state, n in now.items() if state not in unfinished)
        progress.update(task, completed=done, description=text)

    with progress:
        task = progress.add_task("", total=total)
        refresh()
        yield refresh


@contextmanager
def _status_lines(out: StatusWriter, mode: str) -> Iterator[Any]:
    """Rich's live spinner lines on a terminal (`rich`); None otherwise."""
    if mode != "rich":
        yield None
        return
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

    # Braille dots need UTF-8; elsewhere they would print as `\u280b`.
    spinner = SpinnerColumn("dots" if out.stderr_is_utf8() else "line")
    with Progress(
        spinner,
        TextColumn("{task.description}", markup=False),
        BarColumn(bar_width=20),
        _tail_column(),
        console=out.err_console,
        transient=True,
    ) as progress:
        yield progress


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

    def __init__(self, out: StatusWriter, mode: str, progress: Any) -> None:
        self._out = out
        self._mode = mode
        self._progress = progress
        self._jobs: dict[str, JobProgress] = {}
        self._files: dict[tuple[str, int], Any] = {}

    def handle(self, event: Event) -> None:
        from pixeldojo_cli.engine import FileProgress, JobSeen

        if isinstance(event, JobSeen):
            job_id = event.job_id
            if job_id not in self._jobs:
                self._jobs[job_id] = JobProgress(self._out, job_id, self._mode, self._progress)
            self._jobs[job_id].update(event.job.status, event.eta)
        elif isinstance(event, FileProgress):
            self._file(event.job_id, event.index, event.done, event.total)
        else:
            self._out.show_notice(event)

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

    def __init__(self, out: StatusWriter, job_id: str, mode: str, progress: Any) -> None:
        self._out = out
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
            self._out.info(f"{self._job_id}: {status} ({elapsed:.0f}s{left})")
