"""Sweeps and comparisons on the command line (`run --matrix`, `run "a {b|c}"`,
`compare`): plan every job with `engine.sweeps`, print it (`--dry-run`) or run
it through the batch (`batch.drive_plan`), and end with what the sweep made:
a summary, and under `--json` one summary line after the jobs' own lines.

JSON Lines under `--json`: one object per job as it ends (a `run --batch`
line's shape, see `batch.line_document`, plus `model`, `varied`, `seed`,
`credits`, `estimatedCredits`, `seconds`), then one
`{"summary": {...}}` object (see `summary_document`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from pixeldojo_cli.cli.commands.batch import LineHooks, drive_plan, line_document, summary
from pixeldojo_cli.cli.outputs import open_first
from pixeldojo_cli.cli.state import AppState
from pixeldojo_cli.core.text import json_line, plural

if TYPE_CHECKING:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.api.results import Model
    from pixeldojo_cli.cli.outputs import Presentation
    from pixeldojo_cli.engine import Recorder, SaveOptions, WaitOptions
    from pixeldojo_cli.engine.batch import Batch, BatchOptions
    from pixeldojo_cli.engine.batch_lines import Line
    from pixeldojo_cli.engine.sweeps import SweepAsk, SweepPlan, SweepResult


def run_sweep(
    state: AppState,
    client: Client,
    models: Sequence[tuple[Model, dict[str, Any]]],
    ask: SweepAsk,
    batch_options: BatchOptions,
    options: tuple[WaitOptions, SaveOptions],
    show: Presentation,
    *,
    dry_run: bool = False,
) -> None:
    """Plan the sweep (nothing spent on a bad value), then print it or run it."""
    from pixeldojo_cli.engine.sweeps import plan_sweep

    plan = plan_sweep(models, replace(ask, confirmed=ask.confirmed or dry_run), state.render.warn)
    if dry_run:
        from pixeldojo_cli.cli.budget_view import whole_budget_lines

        _print_plan(state, plan, batch_options.webhook_url, confirmed=ask.confirmed)
        whole = "the comparison's" if plan.kind == "compare" else "the sweep's"
        for line in whole_budget_lines(state, plan.total_estimate(), batch_options.budget, whole):
            state.render.info(line)
        return
    batch, result, first_files = _run(state, client, plan, batch_options, options, show)
    sheet = None
    if batch_options.wait and options[1].download:
        sheet = _contact_sheet(state, result, options[1].folder_for(None))
    if show.json_output:
        document = summary_document(batch, plan, result)
        document["contactSheet"] = None if sheet is None else str(sheet)
        state.render.result(json_line({"summary": document}))
    if sheet is not None and show.open_output:  # --open: the sheet, not the first picture
        open_first(state, [str(sheet)])
        show = replace(show, open_output=False)
    show.finish(state, first_files)
    code = batch.exit_code()
    if code:
        raise typer.Exit(int(code))


def _contact_sheet(state: AppState, result: SweepResult, folder: Path) -> Path | None:
    """`contact-sheet.html` of this sweep's jobs in the output folder, grouped by
    what varied first (the model in a comparison); its path, said on stderr.
    Never fatal: the outputs are saved whatever becomes of the page."""
    from pixeldojo_cli.core.errors import PixelDojoError
    from pixeldojo_cli.engine.gallery import SheetRequest, sheet_for_jobs

    if not result.job_ids:
        return None
    first = next(iter(result.varied_keys), None)
    group_by = () if first is None else ("prompt" if first.startswith("prompt{") else first,)
    title = "Comparison" if result.kind == "compare" else "Sweep"
    request = SheetRequest(folder / "contact-sheet.html", title, group_by)
    try:
        path = sheet_for_jobs(state.recorder(), result.job_ids, request)
    except (OSError, PixelDojoError) as exc:
        state.render.warn(f"No contact sheet: {exc}")
        return None
    state.render.info(f"Contact sheet: {path}")
    return path


def _run(
    state: AppState,
    client: Client,
    plan: SweepPlan,
    batch_options: BatchOptions,
    options: tuple[WaitOptions, SaveOptions],
    show: Presentation,
) -> tuple[Batch, SweepResult, list[str]]:
    """Every job through the batch; each one recorded in the ledger as one of
    the sweep, with what varied for it."""
    from pixeldojo_cli.engine.sweeps import SweepTracker

    recorder = state.recorder()
    tracker = SweepTracker(plan, recorder)
    hooks = LineHooks(
        document=lambda line: job_document(line, plan, recorder),
        label=lambda line: f"job {line.number} ({_varied_text(plan.varied_at(line.index))})",
        on_submitted=tracker.submitted,
        on_ended=tracker.ended,
    )
    batch, first_files = drive_plan(
        state, client, plan.model_at(0), plan, batch_options, options, show, hooks
    )
    title = "Comparison" if plan.kind == "compare" else "Sweep"
    summary(state, batch, title=title, unit="job")
    return batch, tracker.result(), first_files


def _varied_text(varied: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in varied.items()) or "-"


def job_document(line: Line, plan: SweepPlan, recorder: Recorder) -> dict[str, Any]:
    """One job of a sweep under --json: a batch line's document, plus its
    `model`, what `varied`, its `seed`, the `credits` it cost (the API's
    `creditCost`; null when not known), `estimatedCredits`, and `seconds` from
    submission to completion (null when not known)."""
    inputs = plan.at(line.index, line.number)
    document = line_document(line)
    document.update(
        model=plan.model_at(line.index),
        varied=plan.varied_at(line.index),
        seed=inputs.get("seed"),
        credits=line.job.credit_cost if line.job is not None else None,
        estimatedCredits=line.estimate,
        seconds=_seconds(line, recorder),
    )
    return document


def _seconds(line: Line, recorder: Recorder) -> float | None:
    job = line.job
    if job is not None and job.completed_at is not None and job.created_at is not None:
        return round((job.completed_at - job.created_at).total_seconds(), 3)
    known = recorder.get(line.job_id) if line.job_id else None
    return None if known is None or known.duration is None else round(known.duration, 3)


def summary_document(batch: Batch, plan: SweepPlan, result: SweepResult) -> dict[str, Any]:
    """The last line under --json: `kind` (`sweep` or `compare`), `groupId` (the
    ledger's id of this sweep: the same sweep, rerun, has the same), `models`,
    `varied` (the keys that vary), `jobs` (how many), `outcomes` (jobs per
    outcome), `creditsSpent`, `estimatedCredits`, and `jobIds` in plan order."""
    return {
        "kind": plan.kind,
        "groupId": plan.group_id,
        "models": [target.model.id for target in plan.targets],
        "varied": list(result.varied_keys),
        "jobs": len(plan),
        "outcomes": dict(batch.counts()),
        "creditsSpent": batch.spent,
        "estimatedCredits": plan.total_estimate(),
        "jobIds": list(result.job_ids),
    }


def _print_plan(
    state: AppState, plan: SweepPlan, webhook_url: str | None, *, confirmed: bool
) -> None:
    """--dry-run: every job as one JSON line on stdout, the total on stderr."""
    from pixeldojo_cli.inputs.sweeps import CONFIRM_ABOVE

    for number, model, varied, inputs, estimate in plan.bodies():
        body = {**inputs, **({"webhook_url": webhook_url} if webhook_url else {})}
        document = {
            "line": number,
            "model": model,
            "varied": varied,
            "body": body,
            "estimatedCredits": estimate,
        }
        state.render.result(json_line(document))
    models = len(plan.targets)
    over = f" over {plural(models, 'model')}" if plan.kind == "compare" else ""
    state.render.info(
        f"{plural(len(plan), 'job')}{over}, estimated "
        f"{plural(plan.total_estimate(), 'credit')} in all. Nothing was submitted."
    )
    if len(plan) > CONFIRM_ABOVE and not confirmed:
        state.render.warn(f"More than {CONFIRM_ABOVE} jobs: running it needs --yes.")
