"""`pixeldojo rerun JOB_ID|FILE` (issue 29, parts 4 and 5): a past job's model
and inputs, from the job ledger or from a saved output's metadata, submitted
again through `run`'s flow; -p, --model, --seed / --new-seed; file inputs
sent again from their source, never as the ledger's `data:` stand-in; and
bad input, each one line and its exit code with no POST reaching the
emulator."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.emulator.png import render
from pixeldojo_cli.store.settings import ledger_path
from tests.conftest import FAST, Invoke, make_invoker
from tests.test_file_inputs import served, uploader, uploads  # noqa: F401  (fixtures)
from tests.test_inspect import chunk, itxt, png_with


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(render("x", 1, 0, 16, 16))
    return path


def post_bodies(emulator: Emulator) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in emulator.requests_to("POST", r"/run$")]


def first_job(cli: Invoke, *args: str) -> tuple[str, Path]:
    """Run a job to its saved file: (job id, the file)."""
    result = cli("run", *args, "-o", "out", "--json", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    return document["jobId"], Path(document["files"][0]["path"])


def one_line_error(result: Any, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def hostile_png(tmp_path: Path, name: str = "job_x-1.png", **fields: Any) -> Path:
    """A picture whose `pixeldojo` iTXt chunk holds the document `fields` make,
    naming the job its file name names (else `inspect`/`rerun` do not believe it)."""
    job_id = name.rsplit("-", 1)[0]
    document = {"pixeldojo": 1, "jobId": job_id, "model": "flux-dev", "inputs": {}, **fields}
    path = tmp_path / name
    path.write_bytes(png_with(chunk(b"iTXt", itxt(b"pixeldojo", json.dumps(document).encode()))))
    return path


# --- part 4: the same job again -----------------------------------------------------------


def test_rerun_by_id_posts_the_recorded_inputs_with_the_seed_kept(
    cli: Invoke, emulator: Emulator
) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox", "-p", "aspect_ratio=16:9")
    result = cli("rerun", job_id, "-o", "again", *FAST)
    assert result.exit_code == 0, result.output
    first, second = post_bodies(emulator)
    assert second == first and isinstance(first["seed"], int)
    [saved] = result.stdout.split()
    assert Path(saved).parent.name == "again" and Path(saved).exists()
    assert f"Running job {job_id} (flux-dev, from the job ledger) again." in result.stderr


def test_rerun_by_file_posts_the_inputs_its_metadata_records(
    cli: Invoke, emulator: Emulator
) -> None:
    _, saved = first_job(cli, "flux-dev", "a red fox", "-p", "aspect_ratio=16:9")
    result = cli("rerun", str(saved), "--no-wait")
    assert result.exit_code == 0, result.output
    first, second = post_bodies(emulator)
    assert second == first
    assert f"from the metadata in {saved.name}" in result.stderr


def test_rerun_by_file_reads_the_sidecar_when_its_metadata_is_gone(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    from PIL import Image

    job_id, saved = first_job(cli, "flux-dev", "a red fox", "--no-auto-seed", "--seed", "5")
    Image.open(saved).save(saved)  # re-encoded elsewhere: its own metadata is gone
    sqlite3.connect(ledger_path()).execute("DELETE FROM jobs").connection.commit()
    result = cli("rerun", str(saved), "--no-wait")
    assert result.exit_code == 0, result.output
    assert post_bodies(emulator)[-1] == {"prompt": "a red fox", "seed": 5}
    assert f"from the sidecar {job_id}.json" in result.stderr


def test_p_changes_a_recorded_input_and_keeps_the_others(cli: Invoke, emulator: Emulator) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox", "-p", "aspect_ratio=16:9")
    result = cli("rerun", job_id, "-p", "aspect_ratio=1:1", "-p", "prompt=a blue fox", "--no-wait")
    assert result.exit_code == 0, result.output
    first, second = post_bodies(emulator)
    assert second == {**first, "aspect_ratio": "1:1", "prompt": "a blue fox"}


def test_new_seed_sends_another_seed_and_seed_sends_the_one_given(
    cli: Invoke, emulator: Emulator
) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox")
    assert cli("rerun", job_id, "--new-seed", "--no-wait").exit_code == 0
    assert cli("rerun", job_id, "--seed", "7", "--no-wait").exit_code == 0
    first, new, given = post_bodies(emulator)
    assert isinstance(new["seed"], int) and new["seed"] != first["seed"]
    assert given == {**first, "seed": 7}


def test_another_model_leaves_out_what_it_does_not_take_with_one_line(
    cli: Invoke, emulator: Emulator
) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox", "-p", "guidance=3.5")
    result = cli("rerun", job_id, "--model", "flux-1.1-pro", "--no-wait")
    assert result.exit_code == 0, result.output
    notices = [line for line in result.stderr.splitlines() if "left out" in line]
    assert notices == ["flux-1.1-pro takes no guidance: left out for it."]
    first, second = post_bodies(emulator)
    assert second == {k: v for k, v in first.items() if k != "guidance"}
    assert emulator.requests_to("POST", r"/run$")[-1].path.endswith("/flux-1.1-pro/run")


def test_dry_run_submits_nothing_and_shows_the_body(cli: Invoke, emulator: Emulator) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox")
    result = cli("rerun", job_id, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["submitted"] is False and document["body"] == post_bodies(emulator)[0]
    assert len(post_bodies(emulator)) == 1


def test_the_budget_refuses_a_rerun_with_exit_4(cli: Invoke, emulator: Emulator) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox")
    refused = cli("rerun", job_id, env={"PIXELDOJO_BUDGET_DAILY": "1"})
    assert "budget" in one_line_error(refused, 4)
    capped = cli("rerun", job_id, "--max-credits", "0.5")
    one_line_error(capped, 4)
    assert len(post_bodies(emulator)) == 1
    assert cli("rerun", job_id, "--ignore-budget", "--no-wait",
               env={"PIXELDOJO_BUDGET_DAILY": "1"}).exit_code == 0  # fmt: skip


def test_a_job_made_on_another_api_runs_on_the_one_in_force_with_a_warning(
    cli: Invoke, emulator: Emulator, make_emulator: Callable[..., Emulator]
) -> None:
    _, saved = first_job(cli, "flux-dev", "a red fox")
    other = make_emulator()
    result = make_invoker(other)("rerun", str(saved), "--no-wait")
    assert result.exit_code == 0, result.output
    assert f"was made on {emulator.base_url}; it is run again on {other.base_url}" in result.stderr
    assert post_bodies(other) == post_bodies(emulator)


# --- file inputs --------------------------------------------------------------------------


def test_a_local_file_sent_inline_is_sent_again_never_its_stand_in(
    cli: Invoke, emulator: Emulator, picture: Path
) -> None:
    data = {"PIXELDOJO_UPLOAD": "data"}
    result = cli("run", "flux-kontext-pro", "at night", "-p", "image_url=@photo.png",
                 "--json", "-o", "out", *FAST, env=data)  # fmt: skip
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    for target in (document["jobId"], document["files"][0]["path"]):
        again = cli("rerun", target, "--no-wait", env=data)
        assert again.exit_code == 0, again.output
        sent = post_bodies(emulator)[-1]["image_url"]
        assert sent.startswith("data:image/png;base64,")
        assert base64.b64decode(sent.split(",", 1)[1]) == picture.read_bytes()


def test_a_local_file_is_uploaded_again_once_its_upload_expired(
    cli: Invoke,
    emulator: Emulator,
    picture: Path,
    uploader: Callable[..., Path],  # noqa: F811  (the fixture of test_file_inputs)
) -> None:
    log = uploader()
    result = cli("run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png", "--json", *FAST)
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["jobId"]
    assert cli("rerun", job_id, "--no-wait").exit_code == 0
    assert uploads(log) == 1  # its upload still fresh: the same URL again
    uploader(upload_ttl=0)
    again = cli("rerun", job_id, "--no-wait")
    assert again.exit_code == 0, again.output
    assert uploads(log) == 2 and "Uploaded photo.png" in again.stderr
    assert len({body["image_url"] for body in post_bodies(emulator)}) == 1


def test_an_earlier_jobs_output_is_that_output_again(cli: Invoke, emulator: Emulator) -> None:
    source, _ = first_job(cli, "flux-dev", "a fox")
    job_id, _ = first_job(cli, "flux-kontext-pro", "x", "-p", f"image_url=@job:{source}/1")
    assert cli("rerun", job_id, "--no-wait").exit_code == 0
    bodies = post_bodies(emulator)
    assert bodies[2] == bodies[1] and bodies[2]["image_url"].startswith("http")


def test_a_recorded_local_file_gone_or_changed_is_exit_2_and_nothing_spent(
    cli: Invoke, emulator: Emulator, picture: Path
) -> None:
    data = {"PIXELDOJO_UPLOAD": "data"}
    result = cli("run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png", "--json", *FAST,
                 env=data)  # fmt: skip
    job_id = json.loads(result.stdout)["jobId"]
    picture.write_bytes(picture.read_bytes() + b"\x00")
    changed = one_line_error(cli("rerun", job_id, env=data), 2)
    assert f"{picture} has changed since job {job_id} sent it" in changed
    picture.unlink()
    gone = one_line_error(cli("rerun", job_id, env=data), 2)
    assert f"{picture}, the file job {job_id} sent, is no longer there" in gone
    assert len(post_bodies(emulator)) == 1
    given = cli("rerun", job_id, "-p", "image_url=https://example.com/a.png", "--no-wait", env=data)
    assert given.exit_code == 0, given.output  # -p gives it again: the recorded one is not needed


# --- part 5: bad input, nothing spent -----------------------------------------------------


def test_a_file_not_from_this_tool_is_exit_6(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "notes.png").write_bytes(png_with())
    (tmp_path / "text.txt").write_text("hello")
    for name in ("notes.png", "text.txt"):
        line = one_line_error(cli("rerun", name), 6)
        assert "holds no pixeldojo metadata" in line
    assert not emulator.requests_to("POST")


@pytest.mark.parametrize("kind", ["folder", "fifo", "missing", "neither"])
def test_a_path_that_cannot_be_read_or_is_no_job_id_is_exit_2(
    cli: Invoke, emulator: Emulator, tmp_path: Path, kind: str
) -> None:
    name = {"folder": "folder", "fifo": "pipe", "missing": "gone.png", "neither": "a b"}[kind]
    if kind == "folder":
        (tmp_path / name).mkdir()
    if kind == "fifo":
        os.mkfifo(tmp_path / name)
    line = one_line_error(cli("rerun", name), 2)
    assert {"folder": "folder", "fifo": "FIFO", "missing": "There is no file",
            "neither": "neither an existing file nor a job id"}[kind] in line  # fmt: skip
    assert not emulator.requests_to("POST")


def test_a_job_id_the_ledger_does_not_know_is_exit_6(cli: Invoke, emulator: Emulator) -> None:
    line = one_line_error(cli("rerun", "job_nobody_knows"), 6)
    assert "The job ledger does not know job job_nobody_knows" in line
    assert "does not publish a job's model and inputs" in line
    assert not emulator.requests_to("POST") and not emulator.requests_to("GET", r"/jobs/")


def test_a_model_that_no_longer_exists_is_exit_6_with_did_you_mean(
    cli: Invoke, emulator: Emulator
) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox")
    with sqlite3.connect(ledger_path()) as db:
        db.execute("UPDATE jobs SET model = 'flux-devv' WHERE id = ?", (job_id,))
    refused = cli("rerun", job_id)
    assert "Did you mean 'flux-dev'" in one_line_error(refused, 6)
    assert "--model" in refused.stderr
    moved = cli("rerun", job_id, "--model", "flux-dvv")
    assert "Did you mean 'flux-dev'" in one_line_error(moved, 6)
    assert len(post_bodies(emulator)) == 1


def test_seed_with_new_seed_is_exit_2(cli: Invoke, emulator: Emulator) -> None:
    job_id, _ = first_job(cli, "flux-dev", "a red fox")
    line = one_line_error(cli("rerun", job_id, "--seed", "3", "--new-seed"), 2)
    assert "--seed N or --new-seed, not both" in line
    assert len(post_bodies(emulator)) == 1


def test_hostile_metadata_is_one_safe_line_and_nothing_spent(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    cases = {
        "model": hostile_png(tmp_path, "a-1.png", model="flux\x1b[31m-dev\n" + "x" * 100_000),
        "key": hostile_png(tmp_path, "b-1.png", inputs={"\x1b]0;pwned\x07" + "k" * 5000: 1}),
        "deep": hostile_png(tmp_path, "c-1.png", inputs={"prompt": [[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}),
        "huge": hostile_png(tmp_path, "d-1.png", inputs={"prompt": "\x1b[2J" + "p" * 500_000,
                                                           "num_outputs": "9" * 500_000}),
    }  # fmt: skip
    for what, path in cases.items():
        result = cli("rerun", str(path))
        assert result.exit_code in (2, 6), (what, result.output)
        one_line_error(result, result.exit_code)
        assert "\x1b" not in result.stderr and "\x07" not in result.stderr, what
        assert len(result.stderr) < 5000, (what, len(result.stderr))
    assert not emulator.requests_to("POST")


def test_cut_metadata_without_the_whole_inputs_is_exit_2(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    path = hostile_png(tmp_path, inputs={"prompt": "a long prompt..."}, truncated=True)
    line = one_line_error(cli("rerun", str(path)), 2)
    assert "was cut to fit the file" in line
    assert not emulator.requests_to("POST")


def test_a_files_inputs_never_name_a_local_file_or_a_webhook(
    cli: Invoke, emulator: Emulator, tmp_path: Path, picture: Path
) -> None:
    data = {"PIXELDOJO_UPLOAD": "data"}
    sneaky = hostile_png(tmp_path, model="flux-kontext-pro",
                         inputs={"prompt": "x", "image_url": f"@{picture}"})  # fmt: skip
    result = cli("rerun", str(sneaky), "--dry-run", env=data)
    assert result.exit_code == 2 and "Would upload" not in result.output, result.output
    digest = hashlib.sha256(picture.read_bytes()).hexdigest()
    stand_in = hostile_png(tmp_path, "job_y-1.png", model="flux-kontext-pro",
                           inputs={"prompt": "x", "image_url": f"data:image/png;sha256,{digest}"})  # fmt: skip
    refused = cli("rerun", str(stand_in), env=data)
    assert "was a local file sent inline" in one_line_error(refused, 2)
    assert "-p image_url=@PATH" in refused.stderr
    hook = hostile_png(tmp_path, "job_z-1.png", inputs={"prompt": "x", "seed": 1,
                       "webhook_url": "http://127.0.0.1:9/steal"})  # fmt: skip
    assert cli("rerun", str(hook), "--no-wait").exit_code == 0
    assert post_bodies(emulator) == [{"prompt": "x", "seed": 1}]
