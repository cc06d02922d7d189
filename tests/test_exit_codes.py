"""The contract's exit-code table, one row at a time, each outcome driven through the emulator;
and every command's --json, parsed, error form included."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.emulator import Emulator

from conftest import FAST, PYTHON, Invoke, make_invoker, run_subprocess_env

pytestmark = pytest.mark.usefixtures("fast_retries")

Scenario = Callable[[Callable[..., Emulator]], tuple[Emulator, list[str]]]


def plain(*args: str, **knobs: Any) -> Scenario:
    def scenario(make: Callable[..., Emulator]) -> tuple[Emulator, list[str]]:
        return make(**knobs), list(args)

    return scenario


def with_fault(args: list[str], **fault: Any) -> Scenario:
    def scenario(make: Callable[..., Emulator]) -> tuple[Emulator, list[str]]:
        emulator = make()
        fault.setdefault("count", -1)  # the same outcome again for the --json run
        emulator.add_fault(fault.pop("kind", "status"), **fault)
        return emulator, args

    return scenario


def expired_job(make: Callable[..., Emulator]) -> tuple[Emulator, list[str]]:
    emulator = make(latency=0.05, ttl=0.2)
    job_id = make_invoker(emulator)("run", "flux-dev", "x", "--no-wait").stdout.strip()
    time.sleep(0.4)
    return emulator, ["jobs", "show", job_id]


RUN = ["run", "flux-dev", "a fox", *FAST]

ROWS: list[tuple[int, str, Scenario]] = [
    (0, "success", plain(*RUN)),
    (2, "bad flag", plain("run", "flux-dev", "x", "--timeout", "soon")),
    (2, "rejected by the schema check", plain("run", "flux-dev", "x", "-p", "aspect_ratio=7:3")),
    (2, "invalid_json from the API", with_fault(RUN, status=400, code="invalid_json")),
    (
        2,
        "validation_error from the API",
        with_fault(RUN, status=400, code="validation_error", method="POST"),
    ),
    (3, "unauthorized", plain(*RUN, key="a-different-key-1234")),
    (4, "insufficient_credits", plain(*RUN, credits=0.5)),
    (5, "job failed", plain("run", "flux-dev", "boom #fail", *FAST)),
    (6, "model not found", plain("run", "no-such-model", "x")),
    (6, "job not found", plain("jobs", "show", "job_0000")),
    (7, "expired", expired_job),
    (
        8,
        "rate limited after the retries",
        with_fault(["jobs", "list"], status=429, retry_after="0", count=-1),
    ),
    (
        9,
        "timeout while waiting",
        plain("run", "flux-dev", "x", "--timeout", "0.3", *FAST, latency=30),
    ),
    (10, "credit_error", with_fault(RUN, status=500, code="credit_error", method="POST")),
    (10, "submission_failed", with_fault(RUN, status=500, code="submission_failed", method="POST")),
    (
        10,
        "internal_error",
        with_fault(["jobs", "list"], status=500, code="internal_error", count=-1),
    ),
    (10, "5xx without a body", with_fault(["jobs", "list"], status=503, body=b"", count=-1)),
    (10, "connection reset", with_fault(["jobs", "list"], kind="reset", count=-1)),
]


@pytest.mark.parametrize(
    ("code", "scenario"), [(c, s) for c, _, s in ROWS], ids=[f"{c}-{why}" for c, why, _ in ROWS]
)
def test_exit_code_row(
    make_emulator: Callable[..., Emulator], code: int, scenario: Scenario
) -> None:
    emulator, args = scenario(make_emulator)
    cli = make_invoker(emulator)
    result = cli(*args)
    assert result.exit_code == code, result.output
    if code:
        assert "Traceback" not in result.output
        assert result.stderr.strip(), "an error always says something on stderr"
    as_json = cli(*args, "--json")
    assert as_json.exit_code == code, as_json.output
    document = json.loads(as_json.stdout)
    if code:
        assert document["error"]["exit_code"] == code


def test_exit_1_is_a_bug_report_not_a_traceback(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixeldojo_cli.api.client import Client

    def broken(self: Client, **kwargs: Any) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(Client, "list_models", broken)
    result = cli("models", "--json")
    assert result.exit_code == 1
    assert "bug" in result.stderr and "Traceback" not in result.output
    assert json.loads(result.stdout)["error"] == {
        "code": "unexpected",
        "message": "Unexpected error: ZeroDivisionError: division by zero",
        "exit_code": 1,
    }


def test_unreachable_api_exits_10(tmp_path: Path) -> None:
    cli = make_invoker(None)
    result = cli("--base-url", "http://127.0.0.1:9/api/v1", "jobs", "list", "--json")
    assert result.exit_code == 10
    assert json.loads(result.stdout)["error"]["code"] == "network_error"


EXIT_CODE_MEANINGS = {
    0: "success",
    1: "unexpected error",
    2: "usage or input error",
    3: "authentication",
    4: "insufficient credits",
    5: "the job failed",
    6: "not found",
    7: "expired",
    8: "rate limited",
    9: "--timeout reached",
    10: "network failure or server error",
    130: "interrupted",
    141: "stdout went away",
    143: "after SIGTERM",
}


def test_every_row_of_the_table_is_in_the_help_epilog(cli: Invoke) -> None:
    text = " ".join(cli("--help").stdout.split())
    for code, meaning in EXIT_CODE_MEANINGS.items():
        # The number must stand alone before its meaning: "0 " inside "10 " is no row.
        assert re.search(rf"(?<![0-9]){code} {re.escape(meaning)}", text), (code, meaning)


# --- --json everywhere ------------------------------------------------------


def completed_job(cli: Invoke) -> str:
    path = cli("run", "flux-dev", "x", *FAST).stdout.strip()
    return Path(path).name.rsplit("-", 1)[0]


JSON_COMMANDS: list[tuple[list[str], type]] = [
    (["models"], list),
    (["models", "list", "--type", "video"], list),
    (["models", "show", "flux-dev"], dict),
    (["models", "schema", "flux-dev"], dict),
    (["run", "flux-dev", "x", *FAST], dict),
    (["run", "flux-dev", "x", "--no-wait"], dict),
    (["run", "flux-dev", "x", "--dry-run"], dict),
    (["jobs", "list"], list),
    (["jobs", "list", "--local"], list),
    (["jobs", "show", "{job}"], dict),
    (["jobs", "wait", "{job}", *FAST], list),
    (["download", "{job}", "-o", "again"], list),
    (["download", "--pending"], list),
    (["auth", "status"], dict),
    (["config", "list"], dict),
    (["config", "get", "output_dir"], dict),
    (["config", "path"], dict),
]


@pytest.mark.parametrize(
    ("args", "kind"), JSON_COMMANDS, ids=[" ".join(a[:2]) for a, _ in JSON_COMMANDS]
)
def test_every_data_command_prints_one_json_document(
    cli: Invoke, args: list[str], kind: type
) -> None:
    job = completed_job(cli)
    result = cli(*[a.replace("{job}", job) for a in args], "--json")
    assert result.exit_code == 0, result.output
    assert isinstance(json.loads(result.stdout), kind)


@pytest.mark.parametrize(
    "args",
    [
        ["models", "show", "nope"],
        ["jobs", "show", "job_nope"],
        ["download", "job_nope"],
        ["jobs", "wait", "job_nope"],
        ["run", "nope", "x"],
        ["webhook", "replay", "job_nope"],
    ],
)
def test_errors_under_json_are_one_json_document_on_stdout(cli: Invoke, args: list[str]) -> None:
    result = cli(*args, "--json")
    assert result.exit_code == 6
    document = json.loads(result.stdout)
    if isinstance(document, list):  # commands over several jobs: one entry per job
        [document] = document
    assert document["error"]["code"] == "not_found" and document["error"]["exit_code"] == 6


def test_a_bad_flag_under_json_is_a_json_error_too() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli", "jobs", "list", "--limit", "many", "--json"],
        capture_output=True,
        text=True,
        env=run_subprocess_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"]["code"] == "usage_error"
    assert "--limit" in done.stderr
