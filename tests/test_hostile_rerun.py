"""`pixeldojo rerun` after an outside review: a file from elsewhere can never
make rerun read and send a local file under a model and prompt it chooses (a
file names a ledger job on the API in force, and then the ledger's record is
run; any other file restores no local file); `-p seed=N --new-seed` refused;
a damaged ledger record refused in one line; the missing-prompt hint names
`-p prompt=...`; refused metadata says why. Each refusal spends nothing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.settings import ledger_path
from tests.conftest import FAST, Invoke
from tests.test_rerun import first_job, hostile_png, one_line_error, picture, post_bodies

__all__ = ["picture"]  # the fixture, used by name

DATA = {"PIXELDOJO_UPLOAD": "data"}


def _edit_job(job_id: str, **columns: str) -> None:
    db = sqlite3.connect(ledger_path())
    for column, value in columns.items():
        db.execute(f"UPDATE jobs SET {column} = ? WHERE id = ?", (value, job_id))
    db.commit()
    db.close()


def _job_with_a_local_file(cli: Invoke) -> tuple[str, str]:
    """A job that sent photo.png inline: (its id, the ledger's stand-in for it)."""
    result = cli("run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png", "--json", *FAST,
                 env=DATA)  # fmt: skip
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["jobId"]
    db = sqlite3.connect(ledger_path())
    [(inputs,)] = db.execute("SELECT inputs FROM jobs WHERE id = ?", (job_id,)).fetchall()
    db.close()
    return job_id, json.loads(inputs)["image_url"]


def test_a_file_naming_a_ledger_job_runs_the_ledgers_record_not_its_own_model_and_prompt(
    cli: Invoke, emulator: Emulator, tmp_path: Path, picture: Path
) -> None:
    job_id, stand_in = _job_with_a_local_file(cli)
    forged = hostile_png(tmp_path, "evil-1.png", jobId=job_id, model="flux-kontext-max",
                         inputs={"prompt": "steal", "image_url": stand_in})  # fmt: skip
    result = cli("rerun", str(forged), "--no-wait", env=DATA)
    assert result.exit_code == 0, result.output
    first, again = post_bodies(emulator)
    assert again["prompt"] == "x" and again["seed"] == first["seed"]
    assert emulator.requests_to("POST", r"/run$")[-1].path.endswith("/flux-kontext-pro/run")
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "does not match the job ledger's record" in warnings[0]


def test_a_genuine_file_is_its_ledger_job_again_without_a_warning(
    cli: Invoke, emulator: Emulator
) -> None:
    _, saved = first_job(cli, "flux-dev", "a red fox", "-p", "aspect_ratio=16:9")
    result = cli("rerun", str(saved), "--no-wait")
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.stderr
    first, again = post_bodies(emulator)
    assert again == first


def test_a_file_naming_a_job_of_another_api_restores_no_local_file(
    cli: Invoke, emulator: Emulator, tmp_path: Path, picture: Path
) -> None:
    job_id, stand_in = _job_with_a_local_file(cli)
    db = sqlite3.connect(ledger_path())  # the ledger knows it (and its file) on another API
    for table in ("jobs", "input_files"):
        db.execute(f"UPDATE {table} SET base_url = 'http://127.0.0.9:1/api/v1'")
    db.commit()
    db.close()
    copy = hostile_png(tmp_path, "copy-1.png", jobId=job_id, model="flux-kontext-pro",
                       inputs={"prompt": "x", "image_url": stand_in})  # fmt: skip
    refused = cli("rerun", str(copy), "--no-wait", env=DATA)
    assert "was a local file sent inline" in one_line_error(refused, 2)
    assert "-p image_url=@PATH" in refused.stderr
    assert len(emulator.requests_to("POST")) == 1


def test_p_seed_with_new_seed_is_exit_2(cli: Invoke, emulator: Emulator) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox")
    line = one_line_error(cli("rerun", job_id, "-p", "seed=5", "--new-seed", "--dry-run"), 2)
    assert "-p seed=N or --new-seed, not both" in line
    assert len(emulator.requests_to("POST")) == 1


def test_recorded_inputs_that_cannot_be_read_are_refused_in_one_line(
    cli: Invoke, emulator: Emulator
) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox")
    for damaged in ("not json", json.dumps(["a"])):
        _edit_job(job_id, inputs=damaged)
        line = one_line_error(cli("rerun", job_id), 2)
        assert "record of job" in line and "is damaged" in line, damaged
    assert len(emulator.requests_to("POST")) == 1


def test_a_missing_prompt_is_asked_for_as_p_prompt(cli: Invoke, emulator: Emulator) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox")
    _edit_job(job_id, inputs=json.dumps({"aspect_ratio": "1:1"}))
    result = cli("rerun", job_id)
    assert "Missing required input: prompt" in one_line_error(result, 2)
    assert "Give it as -p prompt=..." in result.stderr and "PROMPT." not in result.stderr
    assert len(emulator.requests_to("POST")) == 1


def test_refused_metadata_says_why(cli: Invoke, emulator: Emulator, tmp_path: Path) -> None:
    nested = hostile_png(tmp_path, "n-1.png", inputs={"extra": json.loads("[" * 40 + "]" * 40)})
    not_text = hostile_png(tmp_path, "m-1.png", model=123)
    deep = cli("rerun", str(nested))
    one_line_error(deep, 6)
    assert "nested more than" in deep.stderr
    wrong = cli("rerun", str(not_text))
    one_line_error(wrong, 6)
    assert "is not a pixeldojo document of this version" in wrong.stderr
    assert not emulator.requests_to("POST")
