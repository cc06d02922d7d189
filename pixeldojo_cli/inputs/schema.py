"""A model's inputs: `-p key=value` parsing, coercion by the schema, the check
that runs before anything is spent, and the estimated credit cost.

Everything here is pure (no HTTP), so it is fuzzed directly: any string in
gives either a typed value or a `UsageError` out.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pixeldojo_cli.api.results import Model
from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.core.suggest import close_matches, did_you_mean

# Body fields that are not model inputs: the API takes them beside the inputs.
RESERVED_FIELDS = frozenset({"webhook_url"})

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_TRUE = {"true", "1", "yes", "on", "y"}
_FALSE = {"false", "0", "no", "off", "n"}


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str
    required: bool = False
    default: Any = None
    enum: tuple[Any, ...] | None = None
    description: str = ""
    minimum: float | None = None
    maximum: float | None = None
    items_type: str | None = None


def _type_of(spec: Mapping[str, Any]) -> str:
    kind = spec.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if isinstance(kind, str):
        return kind
    if "enum" in spec:
        return "string"
    return "any"


def _bound(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float: no usable bound
        return None


def parameters(schema: Mapping[str, Any] | None) -> list[Parameter]:
    """The schema's input parameters, required ones first, in schema order."""
    if not schema:
        return []
    props = schema.get("properties")
    if not isinstance(props, Mapping):
        return []
    required = schema.get("required")
    required_names = (
        {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
    )
    params = []
    for name, spec in props.items():
        if not isinstance(name, str) or not isinstance(spec, Mapping):
            continue
        enum = spec.get("enum")
        items = spec.get("items")
        params.append(
            Parameter(
                name=name,
                type=_type_of(spec),
                required=name in required_names,
                default=spec.get("default"),
                enum=tuple(enum) if isinstance(enum, list) and enum else None,
                description=str(spec.get("description") or ""),
                minimum=_bound(spec.get("minimum")),
                maximum=_bound(spec.get("maximum")),
                items_type=_type_of(items) if isinstance(items, Mapping) else None,
            )
        )
    return sorted(params, key=lambda p: not p.required)


def _unknown(name: str, known: Iterable[str]) -> UsageError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"Did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if len(known) <= 12 else ", ".join(known[:12]) + ", ..."
    return UsageError(
        f"Unknown parameter {name!r}. {hint}".strip(),
        hint=f"This model takes: {listing}." if known else "This model declares no parameters.",
    )


def coerce_scalar(kind: str | None, raw: str, name: str) -> Any:
    """`raw` (a `-p` value) as the JSON type `kind`; a `UsageError` if it is not one."""
    text = raw.strip()
    if kind == "integer":
        if not _INT.fullmatch(text):
            raise UsageError(f"{name} must be an integer, got {raw[:60]!r}.")
        try:
            return int(text)
        except ValueError:  # more digits than Python converts (4,300 by default)
            raise UsageError(
                f"{name} must be an integer; {len(text)} digits is too many."
            ) from None
    if kind == "number":
        if not _FLOAT.fullmatch(text):
            raise UsageError(f"{name} must be a number, got {raw!r}.")
        value = float(text)
        if not math.isfinite(value):
            raise UsageError(f"{name} must be a finite number, got {raw!r}.")
        return int(value) if _INT.fullmatch(text) else value
    if kind == "boolean":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise UsageError(f"{name} must be true or false, got {raw!r}.")
    if kind in ("object", "array"):
        raise UsageError(f"{name} takes JSON: use -p '{name}:=...'.")
    return raw


def parse_assignment(text: str) -> tuple[str, str, bool]:
    """`key=value` -> (key, value, False); `key:=json` -> (key, json, True)."""
    match = re.match(r"([^=:]+)(:?)=(.*)\Z", text, re.DOTALL)
    if not match or not match.group(1).strip():
        raise UsageError(
            f"Expected KEY=VALUE or KEY:=JSON after -p, got {text[:60]!r}.",
            hint="For example: -p aspect_ratio=16:9 -p num_outputs:=2",
        )
    return match.group(1).strip(), match.group(3), bool(match.group(2))


def _json_literal(name: str, raw: str) -> Any:
    from pixeldojo_cli.core.untrusted import loads

    try:
        return loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:  # not JSON, nested too deep, a number of too many digits
        raise UsageError(f"The value of {name} is not valid JSON: {exc}.") from None


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not allowed")


def build_inputs(
    schema: Mapping[str, Any] | None,
    *,
    prompt: str | None = None,
    assignments: Iterable[str] = (),
    base: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Merge `--input`, PROMPT, `-p` and `--seed` into one inputs object.

    Precedence: `-p` and `--seed` override `--input`; PROMPT fills `prompt`.
    PROMPT and `-p prompt=`, or `--seed` and `-p seed=`, together are a usage
    error (one of them would be dropped without a word).
    `-p` values are coerced to the schema's type; an array parameter given
    several times collects the values. Unknown names are errors here.
    """
    refuse_given_twice(assignments, prompt=prompt is not None, seed=seed is not None)
    params = {p.name: p for p in parameters(schema)}
    open_schema = not params or (schema or {}).get("additionalProperties") is True
    inputs: dict[str, Any] = dict(base or {})
    if prompt is not None:
        inputs["prompt"] = prompt
    repeated: set[str] = set()
    for text in assignments:
        name, raw, is_json = parse_assignment(text)
        param = params.get(name)
        if param is None and not open_schema and name not in RESERVED_FIELDS:
            raise _unknown(name, params)
        if is_json:
            value = _json_literal(name, raw)
        elif param is not None and param.type == "array":
            value = coerce_scalar(param.items_type, raw, name)
            value = [*inputs.get(name, []), value] if name in repeated else [value]
            repeated.add(name)
        else:
            value = coerce_scalar(param.type if param else None, raw, name)
        inputs[name] = value
    if seed is not None:
        inputs["seed"] = seed
    return inputs


def refuse_given_twice(
    assignments: Iterable[str],
    *,
    prompt: bool = False,
    seed: bool = False,
    webhook_url: bool = False,
) -> None:
    """A usage error when an input given by PROMPT, `--seed` or `--webhook-url`
    (as the flags say) is given by `-p` too: one of the two would be dropped
    without a word (or, swept, paid for with the other's value)."""
    names = {parse_assignment(text)[0] for text in assignments}
    for name, given, by in (
        ("prompt", prompt, "PROMPT"),
        ("seed", seed, "--seed"),
        ("webhook_url", webhook_url, "--webhook-url"),
    ):
        if given and name in names:
            raise UsageError(f"{name} is given by both {by} and -p {name}=...: give it once.")


def webhook_url_problem(value: Any) -> str | None:
    """What is wrong with a `webhook_url` (from `--webhook-url`, `-p`, `--input`
    or a batch line): it must be an http(s) URL; None when it is one."""
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return None
    shown = value[:60] if isinstance(value, str) else value
    return f"webhook_url must be an http(s) URL, got {shown!r}."


def _type_ok(kind: str | None, value: Any) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        if isinstance(value, int) and not isinstance(value, bool):
            return True  # (math.isfinite would overflow on a huge one)
        return isinstance(value, float) and math.isfinite(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True


def _bound_text(value: float) -> str:
    """`2147483647`, not `2.14748e+09`."""
    return str(int(value)) if value.is_integer() else f"{value:g}"


def _check_value(param: Parameter, value: Any) -> str | None:
    if not _type_ok(param.type, value):
        return f"{param.name} must be of type {param.type}, got {json.dumps(value)[:40]}."
    if param.enum is not None and value not in param.enum:
        allowed = ", ".join(str(v) for v in param.enum)
        extra = did_you_mean(close_matches(str(value), param.enum))
        return f"{param.name} must be one of: {allowed}; got {value!r}. {extra}".rstrip()
    if isinstance(value, int | float) and not isinstance(value, bool):
        if param.minimum is not None and value < param.minimum:
            return f"{param.name} must be at least {_bound_text(param.minimum)}, got {value}."
        if param.maximum is not None and value > param.maximum:
            return f"{param.name} must be at most {_bound_text(param.maximum)}, got {value}."
    if param.type == "array" and param.items_type:
        for item in value:
            if not _type_ok(param.items_type, item):
                return f"Every item of {param.name} must be of type {param.items_type}."
    return None


def value_problem(param: Parameter, value: Any) -> str | None:
    """What the schema's parameter refuses in `value` (type, allowed values,
    bounds), as one sentence; None when it takes it."""
    return _check_value(param, value)


def unknown_parameter(name: str, known: Iterable[str]) -> UsageError:
    """The usage error for an input the model does not take, with a did-you-mean."""
    return _unknown(name, known)


def _encodable(value: Any) -> bool:
    """Whether every string in `value` can be written as UTF-8: an argument of bytes
    that are not UTF-8 arrives holding lone surrogates, which no file or request
    can carry. (Inputs come from the depth-limited decoder or the command line;
    walked without recursion all the same, as a library caller may pass anything.)"""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
    return True


def validate_inputs(
    schema: Mapping[str, Any] | None, inputs: Mapping[str, Any], *, prompt_argument: bool = True
) -> None:
    """Check inputs against the schema before anything is spent.

    Raises `UsageError` for an unknown parameter (with a suggestion), a wrong
    type, a value not allowed, or a missing required value; then for anything
    else the whole JSON Schema refuses (an empty prompt under `minLength`, too
    many images under `maxItems`, a `pattern`, a `format`, nested objects...).
    A `@PATH` or `@job:ID` value stands as a URL here (`file_refs.checkable`);
    a `@` value where no URL goes is a usage error. A `webhook_url` (from `-p`,
    `--input` or a batch line) must be an http(s) URL, as `--webhook-url` must.
    `prompt_argument`: the command takes a PROMPT argument (the hint for a
    missing prompt names it; else `-p prompt=...`).
    """
    from pixeldojo_cli.inputs.file_refs import checkable

    for name, value in inputs.items():
        if not _encodable(value):
            raise UsageError(
                f"{name} is not valid Unicode text (bytes that are not UTF-8?).",
                hint="Give it as UTF-8 text.",
            )
    problem = webhook_url_problem(inputs["webhook_url"]) if "webhook_url" in inputs else None
    if problem:  # the rule --webhook-url keeps, whichever way it came
        raise UsageError(problem)
    inputs = checkable(schema, inputs)
    _check_common_rules(schema, inputs, prompt_argument)
    if not isinstance(schema, Mapping):
        return
    from pixeldojo_cli.inputs.validator import schema_problems

    body = {name: value for name, value in inputs.items() if name not in RESERVED_FIELDS}
    problems = schema_problems(schema, body, limit=3)
    if problems:
        raise UsageError(
            "; ".join(str(problem) for problem in problems) + ".",
            hint="See `pixeldojo models show <model>` for the parameters.",
        )


def _check_common_rules(
    schema: Mapping[str, Any] | None, inputs: Mapping[str, Any], prompt_argument: bool = True
) -> None:
    """The usual mistakes, each with its friendliest message and hint."""
    params = {p.name: p for p in parameters(schema)}
    if not params:
        return
    open_schema = (schema or {}).get("additionalProperties") is True
    for name, value in inputs.items():
        param = params.get(name)
        if param is None:
            if not open_schema and name not in RESERVED_FIELDS:
                raise _unknown(name, params)
            continue
        problem = _check_value(param, value)
        if problem:
            raise UsageError(
                problem, hint="See `pixeldojo models show <model>` for the parameters."
            )
    missing = [p.name for p in params.values() if p.required and p.name not in inputs]
    if missing:
        by_argument = prompt_argument and missing == ["prompt"]
        example = "PROMPT" if by_argument else f"-p {missing[0]}=..."
        raise UsageError(
            f"Missing required input: {', '.join(missing)}.",
            hint=f"Give it as {example}.",
        )


def _norm(text: str) -> str:
    return re.sub(r"[\s_]", "", text).lower()


def estimate_cost(
    model: Model, schema: Mapping[str, Any] | None, inputs: Mapping[str, Any]
) -> float | None:
    """Credits this request should cost, from the model's price and the inputs.

    Per image for image models (times `num_outputs`), per second for video
    (times `duration`), by resolution where the price says so. An estimate:
    the API's `creditCost` in the submit answer is the truth.
    """
    cost = model.cost
    if cost.default is None or not math.isfinite(cost.default) or cost.default < 0:
        return None
    defaults = {p.name: p.default for p in parameters(schema) if p.default is not None}
    values = {**defaults, **inputs}
    unit = cost.default
    if cost.by_resolution:
        for key in ("resolution", "megapixels", "image_size", "size"):
            chosen = values.get(key)
            if chosen is None:
                continue
            table = {_norm(k): v for k, v in cost.by_resolution.items()}
            if _norm(str(chosen)) in table:
                unit = table[_norm(str(chosen))]
                break
    count = 1.0
    try:  # (an integer beyond any float has no estimate)
        if cost.per_second:
            duration = values.get("duration")
            if isinstance(duration, bool) or not isinstance(duration, int | float):
                return None
            count = float(duration)
        else:
            outputs = values.get("num_outputs", values.get("num_images", 1))
            if isinstance(outputs, int) and not isinstance(outputs, bool) and outputs > 0:
                count = float(outputs)
    except OverflowError:
        return None
    estimate = round(unit * count, 4)
    # (negative: a negative price or duration; never a cost, never under a budget)
    return estimate if math.isfinite(estimate) and estimate >= 0 else None


def inputs_object(text: str, where: str) -> dict[str, Any]:
    """A JSON object of model inputs, or a usage error naming `where` it came from."""
    from pixeldojo_cli.core.untrusted import loads

    try:
        value = loads(text)
    except ValueError as exc:  # not JSON, too deep, or a number of too many digits
        raise UsageError(f"{where} is not valid JSON: {exc}.") from exc
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be a JSON object of inputs.")
    return value
