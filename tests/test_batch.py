"""run --batch: many jobs, polled together, within a budget, resumable without paying twice;
and the polling budget of a single run."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from pixeldojo_cli.emulator import Emulator

from conftest import Invoke, make_invoker

POLL = ("--poll-interval", "0.1", "--max-poll-interval", "0.4")


def posts(emulator: Emulator) -> int:
    return len(emulator.requests_to("POST", r"/run$"))


def write(path: str, *lines: str) -> str:
    Path(path).write_text("\n".join(lines) + "\n")
    return path


def test_a_batch_of_prompts_and_json_lines_saves_every_output(
    cli: Invoke, emulator: Emulator
) -> None:
    batch = write("batch.txt", "a fox", '{"prompt": "a cat", "num_outputs": 2}', "", "an owl")
    result = cli("run", "flux-dev", "--batch", batch, "-o", "out", *POLL)
    assert result.exit_code == 0, result.output
    paths = result.stdout.split()
    assert len(paths) == 4 and all(Path(p).exists() for p in paths)
    assert posts(emulator) == 3
    assert sorted(job.inputs["prompt"] for job in emulator.jobs.values()) == [
        "a cat",
        "a fox",
        "an owl",
    ]
    assert re.search(r"saved +3", result.stderr)


def test_minus_reads_the_batch_from_stdin(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "--batch", "-", *POLL, input="one\ntwo\n")
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) == 2


def test_defaults_from_p_and_each_lines_own_values(cli: Invoke, emulator: Emulator) -> None:
    batch = write("b.jsonl", '{"prompt": "wide"}', '{"prompt": "square", "aspect_ratio": "1:1"}')
    result = cli("run", "flux-dev", "--batch", batch, "-p", "aspect_ratio=16:9", *POLL)
    assert result.exit_code == 0, result.output
    ratios = {job.inputs["prompt"]: job.inputs["aspect_ratio"] for job in emulator.jobs.values()}
    assert ratios == {"wide": "16:9", "square": "1:1"}


def test_a_bad_line_stops_the_batch_before_anything_is_spent(
    cli: Invoke, emulator: Emulator
) -> None:
    batch = write(
        "b.jsonl",
        "fine",
        '{"prompt": "x", "aspect_ratio": "7:3"}',
        '{"promt": "typo"}',
        "{not json",
    )
    result = cli("run", "flux-dev", "--batch", batch)
    assert result.exit_code == 2
    assert "line 4" in result.stderr and posts(emulator) == 0
    batch = write("b.jsonl", "fine", '{"prompt": "x", "aspect_ratio": "7:3"}', '{"promt": "typo"}')
    result = cli("run", "flux-dev", "--batch", batch)
    assert result.exit_code == 2
    assert "line 2" in result.stderr and "line 3" in result.stderr and posts(emulator) == 0


def test_max_credits_stops_submitting_before_the_estimate_passes_it(
    cli: Invoke, emulator: Emulator
) -> None:
    batch = write("b.txt", *[f"p{n}" for n in range(6)])
    result = cli("run", "flux-dev", "--batch", batch, "--max-credits", "3.5", "--json", *POLL)
    assert result.exit_code == 4, result.output  # lines were left out: not a full success
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert posts(emulator) == 3
    assert sorted(d["outcome"] for d in lines) == ["saved"] * 3 + ["skipped"] * 3
    assert all("--max-credits" in d["reason"] for d in lines if d["outcome"] == "skipped")
    assert "3 lines not submitted" in result.stderr


def test_json_lines_one_per_job_and_the_worst_exit_code(cli: Invoke, emulator: Emulator) -> None:
    batch = write("b.txt", "good", "bad #fail", "also good")
    result = cli("run", "flux-dev", "--batch", batch, "--json", *POLL)
    assert result.exit_code == 5
    documents = {d["line"]: d for d in map(json.loads, result.stdout.splitlines())}
    assert documents[1]["outcome"] == "saved" and documents[1]["files"]
    assert Path(documents[1]["files"][0]["path"]).is_file()
    assert documents[2]["outcome"] == "failed" and documents[2]["error"]["exit_code"] == 5


def test_identical_lines_are_separate_jobs(cli: Invoke, emulator: Emulator) -> None:
    batch = write("b.txt", "same", "same")
    assert cli("run", "flux-dev", "--batch", batch, *POLL).exit_code == 0
    assert posts(emulator) == 2
    again = cli("run", "flux-dev", "--batch", batch, *POLL)
    assert again.exit_code == 0 and posts(emulator) == 2


def test_rerunning_a_finished_batch_spends_nothing(cli: Invoke, emulator: Emulator) -> None:
    batch = write("b.txt", "one", "two", "three")
    first = cli("run", "flux-dev", "--batch", batch, *POLL)
    assert first.exit_code == 0, first.output
    requests = len(emulator.requests)
    again = cli("run", "flux-dev", "--batch", batch, *POLL)
    assert again.exit_code == 0
    assert sorted(again.stdout.split()) == sorted(
        str(Path(p).resolve()) for p in first.stdout.split()
    )
    assert posts(emulator) == 3 and len(emulator.requests_to(target="files")) == 3
    assert re.search(r"from earlier runs +3", again.stderr)
    assert len(emulator.requests) - requests <= 1  # the model's schema, nothing else


def test_a_batch_cut_short_resumes_without_paying_twice(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=1.5)
    cli = make_invoker(emulator)
    batch = write("b.txt", *[f"p{n}" for n in range(5)])
    cut = cli("run", "flux-dev", "--batch", batch, "--concurrency", "3", "--timeout", "0.5", *POLL)
    assert cut.exit_code == 9
    assert "Rerun the same command" in cut.stderr
    submitted = posts(emulator)
    assert submitted == 3  # the first three were in flight when time ran out
    resumed = cli("run", "flux-dev", "--batch", batch, "--concurrency", "3", *POLL)
    assert resumed.exit_code == 0, resumed.output
    assert posts(emulator) == 5  # only the two never submitted
    assert len(resumed.stdout.split()) == 5
    assert sorted(j.inputs["prompt"] for j in emulator.jobs.values()) == [f"p{n}" for n in range(5)]


def test_no_wait_batch_prints_ids_and_a_rerun_skips_them(cli: Invoke, emulator: Emulator) -> None:
    batch = write("b.txt", "a", "b")
    first = cli("run", "flux-dev", "--batch", batch, "--no-wait")
    assert first.exit_code == 0 and len(first.stdout.split()) == 2
    assert all(word.startswith("job_") for word in first.stdout.split())
    second = cli("run", "flux-dev", "--batch", batch, *POLL)
    assert second.exit_code == 0 and posts(emulator) == 2
    assert len(second.stdout.split()) == 2  # waited for and downloaded, not resubmitted


def test_prompt_and_batch_together_is_a_usage_error(cli: Invoke, emulator: Emulator) -> None:
    assert cli("run", "flux-dev", "x", "--batch", write("b.txt", "y")).exit_code == 2
    assert cli("run", "flux-dev", "x", "--concurrency", "3").exit_code == 2
    assert posts(emulator) == 0


def test_a_batch_polls_many_jobs_with_few_requests(cli: Invoke, emulator: Emulator) -> None:
    batch = write("b.txt", *[f"p{n}" for n in range(20)])
    result = cli("run", "flux-dev", "--batch", batch, "--concurrency", "20", *POLL)
    assert result.exit_code == 0, result.output
    list_polls = len(emulator.requests_to("GET", r"/jobs$"))
    single_polls = len(emulator.requests_to("GET", r"/jobs/job_"))
    assert list_polls >= 1
    # Every job is seen through the list requests; only the first, followed alone
    # before the second was submitted, may have been asked about on its own. (How
    # many list requests fit in the submissions depends on the machine's speed.)
    assert single_polls <= 1
    assert not [r for r in emulator.requests if r.path.endswith("/run") and r.method == "GET"]


@pytest.mark.parametrize("latency", [0.5, 1.5, 3.0])
def test_a_single_run_polls_within_budget(
    make_emulator: Callable[..., Emulator], latency: float
) -> None:
    # Time scaled 20x: 0.1 s stands for the 2 s first poll, 1.5 s for the 30 s cap.
    emulator = make_emulator(latency=latency)
    result = make_invoker(emulator)(
        "run", "flux-dev", "x", "--poll-interval", "0.1", "--max-poll-interval", "1.5"
    )
    assert result.exit_code == 0, result.output
    polls = len(emulator.requests_to("GET", r"/jobs/job_"))
    budget = 2 + math.log2(latency / 0.1) + latency / 1.5
    assert polls <= budget, (polls, budget)


def test_a_batch_with_checksum_records_each_outputs_sha256(cli: Invoke, emulator: Emulator) -> None:
    import hashlib

    from pixeldojo_cli.store.ledger import Ledger

    batch = write("batch.txt", "a fox", "an owl")
    result = cli("run", "flux-dev", "--batch", batch, "-o", "out", "--checksum", *POLL)
    assert result.exit_code == 0, result.output
    with Ledger() as ledger:
        files = [f for job in ledger.jobs() for f in job.files]
    assert len(files) == 2
    for f in files:
        assert f.sha256 == hashlib.sha256(Path(f.path).read_bytes()).hexdigest()
        assert f.mtime_ns == Path(f.path).stat().st_mtime_ns


def test_comment_and_blank_lines_of_a_batch_file_are_never_submitted(
    cli: Invoke, emulator: Emulator
) -> None:
    batch = write(
        "batch.txt", "# comment?", "", "   ", "  # an indented comment", "a fox", "#", "an owl"
    )
    result = cli("run", "flux-dev", "--batch", batch, *POLL)
    assert result.exit_code == 0, result.output
    assert posts(emulator) == 2  # nothing paid for a comment
    assert sorted(job.inputs["prompt"] for job in emulator.jobs.values()) == ["a fox", "an owl"]


def test_a_batch_file_of_only_comments_submits_nothing(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "--batch", write("b.txt", "# one", "# two"), *POLL)
    assert result.exit_code == 2, result.output
    assert posts(emulator) == 0


def test_a_rerun_fetches_again_a_file_that_was_damaged(cli: Invoke, emulator: Emulator) -> None:
    batch = write("b.txt", "one")
    first = cli("run", "flux-dev", "--batch", batch, *POLL)
    assert first.exit_code == 0, first.output
    [path] = first.stdout.split()
    Path(path).write_bytes(b"")  # damaged since
    again = cli("run", "flux-dev", "--batch", batch, "--json", *POLL)
    assert again.exit_code == 0, again.output
    [line] = map(json.loads, again.stdout.splitlines())
    assert line["outcome"] == "saved" and line["resumed"] is True
    assert Path(path).stat().st_size == line["files"][0]["size"] > 0
    assert posts(emulator) == 1


def test_a_no_wait_rerun_prints_the_lines_already_submitted(
    cli: Invoke, emulator: Emulator
) -> None:
    batch = write("b.txt", "one", "two")
    first = cli("run", "flux-dev", "--batch", batch, "--no-wait")
    assert first.exit_code == 0, first.output
    again = cli("run", "flux-dev", "--batch", batch, "--no-wait", "--json")
    assert again.exit_code == 0, again.output
    lines = [json.loads(x) for x in again.stdout.splitlines()]
    assert sorted(d["jobId"] for d in lines) == sorted(first.stdout.split())
    assert all(d["outcome"] == "submitted" and d["resumed"] for d in lines)
    assert posts(emulator) == 2


def test_quiet_still_shows_each_failed_line(cli: Invoke, emulator: Emulator) -> None:
    batch = write("b.txt", "good", "bad #fail")
    result = cli("-q", "run", "flux-dev", "--batch", batch, *POLL)
    assert result.exit_code == 5
    assert "line 2" in result.stderr and "job_failed" in result.stderr


@pytest.mark.parametrize(
    "flag", [["--timeout", "5m"], ["--poll-interval", "1"], ["--no-download"], ["--open"]]
)
def test_flags_that_cannot_apply_with_no_wait_are_refused(
    cli: Invoke, emulator: Emulator, flag: list[str]
) -> None:
    batch = write("b.txt", "one")
    for args in (["--batch", batch], ["x"]):
        result = cli("run", "flux-dev", *args, "--no-wait", *flag)
        assert result.exit_code == 2 and "--no-wait" in result.stderr, result.output
    assert posts(emulator) == 0


def test_the_same_batch_started_twice_at_once_pays_for_each_line_once(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    import subprocess

    from conftest import PYTHON, run_subprocess_env

    emulator = make_emulator(latency=0.5)
    batch = write("b.txt", "one", "two", "three")
    env = run_subprocess_env(emulator)
    command = [PYTHON, "-m", "pixeldojo_cli", "run", "flux-dev", "--batch", batch, *POLL]
    runs = [
        subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=120)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0]
    assert posts(emulator) == 3  # never two jobs for one line
    for out in outputs:  # each run reports every line's files
        assert len(out.split()) == 3


def test_a_batch_submits_nothing_when_its_ledger_is_held_by_another_process(
    cli: Invoke, emulator: Emulator, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from pixeldojo_cli.store.ledger import locking
    from pixeldojo_cli.store.settings import ledger_path

    assert cli("run", "flux-dev", "warm", *POLL).exit_code == 0  # the ledger exists
    monkeypatch.setattr(locking, "DEFAULT_LOCK_WAIT", 1.0)
    holder = sqlite3.connect(ledger_path(), timeout=1, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        batch = write("b.txt", "one", "two")
        result = cli("run", "flux-dev", "--batch", batch, *POLL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code not in (0, 1), result.output
    assert posts(emulator) == 1  # only the warm-up: no line paid for without a record
    assert "ledger" in result.stderr
