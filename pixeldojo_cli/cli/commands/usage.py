"""`pixeldojo usage` (what the ledger says was spent) and `pixeldojo credits`
(the balance the API last reported). Neither makes a request: the API
publishes no route for either."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from pixeldojo_cli.cli.state import AppState, get_state
from pixeldojo_cli.cli.tables import Column
from pixeldojo_cli.core import durations, timestamps
from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.core.text import plural

if TYPE_CHECKING:
    from pixeldojo_cli.store.ledger import Balance, Ledger, Spend, SpentJob

USAGE_HELP = """\
Credits spent, from the local ledger: per day, model or profile, with a total.

Credits are what the API said it charged for each job; where it never said,
the estimate made before submitting, shown apart (ESTIMATED). Failed jobs are
counted apart: the API may refund them, and this CLI cannot know whether it
did. SECONDS: seconds of video asked for, from each job's `duration` input or
its model's default as last fetched.

It covers the current API (its base URL) and every profile on it; --profile
NAME (or PIXELDOJO_PROFILE) narrows it to one profile. Days are calendar days
in local time (the header says which). --since and --until take a duration
back from now (2h, 3d, 1w) or a date (2025-01-31, local time unless it says
otherwise); --until is not included (--until 2025-02-01 stops before that day).
A job whose time the ledger cannot read (a hand-edited row) counts on the day
"unknown", and in no --since/--until window.
No request is made: only jobs this machine submitted are counted.
"""

USAGE_EXAMPLES = """\
Examples:

  pixeldojo usage --since 7d

  pixeldojo usage --by model --since 2025-01-01 --until 2025-02-01

  pixeldojo usage --profile work --model "flux-*" --json | jq .total.credits
"""

CREDITS_HELP = """\
The credits balance the API last reported, with when and for which profile and API.

The API reports the balance only in its answer to a submitted job
(`creditsRemaining`), and publishes no route to ask for it: this shows the
balance as of the last job this machine submitted, without a request, or says
that none was seen yet.
"""

CREDITS_EXAMPLES = """\
Examples:

  pixeldojo credits

  pixeldojo credits --profile work --json | jq .credits
