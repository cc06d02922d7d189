"""`run MODEL --batch FILE`: the command-line side of `pixeldojo_cli.engine.batch`.

Reads the file, plans and checks every line before anything is spent, then
hands the batch to the library and draws what it reports: one bar (a
terminal) or one line per finished line (plain), results on stdout as each
line ends, and a summary table on stderr.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pixeldojo_cli.cli.state import AppState
from pixeldojo_cli.core.errors import Outcome
from pixeldojo_cli.core.text import json_line, plural

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Model
    from pixeldojo_cli.cli.outputs import Presentation
    from pixeldojo_cli.engine import EventSink, SaveOptions, WaitOptions
    from pixeldojo_cli.engine.batch import Batch, BatchOptions
    from pixeldojo_cli.engine.batch_book import LineSource
    from pixeldojo_cli.engine.batch_file import BatchFile
    from pixeldojo_cli.engine.batch_lines import Line, Plan
    from pixeldojo_cli.engine.uploaders import UploadSettings


@dataclass(frozen=True)
class BatchRequest:
    """What `run --batch` was asked: the file, the inputs every line shares,
    and the batch's own options."""

    batch_file: str
    options: BatchOptions
    assignments: tuple[str, ...] = ()
    base_inputs: dict[str, Any] | None = None
    seed: int | None = None
    dry_run: bool = False
    upload: UploadSettings | None = None
    auto_seed: bool = False


def run_batch(
    state: AppState,
    client: Client,
    model: Model,
    schema: dict[str, Any],
    request: BatchRequest,
    options: tuple[WaitOptions, SaveOptions],
    show: Presentation,
) -> None:
    """Plan, check, then submit and follow every line of the batch."""
    from pixeldojo_cli.engine.batch_lines import plan_batch
    from pixeldojo_cli.inputs.schema import build_inputs

    defaults = build_inputs(
        schema,
        assignments=list(request.assignments),
        base=request.base_inputs,
        seed=request.seed,
    )
    batch_file = open_batch_file(request.batch_file)
    try:
        plan = plan_batch(
            model, schema, batch_file, defaults, request.upload, auto_seed=request.auto_seed
        )
        if request.dry_run:
            _print_plan(state, plan, request.options)
        else:
            _run_plan(state, client, model, plan, request, options, show)
    finally:
        batch_file.close()


def open_batch_file(path: str) -> BatchFile:
    """The --batch FILE, `-` meaning standard input, open for reading as bytes;
    a usage error (never a traceback) when it cannot be opened."""
    import sys

    from pixeldojo_cli.core.errors import UsageError
    from pixeldojo_cli.engine.batch_file import BatchFile

    try:
        stream = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or exc
        raise UsageError(f"Cannot read --batch {path[:200]!r}: {reason}.") from exc
    return BatchFile(stream, path, copy=path == "-")


def _run_plan(
    state: AppState,
    client: Client,
    model: Model,
    plan: Plan,
    request: BatchRequest,
    options: tuple[WaitOptions, SaveOptions],
    show: Presentation,
) -> None:
    """Submit and follow every planned line: the progress, each line's result as
    it ends, the summary, and the batch's exit code."""
    batch, first_files = drive_plan(state, client, model.id, plan, request.options, options, show)
    summary(state, batch)
    show.finish(state, first_files)
    code = batch.exit_code()
    if code:
        raise typer.Exit(int(code))


@dataclass(frozen=True)
class LineHooks:
    """What a caller of `drive_plan` adds to a batch: each ended line's JSON
    document and label, and calls as lines are submitted and end."""

    document: Callable[[Line], dict[str, Any]] = field(default=lambda line: line_document(line))
    label: Callable[[Line], str] = field(default=lambda line: f"line {line.number}")
    on_submitted: Callable[[Line], None] = field(default=lambda line: None)
    on_ended: Callable[[Line], None] = field(default=lambda line: None)


def drive_plan(
    state: AppState,
    client: Client,
    model_id: str,
    plan: LineSource,
    batch_options: BatchOptions,
    options: tuple[WaitOptions, SaveOptions],
    show: Presentation,
    hooks: LineHooks | None = None,
) -> tuple[Batch, list[str]]:
    """Submit and follow every planned line, showing the progress and each line's
    result as it ends; the batch, and the first file saved (for --open, --preview)."""
    from pixeldojo_cli.core.errors import JobsInterruptedError
    from pixeldojo_cli.engine.batch import Batch

    hooks = hooks or LineHooks()
    wait_options, save_options = options
    if save_options.download:
        from pixeldojo_cli.store.files import ensure_writable_folder

        ensure_writable_folder(save_options.folder_for(None))
    mode = state.render.progress_mode(show.progress)
    first_files: list[str] = []  # what --preview and --open show (not every file: memory)

    def line_done(line: Line) -> None:
        first_files.extend(str(f.path) for f in line.files[: 1 - len(first_files)])
        hooks.on_ended(line)
        _line_done(state, line, show.json_output, mode, refresh, hooks)

    with state.render.batch_progress(lambda: batch.counts(), len(plan), mode) as refresh:
        notify: EventSink = state.render.notice_sink()
        batch = Batch(
            client,
            model_id,
            plan,
            batch_options,
            wait_options,
            save_options,
            recorder=state.recorder(notify),
            notify=notify,
            on_line=line_done,
            on_submitted=hooks.on_submitted,
        )
        batch.resume()
        try:
            batch.run()
        except JobsInterruptedError as exc:
            if not show.json_output:
                raise
            # JSON Lines stay JSON Lines: the interruption is one more line.
            state.render.error(exc)
            state.render.result(json_line(exc.to_json(), ensure_ascii=True))
            raise typer.Exit(int(exc.exit_code)) from None
    return batch, first_files


