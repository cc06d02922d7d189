"""Budgets: what a profile may spend per calendar day and month (local time),
and `--max-credits`, checked before each POST by `submit()`.

Before the POST, the job's estimate (else the model's listed cost) is added to
what the ledger says was spent in each window: the jobs' charged credits (else
their estimates) and the other processes' reservations. Past a budget, the job
is refused (`BudgetExceededError`, exit 4); within, the estimate is reserved in
the same write transaction (see `store.ledger.reservations`), so processes
started together never pass a budget by more than one job. A budget that
cannot be checked (no ledger, a busy or read-only one, a cost nobody knows)
refuses too (`BudgetUncheckedError`): it never spends silently.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, TypeGuard

from pixeldojo_cli.core import interrupts
from pixeldojo_cli.core.errors import (
    BadResponseError,
    BudgetExceededError,
    BudgetUncheckedError,
    PixelDojoError,
    ServerError,
    SubmissionUncertainError,
)
from pixeldojo_cli.core.text import plural
from pixeldojo_cli.engine.submission import Submission

if TYPE_CHECKING:
    from pixeldojo_cli.api.results import Job
    from pixeldojo_cli.engine.recorder import Recorder
    from pixeldojo_cli.store.ledger import Ledger

IGNORE_HINT = "--ignore-budget submits without checking it"
# Said when a command is interrupted while its POST may have reached the server.
SENDING_HINT = (
    "The job may have been submitted and charged: check `pixeldojo jobs list` "
    "before submitting it again."
)


@dataclass(frozen=True)
class Budget:
    """What one command may spend: `daily` and `monthly` budgets in credits (of
    this profile and API, across every process), and `max_credits`, the most
    one job's estimate may be (`--max-credits`). None: no such limit."""

    daily: float | None = None
    monthly: float | None = None
    max_credits: float | None = None

    @property
    def has_windows(self) -> bool:
        return self.daily is not None or self.monthly is not None


@dataclass(frozen=True)
class Window:
    """One budget's calendar window, in local time: since `start`, until `resets_at`."""

    name: str  # daily | monthly
    limit: float
    start: datetime
    resets_at: datetime

    @property
    def period(self) -> str:
        return "today" if self.name == "daily" else "this month"

    def resets_text(self) -> str:
        return self.resets_at.strftime("%Y-%m-%d %H:%M %Z").strip()


@dataclass(frozen=True)
class WindowState:
    """A window and what was spent in it (for `--dry-run`)."""

    window: Window
    spent: float


def windows(budget: Budget, at: datetime | None = None) -> list[Window]:
    """The calendar day and month (local time) containing `at` (now), for the
    budgets set."""
    today = (at or datetime.now(UTC)).astimezone().date()
    first = today.replace(day=1)
    next_month = (first + timedelta(days=32)).replace(day=1)
    found = []
    for name, limit, start, end in (
        ("daily", budget.daily, today, today + timedelta(days=1)),
        ("monthly", budget.monthly, first, next_month),
    ):
        if limit is not None:
            found.append(Window(name, limit, _local_midnight(start), _local_midnight(end)))
    return found


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time()).astimezone()  # (naive: taken as local time)


def counted_cost(submission: Submission) -> tuple[float | None, bool]:
    """What a budget counts for a job: its estimate, else the model's listed
    cost (then True), else None (nobody knows)."""
    if _a_cost(submission.estimate):
        return submission.estimate, False
    if _a_cost(submission.listed_cost):
        return submission.listed_cost, True
    return None, False


def _a_cost(value: float | None) -> TypeGuard[float]:
    """A cost a job can have: finite, 0 or more (a negative one would make every
    job fit and lower what the others count)."""
    return value is not None and math.isfinite(value) and value >= 0


def credits_text(value: float) -> str:
    """`1 credit`, `2.5 credits`."""
    return plural(float(value), "credit")


def _cost_text(cost: float, listed: bool) -> str:
    if listed:
        return f"{credits_text(cost)} (the model's listed cost: it could not be estimated)"
    return f"{credits_text(cost)} (estimated)"


class Hold:
    """The reservation made for one job (if any), settled once its POST has
    answered; and what an interruption says while that POST is on its way."""

    def __init__(self, recorder: Recorder | None = None, reservation: int | None = None) -> None:
        self.recorder = recorder
        self.reservation = reservation
        self.in_flight = False
        self._hint_before: str | None = None

    def sending(self) -> None:
        """Right before the POST: from here on it may reach the server. The
        reservation is marked `sending` in the ledger first (committed: a process
        killed from now on leaves it counting), and an interruption says the job
        may have been charged. Refused (nothing sent) when it cannot be marked."""
        recorder, reservation = self.recorder, self.reservation
        if recorder is not None and recorder.ledger is not None and reservation is not None:
            try:
                with recorder.lock:
                    marked = recorder.ledger.mark_sending(reservation)
            except PixelDojoError as exc:  # a ledger busy or read-only
                raise _unchecked(f"{exc.message.rstrip('.')}.") from exc
            if not marked:
                raise _unchecked("its reservation in the job ledger was released meanwhile.")
        before = interrupts.resume_hint()
        self._hint_before = interrupts.set_resume_hint(
            SENDING_HINT + (f" {before}" if before else "")
        )
        self.in_flight = True

    def submitted(self, job: Job) -> None:
        """The POST answered with `job`: the reservation now points at it."""
        self._settle(job.id, uncertain=False)

    def failed(self, error: BaseException) -> None:
        """The POST (or what came before it) failed: released, unless it may have
        been taken (then it keeps counting, as `uncertain`). An interruption
        (Ctrl-C, SIGTERM) or anything but our error once the POST was on its way
        may have let the server take it: kept."""
        if isinstance(error, PixelDojoError):
            taken = isinstance(error, SubmissionUncertainError | BadResponseError | ServerError)
            self._settle(None, uncertain=taken)
        else:
            self._settle(None, uncertain=self.in_flight)

    def _settle(self, job_id: str | None, *, uncertain: bool) -> None:
        if self.in_flight and not uncertain:  # answered, or certainly not taken
            interrupts.set_resume_hint(self._hint_before)
            self.in_flight = False
        recorder, reservation = self.recorder, self.reservation
        if recorder is None or recorder.ledger is None or reservation is None:
            return
        self.reservation = None
        # Unsettled, a `sending` reservation keeps counting: never fewer credits.
        with contextlib.suppress(Exception), recorder.lock:
            recorder.ledger.settle_reservation(reservation, job_id, uncertain=uncertain)


