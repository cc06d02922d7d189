"""Every `--json` shape, by content: one shape per entity (job, file, error,
local job, batch line), the same in every command, as the README's
"JSON output" section shows them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.emulator import Emulator

from conftest import FAST, Invoke

FILE_KEYS = {"path", "size", "sha256", "url"}
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def assert_file(document: Any) -> None:
    assert set(document) == FILE_KEYS
    path = Path(document["path"])
    assert path.is_absolute() and path.is_file()
    assert document["size"] == path.stat().st_size
    assert document["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", document["sha256"])
    assert document["url"].startswith("http")


def assert_job(document: Any, *, saved: bool | None) -> None:
    assert isinstance(document["jobId"], str) and document["jobId"].startswith("job_")
    assert isinstance(document["status"], str)
    assert isinstance(document["files"], list)
    for file in document["files"]:
        assert_file(file)
    if saved is None:
        assert "saved" not in document
    else:
        assert document["saved"] is saved


def assert_error(document: Any, code: str, exit_code: int, job_id: str | None) -> None:
    assert set(document["error"]) == {"code", "message", "exit_code"}
    assert document["error"]["code"] == code and document["error"]["exit_code"] == exit_code
    assert isinstance(document["error"]["message"], str) and document["error"]["message"]
    if job_id is not None:
        assert document["jobId"] == job_id


def run_json(cli: Invoke, *args: str) -> Any:
    result = cli(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def saved_job(cli: Invoke) -> dict[str, Any]:
    document = run_json(cli, "run", "flux-dev", "a fox", "-p", "num_outputs=2", *FAST)
    return dict(document)


def test_run_json_is_the_job_with_its_saved_files(saved_job: dict[str, Any]) -> None:
    assert_job(saved_job, saved=True)
    assert saved_job["status"] == "completed" and saved_job["outcome"] == "saved"
    assert len(saved_job["files"]) == 2
    assert saved_job["output"]["images"] == [f["url"] for f in saved_job["files"]]


def test_a_job_the_ledger_does_not_know_has_no_saved_field(
    cli: Invoke, saved_job: dict[str, Any]
) -> None:
    from pixeldojo_cli.store.settings import ledger_path

    ledger_path().unlink()  # as if another machine had submitted it
    [listed] = run_json(cli, "jobs", "list")
    assert listed["jobId"] == saved_job["jobId"]
    assert_job(listed, saved=None)


def test_run_no_wait_json_is_the_job_with_no_files(cli: Invoke) -> None:
    document = run_json(cli, "run", "flux-dev", "x", "--no-wait")
    assert_job(document, saved=False)  # the ledger knows it: submitted, not saved yet
    assert document["files"] == [] and document["status"] == "pending"


def test_jobs_show_json_is_the_same_job_entity(cli: Invoke, saved_job: dict[str, Any]) -> None:
    shown = run_json(cli, "jobs", "show", saved_job["jobId"])
    assert_job(shown, saved=True)  # the ledger knows it was saved here
    assert shown["jobId"] == saved_job["jobId"] and shown["status"] == "completed"


def test_jobs_list_json_is_a_list_of_job_entities(cli: Invoke, saved_job: dict[str, Any]) -> None:
    [listed] = run_json(cli, "jobs", "list")
    assert_job(listed, saved=True)
    assert listed["jobId"] == saved_job["jobId"]


def test_jobs_wait_and_download_print_the_same_entity(
    cli: Invoke, saved_job: dict[str, Any]
) -> None:
    job_id = saved_job["jobId"]
    [waited] = run_json(cli, "jobs", "wait", job_id, "-o", "w", *FAST)
    [downloaded] = run_json(cli, "download", job_id, "-o", "d")
    for document in (waited, downloaded):
        assert_job(document, saved=True)
        assert document["outcome"] == "saved" and len(document["files"]) == 2
    assert set(waited) == set(downloaded)


def test_download_pending_json_is_the_same_entity_as_download(
    emulator: Emulator, tmp_path: Path
) -> None:
    from conftest import make_invoker

    cli = make_invoker(emulator)
    job_id = run_json(cli, "run", "flux-dev", "x", "--no-wait")["jobId"]
    [pending] = run_json(cli, "jobs", "wait", job_id, "--no-download", *FAST)
    assert pending["outcome"] == "listed" and pending["files"] == []
    [swept] = run_json(cli, "download", "--pending")
    [again] = run_json(cli, "download", job_id, "-o", "again")
    assert_job(swept, saved=True)
    assert swept["outcome"] == "saved" and set(swept) == set(again)


def test_jobs_list_local_json_is_the_local_job_entity(
    emulator: Emulator, saved_job: dict[str, Any], cli: Invoke
) -> None:
    job_id = run_json(cli, "run", "flux-dev", "a lighthouse", *FAST)["jobId"]
    [local] = [d for d in run_json(cli, "jobs", "list", "--local") if d["jobId"] == job_id]
    assert set(local) >= {"jobId", "model", "status", "submittedAt", "expiresAt", "files"}
    assert local["saved"] is True and local["expired"] is False
    assert local["inputs"]["prompt"] == "a lighthouse"
    assert RFC3339_Z.match(local["submittedAt"]) and RFC3339_Z.match(local["expiresAt"])
    for file in local["files"]:
        assert_file(file)


def test_an_error_carries_the_job_id_when_a_job_exists(make_emulator: Any, tmp_path: Path) -> None:
    from conftest import make_invoker

    cli = make_invoker(make_emulator(latency=30))
    result = cli("run", "flux-dev", "x", "--timeout", "1", "--json", *FAST)
    assert result.exit_code == 9
    document = json.loads(result.stdout)
    assert_error(document, "wait_timeout", 9, job_id=document.get("jobId"))
    assert document["jobId"].startswith("job_")
    assert f"pixeldojo jobs wait {document['jobId']}" in result.stderr


def test_an_error_without_a_job_has_no_job_id(cli: Invoke) -> None:
    result = cli("models", "show", "nope", "--json")
    document = json.loads(result.stdout)
    assert_error(document, "not_found", 6, job_id=None)
    assert "jobId" not in document


def test_batch_json_lines_one_line_entity_per_line(cli: Invoke, tmp_path: Path) -> None:
    batch = tmp_path / "b.txt"
    batch.write_text("# a comment, not a prompt\none\n\nbad #fail\n")
    result = cli("run", "flux-dev", "--batch", str(batch), "--json", *FAST)
    assert result.exit_code == 5
    lines = {d["line"]: d for d in map(json.loads, result.stdout.splitlines())}
    assert sorted(lines) == [2, 4]
    good, bad = lines[2], lines[4]
    assert good["outcome"] == "saved" and good["jobId"] == good["job"]["jobId"]
    for file in good["files"]:
        assert_file(file)
    assert_job(good["job"], saved=True)
    assert bad["outcome"] == "failed" and bad["error"]["exit_code"] == 5
