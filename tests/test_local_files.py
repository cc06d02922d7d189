"""Every JSON file on disk that the CLI reads back is as untrusted as an API
answer: the rate budget, output sidecars, the ledger's side file and the model
cache. Damaged, huge or nested past any sane depth, each is ignored like a
missing one; never a traceback (Python's own decoder stops near 1,000 levels
with a RecursionError, which is not a ValueError)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.api.model_cache import ModelCache
from pixeldojo_cli.api.origin import origin_of
from pixeldojo_cli.api.ratelimit import budget_file_name
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.files import recorded_files
from pixeldojo_cli.store.ledger import Ledger, pending_records_path
from pixeldojo_cli.store.settings import cache_dir

from conftest import FAST, TEST_KEY, Invoke, pixeldojo, run_subprocess_env

DEEP = b"[" * 100_000  # well under every size cap, far past the decoder's depth


def test_a_sidecar_nested_too_deep_is_no_jobs_and_the_save_goes_on(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        job = client.run("flux-dev", {"prompt": "x"})
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / f"{job.id}.json").write_bytes(DEEP)
    assert recorded_files(folder, job.id, emulator.base_url) == {}
    result = cli("jobs", "wait", job.id, "-o", str(folder), *FAST)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) == 1
    # Unreadable, it was nobody's record: it now says what was saved beside it.
    assert json.loads((folder / f"{job.id}.json").read_text())["jobId"] == job.id


def test_a_side_file_line_nested_too_deep_is_skipped_and_the_rest_replayed(
    emulator: Emulator, tmp_path: Path
) -> None:
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        job = client.run("flux-dev", {"prompt": "x"})
    path = tmp_path / "jobs.sqlite3"
    with Ledger(path) as ledger:
        good = json.dumps(
            {
                "op": "submitted",
                "base_url": emulator.base_url,
                "profile": "default",
                "job": job.raw,
                "model": "flux-dev",
                "inputs": {"prompt": "x"},
                "estimated_credits": 1,
                "output_dir": str(tmp_path),
            }
        ).encode()
        pending_records_path(path).write_bytes(DEEP + b"\n" + good + b"\n")
        ledger.replay_deferred()
        assert pending_records_path(path).read_bytes() == b""


def test_a_model_cache_nested_too_deep_is_ignored(cli: Invoke, emulator: Emulator) -> None:
    cache = ModelCache(cache_dir(), emulator.base_url).path("models")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(DEEP)
    assert ModelCache(cache_dir(), emulator.base_url).modality("flux-dev") is None
    assert ModelCache(cache_dir(), emulator.base_url).model_ids() == []
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        assert client.modality_of("flux-dev") is None
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0, result.output
    assert cli("run", "flux-dve", "x").exit_code != 1  # the did-you-mean reads it too


def test_a_model_cache_too_big_is_ignored(emulator: Emulator) -> None:
    cache = ModelCache(cache_dir(), emulator.base_url).path("models")
    cache.parent.mkdir(parents=True, exist_ok=True)
    entry = {"id": "flux-dev", "name": "x", "type": "video"}
    cache.write_text(json.dumps([entry] + [{"id": "x" * 64}] * 300_000))
    assert ModelCache(cache_dir(), emulator.base_url).modality("flux-dev") is None


# --- not a file at all: a FIFO or a device in the place of one of ours ---------------


def model_cache(emulator: Emulator) -> Path:
    path = ModelCache(cache_dir(), emulator.base_url).path("models")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def submitted_elsewhere(emulator: Emulator) -> str:
    """A job this machine's ledger does not know: `jobs wait` must look it up."""
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        return client.run("flux-dev", {"prompt": "x"}).id


