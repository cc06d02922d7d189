"""A history a person can read: `jobs list --local` filters and pages the ledger,
`jobs show` prints a job's inputs and files even after the API forgot it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pixeldojo_cli.cli.commands.jobs_list import parse_since
from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import JobQuery, Ledger

from conftest import FAST, Invoke, make_invoker


@pytest.fixture(autouse=True)
def no_auto_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    """These jobs' inputs are printed and compared whole: no random seed among them
    (the seed every job gets is `test_seeds.py`'s)."""
    monkeypatch.setenv("PIXELDOJO_AUTO_SEED", "off")


def submit(cli: Invoke, model: str, prompt: str, *args: str) -> str:
    result = cli("run", model, prompt, *args, "--no-wait")
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def saved(cli: Invoke, model: str, prompt: str) -> str:
    result = cli("run", model, prompt, *FAST)
    assert result.exit_code == 0, result.output
    return Path(result.stdout.strip()).name.rsplit("-", 1)[0]


def local_ids(cli: Invoke, *args: str) -> list[str]:
    result = cli("jobs", "list", "--local", "--json", *args)
    assert result.exit_code == 0, result.output
    return [job["jobId"] for job in json.loads(result.stdout)]


@pytest.fixture
def history(cli: Invoke, emulator: Emulator) -> dict[str, str]:
    """Four jobs, oldest first: a saved fox, an unsaved lighthouse, a failed one, a pony."""
    jobs = {
        "fox": saved(cli, "flux-dev", "a red fox in the snow"),
        "lighthouse": submit(cli, "flux-dev", "a Lighthouse at dusk", "-p", "aspect_ratio=16:9"),
        "failed": saved_failure(cli),
        "pony": submit(cli, "ponyxl-ponyrealism-v23", "a pony 100% real"),
    }
    return jobs


def saved_failure(cli: Invoke) -> str:
    result = cli("run", "flux-dev", "broken #fail", *FAST)
    assert result.exit_code == 5, result.output
    with Ledger() as ledger:
        return ledger.jobs(limit=1)[0].id


def test_local_list_filters_by_model_status_and_saved_state(
    cli: Invoke, history: dict[str, str]
) -> None:
    everything = local_ids(cli)
    assert everything == [history[k] for k in ("pony", "failed", "lighthouse", "fox")]
    assert local_ids(cli, "--model", "ponyxl-ponyrealism-v23") == [history["pony"]]
    assert local_ids(cli, "--model", "flux-*") == [
        history[k] for k in ("failed", "lighthouse", "fox")
    ]
    assert local_ids(cli, "--status", "FAILED") == [history["failed"]]
    assert local_ids(cli, "--unsaved") == [history["pony"], history["lighthouse"]]


def test_local_list_searches_prompts_and_other_inputs(cli: Invoke, history: dict[str, str]) -> None:
    assert local_ids(cli, "--search", "lighthouse") == [history["lighthouse"]]  # any case
    assert local_ids(cli, "--search", "16:9") == [history["lighthouse"]]  # another input
    assert local_ids(cli, "--search", "100%") == [history["pony"]]  # % is literal
    assert local_ids(cli, "--search", "prompt") == []  # input names are not searched


def test_local_list_pages_with_limit_and_all(cli: Invoke, history: dict[str, str]) -> None:
    assert local_ids(cli, "--limit", "2") == [history["pony"], history["failed"]]
    assert len(local_ids(cli, "--limit", "1", "--all")) == 4
    table = cli("jobs", "list", "--local", "--limit", "2")
    assert "more with --limit N or --all" in table.stderr


def test_local_list_since_a_duration_or_a_date(cli: Invoke, history: dict[str, str]) -> None:
    assert len(local_ids(cli, "--since", "1h")) == 4
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert local_ids(cli, "--since", tomorrow) == []
    with Ledger() as ledger:  # an old job: moved back in time
        ledger._db.execute(
            "UPDATE jobs SET submitted_at = ? WHERE id = ?",
            ((datetime.now(UTC) - timedelta(days=3)).isoformat(), history["fox"]),
        )
    assert history["fox"] not in local_ids(cli, "--since", "2d")
    assert history["fox"] in local_ids(cli, "--since", "1w")


def test_since_reads_durations_and_dates() -> None:
    now = datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert parse_since("90m", now) == now - timedelta(minutes=90)
    assert parse_since("1d12h", now) == now - timedelta(hours=36)
    assert parse_since("2025-05-31T10:00+00:00", now) == datetime(2025, 5, 31, 10, tzinfo=UTC)
    with pytest.raises(UsageError):
        parse_since("last tuesday", now)


def test_the_local_json_carries_the_tables_fields_and_the_inputs(
    cli: Invoke, history: dict[str, str]
) -> None:
    [job] = json.loads(cli("jobs", "list", "--local", "--json", "--limit", "1").stdout)
    assert job["jobId"] == history["pony"] and job["model"] == "ponyxl-ponyrealism-v23"
    assert job["inputs"] == {"prompt": "a pony 100% real"}
    assert {"status", "submittedAt", "expiresAt", "creditCost", "saved", "files"} <= set(job)
    table = cli("jobs", "list", "--local")
    assert "a pony 100% real" in table.stdout  # the prompt column


def test_filters_without_local_are_a_usage_error_that_says_how(cli: Invoke) -> None:
    result = cli("jobs", "list", "--unsaved")
    assert result.exit_code == 2
    assert "--unsaved goes with --local" in result.stderr
    assert cli("jobs", "list", "--limit", "500").exit_code == 2


def test_jobs_show_prints_the_prompt_first_then_the_other_inputs(cli: Invoke) -> None:
    job_id = saved(cli, "flux-dev", "a red fox")
    shown = cli("jobs", "show", job_id, "--json")
    assert json.loads(shown.stdout)["inputs"] == {"prompt": "a red fox"}
    other = submit(cli, "flux-dev", "a lighthouse", "-p", "aspect_ratio=16:9", "--seed", "7")
    lines = cli("jobs", "show", other).stdout.splitlines()
    prompt = next(i for i, line in enumerate(lines) if line.startswith("Prompt:"))
    assert lines[prompt] == "Prompt:     a lighthouse"
    assert lines[prompt + 1 : prompt + 3] == ["Inputs:     aspect_ratio=16:9", "            seed=7"]


def test_jobs_show_of_an_expired_job_still_prints_what_this_machine_knows(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=0.05, ttl=0.5)
    cli = make_invoker(emulator)
    path = cli("run", "flux-dev", "a fox at dawn", *FAST).stdout.strip()
    job_id = Path(path).name.rsplit("-", 1)[0]
    time.sleep(0.7)
    shown = cli("jobs", "show", job_id)
    assert shown.exit_code == 7
    assert "Prompt:     a fox at dawn" in shown.stdout and "Saved:" in shown.stdout
    assert "expired" in shown.stderr
    as_json = cli("jobs", "show", job_id, "--json")
    assert as_json.exit_code == 7
    document = json.loads(as_json.stdout)
    assert document["error"]["code"] == "expired" and document["jobId"] == job_id
    assert document["inputs"] == {"prompt": "a fox at dawn"}
    assert [f["path"] for f in document["local"]["files"]] == [str(Path(path).resolve())]


def test_jobs_show_of_a_job_the_api_forgot_is_exit_6_with_the_local_part(
    cli: Invoke, emulator: Emulator
) -> None:
    job_id = submit(cli, "flux-dev", "forgotten")
    del emulator.jobs[job_id]
    shown = cli("jobs", "show", job_id)
    assert shown.exit_code == 6
    assert "Prompt:     forgotten" in shown.stdout and "last seen here" in shown.stdout
    assert cli("jobs", "show", "job_neverseen").exit_code == 6


def test_the_query_object_is_plain_sql(tmp_path: Path) -> None:
    where, args = JobQuery(model="flux-*", status="failed", unsaved=True, search="a_b").where()
    assert "model GLOB ?" in where and "lower(status) = lower(?)" in where
    assert args == ["flux-*", "failed", "%a\\_b%"]
