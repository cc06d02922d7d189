"""Sweeps and comparisons run through the batch engine: `run --matrix` and
prompt alternatives, `compare MODEL,MODEL`.

The product of every axis (prompt alternatives, `--matrix` values, `--seeds`)
for every model is planned, checked against each model's schema and priced
before anything is spent, compactly (per job: a key and an estimate; its
inputs are made again from its index when it is submitted). Each job's key is
`request_key(model, inputs, occurrence)`, the same kind as a `--batch` line's,
so rerunning the same sweep skips what is done. The `Batch` then runs it, with
its pacing, resume, `--concurrency` and `--max-credits`.

Each job is recorded in the ledger as one of the sweep (`Recorder.grouped`),
with what varied for it; `SweepResult` names the jobs and what varied: what a
contact sheet is made from.
"""

from __future__ import annotations

import hashlib
import math
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.engine.batch_lines import Line, key_digest
from pixeldojo_cli.engine.preparing import leave_out, takes_input

if TYPE_CHECKING:
    from pixeldojo_cli.api.results import Model
    from pixeldojo_cli.engine.recorder import Recorder
    from pixeldojo_cli.engine.uploaders import UploadSettings
    from pixeldojo_cli.inputs.sweeps import Axis, MatrixSpec, PromptTemplate

_KEY_BYTES = 32


@dataclass(frozen=True)
class SweepAsk:
    """A sweep as asked: PROMPT (with `{a|b}` groups), the `-p` assignments, the
    `--input` object, `--seed`, every `--matrix`, `--seeds N` (seeds 1..N), and
    whether a product past the confirmation limit was confirmed (`--yes`).
    `kind`: `sweep` (`run`) or `compare` (several models). `webhook_url`:
    whether `--webhook-url` was given (it goes with every job, beside the inputs)."""

    prompt: str | None = None
    assignments: tuple[str, ...] = ()
    base_inputs: dict[str, Any] | None = field(default=None, hash=False)
    seed: int | None = None
    matrix: tuple[str, ...] = ()
    seeds: int | None = None
    confirmed: bool = False
    kind: str = "sweep"
    upload: UploadSettings | None = None
    auto_seed: bool = False
    webhook_url: bool = False


@dataclass(frozen=True)
class SweepTarget:
    """One model of a sweep: the inputs all its jobs share, and its axes."""

    model: Model
    schema: dict[str, Any] = field(hash=False)
    base: dict[str, Any] = field(hash=False)
    axes: tuple[Axis, ...]
    prompt: PromptTemplate | None

    @property
    def count(self) -> int:
        from pixeldojo_cli.inputs.sweeps import product_size

        return product_size(self.axes)


@dataclass(frozen=True)
class SweepResult:
    """The jobs a sweep or comparison made (in plan order), and what varied for
    each: what the contact sheet shows, grouped by `varied_keys`."""

    group_id: str
    kind: str
    varied_keys: tuple[str, ...]
    job_ids: tuple[str, ...]
    varied: dict[str, dict[str, Any]] = field(hash=False)


