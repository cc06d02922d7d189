"""Flags and finishing touches shared by `run`, `jobs wait` and `download`:
the options they have in common, how results are printed, and `--open`.
The work itself (waiting, downloading, recording) is the engine's."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import typer

from pixeldojo_cli.cli.state import AppState, duration_parser

if TYPE_CHECKING:
    from pixeldojo_cli.engine import JobResult

OPEN_HELP = "Open the first output with the system viewer (when there is a display)."

CHECKSUM_HELP = (
    "Compute each file's SHA-256 on the way in, and keep a file already there only if it "
    "still matches (or PIXELDOJO_CHECKSUM=1, or `config set checksum true`). Default: keep "
    "it if its size and time are as saved, as rsync does."
)
ChecksumOption = Annotated[
    bool | None,
    typer.Option("--checksum/--no-checksum", help=CHECKSUM_HELP, show_default=False),
]

# The waiting flags `run` and `jobs wait` share.
TimeoutOption = Annotated[
    str | None,
    typer.Option(
        "--timeout",
        metavar="DURATION",
        help="Give up after e.g. 90s, 10m, 2d (exit 9): a deadline for the whole command, "
        "submitting, waiting and downloading.",
    ),
]


def whole_command(timeout: float | None) -> AbstractContextManager[None]:
    """`--timeout` as the deadline of all the command does from here on: the
    submission, the waiting, every request and the downloads (`core.deadlines`)."""
    from pixeldojo_cli.core.deadlines import within

    return within(timeout)


PollIntervalOption = Annotated[
    float | None,
    typer.Option(
        "--poll-interval",
        metavar="DURATION",
        parser=duration_parser("--poll-interval"),
        help="Poll on the fixed schedule: this first (0.25s at the least), doubling each "
        "poll (or the poll_interval setting). Default: a schedule learned from the model's "
        "history.",
    ),
]
MaxPollIntervalOption = Annotated[
    float | None,
    typer.Option(
        "--max-poll-interval",
        metavar="DURATION",
        parser=duration_parser("--max-poll-interval"),
        help="Poll on the fixed schedule, never waiting longer than this (default 30s; "
        "or the max_poll_interval setting).",
    ),
]


def print_results(state: AppState, results: Sequence[JobResult], *, json_output: bool) -> None:
    """Each job's saved paths (or URLs) on stdout and its error on stderr; under
    --json one list of result documents instead of the paths."""
    from pixeldojo_cli.cli.documents import result_document

    for result in results:
        if result.error is not None:
            state.render.error(result.error)
        elif not json_output:
            for line in result_lines(result):
                state.render.result(line)
    if json_output:
        state.render.json([result_document(r) for r in results])


def result_lines(result: JobResult) -> list[str]:
    """What a job's result prints on stdout: file paths, or URLs when listed."""
    from pixeldojo_cli.core.errors import Outcome

    if result.outcome is Outcome.LISTED and result.job is not None:
        return list(result.job.output_urls)
    return [str(f.path) for f in result.files]


def has_display() -> bool:
    """macOS and Windows always; elsewhere an X11 or Wayland session."""
    import os
    import sys

    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_first(state: AppState, paths: Sequence[str]) -> None:
    """`--open`: show the first saved file; never fails the command."""
    if not paths:
        return
    if not has_display():
        state.render.warn(f"--open: no display here; the file is at {paths[0]}")
        return
    # Absolute: a relative name such as `-x.html` would reach the opener as an option.
    typer.launch(os.path.abspath(paths[0]))


@dataclass(frozen=True)
class Presentation:
    """How results reach the user: JSON or lines, the progress style, --open."""

    json_output: bool = False
    progress: str = "auto"
    open_output: bool = False
    preview: bool = False

    def finish(self, state: AppState, paths: list[str]) -> None:
        """After the results: --preview draws the first file (not once the
        command's --timeout has passed: decoding a picture takes time), --open
        opens it."""
        if self.preview and paths:
            from pathlib import Path

            from pixeldojo_cli.cli.preview import show_preview
            from pixeldojo_cli.core.deadlines import passed

            if passed():
                state.render.note(f"No preview of {Path(paths[0]).name}: --timeout was reached.")
            else:
                show_preview(Path(paths[0]), state.render)
        if self.open_output:
            open_first(state, paths)
