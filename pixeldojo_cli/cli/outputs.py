"""What `run`, `jobs wait` and `download` share: waiting with progress, and
getting a finished job's outputs onto disk with the ledger and metadata kept."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.state import AppState
from pixeldojo_cli.errors import ExitCode, JobFailedError, PixelDojoError, WaitTimeoutError

if TYPE_CHECKING:
    from pixeldojo_cli.client import Client
    from pixeldojo_cli.downloads import DownloadedFile
    from pixeldojo_cli.ledger import LedgerFile
    from pixeldojo_cli.results import Job


def interrupted(state: AppState, job_ids: list[str]) -> typer.Exit:
    """Ctrl-C while waiting: the jobs keep running; say how to pick them up again."""
    ids = " ".join(job_ids)
    state.render.err_console.print(
        f"\nInterrupted. {'Job' if len(job_ids) == 1 else 'Jobs'} {ids} "
        f"{'keeps' if len(job_ids) == 1 else 'keep'} running on the server.\n"
        f"Resume with: pixeldojo jobs wait {ids}",
        markup=False,
    )
    return typer.Exit(int(ExitCode.INTERRUPTED))


def wait_for_job(
    state: AppState,
    client: Client,
    job: Job,
    *,
    poll_interval: float,
    max_poll_interval: float,
    timeout: float | None,
    progress_mode: str,
) -> Job:
    """Wait until the job is terminal, drawing progress. Ctrl-C exits 130 with a
    hint; the job keeps running on the server."""
    mode = state.render.progress_mode(progress_mode)
    try:
        with state.render.job_progress(job.id, mode) as progress:
            progress.update(job.status)
            for update in client.wait(
                job.id,
                poll_interval=poll_interval,
                max_poll_interval=max_poll_interval,
                timeout=timeout,
            ):
                job = update
                progress.update(job.status)
                record_status(state, job)
    except KeyboardInterrupt:
        raise interrupted(state, [job.id]) from None
    return job


def wait_for_jobs(
    state: AppState,
    client: Client,
    job_ids: list[str],
    *,
    poll_interval: float,
    max_poll_interval: float,
    timeout: float | None,
    progress_mode: str,
) -> dict[str, Job | PixelDojoError]:
    """Wait for several jobs at once, each with its own backoff, in one thread.

    Every job is looked at straight away (a finished one returns at once).
    The result maps each id to its last state, or to the error that ended
    its wait (a `WaitTimeoutError` once `timeout` has passed).
    """
    mode = state.render.progress_mode(progress_mode)
    deadline = None if timeout is None else time.monotonic() + timeout
    due = dict.fromkeys(job_ids, time.monotonic())
    interval = dict.fromkeys(job_ids, poll_interval)
    results: dict[str, Job | PixelDojoError] = {}
    try:
        with state.render.jobs_progress(mode) as board:
            while due:
                job_id = min(due, key=due.__getitem__)
                pause = due[job_id] - time.monotonic()
                if deadline is not None and time.monotonic() + max(pause, 0) >= deadline:
                    time.sleep(max(0.0, deadline - time.monotonic()))
                    for waiting in due:
                        results[waiting] = WaitTimeoutError(
                            f"Job {waiting} is still running after the timeout.", job_id=waiting
                        )
                    break
                if pause > 0:
                    time.sleep(pause)
                try:
                    job = client.get_job(job_id)
                except PixelDojoError as exc:
                    results[job_id] = exc
                    del due[job_id]
                    continue
                board.update(job_id, job.status)
                record_status(state, job)
                if job.is_terminal:
                    results[job_id] = job
                    del due[job_id]
                else:
                    due[job_id] = time.monotonic() + interval[job_id]
                    interval[job_id] = min(interval[job_id] * 2, max_poll_interval)
    except KeyboardInterrupt:
        raise interrupted(state, list(due)) from None
    return results


def record_status(state: AppState, job: Job) -> None:
    """Keep the ledger's idea of a job we submitted up to date."""
    ledger = state.ledger()
    if ledger is not None:
        base_url, _ = state.ledger_scope()
        ledger.update_job(base_url, job)


