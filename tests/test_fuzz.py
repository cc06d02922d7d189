"""Fuzzing: any input gives a typed result or a clean error; hostile arguments never
give a traceback or an exit code outside the contract's table."""

from __future__ import annotations

import contextlib
import json
import math
import unicodedata
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixeldojo_cli.api.results import (
    Job,
    Model,
    extract_output_urls,
    parse_cost,
    parse_job,
    parse_job_list,
    parse_model_list,
    parse_schema,
)
from pixeldojo_cli.core.durations import parse_duration
from pixeldojo_cli.core.errors import EXIT_CODES, BadResponseError, PixelDojoError, UsageError
from pixeldojo_cli.emulator import Emulator

from conftest import Invoke

# Hostile shapes mixed into everything below: integers beyond any float (and
# beyond Python's int-string limit), text full of control, format and
# line-separator characters, and nesting far deeper than any answer needs.
HUGE = st.integers(min_value=10**300, max_value=10**4000) | st.integers(
    min_value=-(10**4000), max_value=-(10**300)
)
# Integers of more digits than Python converts from text (4,300 by default).
HUGE_DIGITS = st.integers(4000, 6000).map(lambda n: "9" * n)
CONTROL_TEXT = st.text(
    alphabet=st.characters(categories=("Cc", "Cf", "Zl", "Zp", "Cs")) | st.sampled_from("a[]\\"),
    max_size=20,
)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | HUGE
    | st.floats()
    | st.text(max_size=20)
    | CONTROL_TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int, opener: str) -> str:
    """JSON text `depth` levels deep: `[[[...]]]` or `{"a": {"a": ...}}`."""
    closer = "]" if opener == "[" else "}"
    return opener * depth + "1" + closer * depth


DEEP_TEXT = st.builds(nested, st.integers(1, 5000), st.sampled_from(["[", '{"a": ']))
ANSWER_TEXT = (
    JSON.map(lambda v: json.dumps(v, default=str))
    | DEEP_TEXT
    | HUGE.map(str)
    | HUGE_DIGITS
    | st.text(max_size=50)
    | DEEP_TEXT.map(lambda deep: f'{{"jobId": "job_1", "status": "completed", "output": {deep}}}')
)
UNSAFE = {"Cc", "Cf", "Cs", "Zl", "Zp"}
JOB_KEYS = [
    "jobId",
    "id",
    "status",
    "output",
    "assets",
    "error",
    "expiresAt",
    "completedAt",
    "createdAt",
    "creditCost",
    "creditsRemaining",
    "model",
    "job",
    "webhook",
]
JOBISH = st.dictionaries(st.sampled_from(JOB_KEYS), JSON, max_size=8)
MODEL_KEYS = ["apiId", "id", "name", "description", "modality", "type", "creditCost", "features"]
MODELISH = st.dictionaries(st.sampled_from(MODEL_KEYS), JSON, max_size=8)


@given(st.text(max_size=30))
def test_any_duration_text_is_seconds_or_a_usage_error(text: str) -> None:
    try:
        seconds = parse_duration(text)
    except UsageError:
        return
    assert seconds is not None and 0 < seconds <= 7 * 86400


@given(st.integers(1, 10**6), st.sampled_from(["", "s", "m", "h"]))
def test_durations_in_every_unit(number: int, unit: str) -> None:
    expected = number * {"": 1, "s": 1, "m": 60, "h": 3600}[unit]
    if expected > 7 * 86400:
        with pytest.raises(UsageError):
            parse_duration(f"{number}{unit}")
    else:
        assert parse_duration(f"{number}{unit}") == expected


@given(JOBISH | JSON)
def test_any_job_answer_is_a_job_or_a_clean_error(value: Any) -> None:
    try:
        job = parse_job(value)
    except BadResponseError:
        return
    assert isinstance(job, Job) and job.id and isinstance(job.status, str)
    assert all(isinstance(url, str) and url for url in job.output_urls)
    assert job.output_expiry() is None or isinstance(job.output_expiry(), datetime)


@given(st.lists(JOBISH, max_size=4) | st.dictionaries(st.sampled_from(["jobs", "data", "x"]), JSON))
def test_any_job_list_is_jobs_or_a_clean_error(value: Any) -> None:
    try:
        jobs = parse_job_list(value)
    except BadResponseError:
        return
    assert all(isinstance(job, Job) for job in jobs)


@given(
    st.lists(MODELISH, max_size=4)
    | st.fixed_dictionaries({"models": st.lists(MODELISH, max_size=3)})
    | JSON
)
def test_any_model_list_is_models_or_a_clean_error(value: Any) -> None:
    try:
        models = parse_model_list(value)
    except BadResponseError:
        return
    for model in models:
        assert isinstance(model, Model) and model.id
        model.cost.describe()  # renders whatever the price looked like


@given(JSON)
def test_any_cost_can_be_described(value: Any) -> None:
    assert isinstance(parse_cost(value).describe(), str)


@given(JSON)
def test_any_schema_answer_is_a_dict_or_a_clean_error(value: Any) -> None:
    with contextlib.suppress(BadResponseError):
        assert isinstance(parse_schema(value), dict)


