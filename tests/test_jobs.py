"""Nothing lost to the expiry: the ledger, jobs, download, the pending sweep, webhooks."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import Ledger, ledger_path

from conftest import (
    FAST,
    PYTHON,
    TEST_KEY,
    Invoke,
    as_served,
    make_invoker,
    run_subprocess_env,
)


def submit(cli: Invoke, *args: str) -> str:
    result = cli("run", "flux-dev", *args, "--no-wait")
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def finish(emulator: Emulator, *job_ids: str) -> None:
    """Wait (on the emulator's clock, not the CLI's) until the jobs are terminal."""
    deadline = time.time() + 10
    while time.time() < deadline:
        if all(emulator.jobs[j].status(time.time()) in ("completed", "failed") for j in job_ids):
            return
        time.sleep(0.02)
    raise AssertionError("jobs never finished")


def file_requests(emulator: Emulator) -> int:
    return len(emulator.requests_to("GET", r"/outputs/", target="files"))


def test_run_records_the_job_before_waiting(cli: Invoke, emulator: Emulator) -> None:
    job_id = submit(cli, "a fox", "-p", "num_outputs=2", "-o", "renders")
    with Ledger() as ledger:
        [job] = ledger.jobs()
    assert (job.id, job.model, job.status) == (job_id, "flux-dev", "pending")
    seed = job.inputs["seed"]  # picked at random (auto_seed): recorded before the wait too
    assert job.inputs == {"prompt": "a fox", "num_outputs": 2, "seed": seed}
    assert job.estimated_credits == 2 and job.charged_credits == 2
    assert job.base_url == emulator.base_url and job.profile == "default"
    assert Path(job.output_dir) == Path("renders").resolve()
    assert job.files == ()


def test_a_finished_run_records_each_files_size_and_time_but_no_hash(cli: Invoke) -> None:
    result = cli("run", "flux-dev", "a fox", *FAST)
    assert result.exit_code == 0, result.output
    with Ledger() as ledger:
        [job] = ledger.jobs()
    [saved] = job.files
    path = Path(result.stdout.strip())
    assert saved.size == len(path.read_bytes())
    assert saved.mtime_ns == path.stat().st_mtime_ns
    assert saved.sha256 is None
    [entry] = json.loads(path.with_name(f"{job.id}.json").read_text())["files"]
    assert "sha256" not in entry and entry["mtimeNs"] == saved.mtime_ns


def test_run_with_checksum_records_each_files_sha256(cli: Invoke) -> None:
    result = cli("run", "flux-dev", "a fox", "--checksum", *FAST)
    assert result.exit_code == 0, result.output
    with Ledger() as ledger:
        [job] = ledger.jobs()
    [saved] = job.files
    path = Path(result.stdout.strip())
    assert saved.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    [entry] = json.loads(path.with_name(f"{job.id}.json").read_text())["files"]
    assert entry["sha256"] == saved.sha256


def test_the_checksum_setting_and_its_variable_turn_hashing_on_and_the_flag_off(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("config", "set", "checksum", "yes").exit_code == 0
    assert cli("config", "get", "checksum").stdout.strip() == "true"
    assert cli("run", "flux-dev", "one", *FAST).exit_code == 0
    assert cli("run", "flux-dev", "two", "--no-checksum", *FAST).exit_code == 0
    assert cli("config", "unset", "checksum").exit_code == 0
    monkeypatch.setenv("PIXELDOJO_CHECKSUM", "1")
    assert cli("run", "flux-dev", "three", *FAST).exit_code == 0
    with Ledger() as ledger:
        hashed = {job.inputs["prompt"]: job.files[0].sha256 is not None for job in ledger.jobs()}
    assert hashed == {"one": True, "two": False, "three": True}


@pytest.mark.parametrize(
    ("how", "value"), [("config", "maybe"), ("env", "maybe")], ids=["config", "env"]
)
def test_a_checksum_value_that_is_not_a_boolean_is_exit_2(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, how: str, value: str
) -> None:
    if how == "config":
        result = cli("config", "set", "checksum", value)
    else:
        monkeypatch.setenv("PIXELDOJO_CHECKSUM", value)
        result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 2
    assert "checksum must be true or false" in result.stderr


def test_the_embedded_emulator_writes_no_ledger(tmp_path: Path) -> None:
    result = make_invoker(None, key=None)("--emulator", "run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0, result.output
    assert not ledger_path().exists()


def test_pending_sweep_saves_both_no_wait_jobs_and_then_nothing(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    first = submit(cli, "one", "-o", "first")
    second = submit(cli, "two")
    finish(emulator, first, second)
    sweep = cli("download", "--pending")
    assert sweep.exit_code == 0, sweep.output
    paths = sorted(Path(line) for line in sweep.stdout.splitlines())
    assert paths == sorted(
        [(tmp_path / "first" / f"{first}-1.png"), (tmp_path / f"{second}-1.png")]
    )
    assert paths[0].read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "first" / f"{first}.json").exists()  # into the folder given at submit
    downloads = file_requests(emulator)
    again = cli("download", "--pending")
    assert again.exit_code == 0 and again.stdout == ""
    assert "Nothing pending" in again.stderr
    assert file_requests(emulator) == downloads


def test_sweep_leaves_running_jobs_for_the_next_sweep(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=2.0)
    cli = make_invoker(emulator)
    job_id = submit(cli, "slow")
    early = cli("download", "--pending")
    assert early.exit_code == 0 and early.stdout == ""
    assert "still running" in early.stderr
    finish(emulator, job_id)
    late = cli("download", "--pending")
    assert late.stdout.strip().endswith(f"{job_id}-1.png")


def test_sweep_reports_jobs_that_expired_unsaved_once_and_exits_7(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=0.05, ttl=0.3)
    cli = make_invoker(emulator)
    job_id = submit(cli, "too late")
    time.sleep(0.6)
    sweep = cli("download", "--pending")
    assert sweep.exit_code == 7
    assert "expired before their outputs were saved" in sweep.stderr and job_id in sweep.stderr
    local = cli("jobs", "list", "--local")
    assert "EXPIRED UNSAVED" in local.stdout
    assert cli("download", "--pending").exit_code == 0  # reported once, not for ever


def test_download_of_an_expired_job_exits_7(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator(latency=0.05, ttl=0.3)
    cli = make_invoker(emulator)
    job_id = submit(cli, "x")
    time.sleep(0.6)
    result = cli("download", job_id)
    assert result.exit_code == 7
    assert "expired" in result.stderr
    assert list(Path.cwd().glob("job_*")) == []


def test_download_of_an_unknown_job_exits_6(cli: Invoke) -> None:
    assert cli("download", "job_doesnotexist").exit_code == 6


def test_download_of_a_running_job_exits_2_and_says_to_wait(
    make_emulator: Callable[..., Emulator],
) -> None:
    cli = make_invoker(make_emulator(latency=5))
    job_id = submit(cli, "x")
    result = cli("download", job_id)
    assert result.exit_code == 2
    assert f"pixeldojo jobs wait {job_id}" in result.stderr


def test_download_skips_intact_files_and_force_fetches_again(
    cli: Invoke, emulator: Emulator
) -> None:
    job_id = submit(cli, "x", "-p", "num_outputs=2")
    finish(emulator, job_id)
    first = cli("download", job_id, "-o", "out")
    assert first.exit_code == 0, first.output
    assert file_requests(emulator) == 2
    again = cli("download", job_id, "-o", "out")
    assert again.stdout == first.stdout and "already saved" in again.stderr
    assert file_requests(emulator) == 2
    Path(first.stdout.splitlines()[1]).write_bytes(b"damaged")
    repaired = cli("download", job_id, "-o", "out")
    assert file_requests(emulator) == 3  # only the damaged one
    assert as_served(Path(repaired.stdout.splitlines()[1]).read_bytes()) == emulator.output_file(
        job_id, 2
    )
    assert cli("download", job_id, "-o", "out", "--force").exit_code == 0
    assert file_requests(emulator) == 5


def test_download_without_a_ledger_entry_uses_the_metadata_file(
    cli: Invoke, emulator: Emulator
) -> None:
    job_id = submit(cli, "x")
    finish(emulator, job_id)
    assert cli("download", job_id, "-o", "out").exit_code == 0
    ledger_path().unlink()  # another machine, or a wiped data folder
    for suffix in ("-wal", "-shm"):
        Path(str(ledger_path()) + suffix).unlink(missing_ok=True)
    again = cli("download", job_id, "-o", "out")
    assert again.exit_code == 0 and "already saved" in again.stderr
    assert file_requests(emulator) == 1


def test_a_download_cut_mid_body_leaves_no_final_file_and_a_rerun_completes_it(
    cli: Invoke, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixeldojo_cli.store import downloads

    monkeypatch.setattr(downloads, "RETRY_BASE_DELAY", 0.001)  # the attempts, not 7 s of pauses
    job_id = submit(cli, "x")
    finish(emulator, job_id)
    emulator.add_fault("truncate", target="files", after_bytes=100, count=5)
    cut = cli("download", job_id, "-o", "out")
    assert cut.exit_code == 10
    assert list(Path("out").iterdir()) == []  # neither the file nor a temporary one
    rerun = cli("download", job_id, "-o", "out")
    assert rerun.exit_code == 0, rerun.output
    assert as_served(Path(rerun.stdout.strip()).read_bytes()) == emulator.output_file(job_id, 1)


@pytest.mark.parametrize(
    "hostile", ["..%2F..%2Fx.png", "%2Fetc%2Fpasswd", "a%00b.png", "%2E%2E", "C:%5Cx.png"]
)
def test_a_hostile_output_name_is_written_inside_the_folder(
    make_emulator: Callable[..., Emulator], tmp_path: Path, hostile: str
) -> None:
    emulator = make_emulator(output_name=hostile)
    result = make_invoker(emulator)("run", "flux-dev", "x", "-o", "out", *FAST)
    assert result.exit_code == 0, result.output
    [line] = result.stdout.splitlines()
    assert Path(line).resolve().parent == (tmp_path / "out").resolve()
    outside = {p for p in tmp_path.rglob("*") if "out" not in p.parts and "home" not in p.parts}
    assert outside == set()


def test_jobs_list_shows_the_apis_jobs_and_what_was_saved_here(
    cli: Invoke, emulator: Emulator
) -> None:
    saved = cli("run", "flux-dev", "kept", *FAST).stdout.strip()
    unsaved = submit(cli, "not kept")
    finish(emulator, unsaved)
    table = cli("jobs", "list")
    assert table.exit_code == 0, table.output
    rows = {line.split("\t")[0]: line.split("\t") for line in table.stdout.splitlines()}
    assert rows[unsaved][1:3] == ["flux-dev", "completed"] and rows[unsaved][-1] == "NOT SAVED"
    assert rows[Path(saved).name.rsplit("-", 1)[0]][-1] == "saved"
    as_json = json.loads(cli("jobs", "list", "--json", "--limit", "1").stdout)
    assert [j["jobId"] for j in as_json] == [unsaved]
    local = cli("jobs", "list", "--local")
    assert "NOT SAVED" in local.stdout and "download --pending" in local.stderr


def test_jobs_show_prints_the_job_and_the_saved_files(cli: Invoke) -> None:
    path = cli("run", "flux-dev", "x", *FAST).stdout.strip()
    job_id = Path(path).name.rsplit("-", 1)[0]
    shown = cli("jobs", "show", job_id)
    assert "Status:     completed" in shown.stdout and "Saved:" in shown.stdout
    as_json = json.loads(cli("jobs", "show", job_id, "--json").stdout)
    assert as_json["jobId"] == job_id and as_json["saved"] is True
    assert [f["path"] for f in as_json["files"]] == [str(Path(path).resolve())]


def test_jobs_wait_waits_for_several_and_exits_with_the_worst(
    cli: Invoke, emulator: Emulator
) -> None:
    good = submit(cli, "fine")
    bad = submit(cli, "broken #fail")
    result = cli("jobs", "wait", good, bad, *FAST)
    assert result.exit_code == 5
    assert result.stdout.strip().endswith(f"{good}-1.png")
    assert f"Job {bad} failed" in result.stderr
    as_json = cli("jobs", "wait", good, bad, "--json", *FAST)
    documents = json.loads(as_json.stdout)
    assert documents[0]["jobId"] == good and documents[0]["files"]
    assert documents[1]["error"]["exit_code"] == 5


def test_jobs_wait_on_a_finished_job_returns_at_once(cli: Invoke, emulator: Emulator) -> None:
    job_id = submit(cli, "x")
    finish(emulator, job_id)
    # A first poll delay longer than the timeout: only a look at once can succeed.
    result = cli("jobs", "wait", job_id, "--poll-interval", "30", "--timeout", "3")
    assert result.exit_code == 0, result.output


def test_jobs_wait_timeout_exits_9(make_emulator: Callable[..., Emulator]) -> None:
    cli = make_invoker(make_emulator(latency=30))
    job_id = submit(cli, "x")
    result = cli("jobs", "wait", job_id, "--timeout", "0.5", *FAST)
    assert result.exit_code == 9
    assert f"pixeldojo jobs wait {job_id}" in result.stderr


def test_webhook_replay_reaches_a_local_listener(
    cli: Invoke, emulator: Emulator, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    path = cli("run", "flux-dev", "x", "--webhook-url", url, *FAST).stdout.strip()
    job_id = Path(path).name.rsplit("-", 1)[0]
    result = cli("webhook", "replay", job_id)
    assert result.exit_code == 0, result.output
    assert f"replayed to {url}: delivered" in result.stdout
    assert [r["replay"] for r in received][-1] is True
    assert received[-1]["job"]["jobId"] == job_id


def test_webhook_replay_without_a_webhook_is_exit_2_with_a_hint(cli: Invoke) -> None:
    path = cli("run", "flux-dev", "x", *FAST).stdout.strip()
    result = cli("webhook", "replay", Path(path).name.rsplit("-", 1)[0])
    assert result.exit_code == 2 and "--webhook-url" in result.stderr


def test_a_reminder_names_unsaved_outputs_about_to_expire(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=0.05, ttl=3600)  # an API whose outputs live 1 h
    cli = make_invoker(emulator)
    result = cli("run", "flux-dev", "x", "--no-download", *FAST)
    assert result.exit_code == 0
    assert "1 job with outputs that expire within 6 h" in result.stderr
    assert "pixeldojo download --pending" in result.stderr
    assert "expire within" not in cli("-q", "models").stderr
    assert "expire within" not in cli("models", "--json").stderr
    cli("download", "--pending")
    assert "expire within" not in cli("models").stderr


@pytest.mark.slow
def test_two_cli_processes_writing_the_ledger_lose_no_rows(emulator: Emulator) -> None:
    env = run_subprocess_env(emulator)
    script = "; ".join([f"pixeldojo run flux-dev p{i} --no-wait" for i in range(4)])
    procs = [
        subprocess.Popen(
            ["bash", "-c", script.replace("pixeldojo", f"{PYTHON} -m pixeldojo_cli")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    ids = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "warning" not in err, err
        ids += out.split()
    with Ledger() as ledger:
        assert sorted(j.id for j in ledger.jobs()) == sorted(ids)
    assert len(ids) == 8


def test_many_processes_hammering_the_ledger_lose_no_rows() -> None:
    writer = """
