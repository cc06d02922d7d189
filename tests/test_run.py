"""`pixeldojo run` against the emulator over real sockets: the README's tour and "Exit codes"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.emulator.png import PNG_SIGNATURE

from conftest import FAST, TEST_KEY, Invoke, as_served, make_invoker


def posts(emulator: Emulator) -> list[dict[str, object]]:
    return [json.loads(r.body) for r in emulator.requests_to("POST", r"/run$")]


def test_run_prints_only_file_paths_and_writes_the_emulators_pngs(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli(
        "run", "flux-1.1-pro", "A sunset", "-p", "aspect_ratio=16:9", "--seed", "42", *FAST
    )
    assert result.exit_code == 0, result.stderr
    paths = result.stdout.splitlines()
    assert len(paths) == 1
    data = Path(paths[0]).read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    job_id = posts(emulator) and next(iter(emulator.jobs))
    assert as_served(data) == emulator.output_file(job_id, 1)
    assert Path(paths[0]).name == f"{job_id}-1.png"


def test_run_writes_metadata_json_beside_the_outputs(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    result = cli("run", "flux-dev", "a fox", "-p", "num_outputs=2", "-o", "out", *FAST)
    assert result.exit_code == 0, result.stderr
    job_id = next(iter(emulator.jobs))
    meta = json.loads((tmp_path / "out" / f"{job_id}.json").read_text())
    assert meta["jobId"] == job_id
    assert meta["model"] == "flux-dev"
    seed = meta["inputs"]["seed"]  # picked at random (auto_seed), recorded with the rest
    assert meta["inputs"] == {"prompt": "a fox", "num_outputs": 2, "seed": seed}
    assert isinstance(seed, int) and 0 <= seed <= 2**31 - 1
    assert [f["path"] for f in meta["files"]] == [f"{job_id}-1.png", f"{job_id}-2.png"]
    assert result.stdout.splitlines() == [f"out/{job_id}-1.png", f"out/{job_id}-2.png"]


def test_run_json_prints_one_object_with_job_id_status_and_files(cli: Invoke) -> None:
    result = cli("run", "flux-1.1-pro", "A sunset", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "completed"
    assert doc["jobId"].startswith("job_")
    [file] = doc["files"]
    assert Path(file["path"]).is_absolute() and Path(file["path"]).is_file()
    assert file["size"] == Path(file["path"]).stat().st_size


def test_run_reports_cost_and_remaining_credits_on_stderr(cli: Invoke) -> None:
    result = cli("run", "flux-2-pro", "x", "-p", "resolution=4 MP", *FAST)
    assert result.exit_code == 0, result.stderr
    assert "2 credits, 998 remaining" in result.stderr


def test_no_wait_prints_the_job_id_and_returns(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "x", "--no-wait")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() in emulator.jobs
    assert not emulator.requests_to("GET", r"/jobs/")


def test_no_download_prints_urls(cli: Invoke, emulator: Emulator, tmp_path: Path) -> None:
    result = cli("run", "flux-dev", "x", "--no-download", *FAST)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().startswith(emulator.files_url)
    assert not list(tmp_path.glob("job_*"))


def test_dry_run_prints_body_and_estimate_and_submits_nothing(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli(
        "run", "seedance-1.5", "waves", "-p", "duration=4", "--dry-run", "--json", "--no-auto-seed"
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["body"] == {"prompt": "waves", "duration": 4}
    assert doc["estimatedCredits"] == 6  # 1.5 credits/s x 4 s
    assert posts(emulator) == []


def test_dry_run_needs_no_key(emulator: Emulator) -> None:
    result = make_invoker(emulator, key=None)("run", "flux-dev", "x", "--dry-run", "--no-auto-seed")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"prompt": "x"}
    assert "Estimated cost: 1 credit." in result.stderr


def test_p_values_are_coerced_to_the_schema_types(cli: Invoke, emulator: Emulator) -> None:
    result = cli(
        "run",
        "flux-2-dev",
        "x",
        "-p",
        "num_outputs=2",
        "-p",
        "lora_scale=1.5",
        "-p",
        "image_urls=http://a/1.png",
        "-p",
        "image_urls=http://a/2.png",
        "--no-wait",
        "--no-auto-seed",
    )
    assert result.exit_code == 0, result.stderr
    assert posts(emulator)[0] == {
        "prompt": "x",
        "num_outputs": 2,
        "lora_scale": 1.5,
        "image_urls": ["http://a/1.png", "http://a/2.png"],
    }


def test_boolean_and_number_values_are_coerced(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-1.1-pro-ultra", "x", "-p", "raw=yes", "--no-wait")
    assert result.exit_code == 0, result.stderr
    result = cli("run", "flux-dev", "x", "-p", "guidance=4.5", "--no-wait")
    assert result.exit_code == 0, result.stderr
    assert [p.get("raw", p.get("guidance")) for p in posts(emulator)] == [True, 4.5]


def test_p_json_literal_and_input_file_with_p_overriding(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "in.json").write_text(json.dumps({"prompt": "from file", "num_outputs": 3}))
    result = cli(
        "run",
        "flux-dev",
        "--input",
        "in.json",
        "-p",
        "num_outputs:=1",
        "--no-wait",
        "--no-auto-seed",
    )
    assert result.exit_code == 0, result.stderr
    assert posts(emulator)[0] == {"prompt": "from file", "num_outputs": 1}


def test_input_from_stdin(cli: Invoke, emulator: Emulator) -> None:
    result = cli(
        "run",
        "flux-dev",
        "--input",
        "-",
        "--no-wait",
        "--no-auto-seed",
        input='{"prompt": "piped"}',
    )
    assert result.exit_code == 0, result.stderr
    assert posts(emulator)[0] == {"prompt": "piped"}


def test_seed_and_webhook_url_shortcuts_go_into_the_body(cli: Invoke, emulator: Emulator) -> None:
    result = cli(
        "run", "flux-dev", "x", "--seed", "7", "--webhook-url", "http://127.0.0.1:9/h", "--no-wait"
    )
    assert result.exit_code == 0, result.stderr
    assert posts(emulator)[0] == {"prompt": "x", "seed": 7, "webhook_url": "http://127.0.0.1:9/h"}


def test_unknown_parameter_exits_2_with_a_suggestion_and_no_post(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("run", "flux-dev", "x", "-p", "aspect_ration=16:9")
    assert result.exit_code == 2
    assert "Did you mean 'aspect_ratio'?" in result.stderr
    assert posts(emulator) == []


def test_enum_value_not_allowed_exits_2_and_no_post(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "x", "-p", "aspect_ratio=5:4")
    assert result.exit_code == 2
    assert "aspect_ratio must be one of" in result.stderr
    assert posts(emulator) == []


def test_missing_required_input_exits_2_and_no_post(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "wan-2.6-flash", "a wave")
    assert result.exit_code == 2
    assert "Missing required input: image_url" in result.stderr
    assert posts(emulator) == []


def test_wrong_type_exits_2_and_no_post(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "x", "-p", "num_outputs=two")
    assert result.exit_code == 2
    assert "num_outputs must be an integer" in result.stderr
    assert posts(emulator) == []


def test_out_of_range_value_exits_2_and_no_post(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "x", "-p", "num_outputs=9")
    assert result.exit_code == 2
    assert posts(emulator) == []


def test_failed_job_exits_5(cli: Invoke) -> None:
    result = cli("run", "flux-dev", "please #fail", *FAST)
    assert result.exit_code == 5
    assert "failed" in result.stderr
    assert result.stdout == ""


def test_failed_job_under_json_prints_the_error_object(cli: Invoke) -> None:
    result = cli("run", "flux-dev", "please #fail", "--json", *FAST)
    assert result.exit_code == 5
    assert json.loads(result.stdout)["error"] == {
        "code": "job_failed",
        "message": json.loads(result.stdout)["error"]["message"],
        "exit_code": 5,
    }


def test_bad_key_exits_3(make_emulator: object) -> None:
    emulator = make_emulator(key="the-right-key-123456")  # type: ignore[operator]
    result = make_invoker(emulator, key="a-wrong-key-9876543210")("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 3
    assert "unauthorized" in result.stderr
    assert "a-wrong-key-9876543210" not in result.stderr + result.stdout


def test_no_key_exits_3_with_the_ways_to_give_one(emulator: Emulator) -> None:
    result = make_invoker(emulator, key=None)("run", "flux-dev", "x")
    assert result.exit_code == 3
    assert "PIXELDOJO_API_KEY" in result.stderr and "auth login" in result.stderr
    assert emulator.requests == []


def test_too_few_credits_exits_4(make_emulator: object) -> None:
    emulator = make_emulator(credits=0.5)  # type: ignore[operator]
    result = make_invoker(emulator)("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 4
    assert "insufficient_credits" in result.stderr


def test_unknown_model_exits_6(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-nope", "x")
    assert result.exit_code == 6
    assert "not_found" in result.stderr
    assert posts(emulator) == []


def test_submission_failed_exits_10_after_exactly_one_post(cli: Invoke, emulator: Emulator) -> None:
    emulator.add_fault(
        "status", method="POST", path=r"/run$", status=500, code="submission_failed", count=-1
    )
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 10
    assert "submission_failed" in result.stderr
    assert "pixeldojo jobs list" in result.stderr
    assert len(emulator.requests_to("POST", r"/run$")) == 1


def test_connection_reset_after_the_post_was_sent_is_not_retried(
    cli: Invoke, emulator: Emulator
) -> None:
    emulator.add_fault("reset", method="POST", path=r"/run$", count=-1)
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 10
    assert "jobs list" in result.stderr
    assert len(emulator.requests_to("POST", r"/run$")) == 1


def test_a_429_with_retry_after_delays_the_next_request(cli: Invoke, emulator: Emulator) -> None:
    emulator.add_fault("status", method="GET", path=r"/jobs/", status=429, retry_after="2")
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0, result.stderr
    polls = emulator.requests_to("GET", r"/jobs/")
    assert len(polls) >= 2
    assert polls[1].at - polls[0].at >= 2.0


@pytest.mark.usefixtures("fast_retries")  # the attempts, not their pauses
def test_5xx_on_a_poll_is_retried(cli: Invoke, emulator: Emulator) -> None:
    emulator.add_fault("status", method="GET", path=r"/jobs/", status=503, count=2)
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.splitlines()) == 1


@pytest.mark.usefixtures("fast_retries")  # the attempts, not their pauses
def test_persistent_5xx_on_polls_exits_10(cli: Invoke, emulator: Emulator) -> None:
    emulator.add_fault("status", method="GET", path=r"/jobs/", status=502, count=-1)
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 10
    assert "internal_error" in result.stderr or "502" in result.stderr


def test_no_request_to_the_output_origin_carries_authorization(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("run", "flux-dev", "x", "-p", "num_outputs=3", *FAST)
    assert result.exit_code == 0, result.stderr
    file_requests = emulator.requests_to(target="files")
    assert len(file_requests) == 3
    assert all(r.authorization is None for r in file_requests)
    assert all(r.authorization == f"Bearer {TEST_KEY}" for r in emulator.requests_to("POST"))


def test_timeout_exits_9_with_the_resume_command(make_emulator: object) -> None:
    emulator = make_emulator(latency=30)  # type: ignore[operator]
    result = make_invoker(emulator)("run", "flux-dev", "x", "--timeout", "1s", *FAST)
    assert result.exit_code == 9
    job_id = next(iter(emulator.jobs))
    assert f"pixeldojo jobs wait {job_id}" in result.stderr


def test_bad_timeout_is_a_usage_error_before_anything_is_sent(
    cli: Invoke, emulator: Emulator
) -> None:
    result = cli("run", "flux-dev", "x", "--timeout", "soon")
    assert result.exit_code == 2
    assert "--timeout" in result.stderr
    assert emulator.requests == []


def test_plain_status_lines_on_a_non_terminal_stderr(cli: Invoke) -> None:
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0
    assert ": completed (" in result.stderr
    assert "\x1b[" not in result.stderr


def test_video_model_output_is_downloaded(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "seedance-1.5", "waves", "-p", "duration=2", *FAST)
    assert result.exit_code == 0, result.stderr
    assert Path(result.stdout.strip()).read_bytes().startswith(PNG_SIGNATURE)


def test_open_shows_the_first_output_when_there_is_a_display(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    opened: list[str] = []
    monkeypatch.setattr(typer, "launch", lambda path, **kw: opened.append(path) or 0)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("DISPLAY", ":0")
    result = cli("run", "flux-dev", "x", "-p", "num_outputs=2", "--open", *FAST)
    assert result.exit_code == 0, result.output
    assert opened == [result.stdout.splitlines()[0]]


def test_open_without_a_display_only_says_where_the_file_is(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    opened: list[str] = []
    monkeypatch.setattr(typer, "launch", lambda path, **kw: opened.append(path) or 0)
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = cli("run", "flux-dev", "x", "--open", *FAST)
    assert result.exit_code == 0 and opened == []
    assert "no display" in result.stderr and result.stdout.strip() in result.stderr


def test_a_dash_prompt_is_read_from_stdin(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "-", "--dry-run", "--json", input="a red fox\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["body"]["prompt"] == "a red fox"


def test_a_dash_prompt_with_empty_stdin_is_a_usage_error(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-dev", "-", input="")
    assert result.exit_code == 2 and "empty" in result.stderr
    assert not emulator.requests_to("POST")


def test_a_dash_prompt_from_a_terminal_is_an_error_not_a_hang(
    emulator: Emulator, tmp_path: Path
) -> None:
    import os
    import pty
    import subprocess

    from conftest import PYTHON, run_subprocess_env

    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            [PYTHON, "-m", "pixeldojo_cli", "run", "flux-dev", "-"],
            stdin=slave,
            capture_output=True,
            text=True,
            env=run_subprocess_env(emulator),
            cwd=tmp_path,
            timeout=60,
        )
    finally:
        os.close(slave)
        os.close(master)
    assert done.returncode == 2
    assert "standard input is a terminal" in done.stderr and "echo" in done.stderr
    assert not emulator.requests_to("POST")


def test_ctrl_c_right_after_the_job_was_paid_for_still_names_it(
    cli: Invoke, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixeldojo_cli.core import interrupts
    from pixeldojo_cli.engine import Recorder

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as if Ctrl-C came while the ledger was being written

    monkeypatch.setattr(Recorder, "submitted", interrupted)
    try:
        result = cli("run", "flux-dev", "x")
    finally:
        interrupts.set_resume_hint(None)
    assert len(emulator.requests_to("POST")) == 1  # paid for once
    job_id = next(iter(emulator.jobs))
    assert result.exit_code == 130
    assert f"pixeldojo jobs wait {job_id}" in result.stderr


def test_the_embedded_emulator_does_not_hold_a_video_job_to_the_video_schedule(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every embedded job takes 1.5 s, video or not: model types must not shape
    # its schedule. Against any other API (here a standalone emulator) they do.
    from pixeldojo_cli.cli.state import AppState

    embedded = AppState(use_emulator=True)
    monkeypatch.setenv("PIXELDOJO_API_KEY", "pd_test_standalone_key")
    standalone = AppState(base_url=emulator.base_url)
    try:
        assert embedded.client().model_types_hint_schedule is False
        assert standalone.client().model_types_hint_schedule is True
    finally:
        embedded.close()
        standalone.close()
