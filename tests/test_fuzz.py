"""Fuzzing: any input gives a typed result or a clean error; hostile arguments never
give a traceback or an exit code outside the contract's table."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixeldojo_cli.cli.state import parse_duration
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.errors import EXIT_CODES, BadResponseError, PixelDojoError, UsageError
from pixeldojo_cli.results import (
    Job,
    Model,
    extract_output_urls,
    parse_cost,
    parse_job,
    parse_job_list,
    parse_model_list,
    parse_schema,
)

from conftest import Invoke

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
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
    from pixeldojo_cli.errors import error_from_response

    error = error_from_response(status, body)
    assert isinstance(error, PixelDojoError)
    assert error.code in EXIT_CODES and isinstance(error.message, str)


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
]

COMMANDS = [
    ["run", "{x}"],
    ["run", "flux-dev", "{x}", "--dry-run"],
    ["run", "flux-dev", "x", "-p", "{x}", "--dry-run"],
    ["run", "flux-dev", "x", "-p", "seed={x}", "--dry-run"],
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
