"""What the user asked for one job, turned into a checked, priced `Submission`
before anything is spent: the one door every command that submits a single
job goes through (`run`, and whatever else asks for one job)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pixeldojo_cli.engine.submission import Submission

if TYPE_CHECKING:
    from pixeldojo_cli.api.results import Model
    from pixeldojo_cli.engine.uploaders import UploadSettings


@dataclass(frozen=True)
class JobAsk:
    """One job as the user asked for it, before any check: PROMPT, the `-p`
    assignments, the `--input` object they override, `--seed`, `--webhook-url`;
    how `@PATH` files are uploaded (`upload`; None: they are refused); and
    `auto_seed` (the setting, on by default): pick a seed when the model takes
    one and none was given; `prompt_argument`: the command takes a PROMPT
    (else a missing prompt's hint says `-p prompt=...`)."""

    prompt: str | None = None
    assignments: tuple[str, ...] = ()
    base_inputs: dict[str, Any] | None = field(default=None, hash=False)
    seed: int | None = None
    webhook_url: str | None = None
    upload: UploadSettings | None = None
    auto_seed: bool = True
    prompt_argument: bool = True


def prepare(model: Model, schema: dict[str, Any], ask: JobAsk, folder: Path) -> Submission:
    """The job's inputs, merged, checked against the schema and priced: a usage
    error (nothing spent) for anything the schema refuses, then for any `@`
    file that cannot be sent."""
    from pixeldojo_cli.engine.file_inputs import check_file_inputs
    from pixeldojo_cli.inputs.schema import (
        build_inputs,
        estimate_cost,
        refuse_given_twice,
        validate_inputs,
    )

    refuse_given_twice(ask.assignments, webhook_url=ask.webhook_url is not None)
    inputs = build_inputs(
        schema,
        prompt=ask.prompt,
        assignments=list(ask.assignments),
        base=ask.base_inputs,
        seed=ask.seed,
    )
    validate_inputs(schema, inputs, prompt_argument=ask.prompt_argument)
    if ask.auto_seed:
        inputs = _with_random_seed(schema, inputs)
    inputs, files = check_file_inputs(schema, inputs, ask.upload)
    return Submission(
        model.id,
        inputs,
        folder,
        estimate=estimate_cost(model, schema, inputs),
        webhook_url=ask.webhook_url,
        listed_cost=model.cost.default,
        files=files,
    )


def _with_random_seed(schema: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs with a random seed when the model takes one and none was
    given; unchanged when the schema would refuse the seed picked (a rule
    beyond its bounds, such as `multipleOf`): the API then picks its own."""
    from pixeldojo_cli.core.errors import UsageError
    from pixeldojo_cli.inputs.schema import validate_inputs
    from pixeldojo_cli.inputs.seeds import SEED, random_seed, seed_range

    bounds = seed_range(schema)
    if bounds is None or SEED in inputs:
        return inputs
    seeded = {**inputs, SEED: random_seed(bounds)}
    try:
        validate_inputs(schema, seeded)
    except UsageError:
        return inputs
    return seeded


def takes_input(schema: dict[str, Any], name: str) -> bool:
    """Whether the model takes the input `name` (a schema that lists no
    parameters, or allows any, takes every one)."""
    from pixeldojo_cli.inputs.schema import RESERVED_FIELDS, parameters

    params = {p.name for p in parameters(schema)}
    return (
        not params
        or schema.get("additionalProperties") is True
        or (name in params or name in RESERVED_FIELDS)
    )


def leave_out(
    model_id: str, schema: dict[str, Any], names: Iterable[str], notify: Callable[[str], None]
) -> list[str]:
    """The inputs among `names` the model does not take, said in one `notify`
    line: what `compare` and `rerun --model` leave out for a model."""
    left_out = [name for name in names if not takes_input(schema, name)]
    if left_out:
        notify(f"{model_id} takes no {', '.join(left_out)}: left out for it.")
    return left_out