"""

BY_CHOICES = ("day", "model", "profile")
T = TypeVar("T")

SinceOption = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="WHEN",
        help="Jobs submitted in the last 2h, 3d, 1w, or since a date (2025-01-31).",
    ),
]
UntilOption = Annotated[
    str | None,
    typer.Option(
        "--until",
        metavar="WHEN",
        help="Jobs submitted before 2h, 3d, 1w ago, or before a date (not included).",
    ),
]
ByOption = Annotated[
    str,
    typer.Option("--by", metavar="day|model|profile", help="One row per day, model or profile."),
]
ModelOption = Annotated[
    str | None,
    typer.Option("--model", metavar="MODEL", help="Only this model (* for any text)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def usage(
    ctx: typer.Context,
    since: SinceOption = None,
    until: UntilOption = None,
    by: ByOption = "day",
    model: ModelOption = None,
    json_output: JsonOption = False,
) -> None:
    """Credits spent, from the local ledger (see USAGE_HELP)."""
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        report = UsageReport.asked(state, since=since, until=until, by=by, model=model)
        report.show(state, json_output)


def credits(ctx: typer.Context, json_output: JsonOption = False) -> None:
    """The balance as last reported (see CREDITS_HELP)."""
    state = get_state(ctx)
    with state.guard(json_output=json_output):
        refuse_the_emulator(state, "no balance is kept")
        base_url, profile = state.ledger_scope()
        balance = read_ledger(state, lambda ledger: ledger.balance(base_url, profile))
        if json_output:
            from pixeldojo_cli.cli.documents import balance_document

            state.render.json(balance_document(base_url, profile, balance))
            return
        state.render.result(balance_line(base_url, profile, balance, datetime.now(UTC)))


def refuse_the_emulator(state: AppState, what: str) -> None:
    if state.use_emulator:
        raise UsageError(f"The embedded emulator's jobs are not recorded: {what}.")


def read_ledger(state: AppState, read: Callable[[Ledger], T]) -> T | None:
    """`read(ledger)`, or None when there is no ledger yet (nothing is created).
    A ledger that cannot be opened is a `LedgerError` (exit 10)."""
    from pixeldojo_cli.store.ledger import Ledger, ledger_path

    if not ledger_path().exists():
        return None
    with Ledger() as ledger:
        if ledger.moved_aside is not None:
            state.render.warn(
                f"The job ledger was damaged; it was moved to {ledger.moved_aside} "
                "and a new one started."
            )
        return read(ledger)


def credits_text(value: float) -> str:
    """Credits as people write them: `12`, `0.35`, `1234.5`; a huge value as `1e+20`."""
    if abs(value) >= 1e15:
        return f"{value:g}"
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def credits_word(value: float) -> str:
    return "credit" if value == 1 else "credits"


def local_time(when: datetime | None) -> str:
    """`2025-01-31 09:00` in local time (`timestamps.local_text`: never raises)."""
    return timestamps.local_text(when)


def utc_offset(now: datetime) -> str:
    """The local offset from UTC now, `UTC+01:00`."""
    offset = timestamps.local(now).strftime("%z") or "+0000"
    return f"UTC{offset[:3]}:{offset[3:]}"


def balance_line(base_url: str, profile: str, balance: Balance | None, now: datetime) -> str:
    """What `credits` prints: the balance, when, for which profile and API."""
    if balance is None:
        return (
            f"No balance seen yet for profile {profile!r} on {base_url}: the API reports "
            "it only in its answer to a submitted job."
        )
    after = f" after job {balance.job_id}" if balance.job_id else ""
    return (
        f"{credits_text(balance.credits)} {credits_word(balance.credits)} remaining for "
        f"profile {profile!r} on {base_url}, as the API reported at {local_time(balance.seen_at)}"
        f"{seen_how_long_ago(balance.seen_at, now)}{after}."
    )


def seen_how_long_ago(seen_at: datetime | None, now: datetime) -> str:
    """` (3h ago)`; for a time later than now (a clock that was ahead) `
    (2d in the future: a clock was wrong)`; nothing for an unknown time."""
    from pixeldojo_cli.cli.commands.jobs_list import age

    if seen_at is None:
        return ""
    if seen_at > now:
        return f" ({age(now, seen_at)} in the future: a clock was wrong)"
    return f" ({age(seen_at, now)} ago)"


class UsageReport:
    """One `pixeldojo usage`: what was asked, the jobs it covers, and how to show them."""

    def __init__(self, scope: dict[str, Any], by: str, window: tuple[datetime | None, ...]):
        self.scope = scope
        self.by = by
        self.since, self.until = window
        self.jobs: list[SpentJob] = []

    @classmethod
    def asked(
        cls, state: AppState, *, since: str | None, until: str | None, by: str, model: str | None
    ) -> UsageReport:
        """The flags checked (a usage error, exit 2, before the ledger is read)."""
        from pixeldojo_cli.cli.documents import rfc3339

        asked_by, by = by, by.strip().lower()
        if by not in BY_CHOICES:
            raise UsageError(f"--by must be day, model or profile; got {asked_by[:40]!r}.")
        now = datetime.now(UTC)
        start = durations.time_point(since, now, "--since") if since is not None else None
        end = durations.time_point(until, now, "--until") if until is not None else None
        if start is not None and end is not None and start >= end:
            raise UsageError(
                f"The window is empty: --since {since!r} ({local_time(start)}) is not before "
                f"--until {until!r} ({local_time(end)})."
            )
        refuse_the_emulator(state, "there is no usage to report")
        base_url, profile = state.ledger_scope()
        source = state.settings().profile.source
        scope = {
            "baseUrl": base_url,
            "profile": profile if source == "flag" or source.startswith("env:") else None,
            "model": model,
            "since": rfc3339(start),
            "until": rfc3339(end),
            "by": by,
            "timezone": utc_offset(now),
        }
        report = cls(scope, by, (start, end))
        report.jobs = read_ledger(state, report.read) or []
        return report

    def read(self, ledger: Ledger) -> list[SpentJob]:
        from pixeldojo_cli.store.ledger import JobQuery

        query = JobQuery(
            base_url=self.scope["baseUrl"],
            profile=self.scope["profile"],
            model=self.scope["model"],
            since=self.since,
            until=self.until,
        )
        return ledger.spending(query)

    def key(self, job: SpentJob) -> str:
        if self.by == "model":
            return job.model
        if self.by == "profile":
            return job.profile
        return timestamps.local_day(job.submitted_at)

    def summed(self) -> tuple[dict[str, Spend], Spend]:
        """The rows and the total, each job's seconds from its inputs or its model's default."""
        from pixeldojo_cli.store.ledger import grouped, total

        seconds_of = DefaultSeconds(self.scope["baseUrl"])
        return grouped(self.jobs, self.key, seconds_of), total(self.jobs, seconds_of)

    def show(self, state: AppState, json_output: bool) -> None:
        from pixeldojo_cli.cli.documents import usage_document

        rows, whole = self.summed()
        if json_output:
            state.render.json(usage_document(self.scope, rows, whole))
            return
        if not self.jobs:
            state.render.info(f"No jobs in the local ledger {self.describe()}.")
            return
        state.render.info(f"Credits spent {self.describe()}, by {self.by}{self.days()}:")
        columns = [Column(self.by.upper(), key=True), *USAGE_COLUMNS]
        cells = [[key, *spend_cells(spend)] for key, spend in rows.items()]
        state.render.table(columns, [*cells, ["total", *spend_cells(whole)]])
        for note in spend_notes(whole):
            state.render.note(note)

    def describe(self) -> str:
        """`on URL (every profile) since ... until ...`, for the header."""
        profile = self.scope["profile"]
        who = "every profile" if profile is None else f"profile {profile!r}"
        text = f"on {self.scope['baseUrl']} ({who})"
        if self.scope["model"]:
            text += f" for model {self.scope['model']!r}"
        if self.since is not None:
            text += f" since {local_time(self.since)}"
        if self.until is not None:
            text += f" until {local_time(self.until)}"
        return text

    def days(self) -> str:
        return f" (days in local time, {self.scope['timezone']})" if self.by == "day" else ""


USAGE_COLUMNS = [
    Column("JOBS", justify="right"),
    Column("CREDITS", justify="right"),
    Column("CHARGED", justify="right", drop=4),
    Column("ESTIMATED", justify="right", drop=3),
    Column("SECONDS", justify="right", drop=5),
    Column("FAILED", justify="right", drop=2),
    Column("FAILED CREDITS", justify="right", drop=1),
]


def spend_cells(spend: Spend) -> list[str]:
    """A row's cells after its key, in `USAGE_COLUMNS` order."""
    return [
        str(spend.jobs),
        credits_text(spend.credits),
        credits_text(spend.charged),
        credits_text(spend.estimated) if spend.estimated_jobs else "-",
        credits_text(spend.seconds) if spend.timed_jobs else "-",
        str(spend.failed_jobs),
        credits_text(spend.failed_credits) if spend.failed_jobs else "-",
    ]


