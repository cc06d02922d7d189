"""`pixeldojo jobs list`: the API's recent jobs and the local ledger's, as tables or
JSON; their cells (age, expiry, credits, whether saved), shared with `jobs show`;
`--since`, a duration back from now or a date; and the filters of the local
list as options, shared with `gallery`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer

from pixeldojo_cli.cli.render import printable
from pixeldojo_cli.cli.state import AppState
from pixeldojo_cli.cli.tables import Column
from pixeldojo_cli.core import durations
from pixeldojo_cli.core.errors import UsageError

if TYPE_CHECKING:
    from pixeldojo_cli.store.ledger import JobQuery, LedgerJob


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


def credits_cell(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def job_credits(job: LedgerJob) -> float | None:
    """What the API said it charged, else the estimate (a charge of 0 is a charge)."""
    return job.charged_credits if job.charged_credits is not None else job.estimated_credits


def saved_cell(local: LedgerJob | None, now: datetime) -> str:
    if local is None:
        return ""
    if local.downloaded:
        return "saved"
    if local.failed:
        return "-"
    if local.lost or local.deadline() <= now:
        return "EXPIRED UNSAVED"
    return "REFUSED" if local.refused else "NOT SAVED"


def one_line(value: Any, limit: int = 200) -> str:
    """An input value on one line, as typed (strings bare, the rest as JSON)."""
    import json

    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = printable(" ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def prompt_cell(job: LedgerJob) -> str:
    value = job.inputs.get("prompt")
    return one_line(value, 80) if value is not None else ""


JOB_COLUMNS = [
    Column("ID", key=True),
    Column("MODEL", whole=True, drop=3),
    Column("STATUS", drop=2),
    Column("AGE", drop=5),
    Column("EXPIRES IN", drop=7),
    Column("CREDITS", drop=6, justify="right"),
    Column("SAVED", drop=4),
]
# The local ledger: the prompt says which job is which, so it outlasts the numbers.
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


def parse_since(text: str, now: datetime) -> datetime:
    """`--since`: a duration back from now (`2h`, `3d`, `1w`, `1d12h`) or a date
    (`2025-01-31`, `2025-01-31T09:00`, local time unless it says otherwise)."""
    return durations.time_point(text, now, "--since")


# The filters of the ledger's jobs (`jobs list --local`, `gallery`): flag -> (its
# metavar, or None for a switch; what it keeps).
LEDGER_FILTERS: dict[str, tuple[str | None, str]] = {
    "--model": ("MODEL", "only this model (* for any text)."),
    "--status": ("STATUS", "only this status (e.g. failed)."),
    "--since": ("WHEN", "submitted in the last 2h, 3d, 1w, or since a date (2025-01-31)."),
    "--unsaved": (None, "only jobs whose outputs were not saved."),
    "--search": ("TEXT", "only jobs whose prompt or inputs contain TEXT."),
    "--all": (None, "every job, no limit."),
}


def ledger_filter(flag: str, *, prefix: str = "") -> Any:
    """The option of one of `LEDGER_FILTERS`, its help after `prefix` (e.g.
    "With --local: "), or capitalised without one."""
    metavar, keeps = LEDGER_FILTERS[flag]
    text = f"{prefix}{keeps}" if prefix else keeps[:1].upper() + keeps[1:]
    if metavar is None:
        return typer.Option(flag, help=text)
    return typer.Option(flag, metavar=metavar, help=text)


def local_query(
    *,
    model: str | None,
    status: str | None,
    since: str | None,
    unsaved: bool,
    search: str | None,
    limit: int | None,
) -> JobQuery:
    """The ledger query `jobs list --local` and its filters ask for."""
    from pixeldojo_cli.store.ledger import JobQuery

    return JobQuery(
        model=model,
        status=status,
        since=parse_since(since, datetime.now(UTC)) if since is not None else None,
        unsaved=unsaved,
        search=search,
        limit=limit,
    )


def list_local(state: AppState, query: JobQuery, json_output: bool) -> None:
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
            credits_cell(job_credits(job)),
            saved_cell(job, now),
            prompt_cell(job),
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


def list_remote(state: AppState, limit: int, json_output: bool) -> None:
    from pixeldojo_cli.api.results import jobs_by_id, taken_from_list
    from pixeldojo_cli.cli.documents import job_document

    jobs = state.client().list_jobs(limit=limit)
    trusted = jobs_by_id(jobs)
    now = datetime.now(UTC)
    recorder = state.recorder()
    rows, documents = [], []
    for job in jobs:
        local_job = recorder.get(job.id)
        # Cheap, and keeps expiry reminders honest; but an end the list shows
        # other than completed with outputs is a hint, not for the ledger.
        if local_job is not None and trusted.get(job.id) is job and taken_from_list(job):
            recorder.seen(job)
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
                credits_cell(job.credit_cost),
                saved_cell(local_job, now),
            ]
        )
    if json_output:
        state.render.json(documents)
        return
    state.render.table(JOB_COLUMNS, rows, empty="No jobs yet.")