@given(JSON)
def test_output_urls_are_strings_whatever_the_output(value: Any) -> None:
    urls = extract_output_urls({"output": value, "assets": value})
    assert all(isinstance(url, str) and url for url in urls)


@given(st.integers(100, 599), st.text(max_size=200) | JSON.map(json.dumps))
def test_any_error_body_maps_to_a_known_code(status: int, body: str) -> None:
    from pixeldojo_cli.api.responses import error_from_response

    error = error_from_response(status, body)
    assert isinstance(error, PixelDojoError)
    assert error.code in EXIT_CODES and isinstance(error.message, str)


KEY = "fuzz-key-0123456789abcdef"


def _finite(value: Any) -> Any:
    """`value` with every float JSON cannot write (NaN, +-Infinity) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


@given(ANSWER_TEXT)
def test_any_api_answer_is_a_value_or_a_clean_error_and_renders_exactly(text: str) -> None:
    import httpx

    from pixeldojo_cli.api.responses import json_body
    from pixeldojo_cli.core.text import dump_json

    response = httpx.Response(200, content=text.encode(), request=httpx.Request("GET", "http://x/"))
    try:
        value = json_body(response, KEY)
    except BadResponseError:
        return
    shown = dump_json(value)
    # Exact, but valid JSON: a number JSON has not (NaN, Infinity) is shown as null.
    assert json.dumps(json.loads(shown)) == json.dumps(_finite(value))
    assert not any(unicodedata.category(ch) in UNSAFE for ch in shown if ch != "\n")
    with contextlib.suppress(BadResponseError):
        job = parse_job(value)
        job.output_expiry()


SCHEMA = {
    "type": "object",
    "properties": {
        "prompt": {"type": "string"},
        "seed": {"type": "integer", "minimum": 0},
        "num_outputs": {"type": "integer"},
        "guidance": {"type": "number", "maximum": 10},
        "image_urls": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": True,
}
NAMES = st.sampled_from(["prompt", "seed", "num_outputs", "guidance", "image_urls", "x"])
VALUES = ANSWER_TEXT | HUGE_DIGITS | CONTROL_TEXT | HUGE.map(str)


@given(NAMES, st.sampled_from(["=", ":="]), VALUES)
def test_any_p_value_is_an_input_or_a_usage_error(name: str, sep: str, raw: str) -> None:
    from pixeldojo_cli.api.results import parse_model
    from pixeldojo_cli.core.text import dump_json
    from pixeldojo_cli.inputs.schema import build_inputs, estimate_cost, validate_inputs

    model = parse_model({"apiId": "m", "creditCost": 1})
    try:
        inputs = build_inputs(SCHEMA, prompt="x", assignments=[f"{name}{sep}{raw}"])
        validate_inputs(SCHEMA, inputs)
    except UsageError:
        return
    estimate_cost(model, SCHEMA, inputs)
    json.loads(dump_json(inputs))


@given(ANSWER_TEXT | CONTROL_TEXT)
def test_any_input_file_is_an_object_or_a_usage_error(text: str) -> None:
    from pixeldojo_cli.cli.state import inputs_object

    with contextlib.suppress(UsageError):
        assert isinstance(inputs_object(text, "--input f"), dict)


TOML_VALUES = (
    st.text(max_size=20)
    | CONTROL_TEXT
    | st.integers()
    | HUGE
    | st.floats()
    | st.booleans()
    | st.datetimes()
    | st.lists(st.integers(), max_size=3)
    | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)
)
SETTINGS = ["api_key", "base_url", "output_dir", "rate_limit", "poll_interval",
            "max_poll_interval", "checksum"]  # fmt: skip


@given(
    st.dictionaries(st.sampled_from(SETTINGS), TOML_VALUES, max_size=4),
    st.dictionaries(st.sampled_from(SETTINGS), TOML_VALUES, max_size=4),
)
def test_any_type_for_any_setting_is_settings_or_a_config_error(
    profile: dict[str, Any], defaults: dict[str, Any]
) -> None:
    from pathlib import Path

    from pixeldojo_cli.cli.render import Renderer
    from pixeldojo_cli.core.errors import ConfigError
    from pixeldojo_cli.store.settings import resolve_settings

    config = {"profiles": {"default": profile}, "defaults": defaults}
    try:
        settings = resolve_settings(config=config, env={}, path=Path("/nowhere/config.toml"))
    except ConfigError as exc:
        key = profile.get("api_key")
        if key is not None and not isinstance(key, str):
            assert str(key) not in exc.message or len(str(key)) < 4
        render = Renderer()
        render.add_secret(key)
        render.scrub(exc.message)  # the error report never raises
        return
    assert settings.api_key.value is None or isinstance(settings.api_key.value, str)
    assert isinstance(settings.base_url.value, str) and isinstance(settings.output_dir.value, str)
    assert 0 < settings.poll_interval.value < 86400


@given(st.text() | CONTROL_TEXT)
def test_safe_text_leaves_one_line_with_nothing_a_terminal_acts_on(text: str) -> None:
    from pixeldojo_cli.core.text import safe_text

    shown = safe_text(text)
    assert not any(unicodedata.category(ch) in UNSAFE for ch in shown)
    assert "\n" not in shown and "\r" not in shown


@given(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=8),
    st.text(max_size=10),
    st.sampled_from(["raw", "repr", "bytes", "json", "json2", "url", "url+", "b64", "upper"]),
)
def test_a_key_is_masked_in_any_form_a_server_may_echo_it(key: str, around: str, form: str) -> None:
    import base64
    from urllib.parse import quote, quote_plus

    from pixeldojo_cli.core.redact import redact

    shown = {
        "raw": key,
        "repr": repr(key)[1:-1],
        "bytes": repr(f"Bearer {key}\r".encode())[2:-1],
        "json": json.dumps(key)[1:-1],
        "json2": json.dumps(json.dumps(key))[1:-1],
        "url": quote(key, safe=""),
        "url+": quote_plus(key),
        "b64": base64.b64encode(f"user:{key}".encode()).decode(),
        "upper": key.upper(),
    }[form]
    masked = redact(f"{around}{shown}{around}", key)
    assert key not in masked and shown not in masked


@given(
    st.integers(400, 599),
    # Where the key starts: anywhere, or just around the 200-character cut of a
    # plain-text body or the 1,000 of a message, so that it straddles the cut.
    st.integers(0, 1100) | st.integers(185, 200) | st.integers(985, 1000),
    st.text(max_size=20),
    st.sampled_from(["json", "plain"]),
)
def test_an_error_answer_never_yields_an_error_holding_the_key(
    status: int, start: int, after: str, shape: str
) -> None:
    from pixeldojo_cli.api.responses import error_from_response, mask_error, masked_response
    from pixeldojo_cli.core.errors import ApiResponse

    before = "x" * start
    text = before + KEY + after
    body = json.dumps({"error": {"message": text}}) if shape == "json" else text
    error = error_from_response(status, body, secret=KEY)
    error.response = ApiResponse(status, "", (("X-Echo", KEY),), body.encode("utf-8", "replace"))
    mask_error(error, KEY)
    assert error.response is not None
    shown = [str(error), repr(error), error.message, error.response.body.decode("utf-8", "replace")]
    shown += [value for _, value in error.response.headers]
    head = KEY[:10]  # what a cut after masking would leave
    assert not [t for t in shown if KEY in t or (head in t and head not in before + after)]
    # Masking changes nothing else: with no key, the answer stays as it came.
    plain = ApiResponse(status, "", (), (before + after).encode("utf-8", "surrogatepass"))
    if KEY.lower() not in (before + after).lower():
        assert masked_response(plain, KEY) == plain


# --- hostile arguments, every command ------------------------------------------------

HOSTILE = [
    "",
    "x" * 10_000,
    "ünïcødé ✓ 🎨",
    "../../etc/passwd",
    "-1",
    "NaN",
    "1e309",
    "\x00",
    "%s%n",
    "9" * 5000,
    nested(5000, "["),
    "\x1b]52;c;cm0gLXJm\x07\x1b[2J\u202e\x9b",
]

COMMANDS = [
    ["run", "{x}"],
    ["run", "flux-dev", "{x}", "--dry-run"],
    ["run", "flux-dev", "x", "-p", "{x}", "--dry-run"],
    ["run", "flux-dev", "x", "-p", "seed={x}", "--dry-run"],
    ["run", "flux-dev", "x", "-p", "prompt:={x}", "--dry-run"],
    ["run", "flux-dev", "x", "--timeout", "{x}"],
    ["run", "flux-dev", "x", "--seed", "{x}", "--dry-run"],
    ["run", "flux-dev", "x", "--input", "{x}"],
    ["run", "flux-dev", "x", "--webhook-url", "{x}", "--dry-run"],
    ["models", "show", "{x}"],
    ["models", "--type", "{x}"],
    ["jobs", "show", "{x}"],
    ["jobs", "list", "--limit", "{x}"],
    ["jobs", "wait", "{x}", "--timeout", "1"],
    ["download", "{x}"],
    ["download", "job_x", "-o", "{x}"],
    ["webhook", "replay", "{x}"],
    ["config", "get", "{x}"],
    ["config", "set", "poll_interval", "{x}"],
    ["config", "set", "base_url", "{x}"],
    ["--profile", "{x}", "auth", "status", "--offline"],
    ["api", "{x}"],
    ["api", "{x}", "models"],
    ["api", "models", "-X", "GET", "-F", "k={x}", "-H", "X-A: {x}"],
]
VALID_EXITS = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 130}


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(c[:3]) for c in COMMANDS])
def test_hostile_arguments_never_crash(cli: Invoke, emulator: Emulator, args: list[str]) -> None:
    for value in HOSTILE:
        result = cli(*[a.replace("{x}", value) for a in args])
        assert result.exit_code in VALID_EXITS - {1}, (value[:20], result.output[-500:])
        assert "Traceback" not in result.output, value[:20]