def spend_notes(whole: Spend) -> list[str]:
    """What the total leaves out or guesses, in words."""
    notes = []
    if whole.estimated_jobs:
        notes.append(
            f"ESTIMATED: {plural(whole.estimated_jobs, 'job')} counted at the estimate made "
            "before submitting; the API never reported what it charged for them."
        )
    if whole.unpriced_jobs:
        notes.append(
            f"{plural(whole.unpriced_jobs, 'job')} with neither a charge nor an estimate "
            "count 0 credits."
        )
    if whole.failed_jobs:
        notes.append(
            f"FAILED: {plural(whole.failed_jobs, 'job')} "
            f"({credits_text(whole.failed_credits)} {credits_word(whole.failed_credits)}) "
            "counted apart, not in CREDITS: the API may refund a failed job, and this CLI "
            "cannot know whether it did."
        )
    return notes


class DefaultSeconds:
    """A job's seconds: its `duration` input, else its model's default duration
    in the schema as last fetched (the local model cache; never a request)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.defaults: dict[str, float | None] = {}

    def __call__(self, job: SpentJob) -> float | None:
        if job.seconds is not None:
            return job.seconds
        if job.model not in self.defaults:
            self.defaults[job.model] = self._default(job.model)
        return self.defaults[job.model]

    def _default(self, model: str) -> float | None:
        from pixeldojo_cli.api.model_cache import ModelCache
        from pixeldojo_cli.store.ledger import default_seconds
        from pixeldojo_cli.store.settings import cache_dir

        schema = ModelCache(cache_dir(), self.base_url).cached_schema(model)
        properties = schema.get("properties")
        duration = properties.get("duration") if isinstance(properties, dict) else None
        return default_seconds(duration.get("default")) if isinstance(duration, dict) else None
