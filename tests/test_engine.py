"""The engine as a library: follow, save, record and outcomes against the emulator
over real sockets, with no CLI in between."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.core.errors import (
    ExitCode,
    JobFailedError,
    Outcome,
    WaitTimeoutError,
    combined_exit_code,
)
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine import (
    Event,
    FileProgress,
    Follower,
    JobResult,
    JobSeen,
    Notice,
    Recorder,
    SaveOptions,
    Submission,
    WaitOptions,
    fetch_and_save,
    follow,
    save,
    submit,
    sweep_pending,
    wait_and_save,
)
from pixeldojo_cli.store.ledger import Ledger

from conftest import TEST_KEY

FAST = WaitOptions(poll_interval=0.05, max_poll_interval=0.2)


def client_for(emulator: Emulator) -> Client:
    return Client(api_key=TEST_KEY, base_url=emulator.base_url)


def events() -> tuple[list[Event], Callable[[Event], None]]:
    seen: list[Event] = []
    return seen, seen.append


def test_follow_watches_many_jobs_to_their_end(emulator: Emulator) -> None:
    with client_for(emulator) as client:
        jobs = [client.run("flux-dev", {"prompt": f"p{n}"}) for n in range(3)]
        ended = follow(client, jobs, FAST)
    assert sorted(ended) == sorted(j.id for j in jobs)
    assert all(not isinstance(job, Exception) and job.succeeded for job in ended.values())


def test_follow_uses_the_list_endpoint_when_several_jobs_are_due(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=0.6)
    with client_for(emulator) as client:
        jobs = [client.run("flux-dev", {"prompt": f"p{n}"}) for n in range(5)]
        follow(client, [j.id for j in jobs], FAST)
    listed = emulator.requests_to("GET", r"/jobs$")
    single = emulator.requests_to("GET", r"/jobs/job_")
    assert listed, "several running jobs are looked at with one list request"
    assert len(single) < 5 * len(listed)


def test_one_deadline_ends_every_wait_that_is_still_running(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=60)
    with client_for(emulator) as client:
        jobs = [client.run("flux-dev", {"prompt": f"p{n}"}) for n in range(2)]
        ended = follow(client, jobs, WaitOptions(0.05, 0.1, timeout=0.5))
    assert all(isinstance(e, WaitTimeoutError) for e in ended.values())
    assert {e.job_id for e in ended.values() if isinstance(e, WaitTimeoutError)} == {
        j.id for j in jobs
    }


def test_follow_reports_every_state_it_sees_as_events(emulator: Emulator) -> None:
    seen, notify = events()
    with client_for(emulator) as client:
        job = client.run("flux-dev", {"prompt": "x"})
        follow(client, [job], FAST, notify=notify)
    statuses = [e.job.status for e in seen if isinstance(e, JobSeen)]
    assert statuses[0] == "pending" and statuses[-1] == "completed"


def test_save_downloads_records_each_file_and_writes_the_sidecar(
    emulator: Emulator, tmp_path: Path
) -> None:
    seen, notify = events()
    with client_for(emulator) as client, Ledger(tmp_path / "ledger.sqlite3") as ledger:
        recorder = Recorder(ledger, emulator.base_url, "default", notify)
        job = client.run("flux-dev", {"prompt": "x", "num_outputs": 2})
        recorder.submitted(job, Submission("flux-dev", {"prompt": "x"}, tmp_path, estimate=2))
        [done] = follow(client, [job], FAST).values()
        assert not isinstance(done, Exception)
        files = save(client, done, SaveOptions(folder=tmp_path), recorder=recorder, notify=notify)
        recorded = ledger.get(emulator.base_url, job.id)
    assert [f.path.name for f in files] == [f"{job.id}-1.png", f"{job.id}-2.png"]
    assert recorded is not None and recorded.downloaded and len(recorded.files) == 2
    sidecar = json.loads((tmp_path / f"{job.id}.json").read_text())
    assert sidecar["jobId"] == job.id and sidecar["inputs"] == {"prompt": "x"}
    assert any(isinstance(e, FileProgress) for e in seen)


def test_one_submission_reaches_the_api_the_ledger_and_the_sidecar(
    emulator: Emulator, tmp_path: Path
) -> None:
    asked = Submission(
        "flux-dev",
        {"prompt": "a fox"},
        tmp_path,
        estimate=1.5,
        input_hash="line-key",
        webhook_url="https://example.test/hook",
    )
    with client_for(emulator) as client, Ledger(tmp_path / "ledger.sqlite3") as ledger:
        recorder = Recorder(ledger, emulator.base_url, "default")
        job = submit(client, asked, recorder=recorder)
        [result] = wait_and_save(
            client, [job], FAST, SaveOptions(), recorder=recorder, submission=asked
        )
        recorded = ledger.find_by_input(
            base_url=emulator.base_url, profile="default", input_hash="line-key"
        )
    [post] = emulator.requests_to("POST")
    assert json.loads(post.body) == {"prompt": "a fox", "webhook_url": "https://example.test/hook"}
    assert recorded is not None and recorded.id == job.id
    assert (recorded.model, recorded.inputs) == ("flux-dev", {"prompt": "a fox"})
    assert recorded.estimated_credits == 1.5 and recorded.output_dir == str(tmp_path.resolve())
    assert result.outcome is Outcome.SAVED and result.saved is True
    assert result.files[0].path.parent == tmp_path  # the folder recorded at submission
    sidecar = json.loads((tmp_path / f"{job.id}.json").read_text())
    assert sidecar["inputs"] == {"prompt": "a fox"}


def test_save_keeps_intact_files_and_fetches_nothing_again(
    emulator: Emulator, tmp_path: Path
) -> None:
    with client_for(emulator) as client:
        [result] = wait_and_save(
            client, [client.run("flux-dev", {"prompt": "x"})], FAST, SaveOptions(folder=tmp_path)
        )
        fetched = len(emulator.requests_to("GET", target="files"))
        again = save(client, result.job, SaveOptions(folder=tmp_path))  # type: ignore[arg-type]
    assert again[0].skipped and len(emulator.requests_to("GET", target="files")) == fetched


def test_a_ledger_that_fails_every_write_never_stops_the_outputs(
    emulator: Emulator, tmp_path: Path
) -> None:
    class BrokenLedger:
        def __getattr__(self, name: str) -> Any:
            def fail(*args: Any, **kwargs: Any) -> Any:
                raise OSError("database is locked")

            return fail

    seen, notify = events()
    recorder = Recorder(BrokenLedger(), emulator.base_url, "default", notify)  # type: ignore[arg-type]
    with client_for(emulator) as client:
        job = client.run("flux-dev", {"prompt": "x"})
        recorder.submitted(job, Submission("flux-dev", {}, tmp_path, estimate=1))
        [result] = wait_and_save(
            client, [job], FAST, SaveOptions(folder=tmp_path), recorder=recorder, notify=notify
        )
    assert result.outcome is Outcome.SAVED and result.files[0].path.is_file()
    warnings = [e for e in seen if isinstance(e, Notice) and e.level == "warning"]
    assert len(warnings) == 1 and job.id in warnings[0].message
    assert recorder.unrecorded == [job.id]


def test_a_failed_job_is_outcome_failed_with_exit_5(emulator: Emulator, tmp_path: Path) -> None:
    with client_for(emulator) as client:
        job = client.run("flux-dev", {"prompt": "x #fail"})
        [result] = wait_and_save(client, [job], FAST, SaveOptions(folder=tmp_path))
    assert result.outcome is Outcome.FAILED and result.exit_code == ExitCode.JOB_FAILED
    assert isinstance(result.error, JobFailedError) and result.error.job_id == job.id


def test_download_of_a_job_still_running_is_outcome_running(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=60)
    with client_for(emulator) as client:
        job = client.run("flux-dev", {"prompt": "x"})
        result = fetch_and_save(client, job.id, SaveOptions(folder=tmp_path))
    assert result.outcome is Outcome.RUNNING and result.exit_code == ExitCode.USAGE


def test_the_sweep_leaves_a_job_whose_file_404s_for_now_pending(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixeldojo_cli.store import downloads

    monkeypatch.setattr(downloads, "RETRY_BASE_DELAY", 0.001)
    with client_for(emulator) as client, Ledger(tmp_path / "l.sqlite3") as ledger:
        recorder = Recorder(ledger, emulator.base_url, "default")
        job = client.run("flux-dev", {"prompt": "x"})
        recorder.submitted(job, Submission("flux-dev", {}, tmp_path, estimate=1))
        follow(client, [job], FAST)
        # Every attempt of this sweep (one 404 alone is retried within the download).
        emulator.add_fault("status", target="files", status=404, count=5)
        [first] = sweep_pending(client, SaveOptions(), recorder)
        assert first.outcome is Outcome.ERROR and first.exit_code == ExitCode.NETWORK
        assert [j.id for j in recorder.unsaved()] == [job.id]  # still pending, not lost
        [second] = sweep_pending(client, SaveOptions(), recorder)
    assert second.outcome is Outcome.SAVED


# --- statuses and outcomes, as pure logic ----------------------------------------


def mock_client(statuses: list[str]) -> Client:
    answers = iter(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"jobId": "j", "status": next(answers)})

    return Client(
        api_key=TEST_KEY,
        base_url="https://api.example/v1",
        http=httpx.Client(transport=httpx.MockTransport(handler)),
    )


@pytest.mark.parametrize("status", ["canceled", "cancelled", "error", "succeeded", "expired"])
def test_known_synonyms_of_terminal_states_end_the_wait(status: str) -> None:
    client = mock_client(["processing", status])
    ended = follow(client, ["j"], FAST, sleep=lambda s: None)
    assert not isinstance(ended["j"], Exception) and ended["j"].is_terminal


def test_an_unknown_status_is_waited_for_a_bounded_time() -> None:
    now = [0.0]
    client = mock_client(["weird"] * 100)
    follower = Follower(client, WaitOptions(1, 1, unknown_status_timeout=5), clock=lambda: now[0])
    follower.add("j")
    ended: dict[str, Any] = {}
    while not ended:
        ended = follower.poll_due()
        now[0] += 1
    assert isinstance(ended["j"], WaitTimeoutError) and "weird" in ended["j"].message
    assert 5 <= now[0] <= 8


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [
        ([Outcome.SAVED, Outcome.SAVED], 0),
        ([Outcome.SAVED, Outcome.FAILED], 5),
        ([Outcome.FAILED, Outcome.EXPIRED], 7),
        ([Outcome.TIMED_OUT, Outcome.SAVED], 9),
        ([Outcome.SKIPPED, Outcome.SAVED], 4),
        ([Outcome.INTERRUPTED, Outcome.EXPIRED], 130),
        ([Outcome.RUNNING, Outcome.SAVED], 0),
        ([], 0),
    ],
)
def test_outcomes_become_one_exit_code(outcomes: list[Outcome], code: int) -> None:
    results = [JobResult("j", outcome) for outcome in outcomes]
    assert combined_exit_code(r.exit_code for r in results) == code


def test_the_sweep_counts_a_failed_job_as_over() -> None:
    codes = [JobResult("a", Outcome.FAILED).exit_code, JobResult("b", Outcome.SAVED).exit_code]
    assert combined_exit_code(codes, server_failures_ok=True) == 0
    assert combined_exit_code(codes) == 5


def test_the_deadline_gets_one_last_look_before_giving_up(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=0.4)
    with client_for(emulator) as client:
        job = client.run("flux-dev", {"prompt": "x"})
        # The first poll of the doubling schedule would come at 5 s, long after the
        # job finished (0.4 s) and after the deadline (1 s): the last look sees it.
        ended = follow(client, [job], WaitOptions(5, 10, timeout=1.0))
    assert not isinstance(ended[job.id], Exception) and ended[job.id].succeeded


def test_a_failed_job_keeps_the_apis_error_field_in_its_result(
    emulator: Emulator, tmp_path: Path
) -> None:
    from pixeldojo_cli.cli.documents import result_document

    with client_for(emulator) as client:
        job = client.run("flux-dev", {"prompt": "x #fail"})
        [result] = wait_and_save(client, [job], FAST, SaveOptions(folder=tmp_path))
    document = result_document(result)
    assert document["error"]["code"] == "job_failed" and document["jobId"] == job.id
    assert document["job"]["error"] == result.job.raw["error"]  # type: ignore[union-attr]


def test_saved_is_what_the_ledger_knows(emulator: Emulator, tmp_path: Path) -> None:
    with client_for(emulator) as client, Ledger(tmp_path / "l.sqlite3") as ledger:
        recorder = Recorder(ledger, emulator.base_url, "default")
        job = client.run("flux-dev", {"prompt": "x"})
        [without] = wait_and_save(client, [job], FAST, SaveOptions(folder=tmp_path))
        recorder.submitted(job, Submission("flux-dev", {}, tmp_path, estimate=1))
        [known] = wait_and_save(
            client, [job.id], FAST, SaveOptions(folder=tmp_path), recorder=recorder
        )
    assert without.saved is None  # no ledger: nothing to say
    assert known.saved is True


def test_with_history_the_schedule_is_learned_and_events_carry_an_eta(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=0.6)
    seen, notify = events()
    with client_for(emulator) as client, Ledger(tmp_path / "l.sqlite3") as ledger:
        recorder = Recorder(ledger, emulator.base_url, "default")
        for n in range(4):
            job = client.run("flux-dev", {"prompt": f"p{n}"})
            recorder.submitted(job, Submission("flux-dev", {}, tmp_path, estimate=1))
            # No poll interval given: the default schedule, learned from the ledger.
            follow(client, [job], WaitOptions(), recorder=recorder, notify=notify, model="flux-dev")
        history = recorder.durations("flux-dev")
    assert len(history) == 4 and all(0.3 < d < 5 for d in history)
    last = [e for e in seen if isinstance(e, JobSeen) and e.job.id == job.id]
    assert any(e.eta is not None for e in last)  # three earlier jobs: an expected finish


def test_an_explicit_interval_forces_the_published_doubling_schedule() -> None:
    from pixeldojo_cli.engine import default_schedule_for

    pick = default_schedule_for(WaitOptions(poll_interval=2, max_poll_interval=30))
    schedule = pick("flux-dev")
    assert [schedule.delay(0, n) for n in range(6)] == [2, 4, 8, 16, 30, 30]


def test_a_video_model_seen_for_the_first_time_gets_the_video_cold_schedule(
    emulator: Emulator,
) -> None:
    from pixeldojo_cli.engine.schedule import ColdSchedule

    with client_for(emulator) as client:
        client.get_model("xai-video")  # as `run` does before it submits
        client.get_model("flux-dev")
        follower = Follower(client, WaitOptions())
        assert follower.schedule_for("xai-video") == ColdSchedule("video")
        assert follower.schedule_for("flux-dev") == ColdSchedule(None)
        assert follower.schedule_for("never-looked-up") == ColdSchedule(None)


def test_the_models_type_is_read_from_the_local_cache_without_a_request(
    emulator: Emulator,
) -> None:
    from pixeldojo_cli.api.model_cache import ModelCache
    from pixeldojo_cli.store.settings import cache_dir

    ModelCache(cache_dir(), emulator.base_url).save_models(
        [{"id": "xai-video", "name": "x", "type": "video"}]
    )
    requests: list[Any] = []
    with Client(
        api_key=TEST_KEY, base_url=emulator.base_url, trace=requests.append, cache_dir=cache_dir()
    ) as client:
        assert client.modality_of("xai-video") == "video"
        assert client.modality_of("flux-dev") is None
    assert requests == []


def test_an_explicit_interval_beats_the_video_cold_schedule(emulator: Emulator) -> None:
    with client_for(emulator) as client:
        client.get_model("xai-video")
        schedule = Follower(client, WaitOptions(poll_interval=2)).schedule_for("xai-video")
    assert [schedule.delay(0, n) for n in range(3)] == [2, 4, 8]


def test_a_client_told_model_types_do_not_matter_gets_the_generic_cold_schedule(
    emulator: Emulator,
) -> None:
    from pixeldojo_cli.engine.schedule import ColdSchedule

    with Client(
        api_key=TEST_KEY, base_url=emulator.base_url, model_types_hint_schedule=False
    ) as client:
        client.get_model("xai-video")
        assert Follower(client, WaitOptions()).schedule_for("xai-video") == ColdSchedule(None)