class SweepPlan:
    """Every job of a sweep, compactly: a key and an estimate per job; its model,
    inputs and what varied are made again from its index (`at`, `model_at`)."""

    unit = "job"  # what the batch calls each of its lines

    def __init__(self, targets: Sequence[SweepTarget], kind: str) -> None:
        self.targets = list(targets)
        self.kind = kind
        self.starts = [0]
        for target in self.targets:
            self.starts.append(self.starts[-1] + target.count)
        self.keys = bytearray()
        self.estimates = array("d")
        self.occurrences = array("I")
        self.group_id = ""
        self.upload: UploadSettings | None = None
        self.auto_seed = False

    def seeded(self, inputs: dict[str, Any], key: str, offset: int) -> dict[str, Any]:
        """Job `offset`'s inputs as sent: with `auto_seed`, a job that gives no
        seed gets one derived from its key (as a `--batch` line does: a rerun of
        the sweep asks for the same pictures and finds its jobs again)."""
        from pixeldojo_cli.inputs.seeds import derived_seed, seed_range, with_seed

        bounds = seed_range(self.schema_at(offset)) if self.auto_seed else None
        return inputs if bounds is None else with_seed(inputs, derived_seed(bounds, key))

    def schema_at(self, offset: int) -> dict[str, Any] | None:
        """The schema of job `offset`'s model (its `@` values are checked with it)."""
        return self._where(offset)[0].schema

    def __len__(self) -> int:
        return len(self.estimates)

    @property
    def total(self) -> int:
        """How many jobs the product makes (planned or not yet)."""
        return self.starts[-1]

    def _where(self, index: int) -> tuple[SweepTarget, tuple[Any, ...]]:
        from bisect import bisect_right

        from pixeldojo_cli.inputs.sweeps import combination

        at = bisect_right(self.starts, index) - 1
        target = self.targets[at]
        return target, combination(target.axes, index - self.starts[at])

    def model_at(self, offset: int) -> str:
        """The model of job `offset` (its index)."""
        return self._where(offset)[0].model.id

    def at(self, offset: int, number: int) -> dict[str, Any]:
        """The inputs of job `offset`: its model's shared inputs, its values."""
        target, values = self._where(offset)
        inputs = dict(target.base)
        choices: list[str] = []
        for axis, value in zip(target.axes, values, strict=True):
            if axis.key.startswith("prompt{"):
                choices.append(value)
            else:
                inputs[axis.key] = value
        if target.prompt is not None:
            inputs["prompt"] = target.prompt.render(choices)
        return inputs

    def varied_at(self, index: int) -> dict[str, Any]:
        """What varied for job `index`: `model` (a comparison), then each axis."""
        target, values = self._where(index)
        varied: dict[str, Any] = {"model": target.model.id} if self.kind == "compare" else {}
        varied.update((axis.key, value) for axis, value in zip(target.axes, values, strict=True))
        return varied

    def varied_keys(self) -> tuple[str, ...]:
        """Every key that varies in some job, in axis order."""
        keys = ["model"] if self.kind == "compare" else []
        for target in self.targets:
            keys += [axis.key for axis in target.axes if len(axis.values) > 1]
        return tuple(dict.fromkeys(keys))

    def changed(self, number: int) -> UsageError:
        return UsageError(f"Job {number} of the sweep is not the job that was planned.")

    def estimate(self, index: int) -> float | None:
        value = self.estimates[index]
        return None if math.isnan(value) else value

    def total_estimate(self) -> float:
        return sum(value for value in self.estimates if not math.isnan(value))

    def _key(self, index: int) -> str:
        return bytes(self.keys[index * _KEY_BYTES : (index + 1) * _KEY_BYTES]).hex()

    def line(self, index: int) -> Line:
        """Job `index` as a batch line (numbered from 1)."""
        return Line(
            index + 1,
            self._key(index),
            self.estimate(index),
            self,
            offset=index,
            occurrence=self.occurrences[index],
            index=index,
        )

    def bodies(self) -> Iterator[tuple[int, str, dict[str, Any], dict[str, Any], float | None]]:
        """(job number, model, what varied, inputs, estimate) of every job, in
        order; the inputs as they will be sent (`seeded`: what `--dry-run` shows)."""
        for index in range(len(self)):
            yield (
                index + 1,
                self.model_at(index),
                self.varied_at(index),
                self.seeded(self.at(index, index + 1), self._key(index), index),
                self.estimate(index),
            )

    def seal(self) -> None:
        """Planned: the sweep's id, from every job's key (the same sweep, rerun,
        is the same group)."""
        digest = hashlib.sha256(self.kind.encode() + bytes(self.keys)).hexdigest()
        self.group_id = digest[:16]


# --- planning -----------------------------------------------------------------------


def plan_sweep(
    models: Sequence[tuple[Model, dict[str, Any]]],
    ask: SweepAsk,
    notify: Callable[[str], None],
) -> SweepPlan:
    """Every job of the sweep, checked against each model's schema and priced,
    before anything is spent. An input a model does not take is left out for
    it (one `notify` line per model); a comparison's model that lacks a
    required input is skipped (`notify`, with the reason). A usage error for
    anything else, naming the value."""
    from pixeldojo_cli.inputs.sweeps import check_size

    template, specs = read_ask(ask)
    names = _asked_names(ask, specs)
    _refuse_unknown(names, models)
    targets = []
    for model, schema in models:
        target = _target(model, schema, ask, template, specs, names, notify)
        if target is not None:
            targets.append(target)
    if not targets:
        raise UsageError("No model can run this comparison (see the reasons above).")
    plan = SweepPlan(targets, ask.kind)
    plan.upload = ask.upload
    plan.auto_seed = ask.auto_seed
    check_size(plan.total, confirmed=ask.confirmed, what=ask.kind)
    for target in targets:
        _check_axes(target, several=len(targets) > 1)
    _fill(plan)
    return plan


