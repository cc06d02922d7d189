"""`pixeldojo jobs`: recent jobs (the API's or the local ledger's), one job, waiting.
The tables of `jobs list` are in `jobs_list`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.commands.jobs_list import (
    age,
    credits_cell,
    expires_in,
    job_credits,
    ledger_filter,
    list_local,
    list_remote,
    local_query,
    one_line,
)
from pixeldojo_cli.cli.completion.complete import complete_job
from pixeldojo_cli.cli.help import PixelDojoCommand, PixelDojoGroup
from pixeldojo_cli.cli.outputs import (
    ChecksumOption,
    MaxPollIntervalOption,
    PollIntervalOption,
    TimeoutOption,
    print_results,
    whole_command,
)
from pixeldojo_cli.cli.render import printable
from pixeldojo_cli.cli.state import AppState, get_state
from pixeldojo_cli.cli.tables import human_size
from pixeldojo_cli.core.durations import parse_duration
from pixeldojo_cli.core.errors import PixelDojoError, UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.api.results import Job
    from pixeldojo_cli.store.ledger import LedgerJob

app = typer.Typer(help="List, show and wait for jobs.", no_args_is_help=True, cls=PixelDojoGroup)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
JobIdArgument = Annotated[
    str,
    typer.Argument(metavar="JOB_ID", help="A job id (job_...).", autocompletion=complete_job),
]

# --- the options of `jobs list` ------------------------------------------------------

LimitOption = Annotated[
    int,
    typer.Option(
        "--limit",
        "-n",
        metavar="N",
        min=1,
        help="How many, newest first (at most 100 from the API).",
    ),
]
LOCAL_ONLY = "With --local: "
AllOption = Annotated[bool, ledger_filter("--all", prefix=LOCAL_ONLY)]
LocalOption = Annotated[
    bool,
    typer.Option("--local", help="List the local ledger (jobs this CLI submitted) instead."),
]
ModelFilter = Annotated[str | None, ledger_filter("--model", prefix=LOCAL_ONLY)]
StatusFilter = Annotated[str | None, ledger_filter("--status", prefix=LOCAL_ONLY)]
SinceFilter = Annotated[str | None, ledger_filter("--since", prefix=LOCAL_ONLY)]
UnsavedFilter = Annotated[bool, ledger_filter("--unsaved", prefix=LOCAL_ONLY)]
SearchFilter = Annotated[str | None, ledger_filter("--search", prefix=LOCAL_ONLY)]


@app.command(
    "list",
    epilog=(
        "Examples:\n\n  pixeldojo jobs list\n\n  pixeldojo jobs list --local\n\n"
        "  pixeldojo jobs list --local --since 3d --search lighthouse\n\n"
        "  pixeldojo jobs list --local --unsaved --all --json | jq -r '.[].jobId'\n\n"
        "  pixeldojo jobs list --limit 50 --json | jq -r '.[].jobId'"
    ),
    cls=PixelDojoCommand,
)
def list_jobs(
    ctx: typer.Context,
    limit: LimitOption = 20,
    all_jobs: AllOption = False,
    local: LocalOption = False,
    model: ModelFilter = None,
    status: StatusFilter = None,
    since: SinceFilter = None,
    unsaved: UnsavedFilter = False,
    search: SearchFilter = None,
    json_output: JsonOption = False,
) -> None:
    """Recent jobs from the API: id, model, status, age, expiry, credits, and whether
    this machine saved their outputs.

    With --local, the jobs this machine submitted, from the local ledger, with
    their prompts; --model, --status, --since, --unsaved and --search narrow
    that list, and --json carries every job's inputs and saved files.
    """
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        if local:
            query = local_query(
                model=model,
                status=status,
                since=since,
                unsaved=unsaved,
                search=search,
                limit=None if all_jobs else limit,
            )
            list_local(state, query, json_output)
            return
        filters = {
            "--model": model,
            "--status": status,
            "--since": since,
            "--unsaved": unsaved or None,
            "--search": search,
            "--all": all_jobs or None,
        }
        _refuse_local_filters([name for name, value in filters.items() if value is not None])
        if limit > 100:
            raise UsageError(f"The API lists at most 100 jobs; got --limit {limit}.")
        list_remote(state, limit, json_output)


def _refuse_local_filters(given: list[str]) -> None:
    """The filters of the local list, given without --local: a usage error."""
    if given:
        raise UsageError(
            f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} with --local "
            "(the jobs this machine submitted).",
            hint=f"Try: pixeldojo jobs list --local {' '.join(given)} ...",
        )


def _label(name: str, value: str) -> str:
    return f"{name + ':' if name else '':12}{value}"


def _input_lines(inputs: dict[str, Any]) -> list[str]:
    """The inputs, prompt first: `Prompt:` then one `name=value` per line."""
    lines = []
    if "prompt" in inputs:
        lines.append(_label("Prompt", one_line(inputs["prompt"], 2000)))
    others = [f"{key}={one_line(value)}" for key, value in inputs.items() if key != "prompt"]
    for n, text in enumerate(others):
        lines.append(_label("Inputs" if n == 0 else "", printable(text)))
    return lines


def _local_lines(local: LedgerJob) -> list[str]:
    lines = _input_lines(local.inputs)
    lines += [_label("Saved", f"{f.path} ({human_size(f.size)})") for f in local.files]
    lines += [_label("File input", printable(_file_input_text(f))) for f in local.input_files]
    return lines


def _file_input_text(entry: dict[str, Any]) -> str:
    """One `@` input as sent: `image_url: /home/me/photo.png (sha256 ab12...) as URL`."""
    where = f"{entry['input']}" + ("" if entry.get("index") is None else f"[{entry['index']}]")
    source = entry.get("path") or f"job {entry.get('job')}"
    if entry.get("job") and entry.get("path"):
        source = f"job {entry['job']}, saved as {entry['path']}"
    digest = f" (sha256 {entry['sha256']})" if entry.get("sha256") else ""
    return f"{where}: {source}{digest} as {entry.get('url')}"


@app.command(
    "show",
    epilog=(
        "Examples:\n\n  pixeldojo jobs show job_123\n\n  pixeldojo jobs show job_123 --json\n\n"
        "  pixeldojo jobs show job_123 --preview"
    ),
    cls=PixelDojoCommand,
)
def show(
    ctx: typer.Context,
    job_id: JobIdArgument,
    json_output: JsonOption = False,
    preview: Annotated[
        bool | None,
        typer.Option(
            "--preview/--no-preview",
            show_default=False,
            help="Draw the first saved image in the terminal (or PIXELDOJO_PREVIEW=1, or "
            "`config set preview true`). Needs pixeldojo-cli[preview].",
        ),
    ] = None,
) -> None:
    """Show one job: its prompt and inputs, status, cost, expiry, output URLs and the
    files saved here.

    Asks the API (`GET /jobs/{id}`) and adds what the local ledger knows: the
    inputs it was submitted with and the files this machine downloaded. When the
    API no longer knows the job (expired, not found), the local part is still
    shown, and the exit code is the API's (7 or 6). A file input (@PATH or
    @job:ID/N) is shown with its path or source job, SHA-256 and the URL sent.
    """
    from pixeldojo_cli.core.errors import ExpiredError, NotFoundError

    state = get_state(ctx)
    with state.guard(json_output=json_output):
        recorder = state.recorder()
        local = recorder.get(job_id)
        job: Job | None = None
        problem: PixelDojoError | None = None
        try:
            job = state.client().get_job(job_id)
        except (ExpiredError, NotFoundError) as exc:
            if local is None:
                raise
            problem = exc
        now = datetime.now(UTC)
        if job is not None:
            recorder.seen(job)
            local = recorder.get(job_id)
        if json_output:
            _show_json(state, job_id, job, local, problem, now)
        else:
            _show_text(state, job, local, problem, now)
            if _preview_wanted(state, preview) and local is not None:
                _preview_first(state, local)
        if problem is not None:
            raise typer.Exit(int(problem.exit_code))


def _show_json(
    state: AppState,
    job_id: str,
    job: Job | None,
    local: LedgerJob | None,
    problem: PixelDojoError | None,
    now: datetime,
) -> None:
    """The job entity (with the inputs it was submitted with, and what the
    ledger knows under `local`); when the API no longer has the job, the error
    entity with the same `local`."""
    from pixeldojo_cli.cli.documents import job_document, local_job_document

    local_document = local_job_document(local, now) if local is not None else None
    if job is not None:
        document = job_document(
            job,
            local.files if local is not None else (),
            saved=local.downloaded if local is not None else None,
        )
        document["inputs"] = local.inputs if local is not None else None
        document["local"] = local_document
        state.render.json(document)
        return
    assert problem is not None
    document = problem.to_json()
    document["error"]["message"] = state.render.scrub(problem.message)
    inputs = local.inputs if local is not None else None
    state.render.json({**document, "jobId": job_id, "inputs": inputs, "local": local_document})


def _show_text(
    state: AppState,
    job: Job | None,
    local: LedgerJob | None,
    problem: PixelDojoError | None,
    now: datetime,
) -> None:
    render = state.render
    if job is not None:
        lines = [
            _label("Job", job.id),
            _label("Model", job.model or (local.model if local else "-")),
            _label("Status", job.status + (f" ({printable(str(job.error))})" if job.error else "")),
            _label("Age", age(job.created_at, now)),
            _label("Credits", credits_cell(job.credit_cost)),
            _label("Expires in", expires_in(job.output_expiry(), now)),
        ]
        lines += [_label(f"Output {n}", url) for n, url in enumerate(job.output_urls, start=1)]
    else:
        assert local is not None
        lines = [
            _label("Job", local.id),
            _label("Model", local.model),
            _label("Status", f"{local.status} (last seen here)"),
            _label("Submitted", f"{age(local.submitted_at, now)} ago"),
            _label("Credits", credits_cell(job_credits(local))),
        ]
    if local is not None:
        lines += _local_lines(local)
    for line in lines:
        render.result(line)
    if problem is not None:
        render.error(problem)
    elif local is None:
        render.note("Not submitted from this machine (or under --emulator).")


def _preview_wanted(state: AppState, flag: bool | None) -> bool:
    if flag is not None:
        return flag
    return bool(state.settings().preview.value)


def _preview_first(state: AppState, local: LedgerJob) -> None:
    """Draw the first saved file that is still there (an image, when it is one)."""
    from pathlib import Path

    from pixeldojo_cli.cli.preview import show_preview

    for saved in local.files:
        path = Path(saved.path)
        if path.is_file():
            show_preview(path, state.render)
            return
    state.render.note("Nothing to preview: no saved file of this job is on disk.")


@app.command(
    "wait",
    epilog=(
        "Examples:\n\n  pixeldojo jobs wait job_123\n\n"
        "  pixeldojo jobs wait job_1 job_2 job_3 -o renders/ --timeout 20m"
    ),
    cls=PixelDojoCommand,
)
def wait(
    ctx: typer.Context,
    job_ids: Annotated[
        list[str],
        typer.Argument(
            metavar="JOB_ID...", help="One or more job ids.", autocompletion=complete_job
        ),
    ],
    output_dir: Annotated[
        str | None,
        typer.Option("--output-dir", "-o", metavar="DIR", help="Where outputs go."),
    ] = None,
    no_download: Annotated[
        bool, typer.Option("--no-download", help="Print output URLs instead of downloading.")
    ] = False,
    checksum: ChecksumOption = None,
    timeout: TimeoutOption = None,
    poll_interval: PollIntervalOption = None,
    max_poll_interval: MaxPollIntervalOption = None,
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
        from pixeldojo_cli.core.errors import combined_exit_code
        from pixeldojo_cli.engine import JobFlags, wait_and_save

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
        with (
            whole_command(wait_options.timeout),
            state.render.job_display(state.render.progress_mode()) as notify,
        ):
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
