"""`pixeldojo jobs`: recent jobs (the API's or the local ledger's), one job, waiting."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from pixeldojo_cli.cli.outputs import ChecksumOption, print_results
from pixeldojo_cli.cli.state import AppState, get_state, parse_duration
from pixeldojo_cli.errors import UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.ledger import LedgerJob

app = typer.Typer(help="List, show and wait for jobs.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
JobIdArgument = Annotated[str, typer.Argument(metavar="JOB_ID", help="A job id (job_...).")]


def short_duration(seconds: float) -> str:
    """`45s`, `12m`, `5h`, `3d`: the largest unit that fits."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def age(when: datetime | None, now: datetime) -> str:
    return "-" if when is None else short_duration((now - when).total_seconds())


def expires_in(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "-"
    left = (when - now).total_seconds()
    return "expired" if left <= 0 else short_duration(left)


def _credits(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _saved_state(local: LedgerJob | None, now: datetime) -> str:
    if local is None:
        return ""
    if local.downloaded:
        return "saved"
    if local.failed:
        return "-"
    if local.lost or local.deadline() <= now:
        return "EXPIRED UNSAVED"
    return "NOT SAVED"


def _list_local(state: AppState, limit: int, json_output: bool) -> None:
    from pixeldojo_cli.cli.render import local_job_document
    from pixeldojo_cli.ledger import Ledger, ledger_path

    now = datetime.now(UTC)
    base_url, profile = state.ledger_scope()
    if state.use_emulator:
        raise UsageError("The embedded emulator's jobs are not recorded: there is no local list.")
    jobs: list[LedgerJob] = []
    if ledger_path().exists():
        with Ledger() as ledger:
            jobs = ledger.jobs(base_url=base_url, profile=profile, limit=limit)
    if json_output:
        state.render.json([local_job_document(job, now) for job in jobs])
        return
    rows = [
        [
            job.id,
            job.model,
            job.status,
            age(job.submitted_at, now),
            expires_in(job.deadline(), now) if not job.downloaded else "-",
            _credits(job.charged_credits or job.estimated_credits),
            _saved_state(job, now),
        ]
        for job in jobs
    ]
    state.render.table(["ID", "MODEL", "STATUS", "AGE", "EXPIRES IN", "CREDITS", "SAVED"], rows)
    unsaved = sum(1 for job in jobs if job.needs_saving() and job.deadline() > now)
    if unsaved:
        state.render.note(f"{unsaved} not saved yet: pixeldojo download --pending")
    elif not jobs:
        state.render.note(f"No jobs recorded for {base_url} (profile {profile!r}).")


@app.command(
    "list",
    epilog=(
        "Examples:\n\n  pixeldojo jobs list\n\n  pixeldojo jobs list --local\n\n"
        "  pixeldojo jobs list --limit 50 --json | jq -r '.[].jobId'"
    ),
)
def list_jobs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=100, help="How many.")] = 20,
    local: Annotated[
        bool,
        typer.Option("--local", help="List the local ledger (jobs this CLI submitted) instead."),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Recent jobs from the API: id, model, status, age, expiry, credits, and whether
    this machine saved their outputs."""
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        if local:
            _list_local(state, limit, json_output)
            return
        from pixeldojo_cli.cli.render import job_document

        jobs = state.client().list_jobs(limit=limit)
        now = datetime.now(UTC)
        recorder = state.recorder()
        rows, documents = [], []
        for job in jobs:
            local_job = recorder.get(job.id)
            if local_job is not None:
                recorder.seen(job)  # cheap, and keeps expiry reminders honest
            documents.append(
                job_document(
                    job,
                    local_job.files if local_job else (),
                    saved=local_job.downloaded if local_job else None,
                )
            )
            rows.append(
                [
                    job.id,
                    job.model or "-",
                    job.status,
                    age(job.created_at, now),
                    expires_in(job.output_expiry(), now),
                    _credits(job.credit_cost),
                    _saved_state(local_job, now),
                ]
            )
        if json_output:
            state.render.json(documents)
            return
        state.render.table(["ID", "MODEL", "STATUS", "AGE", "EXPIRES IN", "CREDITS", "SAVED"], rows)


@app.command(
    "show",
    epilog="Examples:\n\n  pixeldojo jobs show job_123\n\n  pixeldojo jobs show job_123 --json",
)
def show(ctx: typer.Context, job_id: JobIdArgument, json_output: JsonOption = False) -> None:
    """Show one job: status, cost, expiry, output URLs and the files saved here.

    Asks the API (`GET /jobs/{id}`) and adds what the local ledger knows:
    the files this machine downloaded, with their sizes.
    """
    from pixeldojo_cli.cli.render import job_document

    state = get_state(ctx)
    with state.guard(json_output=json_output):
        job = state.client().get_job(job_id)
        recorder = state.recorder()
        recorder.seen(job)
        local = recorder.get(job.id)
        if json_output:
            files = local.files if local is not None else ()
            saved = local.downloaded if local is not None else None
            state.render.json(job_document(job, files, saved=saved))
            return
        now = datetime.now(UTC)
        lines = [
            ("Job", job.id),
            ("Model", job.model or (local.model if local else "-")),
            ("Status", job.status + (f" ({job.error})" if job.error else "")),
            ("Age", age(job.created_at, now)),
            ("Credits", _credits(job.credit_cost)),
            ("Expires in", expires_in(job.output_expiry(), now)),
        ]
        for label, value in lines:
            state.render.result(f"{label + ':':12}{value}")
        for n, url in enumerate(job.output_urls, start=1):
            state.render.result(f"{'Output ' + str(n) + ':':12}{url}")
        for f in local.files if local is not None else ():
            state.render.result(f"{'Saved:':12}{f.path} ({f.size} bytes)")
        if local is None:
            state.render.note("Not submitted from this machine (or under --emulator).")


@app.command(
    "wait",
    epilog=(
        "Examples:\n\n  pixeldojo jobs wait job_123\n\n"
        "  pixeldojo jobs wait job_1 job_2 job_3 -o renders/ --timeout 20m"
    ),
)
def wait(
    ctx: typer.Context,
    job_ids: Annotated[list[str], typer.Argument(metavar="JOB_ID...", help="One or more job ids.")],
    output_dir: Annotated[
        str | None,
        typer.Option("--output-dir", "-o", metavar="DIR", help="Where outputs go."),
    ] = None,
    no_download: Annotated[
        bool, typer.Option("--no-download", help="Print output URLs instead of downloading.")
    ] = False,
    checksum: ChecksumOption = None,
    timeout: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="Stop waiting after e.g. 90s, 10m, 1h (exit 9)."),
    ] = None,
    poll_interval: Annotated[
        float | None,
        typer.Option("--poll-interval", metavar="SECONDS", help="First poll delay (default 2)."),
    ] = None,
    max_poll_interval: Annotated[
        float | None,
        typer.Option("--max-poll-interval", metavar="SECONDS", help="Longest delay (default 30)."),
    ] = None,
    json_output: Annotated[
        bool,
        typer.Option("--json", help='Print a JSON list: each job with "files" and "outcome".'),
    ] = False,
) -> None:
    """Wait for jobs to finish and download their outputs, as `run` does.

    Paths go to stdout, one per line. With several jobs the exit code is the
    highest of theirs: 0 only when every job completed and was saved.
    """
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        from pixeldojo_cli.engine import JobFlags, wait_and_save
        from pixeldojo_cli.errors import combined_exit_code

        wait_options, save_options = state.job_options(
            JobFlags(
                output_dir=output_dir,
                poll_interval=poll_interval,
                max_poll_interval=max_poll_interval,
                timeout=parse_duration(timeout),
                checksum=checksum,
                download=not no_download,
            )
        )
        client = state.client()
        with state.render.job_display(state.render.progress_mode()) as notify:
            results = wait_and_save(
                client,
                list(dict.fromkeys(job_ids)),
                wait_options,
                save_options,
                recorder=state.recorder(notify),
                notify=notify,
            )
        print_results(state, results, json_output=json_output)
        code = combined_exit_code(r.exit_code for r in results)
        if code:
            raise typer.Exit(int(code))
