"""Durations: one grammar, one set of units, the limits of each flag and setting in
one table (`core.durations.LIMITS`), one shape of error message."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pixeldojo_cli.cli.commands.jobs_list import parse_since
from pixeldojo_cli.cli.state import duration_parser
from pixeldojo_cli.core.durations import (
    LIMITS,
    DurationError,
    parse_duration,
    seconds,
)
from pixeldojo_cli.core.errors import ConfigError, UsageError
from pixeldojo_cli.store.settings import parse_setting

from conftest import FAST, Invoke

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("90", 90),
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("2d", 2 * 86400),
        ("1w", 7 * 86400),
    ],
)
def test_every_unit(text: str, expected: float) -> None:
    assert seconds(text, "--timeout") == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1h30m", 5400),
        ("1d12h", 36 * 3600),
        ("1h30", 3630),  # a number without a unit inside a combination: seconds
        ("1.5h", 5400),
        ("0.5", 0.5),
        (" 1H 30M ", 5400),  # case and spaces do not matter
    ],
)
def test_combinations_decimals_case_and_spaces(text: str, expected: float) -> None:
    assert seconds(text, "--timeout") == expected


@pytest.mark.parametrize("text", ["", "soon", "10x", "1h-5m", "h", "1..5s", "--1"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(DurationError):
        seconds(text, "--timeout")


@pytest.mark.parametrize(
    "name, longest, refused",
    [
        ("--timeout", "7d", "7d1s"),
        ("--grace", "1w", "8d"),
        ("--poll-interval", "23h59m", "1d"),  # under a day: a day itself is refused
        ("--max-poll-interval", "86399", "86400"),
        ("poll_interval", "23h", "24h"),
        ("max_poll_interval", "23h", "24h"),
        ("unknown_status_timeout", "30d", "31d"),
    ],
)
def test_the_limits_of_each_flag_and_setting(name: str, longest: str, refused: str) -> None:
    assert seconds(longest, name) > 0
    for text in (refused, "0", "-5", "nan", "inf"):
        with pytest.raises(DurationError, match=re.escape(name)):
            seconds(text, name)


def test_since_takes_zero_and_clamps_at_100_years_but_needs_a_unit() -> None:
    assert seconds("0s", "--since") == 0
    assert seconds("10000w", "--since") == 100 * 365 * 86400
    with pytest.raises(DurationError):
        seconds("90", "--since")  # a bare number could be a date: 20250131


def test_since_reads_a_compact_date_as_a_date_not_seconds() -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert parse_since("2d", now) == now - timedelta(days=2)
    assert parse_since("20250131", now) == parse_since("2025-01-31", now)
    with pytest.raises(UsageError, match=r"--since must be a duration like .*or a date"):
        parse_since("90", now)


def test_the_emulator_knobs_take_zero_and_forever() -> None:
    assert duration_parser("--latency")("0") == 0
    assert duration_parser("--latency")("2s") == 2
    assert duration_parser("--ttl")("1d") == 86400
    assert duration_parser("--ttl")("inf") == math.inf
    assert duration_parser("--ttl")(86400.0) == 86400  # the default, already seconds


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_one_message_shape(name: str) -> None:
    with pytest.raises(DurationError) as info:
        seconds("soon", name)
    assert info.value.message.startswith(f"{name} must be a duration like ")
    assert info.value.message.endswith("; got 'soon'.")


def test_parse_duration_is_a_usage_error_and_keeps_none() -> None:
    assert parse_duration(None) is None
    with pytest.raises(UsageError, match="--grace must be a duration"):
        parse_duration("later", option="--grace")


def test_settings_read_the_same_grammar() -> None:
    assert parse_setting("poll_interval", "2s") == 2
    assert parse_setting("max_poll_interval", "1m") == 60
    assert parse_setting("unknown_status_timeout", "1d") == 86400
    # What the poll settings took as numbers of seconds, they still take.
    assert parse_setting("poll_interval", "1e3") == 1000
    assert parse_setting("poll_interval", ".5") == 0.5
    with pytest.raises(ConfigError, match="poll_interval must be a duration"):
        parse_setting("poll_interval", "1d")


def test_timeout_1d_now_works(cli: Invoke) -> None:
    result = cli("run", "flux-dev", "a fox", "--timeout", "1d", *FAST)
    assert result.exit_code == 0, result.output


def test_poll_interval_flags_take_units(cli: Invoke) -> None:
    result = cli("run", "flux-dev", "a fox", "--poll-interval", "0.1s", "--max-poll-interval", "1s")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    "args",
    [
        ["jobs", "wait", "job_x", "--timeout", "soon"],
        ["run", "flux-dev", "x", "--timeout", "1y"],
        ["webhook", "listen", "--grace", "0"],
        ["jobs", "list", "--local", "--since", "yesterday"],
        # The flags Typer converts itself: one line too, as `--poll-interval 0` always was.
        ["run", "flux-dev", "x", "--poll-interval", "0"],
        ["jobs", "wait", "job_x", "--poll-interval", "soon"],
        ["jobs", "wait", "job_x", "--max-poll-interval", "1d"],
        ["emulator", "serve", "--latency", "-1"],
        ["emulator", "serve", "--ttl", "soon"],
    ],
)
def test_a_bad_duration_exits_2_on_one_line(cli: Invoke, args: list[str]) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "must be a duration like" in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_a_bad_poll_interval_is_a_usage_error_without_a_traceback(cli: Invoke) -> None:
    result = cli("jobs", "wait", "job_x", "--poll-interval", "soon")
    assert result.exit_code == 2
    assert "--poll-interval must be a duration like" in result.stderr
    assert "Traceback" not in result.output


def test_the_readme_documents_every_duration_flag_and_setting_once() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Durations", 1)[1].split("\n### ", 1)[0]
    for name in LIMITS:
        assert f"`{name}`" in section or f"{name}`" in section, name
    assert text.count("### Durations") == 1


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_every_example_in_a_message_is_a_value_the_flag_accepts(name: str) -> None:
    import re

    with pytest.raises(DurationError) as info:
        seconds("soon", name)
    examples = info.value.message.split(" must be a duration like ", 1)[1]
    for example in re.findall(r"\b\d+[smhdw]?\b", examples.split(" (")[0].split(";")[0]):
        if LIMITS[name].unit and example.isdigit():
            continue
        seconds(example, name)  # raises if the message offers what the flag refuses
