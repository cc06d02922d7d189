"""A batch file's lines, read and planned before anything is spent: each line's
inputs (over the defaults every line shares), checked against the schema,
priced, and keyed by a hash of the model and its inputs, so that a rerun of
the same batch finds each line again in the ledger.

The plan is compact: per line its number, offset in the file, key and
estimate, about 50 bytes, never its text; a line's inputs are read again from
the file when it is submitted (and checked to be the ones planned).
"""

from __future__ import annotations

import hashlib
import json
import math
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pixeldojo_cli.core.errors import ExitCode, Outcome, PixelDojoError, UsageError
from pixeldojo_cli.engine.submission import Submission
from pixeldojo_cli.engine.workflow import JobResult

if TYPE_CHECKING:
    from pixeldojo_cli.api.results import Job, Model
    from pixeldojo_cli.engine.batch_file import BatchFile
    from pixeldojo_cli.engine.uploaders import UploadSettings
    from pixeldojo_cli.store.files import DownloadedFile

# Show at most this many input problems before asking the user to fix the file.
_MAX_PROBLEMS = 5
_KEY_BYTES = 32  # a sha256
# Slots of the counting filter that finds repeated lines (one byte each).
_FILTER_SLOTS = 1 << 24


class InputsSource(Protocol):
    """Where a planned line's inputs (and model) are found again, by its offset:
    a batch file (`LineInputs`), or a sweep's product (`engine.sweeps.SweepPlan`)."""

    def at(self, offset: int, number: int) -> dict[str, Any]: ...

    def model_at(self, offset: int) -> str: ...

    def schema_at(self, offset: int) -> dict[str, Any] | None: ...

    def seeded(self, inputs: dict[str, Any], key: str, offset: int) -> dict[str, Any]: ...

    def changed(self, number: int) -> UsageError: ...

    @property
    def upload(self) -> UploadSettings | None: ...


class LineInputs:
    """Where a planned line's inputs are read again: the batch file, the model,
    and the inputs every line shares; and the schema and uploader its `@` values
    are checked with again when it is submitted."""

    def __init__(
        self,
        batch_file: BatchFile,
        model_id: str,
        defaults: dict[str, Any],
        schema: dict[str, Any] | None = None,
        upload: UploadSettings | None = None,
        seeds: tuple[int, int] | None = None,
    ) -> None:
        self.file = batch_file
        self.model_id = model_id
        self.defaults = defaults
        self.schema = schema
        self._upload = upload
        self.seeds = seeds  # the model's seed range, when lines get a seed of their own

    @property
    def upload(self) -> UploadSettings | None:
        """How this batch's `@PATH` values reach the API (None: refused)."""
        return self._upload

    def schema_at(self, offset: int) -> dict[str, Any] | None:
        """Every line of a batch file is checked against the one model's schema."""
        return self.schema

    def seeded(self, inputs: dict[str, Any], key: str, offset: int = 0) -> dict[str, Any]:
        """A line's inputs as sent: with the seed derived from its key when
        `auto_seed` is on and the line gives none. Derived, not drawn: the key
        is made without it, so a rerun asks for the same picture (a random seed
        per run would make a rerun's line another request than the ledger's)."""
        from pixeldojo_cli.inputs.seeds import derived_seed, with_seed

        return inputs if self.seeds is None else with_seed(inputs, derived_seed(self.seeds, key))

    def of(self, entry: str | dict[str, Any]) -> dict[str, Any]:
        """A line's inputs: its own values over the defaults."""
        return {**self.defaults, **(entry if isinstance(entry, dict) else {"prompt": entry})}

    def model_at(self, offset: int) -> str:
        """Every line of a batch file is for the one model."""
        return self.model_id

    def at(self, offset: int, number: int) -> dict[str, Any]:
        """The inputs of line `number`, read again from the file."""
        entry = self.file.entry_at(offset, number)
        if entry is None:
            raise self.changed(number)
        return self.of(entry)

    def changed(self, number: int) -> UsageError:
        return UsageError(
            f"--batch {self.file.name!r} changed after it was checked: line {number} "
            "is not the line that was planned. It is not submitted.",
            hint="Rerun the same command: finished lines are skipped.",
        )