@contextmanager
def budget_hold(
    budget: Budget | None, submission: Submission, recorder: Recorder | None
) -> Iterator[Hold]:
    """Check `budget` for this job and reserve its cost (raising when refused);
    inside, send its POST and call `submitted`. An error inside settles it."""
    hold = reserve(budget, submission, recorder)
    try:
        yield hold
    except BaseException as exc:
        hold.failed(exc)
        raise


def reserve(budget: Budget | None, submission: Submission, recorder: Recorder | None) -> Hold:
    """Refuse a job past `budget`, else reserve what it counts in the ledger."""
    if budget is None or (budget.max_credits is None and not budget.has_windows):
        return Hold()
    cost, listed = counted_cost(submission)
    if cost is None:
        what, way_out = (
            ("the budget", IGNORE_HINT)
            if budget.has_windows
            else ("--max-credits", "without --max-credits it is submitted unchecked")
        )
        raise BudgetUncheckedError(
            f"The cost of this {submission.model} job is unknown (no estimate, and the model "
            f"lists no price), so {what} cannot be checked; nothing was submitted ({way_out}).",
            hint="",
        )
    if budget.max_credits is not None and cost > budget.max_credits + 1e-9:
        raise BudgetExceededError(
            f"This job's {_cost_text(cost, listed)} would pass --max-credits "
            f"{budget.max_credits:g}; nothing was submitted.",
            hint="",
        )
    if not budget.has_windows:
        return Hold()
    ledger, recorder = _budget_ledger(recorder)
    found = windows(budget)
    _check_not_damaged(ledger, found)
    try:
        with recorder.lock:
            made = ledger.reserve(
                cost,
                [(w.start, w.limit) for w in found],
                base_url=recorder.base_url,
                profile=recorder.profile,
            )
    except PixelDojoError as exc:  # a ledger busy or read-only
        raise _unchecked(f"{exc.message.rstrip('.')}.") from exc
    if made.id is None:
        raise _exceeded(found, made.spent, cost, listed)
    return Hold(recorder, made.id)


def _budget_ledger(recorder: Recorder | None) -> tuple[Ledger, Recorder]:
    """The ledger that knows what was spent; refused when there is none."""
    if recorder is None or recorder.ledger is None:
        raise _unchecked("the job ledger, which keeps what was spent, could not be opened.")
    return recorder.ledger, recorder


def _check_not_damaged(ledger: Ledger, found: list[Window]) -> None:
    """Refused when a damaged ledger was moved aside in one of the windows: the
    fresh one does not know what was spent before, so it would count 0."""
    if not found:
        return
    aside = ledger.moved_aside_since(min(w.start for w in found))
    if aside is not None:
        raise _unchecked(
            f"the job ledger was found damaged and moved to {aside}, so what was spent "
            "before is unknown (moving that file out of its folder counts from the new one)."
        )


def _unchecked(reason: str) -> BudgetUncheckedError:
    return BudgetUncheckedError(
        f"The budget cannot be checked: {reason} Nothing was submitted ({IGNORE_HINT}).",
        hint="",
    )


def _exceeded(
    found: list[Window], spent: tuple[float, ...], cost: float, listed: bool
) -> BudgetExceededError:
    """The first window the job would pass, as one line: spent (with what other
    processes reserved for jobs on their way), this job's cost, the budget, when
    it resets."""
    window, used = next(
        (w, s) for w, s in zip(found, spent, strict=True) if s + cost > w.limit + 1e-9
    )
    return BudgetExceededError(
        f"{credits_text(round(used, 4))} spent or reserved {window.period} + this job's "
        f"{_cost_text(cost, listed)} would pass the {window.name} budget of "
        f"{credits_text(window.limit)} (it resets {window.resets_text()}); nothing was submitted.",
        hint="",
    )


def budget_state(budget: Budget, recorder: Recorder | None) -> list[WindowState]:
    """What was spent in each window of `budget`, without reserving anything
    (`--dry-run`); `BudgetUncheckedError` when the ledger cannot tell."""
    found = windows(budget)
    if not found:
        return []
    ledger, recorder = _budget_ledger(recorder)
    _check_not_damaged(ledger, found)
    try:
        with recorder.lock:
            return [
                WindowState(
                    w,
                    ledger.spent_since(
                        w.start, base_url=recorder.base_url, profile=recorder.profile
                    ),
                )
                for w in found
            ]
    except PixelDojoError as exc:
        raise _unchecked(f"{exc.message.rstrip('.')}.") from exc
