"""`pixeldojo jobs`: recent jobs (the API's or the local ledger's), one job, waiting."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from pixeldojo_cli.cli.completion.complete import complete_job
from pixeldojo_cli.cli.outputs import (
    ChecksumOption,
    MaxPollIntervalOption,
    PollIntervalOption,
    TimeoutOption,
    print_results,
)
from pixeldojo_cli.cli.render import printable
from pixeldojo_cli.cli.state import AppState, get_state, parse_duration
from pixeldojo_cli.cli.tables import Column, human_size
from pixeldojo_cli.core.errors import PixelDojoError, UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.api.results import Job
    from pixeldojo_cli.store.ledger import JobQuery, LedgerJob

app = typer.Typer(help="List, show and wait for jobs.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
JobIdArgument = Annotated[
    str,
    typer.Argument(metavar="JOB_ID", help="A job id (job_...).", autocompletion=complete_job),
]


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


def _one_line(value: Any, limit: int = 200) -> str:
    """An input value on one line, as typed (strings bare, the rest as JSON)."""
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = printable(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _prompt(job: LedgerJob) -> str:
    value = job.inputs.get("prompt")
    return _one_line(value, 80) if value is not None else ""


JOB_COLUMNS = [
    Column("ID", key=True),
    Column("MODEL", whole=True, drop=3),
    Column("STATUS", drop=2),
    Column("AGE", drop=5),
    Column("EXPIRES IN", drop=7),
    Column("CREDITS", drop=6, justify="right"),
    Column("SAVED", drop=4),
]
# The local history: the prompt says which job is which, so it outlasts the numbers.
LOCAL_COLUMNS = [
    Column("ID", key=True),
    Column("MODEL", whole=True, drop=3),
    Column("STATUS", drop=2),
    Column("AGE", drop=6),
    Column("EXPIRES IN", drop=8),
    Column("CREDITS", drop=7, justify="right"),
    Column("SAVED", drop=4),
    Column("PROMPT", drop=5, least=12),
]

_SINCE = re.compile(r"(\d+(?:\.\d+)?)([wdhms])")
_SINCE_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: a duration back from now (`2h`, `3d`, `1w`, `1d12h`) or a date
    (`2025-01-31`, `2025-01-31T09:00`, local time unless it says otherwise)."""
    compact = text.strip().lower().replace(" ", "")
    pieces = list(_SINCE.finditer(compact))
    if pieces and "".join(m.group(0) for m in pieces) == compact:
        seconds = sum(float(m.group(1)) * _SINCE_UNITS[m.group(2)] for m in pieces)
        return now - timedelta(seconds=min(seconds, 100 * 365 * 86400))
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"--since takes a duration like 2h, 3d or 1w, or a date like 2025-01-31; got {text!r}."
        ) from None
    return when.astimezone(UTC) if when.tzinfo else when.astimezone().astimezone(UTC)


def _list_local(state: AppState, query: JobQuery, json_output: bool) -> None:
    from pixeldojo_cli.cli.documents import local_job_document
    from pixeldojo_cli.store.ledger import JobQuery, Ledger, ledger_path

    now = datetime.now(UTC)
    if state.use_emulator:
        raise UsageError("The embedded emulator's jobs are not recorded: there is no local list.")
    base_url, profile = state.ledger_scope()
    query = replace(query, base_url=base_url, profile=profile)
    jobs: list[LedgerJob] = []
    if ledger_path().exists():
        with Ledger() as ledger:
            jobs = ledger.find(query)
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
            _prompt(job),
        ]
        for job in jobs
    ]
    filtered = replace(query, base_url=None, profile=None, limit=None) != JobQuery()
    matching = " that match" if filtered else ""
    state.render.table(
        LOCAL_COLUMNS,
        rows,
        empty=f"No jobs{matching} in the local ledger for {base_url} (profile {profile!r}).",
    )
    unsaved = sum(1 for job in jobs if job.needs_saving() and job.deadline() > now)
    if unsaved:
        state.render.note(f"{unsaved} not saved yet: pixeldojo download --pending")
    if query.limit and len(jobs) == query.limit:
        state.render.note(f"The newest {query.limit}; more with --limit N or --all.")