import sys
from pathlib import Path
from pixeldojo_cli.store.ledger import Ledger
from pixeldojo_cli.api.results import parse_job
who = sys.argv[1]
with Ledger() as ledger:
    for i in range(150):
        job = parse_job({"jobId": f"job_{who}_{i}", "status": "pending"})
        ledger.record_submission(job, base_url="http://x/api/v1", profile="default",
            model="flux-dev", inputs={"i": i}, estimated_credits=1, output_dir=Path("."))
        ledger.update_job("http://x/api/v1", parse_job({"jobId": f"job_{who}_{i}", "status": "completed"}))
"""
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", writer, str(n)],
            env=run_subprocess_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read() if proc.stderr else ""
    with Ledger() as ledger:
        jobs = ledger.jobs()
    assert len(jobs) == 600
    assert {j.status for j in jobs} == {"completed"}


def test_key_is_not_in_the_ledger(cli: Invoke) -> None:
    submit(cli, "x")
    assert TEST_KEY.encode() not in ledger_path().read_bytes()


# Columns that schema version 4 added (older ledgers do not have them).
V4_COLUMNS = "    completed_at TEXT,\n    duration REAL,\n"


def test_a_ledger_from_schema_version_1_is_upgraded_in_place(tmp_path: Path) -> None:
    import sqlite3

    from pixeldojo_cli.store.ledger import schema

    path = tmp_path / "old.sqlite3"
    old_schema = (
        schema.SCHEMA.replace("    input_hash TEXT,\n", "")
        .replace(V4_COLUMNS, "")
        .split("CREATE INDEX IF NOT EXISTS jobs_by_input")[0]
    )
    db = sqlite3.connect(path)
    for statement in old_schema.split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute(
        "INSERT INTO jobs (base_url, id, profile, model, inputs, submitted_at, status, output_dir,"
        " updated_at) VALUES ('b', 'job_old', 'default', 'm', '{}', '2026-01-01T00:00:00+00:00',"
        " 'pending', '/x', '2026-01-01T00:00:00+00:00')"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with Ledger(path) as ledger:
        assert [j.id for j in ledger.jobs()] == ["job_old"]
        assert ledger.find_by_input(base_url="b", profile="default", input_hash="h") is None


def test_a_ledger_from_schema_version_2_keeps_its_file_hashes(tmp_path: Path) -> None:
    import sqlite3

    from pixeldojo_cli.store.ledger import schema

    path = tmp_path / "v2.sqlite3"
    v2_files = (
        "CREATE TABLE files (base_url TEXT NOT NULL, job_id TEXT NOT NULL, n INTEGER NOT NULL,"
        " path TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, url TEXT NOT NULL,"
        " downloaded_at TEXT NOT NULL, PRIMARY KEY (base_url, job_id, n))"
    )
    jobs_table = schema.SCHEMA.split(";")[0].replace(V4_COLUMNS, "")
    db = sqlite3.connect(path)
    db.execute(jobs_table)
    db.execute(v2_files)
    db.execute(
        "INSERT INTO jobs (base_url, id, profile, model, inputs, submitted_at, status, output_dir,"
        " updated_at) VALUES ('b', 'job_old', 'default', 'm', '{}', '2026-01-01T00:00:00+00:00',"
        " 'completed', '/x', '2026-01-01T00:00:00+00:00')"
    )
    db.execute(
        "INSERT INTO files VALUES ('b', 'job_old', 1, '/x/job_old-1.png', 3, 'abc', 'u',"
        " '2026-01-01T00:00:00+00:00')"
    )
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    with Ledger(path) as ledger:
        [job] = ledger.jobs()
        assert [(f.sha256, f.mtime_ns) for f in job.files] == [("abc", None)]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