@dataclass(eq=False, slots=True)
class Line:
    """One line of the batch file and what became of it. Its inputs are read
    again from the file each time they are asked for (see `LineInputs`); the
    batch reads them once, when it submits the line, and keeps them (`asked`)
    only until the line ends."""

    number: int
    key: str
    estimate: float | None
    source: InputsSource | None = field(default=None, repr=False)
    offset: int = 0
    occurrence: int = 0
    outcome: Outcome | None = None  # None while queued or in flight
    job: Job | None = None
    job_id: str | None = None
    files: Sequence[DownloadedFile] = ()
    error: PixelDojoError | None = None
    resumed: bool = False
    note: str | None = None
    saved: bool | None = None  # as the ledger knows it (None: no ledger, or not known)
    asked: Submission | None = field(default=None, repr=False)  # what was submitted
    counted_as: str = field(default="queued", repr=False)  # the batch's count it is in
    index: int = 0  # in the plan

    @property
    def inputs(self) -> dict[str, Any]:
        """This line's inputs, as planned; a usage error if the file changed since."""
        if self.source is None:
            return {}
        inputs = self.source.at(self.offset, self.number)
        if request_key(self.source.model_at(self.offset), inputs, self.occurrence) != self.key:
            raise self.source.changed(self.number)
        return inputs

    @property
    def done(self) -> bool:
        return self.outcome is not None

    @property
    def exit_code(self) -> ExitCode:
        result = JobResult(self.job_id or "", self.outcome or Outcome.RUNNING, error=self.error)
        return result.exit_code

    def model(self, default: str) -> str:
        """The model this line is for (its source's; `default` without one)."""
        return default if self.source is None else self.source.model_at(self.offset)

    def submission(self, model_id: str, folder: Path, webhook_url: str | None) -> Submission:
        """What paying for this line asks: its model (`model_id` unless its source
        says otherwise: a comparison's lines are of several models), its inputs
        (with its derived seed, see `LineInputs.seeded`), priced, keyed for a
        rerun, its `@` files checked again (they are uploaded when it is submitted)."""
        from pixeldojo_cli.engine.file_inputs import check_file_inputs

        source = self.source
        inputs = self.inputs
        if source is not None:
            inputs = source.seeded(inputs, self.key, self.offset)
        inputs, files = check_file_inputs(
            source.schema_at(self.offset) if source else None,
            inputs,
            source.upload if source else None,
        )
        model = self.model(model_id)
        return Submission(model, inputs, folder, self.estimate, self.key, webhook_url, files=files)


def request_key(model_id: str, inputs: dict[str, Any], occurrence: int) -> str:
    """Identifies one request of a batch: the model, the inputs, and which
    repetition of identical inputs it is (two identical lines are two jobs)."""
    return key_digest(model_id, inputs, occurrence).hex()


def key_digest(model_id: str, inputs: dict[str, Any], occurrence: int) -> bytes:
    """`request_key` as the 32 bytes a plan keeps."""
    canonical = json.dumps({"model": model_id, "inputs": inputs}, sort_keys=True, default=str)
    return hashlib.sha256(f"{canonical}#{occurrence}".encode()).digest()


