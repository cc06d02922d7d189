"""`run --dry-run`: where a job stands against the budgets and --max-credits,
as lines for people and as the `budget` member of the JSON document. Nothing
is reserved."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pixeldojo_cli.core.errors import PixelDojoError

if TYPE_CHECKING:
    from pixeldojo_cli.cli.state import AppState
    from pixeldojo_cli.engine import Submission
    from pixeldojo_cli.engine.budget import Budget, WindowState


def _states(state: AppState, budget: Budget) -> tuple[list[WindowState], str | None]:
    """Each window's spending, or why it cannot be told."""
    from pixeldojo_cli.engine.budget import budget_state

    if not budget.has_windows:
        return [], None
    try:
        return budget_state(budget, state.recorder()), None
    except PixelDojoError as exc:
        return [], exc.message


def budget_document(state: AppState, submission: Submission, budget: Budget) -> dict[str, Any]:
    """`{"budget": ...}`: null when no budget or cap applies."""
    from pixeldojo_cli.engine.budget import counted_cost

    if budget.max_credits is None and not budget.has_windows:
        return {"budget": None}
    cost, listed = counted_cost(submission)
    states, problem = _states(state, budget)
    windows = [
        {
            "name": s.window.name,
            "budget": s.window.limit,
            "spent": round(s.spent, 4),
            "resetsAt": s.window.resets_at.isoformat(),
            "fits": cost is not None and s.spent + cost <= s.window.limit + 1e-9,
        }
        for s in states
    ]
    counted_as = None if cost is None else ("listed" if listed else "estimate")
    document: dict[str, Any] = {
        "maxCredits": budget.max_credits,
        "counted": cost,
        "countedAs": counted_as,
        "windows": windows,
    }
    if problem is not None:
        document["error"] = problem
    return {"budget": document}


def budget_lines(
    state: AppState, submission: Submission, budget: Budget, what: str = "this job's"
) -> list[str]:
    """One line per limit: what was spent, the budget, this job (`what`), when it resets."""
    from pixeldojo_cli.engine.budget import counted_cost, credits_text

    cost, listed = counted_cost(submission)
    if cost is None:
        if budget.max_credits is None and not budget.has_windows:
            return []
        unknown = (
            "This job's cost is unknown (no estimate, no listed price): a budget or "
            "--max-credits would refuse it (--ignore-budget skips the budgets)."
        )
        return [unknown]
    this = f"{what} {credits_text(cost)} ({'listed cost' if listed else 'estimated'})"
    fit = "fits" if cost == 1 else "fit"  # (its credits fit)
    lines = []
    if budget.max_credits is not None:
        fits = cost <= budget.max_credits + 1e-9
        verdict = fit if fits else "would pass it"
        lines.append(f"--max-credits {budget.max_credits:g}: {this} {verdict}.")
    states, problem = _states(state, budget)
    if problem is not None:
        lines.append(problem.replace("Nothing was submitted", "A job would be refused"))
    for s in states:
        window = s.window
        verdict = fit if s.spent + cost <= window.limit + 1e-9 else "would pass it"
        lines.append(
            f"{window.name.capitalize()} budget: {s.spent:g} of {credits_text(window.limit)} "
            f"spent {window.period}; {this} {verdict}. It resets {window.resets_text()}."
        )
    return lines


def whole_budget_lines(
    state: AppState, total: float, budget: Budget | None, what: str
) -> list[str]:
    """`--dry-run` of many jobs (a batch, a sweep, a comparison): the budgets
    against their estimated `total`, as if it were one job."""
    from pathlib import Path

    from pixeldojo_cli.engine import Submission

    if budget is None:
        return []
    return budget_lines(state, Submission("", {}, Path("."), total), budget, what=what)