def ledger_entry(n: int, file: DownloadedFile) -> LedgerFile:
    """How the ledger records output `n` once it is on disk."""
    from pixeldojo_cli.ledger import LedgerFile

    path = str(file.path.resolve())
    return LedgerFile(n, path, file.size, file.sha256, file.url, mtime_ns=file.mtime_ns)


def save_outputs(
    state: AppState,
    client: Client,
    job: Job,
    folder: Path,
    *,
    model: str,
    inputs: dict[str, Any],
    force: bool = False,
) -> list[DownloadedFile]:
    """Download a completed job's outputs into `folder`: files already there and
    intact are kept (unless `force`), each file is recorded in the ledger as it
    lands, and `<jobId>.json` is written beside them."""
    from pixeldojo_cli.downloads import (
        DownloadedFile,
        download_outputs,
        recorded_files,
        write_metadata,
    )

    ledger = state.ledger()
    base_url, _ = state.ledger_scope()
    existing: dict[int, DownloadedFile] = {}
    if not force:
        existing.update(recorded_files(folder, job.id))
        known = ledger.get(base_url, job.id) if ledger is not None else None
        for record in known.files if known is not None else ():
            existing.setdefault(
                record.n,
                DownloadedFile(
                    Path(record.path),
                    record.size,
                    record.sha256,
                    record.url,
                    mtime_ns=record.mtime_ns,
                ),
            )

    def on_saved(n: int, file: DownloadedFile) -> None:
        if ledger is not None:
            ledger.record_files(base_url, job.id, [ledger_entry(n, file)])

    mode = state.render.progress_mode()
    try:
        with state.render.download_progress(job.id, len(job.output_urls), mode) as progress:
            files = download_outputs(
                client.transport,
                job,
                folder,
                existing=existing,
                on_progress=progress,
                on_saved=on_saved,
                checksum=state.wants_checksum(),
            )
    except KeyboardInterrupt:
        state.render.err_console.print(
            f"\nInterrupted while downloading job {job.id}; no partial file was left under "
            f"a final name.\nResume with: pixeldojo download {job.id}",
            markup=False,
        )
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    write_metadata(folder, job, model, inputs, files)
    return files


def finished_outputs(
    state: AppState,
    client: Client,
    job: Job,
    *,
    folder: Path,
    model: str,
    inputs: dict[str, Any],
    download: bool,
    force: bool = False,
) -> list[str]:
    """A terminal job's outputs: saved file paths, or the URLs with `download=False`.

    A failed job raises `JobFailedError` (exit 5).
    """
    if job.status == "failed":
        raise JobFailedError(
            f"Job {job.id} failed: {job.error or 'no reason given'}.",
            job_id=job.id,
            hint="Nothing to download. Check the inputs and try again.",
        )
    if not job.output_urls:
        state.render.warn(f"Job {job.id} completed without any output URL.")
    if not download:
        return list(job.output_urls)
    files = save_outputs(state, client, job, folder, model=model, inputs=inputs, force=force)
    kept = [f for f in files if f.skipped]
    if kept:
        state.render.info(
            f"{job.id}: {len(kept)} file(s) already saved and intact, not downloaded again "
            "(--force fetches them anyway)."
        )
    return [str(f.path) for f in files]


def finished_recorded_job(
    state: AppState,
    client: Client,
    job: Job,
    output_dir: str | None,
    *,
    download: bool,
    force: bool = False,
) -> list[str]:
    """`finished_outputs` for a job the ledger may know: into the folder it was
    submitted for unless -o, with the model and inputs recorded for it."""
    ledger = state.ledger()
    local = ledger.get(state.ledger_scope()[0], job.id) if ledger is not None else None
    if output_dir is None and local is not None:
        folder = Path(local.output_dir)
    else:
        folder = state.output_dir(output_dir)
    return finished_outputs(
        state,
        client,
        job,
        folder=folder,
        model=local.model if local else (job.model or "unknown"),
        inputs=local.inputs if local else {},
        download=download,
        force=force,
    )


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


def has_display() -> bool:
    """macOS and Windows always; elsewhere an X11 or Wayland session."""
    import os
    import sys

    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def open_first(state: AppState, paths: list[str]) -> None:
    """`--open`: show the first saved file; never fails the command."""
    if not paths:
        return
    if not has_display():
        state.render.warn(f"--open: no display here; the file is at {paths[0]}")
        return
    typer.launch(paths[0])
