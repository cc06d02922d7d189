"""`pixeldojo download`: a finished job's outputs onto disk, and the pending sweep."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from pixeldojo_cli.cli.completion.complete import complete_job
from pixeldojo_cli.cli.outputs import OPEN_HELP, ChecksumOption, open_first, print_results
from pixeldojo_cli.cli.state import AppState, get_state
from pixeldojo_cli.core.errors import (
    Outcome,
    OutputRefusedError,
    UsageError,
    combined_exit_code,
)
from pixeldojo_cli.core.text import plural

if TYPE_CHECKING:
    from pixeldojo_cli.engine import SaveOptions

HELP = """\
Download finished jobs' outputs into the output folder.

Files already there with the recorded size and modification time are kept
unless --force (with --checksum: only if they still match their SHA-256).
--pending saves every job in the local ledger whose outputs were never
downloaded and have not expired: run it from cron or a CI step so nothing is
lost to the 24-hour expiry. Exit 7 when a job's outputs expired.
"""

EXAMPLES = """\
Examples:

  pixeldojo download job_123 -o renders/

  pixeldojo download --pending

  # every hour, from cron:
  0 * * * * pixeldojo -q download --pending
"""


def _by_ids(
    state: AppState, job_ids: list[str], save: SaveOptions, json_output: bool, open_output: bool
) -> int:
    from pixeldojo_cli.engine import fetch_and_save

    client = state.client()
    results = []
    with state.render.job_display(state.render.progress_mode()) as notify:
        recorder = state.recorder(notify)
        for job_id in dict.fromkeys(job_ids):
            results.append(fetch_and_save(client, job_id, save, recorder=recorder, notify=notify))
    print_results(state, results, json_output=json_output)
    if open_output:
        open_first(state, [str(f.path) for r in results for f in r.files])
    return combined_exit_code(r.exit_code for r in results)


def _sweep(state: AppState, save: SaveOptions, json_output: bool, open_output: bool) -> int:
    """`download --pending`: save what was paid for and never downloaded."""
    from pixeldojo_cli.engine import sweep_pending

    if state.use_emulator:
        raise UsageError(
            "Jobs run on the embedded emulator are not recorded, so there is nothing pending."
        )
    base_url, profile = state.ledger_scope()
    recorder = state.recorder()
    skipped = [job.id for job in recorder.skipped_as_refused()]
    if not recorder.unsaved():
        kept = recorder.kept_unsaved()
        if kept:  # the ledger could not be opened: "nothing pending" would be untrue
            state.render.warn(
                f"The job ledger could not be opened (see above), so this sweep cannot save "
                f"{plural(len(kept), 'job')} kept in pending-records.jsonl beside it: "
                f"{' '.join(kept)}. Save them with `pixeldojo download ID`, or make the "
                "ledger openable and sweep again."
            )
        else:
            state.render.info(f"Nothing pending for {base_url} (profile {profile!r}).")
        _say_skipped(state, skipped)
        if json_output:
            state.render.json([])
        return 0
    with state.render.job_display(state.render.progress_mode()) as notify:
        recorder.notify = notify
        results = sweep_pending(state.client(), save, recorder, notify=notify)
    print_results(state, results, json_output=json_output)
    if open_output:
        open_first(state, [str(f.path) for r in results for f in r.files])
    saved = sum(1 for r in results if r.outcome is Outcome.SAVED)
    running = sum(1 for r in results if r.outcome is Outcome.RUNNING)
    summary = f"Saved {saved} of {plural(len(results), 'pending job')}"
    if running:
        summary += f"; {running} still running (the next sweep gets them)"
    state.render.info(summary + ".")
    lost = [r.job_id for r in results if r.outcome is Outcome.EXPIRED]
    if lost:
        state.render.warn(
            f"{plural(len(lost), 'job')} expired before their outputs were saved: {', '.join(lost)}"
        )
    refused = [r.job_id for r in results if isinstance(r.error, OutputRefusedError)]
    if refused:
        state.render.warn(
            f"{plural(len(refused), 'job')} had outputs refused and will not be tried by "
            f"later sweeps: {', '.join(refused)}"
        )
    retry = [
        r.job_id
        for r in results
        if r.outcome is Outcome.ERROR and not isinstance(r.error, OutputRefusedError)
    ]
    if retry:
        state.render.warn(
            f"{plural(len(retry), 'job')} could not be saved this time and stay pending for "
            f"the next sweep: {', '.join(retry)}"
        )
    _say_skipped(state, skipped)
    # A job that failed on the server is over, not a failure of the sweep.
    return combined_exit_code((r.exit_code for r in results), server_failures_ok=True)


def _say_skipped(state: AppState, skipped: list[str]) -> None:
    """The note about jobs an earlier sweep found refused: skipped, not failed."""
    if skipped:
        named = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" * (len(skipped) > 10))
        state.render.info(
            f"Skipped {plural(len(skipped), 'job')} whose outputs were refused before: "
            f"{named}. If what refused them has changed (the "
            "allow_private_outputs setting), `pixeldojo download ID` tries one again."
        )


def download(
    ctx: typer.Context,
    job_ids: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[JOB_ID]...", help="Jobs to download.", autocompletion=complete_job
        ),
    ] = None,
    pending: Annotated[
        bool,
        typer.Option("--pending", help="Every ledger job never downloaded and not yet expired."),
    ] = False,
    output_dir: Annotated[
        str | None,
        typer.Option(
            "--output-dir",
            "-o",
            metavar="DIR",
            help="Where outputs go (default: the folder given when the job was submitted).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if the files are there.")
    ] = False,
    checksum: ChecksumOption = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON list: one entry per job.")
    ] = False,
    open_output: Annotated[bool, typer.Option("--open", help=OPEN_HELP)] = False,
) -> None:
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        from pixeldojo_cli.engine import JobFlags

        if pending and job_ids:
            raise UsageError("Give job ids or --pending, not both.")
        _, save = state.job_options(JobFlags(output_dir=output_dir, checksum=checksum, force=force))
        if pending:
            state.remind = False  # the sweep itself says what it saved and what was lost
            code = _sweep(state, save, json_output, open_output)
        elif job_ids:
            code = _by_ids(state, job_ids, save, json_output, open_output)
        else:
            raise UsageError("Nothing to download.", hint="Give one or more job ids, or --pending.")
        if code:
            raise typer.Exit(code)
