"""A batch file's lines, read and planned before anything is spent: each line's
inputs (over the defaults every line shares), checked against the schema,
priced, and keyed by a hash of the model and its inputs, so that a rerun of
the same batch finds each line again in the ledger."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.core.errors import ExitCode, Outcome, PixelDojoError, UsageError
from pixeldojo_cli.engine.submission import Submission
from pixeldojo_cli.engine.workflow import JobResult

if TYPE_CHECKING:
    from pixeldojo_cli.api.results import Job, Model
    from pixeldojo_cli.store.files import DownloadedFile

# Show at most this many input problems before asking the user to fix the file.
_MAX_PROBLEMS = 5


@dataclass
class Line:
    """One line of the batch file and what became of it."""

    number: int
    inputs: dict[str, Any]
    key: str
    estimate: float | None
    outcome: Outcome | None = None  # None while queued or in flight
    job: Job | None = None
    job_id: str | None = None
    files: list[DownloadedFile] = field(default_factory=list)
    error: PixelDojoError | None = None
    resumed: bool = False
    note: str | None = None
    saved: bool | None = None  # as the ledger knows it (None: no ledger, or not known)

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def exit_code(self) -> ExitCode:
        result = JobResult(self.job_id or "", self.outcome or Outcome.RUNNING, error=self.error)
        return result.exit_code

    def submission(self, model_id: str, folder: Path, webhook_url: str | None) -> Submission:
        """What paying for this line asks: its inputs, priced, keyed for a rerun."""
        return Submission(model_id, self.inputs, folder, self.estimate, self.key, webhook_url)


def read_lines(text: str, source: str) -> list[tuple[int, str | dict[str, Any]]]:
    """A batch file's entries: JSON Lines of input objects, or one prompt per line.

    A line starting with `{` is a JSON object of inputs; a blank line, or one
    whose first character is `#`, is skipped; any other line is a prompt.
    Returns (line number, prompt or object).
    """
    from pixeldojo_cli.inputs.schema import inputs_object

    entries: list[tuple[int, str | dict[str, Any]]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            entries.append((number, inputs_object(line, f"--batch line {number}")))
        else:
            entries.append((number, line))
    if not entries:
        raise UsageError(f"--batch {source!r} has no prompts or inputs in it.")
    return entries


def request_key(model_id: str, inputs: dict[str, Any], occurrence: int) -> str:
    """Identifies one request of a batch: the model, the inputs, and which
    repetition of identical inputs it is (two identical lines are two jobs)."""
    canonical = json.dumps({"model": model_id, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(f"{canonical}#{occurrence}".encode()).hexdigest()


def plan_lines(
    model: Model,
    schema: dict[str, Any],
    entries: list[tuple[int, str | dict[str, Any]]],
    defaults: dict[str, Any],
) -> list[Line]:
    """Every line's inputs (the line's own values over the -p/--input defaults),
    checked against the schema before anything is spent."""
    from pixeldojo_cli.inputs.schema import estimate_cost, validate_inputs

    lines: list[Line] = []
    problems: list[str] = []
    seen: Counter[str] = Counter()
    for number, entry in entries:
        inputs = {**defaults, **(entry if isinstance(entry, dict) else {"prompt": entry})}
        try:
            validate_inputs(schema, inputs)
        except UsageError as exc:
            problems.append(f"line {number}: {exc.message}")
            continue
        base_key = request_key(model.id, inputs, 0)
        key = request_key(model.id, inputs, seen[base_key])
        seen[base_key] += 1
        lines.append(Line(number, inputs, key, estimate_cost(model, schema, inputs)))
    if problems:
        more = len(problems) - _MAX_PROBLEMS
        listed = "; ".join(problems[:_MAX_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
        raise UsageError(
            f"{len(problems)} line{'' if len(problems) == 1 else 's'} of the batch "
            f"not valid for {model.id}: {listed}.",
            hint="Nothing was submitted. See the parameters with "
            f"`pixeldojo models show {model.id}`.",
        )
    return lines