def finishes(*args: str, env: dict[str, str], hung: str) -> None:
    """`pixeldojo ARGS` ends, with exit 0, within 30 s (else the test fails: `hung`)."""
    try:
        done = pixeldojo(*args, env=env, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(hung)
    assert done.returncode == 0, done.stderr


def test_a_fifo_as_the_model_cache_never_hangs_a_wait(emulator: Emulator, tmp_path: Path) -> None:
    os.mkfifo(model_cache(emulator))
    job_id = submitted_elsewhere(emulator)
    env = run_subprocess_env(emulator)
    finishes("jobs", "wait", job_id, "-o", str(tmp_path), env=env, hung="a FIFO cache hung it")


def test_a_link_to_a_device_as_the_model_cache_is_no_cache(emulator: Emulator) -> None:
    model_cache(emulator).symlink_to("/dev/zero")
    assert ModelCache(cache_dir(), emulator.base_url).modality("flux-dev") is None
    assert ModelCache(cache_dir(), emulator.base_url).model_ids() == []


def test_a_fifo_as_a_sidecar_never_hangs_a_download(emulator: Emulator, tmp_path: Path) -> None:
    job_id = submitted_elsewhere(emulator)
    os.mkfifo(tmp_path / f"{job_id}.json")
    env = run_subprocess_env(emulator)
    finishes("jobs", "wait", job_id, "-o", str(tmp_path), env=env, hung="a FIFO sidecar hung it")
    assert json.loads((tmp_path / f"{job_id}.json").read_text())["jobId"] == job_id


def test_a_fifo_as_the_budget_file_leaves_the_process_its_own_budget(
    cli: Invoke, emulator: Emulator
) -> None:
    folder = cache_dir() / "ratelimit"
    folder.mkdir(parents=True)
    os.mkfifo(folder / budget_file_name(origin_of(emulator.base_url), TEST_KEY))
    result = cli("jobs", "list")
    assert result.exit_code == 0, result.output


def test_a_fifo_as_the_ledger_side_file_never_hangs_a_run(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = run_subprocess_env(emulator)
    first = pixeldojo("run", "flux-dev", "x", "-o", str(tmp_path), *FAST, env=env, timeout=30)
    assert first.returncode == 0, first.stderr
    from pixeldojo_cli.store.ledger import ledger_path

    assert ledger_path().exists()  # the same folders as the subprocess
    side = pending_records_path(ledger_path())
    side.unlink(missing_ok=True)
    os.mkfifo(side)
    finishes("run", "flux-dev", "y", "-o", str(tmp_path), *FAST, env=env, hung="a FIFO side file")


# --- numbers no file of ours holds ----------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        '{"v": 1, "sent": [], "not_before": 1' + "0" * 400 + "}",
        '{"v": 1, "sent": [[1e999, 1]], "not_before": 0}',
        '{"v": 1, "sent": [[1, Infinity]], "not_before": 0}',
    ],
)
def test_a_budget_file_with_numbers_out_of_range_starts_afresh(
    cli: Invoke, emulator: Emulator, content: str
) -> None:
    folder = cache_dir() / "ratelimit"
    folder.mkdir(parents=True)
    path = folder / budget_file_name(origin_of(emulator.base_url), TEST_KEY)
    path.write_text(content)
    result = cli("jobs", "list")
    assert result.exit_code == 0, result.output
    assert len(json.loads(path.read_text())["sent"]) == 1


@pytest.mark.parametrize("number", ["1e999", "1" + "0" * 30])
def test_a_side_file_record_with_a_number_out_of_range_is_dropped(
    tmp_path: Path, number: str
) -> None:
    path = tmp_path / "jobs.sqlite3"
    with Ledger(path) as ledger:
        record = (
            '{"op": "files", "base_url": "x", "job_id": "j",'
            f' "files": [{{"n": {number}, "path": "p", "size": 1}}]}}'
        )
        pending_records_path(path).write_text(record + "\n")
        ledger.replay_deferred()
        assert pending_records_path(path).read_bytes() == b""


# --- a ledger row edited by hand ----------------------------------------------------


@pytest.mark.parametrize("damage", ["{not json", "[" * 100_000 + "]" * 100_000, "42"])
def test_a_damaged_ledger_row_is_listed_not_a_traceback(
    cli: Invoke, emulator: Emulator, tmp_path: Path, damage: str
) -> None:
    assert cli("run", "flux-dev", "x", "-o", str(tmp_path), *FAST).exit_code == 0
    from pixeldojo_cli.store.ledger import ledger_path

    with sqlite3.connect(ledger_path()) as db:
        db.execute("UPDATE jobs SET inputs = ?, output_urls = ?, submitted_at = ?", (damage,) * 3)
    db.close()
    result = cli("jobs", "list", "--local")
    assert result.exit_code == 0, result.output
    assert "job_" in result.stdout
