"""Sweeps on `run`: --matrix (ranges, escapes), PROMPT alternatives {a|b}, their
product run through the batch engine (resume, --max-credits, JSON Lines), the
ledger's record of what varied, and bad input refused before anything is spent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.inputs.sweeps import (
    Axis,
    MatrixSpec,
    combination,
    combinations,
    matrix_values,
    parse_matrix,
    parse_prompt,
    product_size,
)
from pixeldojo_cli.store.ledger import Ledger

from conftest import Invoke

POLL = ("--poll-interval", "0.1", "--max-poll-interval", "0.4")


def posts(emulator: Emulator) -> int:
    return len(emulator.requests_to("POST", r"/run$"))


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- the pure parts -------------------------------------------------------------------


def test_prompt_alternatives_multiply_and_double_braces_are_literal() -> None:
    template = parse_prompt("a {red|green} {{x}} {cat|dog}")
    assert template.groups == [("red", "green"), ("cat", "dog")]
    assert template.render(("green", "dog")) == "a green {x} dog"
    assert parse_prompt("plain {{braces}}").render(()) == "plain {braces}"


def test_matrix_values_split_at_commas_with_backslash_escapes() -> None:
    assert parse_matrix(r"prompt=a\, b,c\\d") == MatrixSpec("prompt", ("a, b", "c\\d"))


def test_a_range_of_integers_is_not_built_to_be_counted() -> None:
    from pixeldojo_cli.inputs.schema import Parameter

    values = matrix_values(MatrixSpec("seed", ("1..1000000000",)), Parameter("seed", "integer"))
    assert len(values) == 1_000_000_000 and values[-1] == 1_000_000_000


@given(st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=4))
def test_combination_by_index_is_the_product_in_order(sizes: list[int]) -> None:
    import itertools

    axes = [Axis(f"k{n}", list(range(size))) for n, size in enumerate(sizes)]
    assert list(combinations(axes)) == list(itertools.product(*(a.values for a in axes)))
    assert product_size(axes) == len(list(combinations(axes)))
    assert combination(axes, product_size(axes) - 1) == tuple(s - 1 for s in sizes)


@given(st.text(max_size=40))
def test_any_prompt_parses_or_is_one_usage_error(text: str) -> None:
    try:
        template = parse_prompt(text)
    except UsageError as exc:
        assert "\n" not in exc.message
        return
    for group in template.groups:
        assert len(group) >= 2 and all(alt.strip() for alt in group)


# --- sweeps through the batch ---------------------------------------------------------


def test_matrix_and_alternatives_run_every_combination(cli: Invoke, emulator: Emulator) -> None:
    result = cli(
        "run", "flux-dev", "a {red|green} fox", "--matrix", "seed=1..3", "-m",
        "aspect_ratio=1:1,16:9", "-o", "out", *POLL,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert posts(emulator) == 12
    asked = {
        (j.inputs["prompt"], j.inputs["seed"], j.inputs["aspect_ratio"])
        for j in emulator.jobs.values()
    }
    assert len(asked) == 12 and ("a green fox", 3, "16:9") in asked
    assert all(isinstance(seed, int) for _, seed, _ in asked)  # coerced as -p does
    assert len(result.stdout.split()) == 12


def test_dry_run_prints_every_expanded_job_and_the_total(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-2-flex", "a {cat|dog}", "-m", "resolution=1 MP,4 MP", "--dry-run")
    assert result.exit_code == 0, result.output
    jobs = json_lines(result.stdout)
    assert [job["body"]["prompt"] for job in jobs] == ["a cat", "a cat", "a dog", "a dog"]
    assert jobs[1]["varied"] == {"prompt{1}": "cat", "resolution": "4 MP"}
    assert "4 jobs, estimated 13 credits in all" in result.stderr
    assert posts(emulator) == 0


def test_a_literal_brace_prompt_is_one_job_with_the_brace(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "a {{b}}", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["prompt"] == "a {b}"


def test_rerunning_the_same_sweep_pays_for_nothing_twice(cli: Invoke, emulator: Emulator) -> None:
    args = ("run", "flux-dev", "a {fox|owl}", "-m", "seed=1..2", "-o", "out", *POLL)
    assert cli(*args).exit_code == 0
    assert posts(emulator) == 4
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert posts(emulator) == 4
    assert "from earlier runs        4" in again.stderr


def test_max_credits_caps_a_sweep(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "x", "-m", "seed=1..5", "--max-credits", "2", *POLL)
    assert result.exit_code == 4
    assert posts(emulator) == 2


def test_json_lines_name_what_varied_and_end_with_a_summary(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("run", "flux-dev", "a {cat|dog}", "-m", "seed=7", "--json", "-o", "o", *POLL)
    assert result.exit_code == 0, result.output
    *jobs, last = json_lines(result.stdout)
    assert sorted(job["varied"]["prompt{1}"] for job in jobs) == ["cat", "dog"]  # type: ignore[index]
    assert all(job["seed"] == 7 and job["outcome"] == "saved" for job in jobs)
    assert all(job["model"] == "flux-dev" and job["credits"] == 1 for job in jobs)
    summary = last["summary"]
    assert summary["jobs"] == 2 and summary["varied"] == ["prompt{1}"]  # type: ignore[index]
    assert set(summary["jobIds"]) == {job["jobId"] for job in jobs}  # type: ignore[index]


def test_each_job_of_a_sweep_is_in_the_ledger_with_what_varied(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("run", "flux-dev", "a {cat|dog}", "--json", "-o", "o", *POLL)
    assert result.exit_code == 0, result.output
    summary = json_lines(result.stdout)[-1]["summary"]
    ids = summary["jobIds"]  # type: ignore[index]
    with Ledger() as ledger:
        groups = ledger.groups_of(emulator.base_url.rstrip("/"), ids)
    assert {g[0].varied["prompt{1}"] for g in groups.values()} == {"cat", "dog"}
    assert {g[0].group_id for g in groups.values()} == {summary["groupId"]}  # type: ignore[index]


def test_more_than_500_jobs_need_yes(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "x", "-m", "seed=1..501")
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert posts(emulator) == 0
    result = cli("run", "flux-dev", "x", "-m", "seed=1..501", "--dry-run")
    assert result.exit_code == 0 and len(result.stdout.splitlines()) == 501


# --- bad input: one line, exit 2 (or 6), nothing spent ----------------------------------


@pytest.mark.parametrize(
    ("prompt", "matrix", "says"),
    [
        ("a {cat|}", (), "empty alternative"),
        ("a {cat|dog", (), "never closed"),
        ("a cat}", (), "closes no {"),
        ("a {cat}", (), "one alternative"),
        ("x", ("seed=8..1",), "runs backwards"),
        ("x", ("seed=1..z",), "takes integers"),
        ("x", ("seed=1.5..3",), "takes integers"),
        ("x", ("aspect_ratio=1:1,7:3",), "7:3"),
        ("x", ("seed=1,1",), "listed twice"),
        ("x", ("seed=",), "empty value"),
    ],
)
def test_bad_sweeps_are_one_usage_line_and_nothing_spent(
    cli: Invoke, emulator: Emulator, prompt: str, matrix: tuple[str, ...], says: str
) -> None:
    flags = [flag for text in matrix for flag in ("--matrix", text)]
    result = cli("run", "flux-dev", prompt, *flags)
    assert result.exit_code == 2, result.output
    assert says in result.stderr and "Traceback" not in result.output
    assert result.stderr.startswith("error:") and len(result.stderr.splitlines()) <= 2
    assert posts(emulator) == 0


def test_a_matrix_key_the_schema_lacks_suggests_the_right_one(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("run", "flux-dev", "x", "--matrix", "sed=1,2")
    assert result.exit_code == 2
    assert "Did you mean 'seed'?" in result.stderr
    assert posts(emulator) == 0


def test_a_key_both_fixed_and_swept_is_refused(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "x", "--seed", "3", "--matrix", "seed=1,2")
    assert result.exit_code == 2 and "both" in result.stderr
    assert posts(emulator) == 0


def test_matrix_cannot_go_with_batch(cli: Invoke, emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("a\n")
    result = cli("run", "flux-dev", "--batch", "b.txt", "--matrix", "seed=1,2")
    assert result.exit_code == 2
    assert posts(emulator) == 0


def test_a_sweep_writes_its_contact_sheet_grouped_by_what_varied(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("run", "flux-dev", "a {red|green} fox", "-m", "seed=1..2", "-o", "out", *POLL)
    assert result.exit_code == 0, result.output
    sheet = Path("out") / "contact-sheet.html"
    assert "Contact sheet: " in result.stderr and str(sheet) in result.stderr
    page = sheet.read_text(encoding="utf-8")
    for job in emulator.jobs.values():
        assert job.id in page
    assert "a red fox" in page and "a green fox" in page