def read_ask(ask: SweepAsk) -> tuple[PromptTemplate | None, list[MatrixSpec]]:
    """The PROMPT's groups and the `--matrix` specs (`--seeds N` as seed=1..N),
    refusing a key given twice (two sweeps of it, or a sweep and a fixed value:
    one of them would be dropped, or paid for under the other's label) and a
    sweep of `webhook_url`: the checks that need no schema."""
    from pixeldojo_cli.inputs.schema import refuse_given_twice
    from pixeldojo_cli.inputs.sweeps import MatrixSpec, parse_matrix, parse_prompt

    template = parse_prompt(ask.prompt) if ask.prompt is not None else None
    specs = [parse_matrix(text) for text in ask.matrix]
    if ask.seeds is not None:
        specs.append(MatrixSpec("seed", (f"1..{ask.seeds}",)))
    refuse_given_twice(
        ask.assignments,
        prompt=ask.prompt is not None,
        seed=ask.seed is not None,
        webhook_url=ask.webhook_url,
    )
    fixed = _assigned_names(ask)
    seen: set[str] = set()
    for spec in specs:
        if spec.key in seen:
            raise UsageError(f"{spec.key} is swept twice (--matrix, --seeds): give it once.")
        if spec.key == "webhook_url":
            raise UsageError(
                "webhook_url cannot be swept: it says where the API reports, not what it "
                "makes; give one with --webhook-url."
            )
        if spec.key in fixed or (spec.key == "prompt" and ask.prompt is not None):
            given = "PROMPT" if spec.key == "prompt" else "-p or --seed"
            raise UsageError(f"{spec.key} is given by both --matrix (or --seeds) and {given}.")
        seen.add(spec.key)
    return template, specs


def _assigned_names(ask: SweepAsk) -> set[str]:
    from pixeldojo_cli.inputs.schema import parse_assignment

    names = {parse_assignment(text)[0] for text in ask.assignments}
    return names | ({"seed"} if ask.seed is not None else set())


def _asked_names(ask: SweepAsk, specs: list[MatrixSpec]) -> list[str]:
    """Every input the sweep sets, in the order asked."""
    names = ["prompt"] if ask.prompt is not None else []
    names += list(ask.base_inputs or {})
    names += sorted(_assigned_names(ask))
    names += [spec.key for spec in specs]
    return list(dict.fromkeys(names))


def _refuse_unknown(names: list[str], models: Sequence[tuple[Model, dict[str, Any]]]) -> None:
    """An input no model takes is a mistake (with a did-you-mean), not a notice."""
    from pixeldojo_cli.inputs.schema import parameters, unknown_parameter

    for name in names:
        if not any(takes_input(schema, name) for _, schema in models):
            known = {p.name for _, schema in models for p in parameters(schema)}
            error = unknown_parameter(name, known)
            if len(models) > 1:  # not "This model takes": the list is every model's
                listing = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
                error.hint = f"None of the {len(models)} models takes it; they take: {listing}."
            raise error


def _target(
    model: Model,
    schema: dict[str, Any],
    ask: SweepAsk,
    template: PromptTemplate | None,
    specs: list[MatrixSpec],
    names: list[str],
    notify: Callable[[str], None],
) -> SweepTarget | None:
    """One model's share of the sweep: what it does not take left out (said
    once), its shared inputs, its axes; None (said why) when, in a
    comparison, it lacks a required input."""
    from pixeldojo_cli.inputs.schema import build_inputs, parameters, parse_assignment
    from pixeldojo_cli.inputs.sweeps import Axis, matrix_values, prompt_axes

    left_out = leave_out(model.id, schema, names, notify)
    base = build_inputs(
        schema,
        assignments=[a for a in ask.assignments if parse_assignment(a)[0] not in left_out],
        base={k: v for k, v in (ask.base_inputs or {}).items() if k not in left_out},
        seed=ask.seed if "seed" not in left_out else None,
    )
    params = {p.name: p for p in parameters(schema)}
    prompt = template if template is not None and "prompt" not in left_out else None
    axes = prompt_axes(prompt) if prompt is not None else []
    axes += [
        Axis(spec.key, matrix_values(spec, params.get(spec.key)))
        for spec in specs
        if spec.key not in left_out
    ]
    set_names = set(base) | {axis.key for axis in axes} | ({"prompt"} if prompt else set())
    missing = [p.name for p in params.values() if p.required and p.name not in set_names]
    if missing and ask.kind == "compare":
        notify(f"{model.id} skipped: it needs {', '.join(missing)}, which was not given.")
        return None
    return SweepTarget(model, schema, base, tuple(axes), prompt)


