"""`pixeldojo compare MODEL,MODEL PROMPT`: one batch across models, inputs a
model does not take left out for it (one line), models lacking a required
input skipped with the reason, the JSON summary, and bad input refused before
anything is submitted."""

from __future__ import annotations

import json

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import Ledger

from conftest import Invoke

POLL = ("--poll-interval", "0.1", "--max-poll-interval", "0.4")


def posts(emulator: Emulator) -> int:
    return len(emulator.requests_to("POST", r"/run$"))


def json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_one_prompt_runs_on_every_model_with_the_same_seeds(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("compare", "flux-dev, seedream-4", "a fox", "--seeds", "2", "-o", "out", *POLL)
    assert result.exit_code == 0, result.output
    asked = sorted(
        (j.model["apiId"], j.inputs["seed"], j.inputs["prompt"]) for j in emulator.jobs.values()
    )
    assert asked == [
        ("flux-dev", 1, "a fox"),
        ("flux-dev", 2, "a fox"),
        ("seedream-4", 1, "a fox"),
        ("seedream-4", 2, "a fox"),
    ]
    assert len(result.stdout.split()) == 4


def test_an_input_a_model_does_not_take_is_left_out_for_it_with_one_line(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli(
        "compare", "flux-dev,ponyxl-ponyrealism-v23", "x", "-p", "negative_prompt=blur",
        "-p", "guidance=3", *POLL,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    inputs = {j.model["apiId"]: j.inputs for j in emulator.jobs.values()}
    assert "negative_prompt" not in inputs["flux-dev"] and inputs["flux-dev"]["guidance"] == 3
    pony = inputs["ponyxl-ponyrealism-v23"]
    assert pony["negative_prompt"] == "blur" and "guidance" not in pony
    notices = [line for line in result.stderr.splitlines() if "left out" in line]
    assert notices == [
        "warning: flux-dev takes no negative_prompt: left out for it.",
        "warning: ponyxl-ponyrealism-v23 takes no guidance: left out for it.",
    ]


def test_a_model_lacking_a_required_input_is_skipped_with_its_reason(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("compare", "flux-dev,wan-2.6-flash", "x", *POLL)
    assert result.exit_code == 0, result.output
    assert "wan-2.6-flash skipped: it needs image_url" in result.stderr
    assert [j.model["apiId"] for j in emulator.jobs.values()] == ["flux-dev"]


def test_json_gives_each_job_and_a_summary(cli: Invoke, emulator: Emulator) -> None:
    result = cli("compare", "flux-dev,z-image-turbo", "x", "--seeds", "1", "--json", *POLL)
    assert result.exit_code == 0, result.output
    *jobs, last = json_lines(result.stdout)
    assert {job["model"] for job in jobs} == {"flux-dev", "z-image-turbo"}
    for job in jobs:
        assert job["seed"] == 1 and job["outcome"] == "saved"
        assert isinstance(job["seconds"], float) and job["files"]
        assert job["varied"] == {"model": job["model"], "seed": 1}
    assert {job["model"]: job["credits"] for job in jobs} == {"flux-dev": 1, "z-image-turbo": 0.5}
    summary = last["summary"]
    assert summary["kind"] == "compare" and summary["jobs"] == 2  # type: ignore[index]
    assert summary["models"] == ["flux-dev", "z-image-turbo"]  # type: ignore[index]
    assert summary["creditsSpent"] == 1.5  # type: ignore[index]


def test_each_job_of_a_comparison_is_in_the_ledger_by_model(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("compare", "flux-dev,seedream-4", "x", "--json", *POLL)
    assert result.exit_code == 0, result.output
    summary = json_lines(result.stdout)[-1]["summary"]
    with Ledger() as ledger:
        groups = ledger.groups_of(emulator.base_url.rstrip("/"), summary["jobIds"])  # type: ignore[index]
    assert sorted(g[0].varied["model"] for g in groups.values()) == ["flux-dev", "seedream-4"]
    assert {g[0].kind for g in groups.values()} == {"compare"}


def test_matrix_and_alternatives_multiply_across_models(cli: Invoke, emulator: Emulator) -> None:
    result = cli(
        "compare", "flux-dev,seedream-4", "a {cat|dog}", "-m", "aspect_ratio=1:1,16:9",
        "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    jobs = json_lines(result.stdout)
    assert len(jobs) == 8 and {job["model"] for job in jobs} == {"flux-dev", "seedream-4"}
    assert "8 jobs over 2 models, estimated 8 credits in all" in result.stderr
    assert posts(emulator) == 0


def test_rerunning_a_comparison_skips_what_is_done(cli: Invoke, emulator: Emulator) -> None:
    args = ("compare", "flux-dev,seedream-4", "x", "--seeds", "2", "-o", "out", *POLL)
    assert cli(*args).exit_code == 0
    again = cli(*args)
    assert again.exit_code == 0, again.output
    assert posts(emulator) == 4


def test_an_unknown_model_is_refused_with_a_suggestion_and_nothing_submitted(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("compare", "flux-dev,seedrem-4", "x")
    assert result.exit_code == 6, result.output
    assert "seedrem-4" in result.stderr and "Did you mean 'seedream-4'" in result.stderr
    assert posts(emulator) == 0


def test_an_input_no_model_takes_is_an_error_with_a_suggestion(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("compare", "flux-dev,seedream-4", "x", "-p", "aspect_ration=1:1")
    assert result.exit_code == 2
    assert "Did you mean 'aspect_ratio'?" in result.stderr
    assert posts(emulator) == 0


def test_bad_model_lists_and_prompts_are_usage_errors(cli: Invoke, emulator: Emulator) -> None:
    for args in (("flux-dev,,seedream-4", "x"), ("flux-dev", "a {b|"), (",", "x")):
        result = cli("compare", *args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error:")
    assert posts(emulator) == 0
    assert not emulator.requests_to("GET", r"/models")  # refused before any request


def test_no_model_left_is_a_usage_error(cli: Invoke, emulator: Emulator) -> None:
    result = cli("compare", "wan-2.6-flash", "x")
    assert result.exit_code == 2 and "No model can run" in result.stderr
    assert posts(emulator) == 0


def test_a_comparison_writes_its_contact_sheet_into_the_output_folder(
    cli: Invoke, emulator: Emulator, tmp_path: object
) -> None:
    result = cli(
        "compare", "flux-dev,seedream-4", "a <b>fox</b>", "--seeds", "2", "-o", "out",
        "--json", *POLL,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json_lines(result.stdout)[-1]["summary"]
    assert isinstance(summary, dict)
    sheet = str(summary["contactSheet"])
    assert sheet.endswith("contact-sheet.html") and f"Contact sheet: {sheet}" in result.stderr
    from pathlib import Path

    page = Path(sheet).read_text(encoding="utf-8")
    assert Path(sheet).parent.name == "out"
    for job_id in summary["jobIds"]:  # type: ignore[union-attr]
        assert str(job_id) in page
    assert "<b>fox</b>" not in page and "&lt;b&gt;fox&lt;/b&gt;" in page
    assert "seedream-4" in page and "flux-dev" in page


def test_a_comparison_without_downloads_writes_no_contact_sheet(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli(
        "compare", "flux-dev,seedream-4", "a fox", "-o", "out", "--no-download", "--json", *POLL
    )
    assert result.exit_code == 0, result.output
    assert json_lines(result.stdout)[-1]["summary"]["contactSheet"] is None  # type: ignore[index]