class Plan:
    """Every valid line of a batch, compactly: number, offset, repetition, key
    and estimate in arrays (no line's text), and where to read its inputs again."""

    def __init__(self, source: LineInputs) -> None:
        self.source = source
        self.numbers = array("Q")
        self.offsets = array("Q")
        self.occurrences = array("I")
        self.estimates = array("d")  # NaN: no estimate
        self.keys = bytearray()

    def __len__(self) -> int:
        return len(self.numbers)

    def add(self, number: int, offset: int, key: bytes, estimate: float | None) -> None:
        self.numbers.append(number)
        self.offsets.append(offset)
        self.occurrences.append(0)
        self.keys += key
        self.estimates.append(math.nan if estimate is None else estimate)

    def key(self, index: int) -> bytes:
        return bytes(self.keys[index * _KEY_BYTES : (index + 1) * _KEY_BYTES])

    def estimate(self, index: int) -> float | None:
        value = self.estimates[index]
        return None if math.isnan(value) else value

    def total_estimate(self) -> float:
        return sum(value for value in self.estimates if not math.isnan(value))

    def lines(self) -> list[Line]:
        """One `Line` per planned line, for a run."""
        return [self.line(index) for index in range(len(self))]

    def line(self, index: int) -> Line:
        return Line(
            self.numbers[index],
            self.key(index).hex(),
            self.estimate(index),
            self.source,
            self.offsets[index],
            self.occurrences[index],
            index=index,
        )

    def bodies(self) -> Iterator[tuple[int, dict[str, Any], float | None]]:
        """(line number, inputs, estimate) of every planned line, in order, reading
        the file once more from start to end."""
        index = 0
        for number, _, entry in self.source.file.entries():
            if index < len(self) and self.numbers[index] == number:
                inputs = self.source.seeded(self.source.of(entry), self.key(index).hex())
                yield number, inputs, self.estimate(index)
                index += 1

    def number_repeats(self) -> None:
        """Give identical lines their repetition (the second is a second job):
        a counting filter finds the keys that may repeat, a dict of those alone
        counts them, and a repeated line's key is made again from its inputs."""
        counts = bytearray(_FILTER_SLOTS)
        for index in range(len(self)):
            slot = self._slot(index)
            counts[slot] = min(counts[slot] + 1, 2)
        seen: dict[bytes, int] = {}
        for index in range(len(self)):
            if counts[self._slot(index)] < 2:
                continue
            key = self.key(index)
            occurrence = seen.get(key, 0)
            seen[key] = occurrence + 1
            if occurrence:
                inputs = self.source.at(self.offsets[index], self.numbers[index])
                start = index * _KEY_BYTES
                self.keys[start : start + _KEY_BYTES] = key_digest(
                    self.source.model_id, inputs, occurrence
                )
                self.occurrences[index] = occurrence

    def _slot(self, index: int) -> int:
        start = index * _KEY_BYTES
        return int.from_bytes(self.keys[start : start + 3], "big") % _FILTER_SLOTS


def plan_batch(
    model: Model,
    schema: dict[str, Any],
    batch_file: BatchFile,
    defaults: dict[str, Any],
    upload: UploadSettings | None = None,
    *,
    auto_seed: bool = False,
) -> Plan:
    """Every line's inputs (the line's own values over the -p/--input defaults),
    checked against the schema, then its `@` files (with `upload`), before
    anything is spent, read streaming: a usage error naming the first bad lines
    (by the file's line numbers) when any is bad. With `auto_seed`, a line that
    gives no seed gets one derived from its key."""
    from pixeldojo_cli.engine.file_inputs import check_file_inputs
    from pixeldojo_cli.inputs.schema import estimate_cost, validate_inputs
    from pixeldojo_cli.inputs.seeds import seed_range

    seeds = seed_range(schema) if auto_seed else None
    plan = Plan(LineInputs(batch_file, model.id, defaults, schema, upload, seeds))
    checked_files: dict[Any, Any] = {}
    problems: list[str] = []
    bad = entries = 0
    for number, offset, entry in batch_file.entries():
        entries += 1
        inputs = plan.source.of(entry)
        try:
            validate_inputs(schema, inputs)
            check_file_inputs(schema, inputs, upload, seen=checked_files)
        except UsageError as exc:
            bad += 1
            if len(problems) < _MAX_PROBLEMS:
                problems.append(f"line {number}: {exc.message.rstrip('.')}")  # (no "1..")
            continue
        if not bad:
            digest = key_digest(model.id, inputs, 0)
            plan.add(number, offset, digest, estimate_cost(model, schema, inputs))
    if not entries:
        raise UsageError(f"--batch {batch_file.name!r} has no prompts or inputs in it.")
    if bad:
        raise _invalid_lines(model.id, bad, problems)
    plan.number_repeats()
    return plan


def _invalid_lines(model_id: str, bad: int, problems: list[str]) -> UsageError:
    more = bad - len(problems)
    listed = "; ".join(problems) + (f"; and {more} more" if more > 0 else "")
    return UsageError(
        f"{bad} line{'' if bad == 1 else 's'} of the batch not valid for {model_id}: {listed}.",
        hint=f"Nothing was submitted. See the parameters with `pixeldojo models show {model_id}`.",
    )