def _check_axes(target: SweepTarget, *, several: bool) -> None:
    """Each value of each axis against the model's schema, one usage error naming it."""
    from pixeldojo_cli.inputs.schema import parameters, value_problem
    from pixeldojo_cli.inputs.sweeps import check_distinct

    params = {p.name: p for p in parameters(target.schema)}
    for axis in target.axes:
        check_distinct(axis)
        param = params.get(axis.key)
        if param is None:
            continue
        for value in axis.values:
            problem = value_problem(param, value)
            if problem:
                shown = value[0] if param.type == "array" and isinstance(value, list) else value
                where = f" (for {target.model.id})" if several else ""
                raise UsageError(
                    f"--matrix {axis.key}={shown}{where}: {problem}",
                    hint=f"See the parameters with `pixeldojo models show {target.model.id}`.",
                )


def _fill(plan: SweepPlan) -> None:
    """Check every job's whole request, key it (`request_key`'s kind), price it.
    Two jobs that are the same request (`{x|xy}{yz|z}` makes `xyz` twice) are
    a usage error: the second would pay for the same pictures again."""
    from pixeldojo_cli.engine.file_inputs import check_file_inputs
    from pixeldojo_cli.inputs.schema import estimate_cost, validate_inputs

    first: dict[bytes, int] = {}
    files_seen: dict[Any, Any] = {}  # a file named by many jobs is read once
    for at, target in enumerate(plan.targets):
        for index in range(plan.starts[at], plan.starts[at + 1]):
            inputs = plan.at(index, index + 1)
            try:
                validate_inputs(target.schema, inputs)
                check_file_inputs(target.schema, inputs, plan.upload, seen=files_seen)
            except UsageError as exc:
                raise _bad_job(plan, index, exc) from None
            digest = key_digest(target.model.id, inputs, 0)
            if digest in first:
                raise _same_job(plan, first[digest], index)
            first[digest] = index
            plan.keys += digest
            plan.occurrences.append(0)
            estimate = estimate_cost(target.model, target.schema, inputs)
            plan.estimates.append(math.nan if estimate is None else estimate)
    plan.seal()


def _same_job(plan: SweepPlan, earlier: int, index: int) -> UsageError:
    def varied(at: int) -> str:
        return ", ".join(f"{k}={v}" for k, v in plan.varied_at(at).items())

    prompt = plan.at(index, index + 1).get("prompt")
    what = f" (prompt {prompt[:80]!r})" if isinstance(prompt, str) else ""
    return UsageError(
        f"Jobs {earlier + 1} ({varied(earlier)}) and {index + 1} ({varied(index)}) of the "
        f"{plan.kind} are the same request{what}: it would be paid for twice.",
        hint="Change the alternatives or values so that each job differs.",
    )


def _bad_job(plan: SweepPlan, index: int, exc: UsageError) -> UsageError:
    varied = ", ".join(f"{k}={v}" for k, v in plan.varied_at(index).items())
    model = plan.model_at(index)
    return UsageError(
        f"Job {index + 1} of the {plan.kind} ({varied or model}) is not valid for {model}: "
        f"{exc.message}",
        hint=exc.hint or f"See the parameters with `pixeldojo models show {model}`.",
    )


# --- running: what the ledger keeps, what the contact sheet gets --------------------


class SweepTracker:
    """Records each job of a sweep as one of it in the ledger (as it is
    submitted, and when one an earlier run submitted is found again), and
    gathers the `SweepResult`."""

    def __init__(self, plan: SweepPlan, recorder: Recorder) -> None:
        self.plan = plan
        self.recorder = recorder
        self._job_ids: dict[int, str] = {}

    def submitted(self, line: Line) -> None:
        """`Batch.on_submitted`: the job exists; it is one of this sweep."""
        if line.job_id:
            self._record(line.index, line.job_id)

    def ended(self, line: Line) -> None:
        """`Batch.on_line`: the job ended (or was found from an earlier run)."""
        if not line.job_id:
            return
        if line.resumed:  # (perhaps of another sweep then: of this one too)
            self._record(line.index, line.job_id)
        self._job_ids[line.index] = line.job_id

    def _record(self, index: int, job_id: str) -> None:
        self._job_ids[index] = job_id
        self.recorder.grouped(job_id, self.plan.group_id, self.plan.kind, self.varied(index))

    def varied(self, index: int) -> dict[str, Any]:
        return self.plan.varied_at(index)

    def result(self) -> SweepResult:
        """The jobs that exist, in plan order, and what varied for each."""
        order = sorted(self._job_ids)
        job_ids = tuple(self._job_ids[index] for index in order)
        varied = {self._job_ids[index]: self.varied(index) for index in order}
        return SweepResult(
            self.plan.group_id, self.plan.kind, self.plan.varied_keys(), job_ids, varied
        )
