"""`pixeldojo download`: a finished job's outputs onto disk, and the pending sweep."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.jobs_cmd import worst_exit
from pixeldojo_cli.cli.outputs import (
    OPEN_HELP,
    ChecksumOption,
    finished_recorded_job,
    open_first,
    record_status,
)
from pixeldojo_cli.cli.state import AppState, get_state
from pixeldojo_cli.errors import ExpiredError, JobNotFinishedError, PixelDojoError, UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.client import Client

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


def _download_one(
    state: AppState, client: Client, job_id: str, output_dir: str | None, force: bool
) -> tuple[Any, list[str]]:
    job = client.get_job(job_id)
    record_status(state, job)
    if not job.is_terminal:
        raise JobNotFinishedError(
            f"Job {job_id} has not finished yet (status: {job.status}).",
            hint=f"Wait for it and download it with: pixeldojo jobs wait {job_id}",
        )
    return job, finished_recorded_job(state, client, job, output_dir, download=True, force=force)


def _by_ids(
    state: AppState,
    job_ids: list[str],
    output_dir: str | None,
    force: bool,
    json_output: bool,
    open_output: bool,
) -> int:
    client = state.client()
    codes: list[int] = []
    documents: list[dict[str, Any]] = []
    for job_id in dict.fromkeys(job_ids):
        try:
            job, paths = _download_one(state, client, job_id, output_dir, force)
        except PixelDojoError as exc:
            state.render.error(exc)
            codes.append(int(exc.exit_code))
            documents.append({"jobId": job_id, **exc.to_json()})
            continue
        codes.append(0)
        documents.append({**job.raw, "files": paths})
        if not json_output:
            for path in paths:
                state.render.result(path)
    if json_output:
        state.render.json(documents)
    if open_output:
        open_first(state, [path for doc in documents for path in doc.get("files", [])])
    return worst_exit(codes)


def _sweep(state: AppState, output_dir: str | None, json_output: bool) -> int:
    """`download --pending`: save what was paid for and never downloaded."""
    if state.use_emulator:
        raise UsageError(
            "Jobs run on the embedded emulator are not recorded, so there is nothing pending."
        )
    ledger = state.ledger()
    base_url, profile = state.ledger_scope()
    pending = ledger.unsaved(base_url=base_url, profile=profile) if ledger is not None else []
    if not pending:
        state.render.info(f"Nothing pending for {base_url} (profile {profile!r}).")
        if json_output:
            state.render.json([])
        return 0
    client = state.client()
    codes: list[int] = []
    documents: list[dict[str, Any]] = []
    saved = running = 0
    lost: list[str] = []
    for local in pending:
        outcome: dict[str, Any] = {"jobId": local.id, "model": local.model}
        try:
            job, paths = _download_one(state, client, local.id, output_dir, force=False)
        except ExpiredError as exc:
            assert ledger is not None
            ledger.mark_lost(base_url, local.id)
            lost.append(local.id)
            codes.append(int(exc.exit_code))
            outcome.update(outcome="expired", **exc.to_json())
        except JobNotFinishedError:  # not finished yet: the next sweep gets it
            running += 1
            outcome.update(outcome="running")
        except PixelDojoError as exc:
            state.render.error(exc)
            codes.append(int(exc.exit_code))
            outcome.update(
                outcome="failed" if exc.code == "job_failed" else "error", **exc.to_json()
            )
        else:
            saved += 1
            outcome.update(outcome="saved", status=job.status, files=paths)
            if not json_output:
                for path in paths:
                    state.render.result(path)
        documents.append(outcome)
    if json_output:
        state.render.json(documents)
    summary = f"Saved {saved} of {len(pending)} pending job(s)"
    if running:
        summary += f"; {running} still running (the next sweep gets them)"
    state.render.info(summary + ".")
    if lost:
        state.render.warn(
            f"{len(lost)} job(s) expired before their outputs were saved: {', '.join(lost)}"
        )
    # A failed job is settled, not a sweep failure: its exit 5 does not count here.
    return worst_exit([c for c in codes if c != 5])


def download(
    ctx: typer.Context,
    job_ids: Annotated[
        list[str] | None, typer.Argument(metavar="[JOB_ID]...", help="Jobs to download.")
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
    state.checksum = checksum
    with state.guard(json_output=json_output):
        if pending and job_ids:
            raise UsageError("Give job ids or --pending, not both.")
        if pending:
            state.remind = False  # the sweep itself says what it saved and what was lost
            code = _sweep(state, output_dir, json_output)
        elif job_ids:
            code = _by_ids(state, job_ids, output_dir, force, json_output, open_output)
        else:
            raise UsageError("Nothing to download.", hint="Give one or more job ids, or --pending.")
        if code:
            raise typer.Exit(code)
