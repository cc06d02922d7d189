"""Sweeps (`run --matrix`, PROMPT `{a|b}`) and `compare` under a reviewer's attack
(issue 28, parts 1, 2 and 5): a value given two ways, a webhook_url swept, ids
that are not text, a long list of values, equal values written two ways, two
alternatives that make the same request, JSON Lines errors, and the wording
of what is refused. Each refusal is one line, its exit code, nothing spent."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import pytest

from pixeldojo_cli.emulator import Emulator

from conftest import Invoke, pixeldojo, run_subprocess_env

NOT_UTF8 = "\udcff"  # how the byte 0xff in an argument reaches Python


def posts(emulator: Emulator) -> int:
    return len(emulator.requests_to("POST", r"/run$"))


def refused(result: Any, says: str, code: int = 2) -> None:
    assert result.exit_code == code, result.output
    assert says in result.stderr, result.stderr
    assert result.stderr.startswith("error:") and "Traceback" not in result.output


# --- B1: webhook_url is given once, and always an http(s) URL ------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("--webhook-url", "http://c.example/h", "-m", "webhook_url=http://a,http://b"),
        ("-m", "webhook_url=notaurl,file:///etc/passwd"),
        ("-m", "webhook_url=http://a,http://b"),
    ],
    ids=["with the flag", "not URLs", "URLs"],
)
def test_a_swept_webhook_url_is_refused_and_nothing_spent(
    cli: Invoke, emulator: Emulator, args: tuple[str, ...]
) -> None:
    result = cli("run", "flux-dev", "x", *args)
    refused(result, "webhook_url cannot be swept")
    assert len(result.stderr.splitlines()) == 1
    assert posts(emulator) == 0


@pytest.mark.parametrize(
    "args",
    [
        ("x", "-p", "webhook_url=notaurl"),
        ("x", "-p", "webhook_url=file:///etc/passwd", "--dry-run"),
        ("x {a|b}", "-p", "webhook_url=notaurl"),
        ("x", "-p", "webhook_url=ftp://h/x", "-m", "seed=1,2"),
    ],
    ids=["one job", "dry run", "alternatives", "matrix"],
)
def test_a_webhook_url_given_by_p_is_checked_as_the_flag_is(
    cli: Invoke, emulator: Emulator, args: tuple[str, ...]
) -> None:
    result = cli("run", "flux-dev", *args)
    refused(result, "webhook_url must be an http(s) URL")
    assert posts(emulator) == 0


def test_a_webhook_url_from_the_input_file_is_checked_as_the_flag_is(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "in.json").write_text(json.dumps({"webhook_url": "file:///etc/passwd"}))
    result = cli("run", "flux-dev", "x {a|b}", "--input", str(tmp_path / "in.json"))
    refused(result, "webhook_url must be an http(s) URL")
    assert posts(emulator) == 0


@pytest.mark.parametrize("sweep", [(), ("-m", "seed=1,2")], ids=["one job", "sweep"])
def test_a_webhook_url_given_by_the_flag_and_by_p_is_refused(
    cli: Invoke, emulator: Emulator, sweep: tuple[str, ...]
) -> None:
    result = cli(
        "run", "flux-dev", "x", "--webhook-url", "http://b", "-p", "webhook_url=http://a", *sweep
    )
    refused(result, "webhook_url is given by both --webhook-url and -p")
    assert posts(emulator) == 0


# --- B2: PROMPT and -p prompt= together ---------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("run", "flux-dev", "x {a|b}"),
        ("run", "flux-dev", "x {a|b}", "-m", "seed=1,2"),
        ("run", "flux-dev", "x"),
        ("compare", "flux-dev,z-image-turbo", "x {a|b}"),
        ("compare", "flux-dev,z-image-turbo", "x"),
    ],
    ids=["alternatives", "alternatives and matrix", "one job", "compare {a|b}", "compare"],
)
def test_a_prompt_given_by_prompt_and_by_p_is_refused(
    cli: Invoke, emulator: Emulator, command: tuple[str, ...]
) -> None:
    result = cli(*command, "-p", "prompt=lit {c|d}")
    refused(result, "prompt is given by both PROMPT and -p prompt=")
    assert len(result.stderr.splitlines()) == 1
    assert posts(emulator) == 0


def test_a_seed_given_by_the_flag_and_by_p_is_refused(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "x", "--seed", "1", "-p", "seed=2")
    refused(result, "seed is given by both --seed and -p seed=")
    assert posts(emulator) == 0


# --- B3: a model or job id that is not text -------------------------------------------------


@pytest.mark.parametrize(
    ("command", "metavar"),
    [
        (("run", NOT_UTF8, "x"), "MODEL"),
        (("run", NOT_UTF8, "x", "--dry-run"), "MODEL"),
        (("compare", f"flux-dev,{NOT_UTF8}", "x", "--dry-run"), "MODELS"),
        (("models", "show", NOT_UTF8), "MODEL"),
        (("models", "schema", NOT_UTF8), "MODEL"),
        (("jobs", "show", NOT_UTF8), "JOB_ID"),
        (("jobs", "wait", "job_a", NOT_UTF8), "JOB_ID"),
        (("download", NOT_UTF8), "JOB_ID"),
        (("webhook", "replay", NOT_UTF8), "JOB_ID"),
    ],
)
def test_an_id_that_is_not_utf8_is_one_usage_line_and_no_request(
    cli: Invoke, emulator: Emulator, command: tuple[str, ...], metavar: str
) -> None:
    result = cli(*command)
    refused(result, f"{metavar} ")
    assert "is not valid text" in result.stderr and "unexpected" not in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert emulator.requests_to() == []


def test_an_id_of_bytes_that_are_not_utf8_on_a_real_command_line_is_refused(
    emulator: Emulator,
) -> None:
    done = pixeldojo("compare", f"flux-dev,{NOT_UTF8}", "x", env=run_subprocess_env(emulator))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: MODELS") and len(done.stderr.splitlines()) == 1
    assert posts(emulator) == 0


def _arguments(command: Any, path: str) -> Iterator[tuple[str, Any]]:
    commands = getattr(command, "commands", None)
    if commands:
        for name, sub in commands.items():
            yield from _arguments(sub, f"{path} {name}")
        return
    for param in command.params:
        if type(param).__name__.endswith("Argument"):
            yield path, param


def test_every_model_or_job_id_argument_is_checked_for_text() -> None:
    import typer

    from pixeldojo_cli.cli.app import app
    from pixeldojo_cli.cli.argv import ID_ARGUMENTS

    seen = 0
    for path, param in _arguments(typer.main.get_command(app), "pixeldojo"):
        metavar = param.metavar or ""
        if "FILE" in metavar:  # rerun's JOB_ID|FILE: a file's name may be any bytes;
            continue  # rerun refuses one that is neither a file nor a job id (below)
        if "MODEL" in metavar or "JOB" in metavar:
            seen += 1
            assert param.name in ID_ARGUMENTS, f"{path}: {param.name} ({metavar})"
    assert seen >= 8


def test_rerun_refuses_an_argument_of_bytes_that_is_neither_a_file_nor_a_job_id(
    tmp_path: Path,
) -> None:
    import os

    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
           "XDG_CACHE_HOME": str(tmp_path), "PIXELDOJO_EMULATOR": "1"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pixeldojo_cli", "rerun", b"job_\xff"],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "neither an existing file nor a job id" in done.stderr


# --- B4: a long list of values plans in linear time ---------------------------------------


class CountedPiece(Sequence[Any]):
    """One value, counting every look at it."""

    looks = 0

    def __init__(self, value: Any) -> None:
        self.value = value

    def __len__(self) -> int:
        CountedPiece.looks += 1
        return 1

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        CountedPiece.looks += 1
        if index not in (0, -1):
            raise IndexError(index)
        return self.value


def test_finding_a_value_in_a_long_list_looks_at_few_of_its_pieces() -> None:
    from pixeldojo_cli.inputs.sweeps import Values

    values = Values([CountedPiece(n) for n in range(20_000)])
    CountedPiece.looks = 0
    assert values[19_999] == 19_999 and values[10_000] == 10_000 and values[-1] == 19_999
    assert CountedPiece.looks <= 10  # a walk over the pieces looks at 20,000 per value
    CountedPiece.looks = 0
    assert sum(1 for _ in values) == 20_000
    assert CountedPiece.looks <= 2 * 20_000


def test_a_long_list_of_values_is_planned_each_value_read_a_few_times(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixeldojo_cli import Client
    from pixeldojo_cli.engine.sweeps import SweepAsk, plan_sweep
    from pixeldojo_cli.inputs import sweeps

    pieces: list[CountedPiece] = []
    made = sweeps.Values

    def counted(given: Sequence[Sequence[Any]]) -> sweeps.Values:
        if len(given) > 1000:  # the long list: each value a counted piece
            pieces.extend(CountedPiece(piece[0]) for piece in given)
            return made(pieces)
        return made(given)

    monkeypatch.setattr(sweeps, "Values", counted)
    found = [Client(api_key="k", base_url=emulator.base_url).model_with_schema("flux-dev")]
    matrix = ("seed=" + ",".join(str(n) for n in range(1, 3_001)),)
    CountedPiece.looks = 0
    plan = plan_sweep(found, SweepAsk(prompt="x", matrix=matrix, confirmed=True), print)
    assert len(plan) == 3_000
    assert CountedPiece.looks < 20 * 3_000  # a walk per value made it about 3,000 x 3,000 x 2


# --- m1, m2: the same request twice -------------------------------------------------------


@pytest.mark.parametrize(
    ("matrix", "says"),
    [
        ("guidance=2,2.00", "2 and 2.0 are the same value"),
        ("guidance=1,1.0", "1 and 1.0 are the same value"),
        ("num_inference_steps=4,4", "the value 4 is listed twice"),
    ],
)
def test_equal_numbers_written_differently_are_listed_twice(
    cli: Invoke, emulator: Emulator, matrix: str, says: str
) -> None:
    result = cli("run", "flux-dev", "x", "-m", matrix)
    refused(result, says)
    assert posts(emulator) == 0


def test_alternatives_that_render_the_same_prompt_are_refused(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("run", "flux-dev", "{x|xy}{yz|z}")
    refused(result, "Jobs 1 (prompt{1}=x, prompt{2}=yz) and 4 (prompt{1}=xy, prompt{2}=z)")
    assert "same request (prompt 'xyz')" in result.stderr
    assert posts(emulator) == 0


# --- m3: under --json, JSON Lines stay JSON Lines ----------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("run", "flux-dev", "{a|a}"),
        ("run", "flux-dev", "x", "-m", "bogus=1,2"),
        ("run", "flux-dev", "--batch", "missing.txt"),
        ("compare", "flux-dev,z-image-turbo", "x", "-p", "bogus=1"),
        ("compare", "flux-dev,nope", "x"),
    ],
    ids=["alternatives", "matrix", "batch", "compare input", "compare model"],
)
def test_an_error_before_any_job_is_one_json_line(
    cli: Invoke, emulator: Emulator, command: tuple[str, ...]
) -> None:
    result = cli(*command, "--json")
    assert result.exit_code in (2, 6)
    [line] = result.stdout.splitlines()
    assert json.loads(line)["error"]["exit_code"] == result.exit_code
    assert posts(emulator) == 0


def test_a_bad_flag_of_a_json_lines_command_is_one_json_line(emulator: Emulator) -> None:
    env = run_subprocess_env(emulator)
    done = pixeldojo("compare", "flux-dev", "x", "--bogus", "--json", env=env)
    assert done.returncode == 2
    [line] = done.stdout.splitlines()
    assert json.loads(line)["error"]["code"] == "usage_error"
    single = pixeldojo("run", "flux-dev", "x", "--bogus", "--json", env=env)
    assert len(single.stdout.splitlines()) > 1  # one job's --json: one indented document


# --- m4: the wording of what is refused --------------------------------------------------


def test_a_repeated_alternative_is_said_as_prompt_alternatives(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("run", "flux-dev", "{a|a}")
    refused(result, "PROMPT alternatives: group 1 lists 'a' twice")
    assert "--matrix" not in result.stderr


def test_compare_says_an_input_no_model_takes_about_all_the_models(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("compare", "flux-dev,z-image-turbo", "x", "-p", "bogus=1")
    refused(result, "Unknown parameter 'bogus'")
    assert "This model takes" not in result.stderr
    assert "None of the 2 models takes it" in result.stderr


def test_compare_names_every_unknown_model(cli: Invoke, emulator: Emulator) -> None:
    result = cli("compare", "flux-dex,zzz-nope,flux-dev", "x")
    refused(result, "'flux-dex' not found", code=6)
    assert "Did you mean 'flux-dev'" in result.stderr and "'zzz-nope' not found" in result.stderr
    assert posts(emulator) == 0


def test_compare_help_speaks_of_compare() -> None:
    from typer.testing import CliRunner

    from pixeldojo_cli.cli.app import app

    text = " ".join(
        CliRunner().invoke(app, ["compare", "--help"], env={"COLUMNS": "200"}).stdout.split()
    )
    assert "With --batch or a sweep" not in text and "Print the request" not in text
    assert "Print every job" in text and "jobs past it are skipped" in text


def test_a_sweep_job_that_may_have_been_submitted_is_named_as_a_job(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.add_fault("reset", method="POST", path=r"/run$", count=1)
    args = ("run", "flux-dev", "a {red|green} fox", "-o", str(tmp_path), "--concurrency", "1")
    first = cli(*args, "--poll-interval", "0.05", "--max-poll-interval", "0.2")
    assert first.exit_code != 0
    again = cli(*args, "--poll-interval", "0.05", "--max-poll-interval", "0.2")
    assert "Job 1 may have been submitted by an earlier run" in again.stderr
    assert "run that job on its own" in again.stderr and "Line 1" not in again.stderr