@app.command(
    "list",
    epilog=(
        "Examples:\n\n  pixeldojo jobs list\n\n  pixeldojo jobs list --local\n\n"
        "  pixeldojo jobs list --local --since 3d --search lighthouse\n\n"
        "  pixeldojo jobs list --local --unsaved --all --json | jq -r '.[].jobId'\n\n"
        "  pixeldojo jobs list --limit 50 --json | jq -r '.[].jobId'"
    ),
)
def list_jobs(
    ctx: typer.Context,
    limit: Annotated[
        int,
        typer.Option(
            "--limit",
            "-n",
            metavar="N",
            min=1,
            help="How many, newest first (at most 100 from the API).",
        ),
    ] = 20,
    all_jobs: Annotated[
        bool, typer.Option("--all", help="With --local: every job, no limit.")
    ] = False,
    local: Annotated[
        bool,
        typer.Option("--local", help="List the local ledger (jobs this CLI submitted) instead."),
    ] = False,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", metavar="MODEL", help="With --local: only this model (* for any text)."
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", metavar="STATUS", help="With --local: only this status (e.g. failed)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="WHEN",
            help="With --local: submitted in the last 2h, 3d, 1w, or since a date (2025-01-31).",
        ),
    ] = None,
    unsaved: Annotated[
        bool,
        typer.Option("--unsaved", help="With --local: only jobs whose outputs were not saved."),
    ] = False,
    search: Annotated[
        str | None,
        typer.Option(
            "--search",
            metavar="TEXT",
            help="With --local: only jobs whose prompt or inputs contain TEXT.",
        ),
    ] = None,
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
        filters = {
            "--model": model,
            "--status": status,
            "--since": since,
            "--unsaved": unsaved or None,
            "--search": search,
            "--all": all_jobs or None,
        }
        if local:
            from pixeldojo_cli.store.ledger import JobQuery

            now = datetime.now(UTC)
            query = JobQuery(
                model=model,
                status=status,
                since=parse_since(since, now) if since is not None else None,
                unsaved=unsaved,
                search=search,
                limit=None if all_jobs else limit,
            )
            _list_local(state, query, json_output)
            return
        given = [name for name, value in filters.items() if value is not None]
        if given:
            raise UsageError(
                f"{', '.join(given)} {'goes' if len(given) == 1 else 'go'} with --local "
                "(the jobs this machine submitted).",
                hint=f"Try: pixeldojo jobs list --local {' '.join(given)} ...",
            )
        if limit > 100:
            raise UsageError(f"The API lists at most 100 jobs; got --limit {limit}.")
        _list_remote(state, limit, json_output)


def _list_remote(state: AppState, limit: int, json_output: bool) -> None:
    from pixeldojo_cli.cli.documents import job_document

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
    state.render.table(JOB_COLUMNS, rows, empty="No jobs yet.")


def _label(name: str, value: str) -> str:
    return f"{name + ':' if name else '':12}{value}"


def _input_lines(inputs: dict[str, Any]) -> list[str]:
    """The inputs, prompt first: `Prompt:` then one `name=value` per line."""
    lines = []
    if "prompt" in inputs:
        lines.append(_label("Prompt", _one_line(inputs["prompt"], 2000)))
    others = [f"{key}={_one_line(value)}" for key, value in inputs.items() if key != "prompt"]
    for n, text in enumerate(others):
        lines.append(_label("Inputs" if n == 0 else "", printable(text)))
    return lines


def _local_lines(local: LedgerJob) -> list[str]:
    lines = _input_lines(local.inputs)
    lines += [_label("Saved", f"{f.path} ({human_size(f.size)})") for f in local.files]
    return lines


@app.command(
    "show",
    epilog=(
        "Examples:\n\n  pixeldojo jobs show job_123\n\n  pixeldojo jobs show job_123 --json\n\n"
        "  pixeldojo jobs show job_123 --preview"
    ),
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
    shown, and the exit code is the API's (7 or 6).
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
            _label("Credits", _credits(job.credit_cost)),
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
            _label("Credits", _credits(local.charged_credits or local.estimated_credits)),
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