def _print_plan(state: AppState, plan: Plan, options: BatchOptions) -> None:
    from pixeldojo_cli.cli.budget_view import budget_lines
    from pixeldojo_cli.engine import Submission
    from pixeldojo_cli.engine.file_inputs import check_file_inputs

    webhook_url = options.webhook_url
    source = plan.source
    for number, asked, estimate in plan.bodies():
        inputs, files = check_file_inputs(source.schema, asked, source.upload)
        body = {**inputs, **({"webhook_url": webhook_url} if webhook_url else {})}
        document = {"line": number, "body": body, "estimatedCredits": estimate}
        if files is not None:
            document["files"] = files.planned()  # what it would upload; nothing is
        state.render.result(json_line(document, ensure_ascii=True))
    total = plan.total_estimate()
    state.render.info(
        f"{plural(len(plan), 'job')}, estimated {plural(total, 'credit')} in all. "
        "Nothing was submitted."
    )
    if options.budget is not None:  # (the whole batch, as if it were one job)
        whole = Submission(plan.source.model_id, {}, Path("."), total, listed_cost=None)
        for line in budget_lines(state, whole, options.budget, what="the batch's"):
            state.render.info(line)


def line_document(line: Line) -> dict[str, Any]:
    """One finished line under --json (a line of JSON Lines): `line`, `outcome`,
    `jobId`, `files` (file objects), `urls` with --no-download, and `error` or
    `reason` when there is one; the job itself under `job` when it was seen."""
    from pixeldojo_cli.cli.documents import file_document, job_document

    document: dict[str, Any] = {
        "line": line.number,
        "outcome": str(line.outcome),
        "jobId": line.job_id,
        "files": [file_document(f) for f in line.files],
    }
    if line.outcome is Outcome.LISTED and line.job is not None:
        document["urls"] = list(line.job.output_urls)
    if line.resumed:
        document["resumed"] = True
    if line.error is not None:
        document["error"] = line.error.to_json()["error"]
    elif line.note:
        document["reason"] = line.note
    if line.job is not None:
        document["job"] = job_document(line.job, line.files, saved=line.saved)
    return document


def _line_done(
    state: AppState, line: Line, json_output: bool, mode: str, refresh: Any, hooks: LineHooks
) -> None:
    """A line ended: its results on stdout, a line for people on stderr (its
    error even under -q, as every command's errors)."""
    render = state.render
    if json_output:
        render.result(json_line(hooks.document(line)))
    elif line.outcome is Outcome.SUBMITTED:
        render.result(line.job_id or "")
    elif line.outcome is Outcome.LISTED and line.job is not None:
        for url in line.job.output_urls:
            render.result(url)
    else:
        for file in line.files:
            render.result(str(file.path))
    label = hooks.label(line) + (f" ({line.job_id})" if line.job_id else "")
    if line.outcome is Outcome.TIMED_OUT:
        pass  # one summary line says it for all of them
    elif line.error is not None:
        render.line_error(label, line.error)
    elif line.outcome is Outcome.SKIPPED:
        render.info(f"{label}: skipped, {line.note}")
    elif mode == "plain":
        resumed = " (from an earlier run)" if line.resumed else ""
        render.info(f"{label}: {line.outcome}{resumed}")
    refresh()


def summary(state: AppState, batch: Batch, title: str = "Batch", unit: str = "line") -> None:
    """A small table on stderr for people (`title` of so many `unit`s)."""
    counts = batch.counts()
    order = [str(o) for o in Outcome]
    rows = [(name, str(counts[name])) for name in order if counts[name]]
    resumed = batch.lines.resumed
    rows += [
        ("from earlier runs", str(resumed)),
        ("credits spent", f"{batch.spent:g}"),
        ("status requests", str(batch.follower.requests)),
    ]
    skipped = counts[str(Outcome.SKIPPED)]
    if state.render.quiet:
        return
    state.render.info(f"{title} of {plural(len(batch.lines), unit)}:")
    for label, value in rows:
        state.render.info(f"  {label:<18}{value:>8}")
    if skipped:
        state.render.warn(
            f"{plural(skipped, unit)} not submitted: they would have passed --max-credits "
            "or a budget (exit 4). Raise it and rerun the same command to do them."
        )
