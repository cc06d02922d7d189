"""Issue 24, classes 1 and 2: an answer about another job is not this job's
answer (every command that asks about a job refuses it: exit 10, nothing saved,
the job still pending in the ledger), and a list of jobs is a hint that the
job's own answer overrides, so a lagging list never stalls a wait."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_webhooks import Listening, post, wait_for

from pixeldojo_cli.api.results import parse_job_about
from pixeldojo_cli.core.errors import BadResponseError, WrongJobError
from pixeldojo_cli.core.idtext import shown_pair
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine import following

from conftest import FAST, TEST_KEY, Invoke, as_served

ANY_JOB = r"/jobs/job_[^/]*$"  # every GET /jobs/{id}, not the list


def submitted(cli: Invoke, prompt: str = "x") -> str:
    result = cli("run", "flux-dev", prompt, "--no-wait", "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["jobId"])


def saved_here(folder: Path) -> list[str]:
    """Every output, sidecar or partial file of any job in `folder`."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(("job_", ".job_")))


def unsaved_in_ledger(cli: Invoke) -> list[str]:
    result = cli("jobs", "list", "--local", "--unsaved", "--all", "--json")
    assert result.exit_code == 0, result.output
    return sorted(entry["jobId"] for entry in json.loads(result.stdout))


def answered_about(
    emulator: Emulator, other: Any, path: str = ANY_JOB, method: str = "GET"
) -> None:
    """From now on, `GET /jobs/{id}` answers about `other` (see emulator faults)."""
    emulator.add_fault("other_job", method=method, path=path, other=other, count=-1)


def refused(result: Any, asked: str, answered: str) -> None:
    assert result.exit_code == 10, result.output
    assert f"answered about job {answered} when asked about job {asked}" in result.stderr
    assert "(wrong_job)" in result.stderr and "Traceback" not in result.output


# --- the rule, as parsed -------------------------------------------------------------

ASKED = "job_abc123"
SAME_ANSWERS: dict[str, Any] = {
    "the same jobId": {"jobId": ASKED, "status": "pending"},
    "the same id (the alias)": {"id": ASKED, "status": "pending"},
    "a wrapper naming it": {"jobId": ASKED, "job": {"jobId": ASKED, "status": "pending"}},
    "no jobId at all": {"status": "pending"},
    "a null jobId": {"jobId": None, "status": "pending"},
    "no jobId, completed with outputs": {"status": "completed", "output": {"images": ["u"]}},
}
OTHER_ANSWERS: dict[str, Any] = {
    "another job": "job_other",
    "upper case": ASKED.upper(),
    "a trailing space": ASKED + " ",
    "a leading newline": "\n" + ASKED,
    "a Cyrillic look-alike": ASKED.replace("o", "\u043e"),
    "a full-width look-alike": ASKED.replace("j", "\uff4a"),
    "a zero-width space": ASKED[:3] + "\u200b" + ASKED[3:],
    "an empty string": "",
    "a number": 123,
    "a list": [ASKED],
    "an object": {"id": ASKED},
    "true": True,
}


@pytest.mark.parametrize("name", list(SAME_ANSWERS))
def test_an_answer_naming_the_asked_job_or_none_stands_for_it(name: str) -> None:
    job = parse_job_about(SAME_ANSWERS[name], ASKED)
    assert job.id == ASKED


@pytest.mark.parametrize("name", list(OTHER_ANSWERS))
@pytest.mark.parametrize("key", ["jobId", "id"])
def test_an_answer_naming_another_job_is_refused_compared_exactly(name: str, key: str) -> None:
    with pytest.raises(WrongJobError) as raised:
        parse_job_about({key: OTHER_ANSWERS[name], "status": "completed"}, ASKED)
    error = raised.value
    assert error.job_id == ASKED and error.exit_code == 10
    assert error.message.endswith(f"when asked about job {ASKED}.")
    assert "\n" not in error.message and "\u200b" not in error.message


def test_a_wrapper_naming_another_job_is_refused() -> None:
    with pytest.raises(WrongJobError):
        parse_job_about({"jobId": "job_other", "job": {"status": "pending"}}, ASKED)
    with pytest.raises(WrongJobError):
        parse_job_about({"job": {"jobId": "job_other", "status": "pending"}}, ASKED)


def test_a_number_is_not_the_id_it_spells() -> None:
    with pytest.raises(WrongJobError):
        parse_job_about({"jobId": 123, "status": "pending"}, "123")


def test_a_bare_completed_status_naming_no_job_is_still_malformed() -> None:
    # It says nothing about any job (no id, no outputs): as before, a bad answer.
    with pytest.raises(BadResponseError) as raised:
        parse_job_about({"status": "completed"}, ASKED)
    assert not isinstance(raised.value, WrongJobError)


def test_a_huge_claimed_id_is_cut_in_the_message() -> None:
    with pytest.raises(WrongJobError) as raised:
        parse_job_about({"jobId": "x" * 100_000, "status": "pending"}, ASKED)
    assert len(raised.value.message) < 300


# --- every command that asks about one job ------------------------------------------

LOOK_ALIKE = str.maketrans({"o": "\u043e"})  # Latin o -> Cyrillic o
CLAIMS: dict[str, Callable[[str], Any]] = {
    # name: the asked id -> the jobId the answer claims
    "a made-up id": lambda asked: "job_madeup",
    "the id in upper case": str.upper,
    "the id and a space": lambda asked: asked + " ",
    "a look-alike": lambda asked: asked.translate(LOOK_ALIKE),
    "an empty string": lambda asked: "",
    "a number": lambda asked: 42,
    "a list": lambda asked: [asked],
}


def shown(claim: Any, asked: str) -> str:
    """The claimed id as the message shows it beside `asked` (`idtext.shown_pair`:
    escaped when the two are not both plain ASCII, so they never read alike)."""
    return shown_pair(asked, claim)[1]


def submitted_id(stderr: str) -> str:
    return stderr.split("Submitted ", 1)[1].split()[0]


def test_run_refuses_an_answer_about_another_existing_job(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    other = submitted(cli, "the other job")
    answered_about(emulator, other)
    result = cli("run", "flux-dev", "mine", *FAST)
    asked = submitted_id(result.stderr)
    refused(result, asked, other)
    assert result.stdout == "" and saved_here(tmp_path) == []
    assert unsaved_in_ledger(cli) == sorted([asked, other])


@pytest.mark.parametrize("name", list(CLAIMS))
def test_run_refuses_an_answer_claiming_another_id(
    cli: Invoke, emulator: Emulator, tmp_path: Path, name: str
) -> None:
    answered_about(emulator, CLAIMS[name])
    result = cli("run", "flux-dev", "mine", *FAST)
    asked = submitted_id(result.stderr)
    refused(result, asked, shown(CLAIMS[name](asked), asked))
    assert saved_here(tmp_path) == [] and unsaved_in_ledger(cli) == [asked]


def test_run_json_error_names_the_asked_job(cli: Invoke, emulator: Emulator) -> None:
    answered_about(emulator, "job_madeup")
    result = cli("run", "flux-dev", "mine", "--json", *FAST)
    document = json.loads(result.stdout)
    asked = submitted_id(result.stderr)
    assert result.exit_code == 10 and document["jobId"] == asked
    assert document["error"]["code"] == "wrong_job" and document["error"]["exit_code"] == 10


def test_jobs_wait_refuses_an_answer_about_another_job(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    asked, other = submitted(cli, "mine"), submitted(cli, "other")
    answered_about(emulator, other, path=rf"/jobs/{asked}$")
    result = cli("jobs", "wait", asked, *FAST)
    refused(result, asked, other)
    assert saved_here(tmp_path) == [] and unsaved_in_ledger(cli) == sorted([asked, other])


def test_jobs_show_refuses_an_answer_about_another_job(cli: Invoke, emulator: Emulator) -> None:
    asked, other = submitted(cli, "mine"), submitted(cli, "other")
    answered_about(emulator, other, path=rf"/jobs/{asked}$")
    result = cli("jobs", "show", asked)
    refused(result, asked, other)
    assert other not in result.stdout
    result = cli("jobs", "show", asked, "--json")
    document = json.loads(result.stdout)
    assert result.exit_code == 10 and document["jobId"] == asked
    assert document["error"] == {
        "code": "wrong_job",
        "message": f"The API answered about job {other} when asked about job {asked}.",
        "exit_code": 10,
    }


def test_download_refuses_an_answer_about_another_job(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    asked, other = submitted(cli, "mine"), submitted(cli, "other")
    assert cli("jobs", "wait", asked, other, "--no-download", *FAST).exit_code == 0
    answered_about(emulator, other, path=rf"/jobs/{asked}$")
    result = cli("download", asked)
    refused(result, asked, other)
    assert saved_here(tmp_path) == [] and unsaved_in_ledger(cli) == sorted([asked, other])


def test_download_pending_refuses_an_answer_about_another_job(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    asked = submitted(cli, "mine")
    assert cli("jobs", "wait", asked, "--no-download", *FAST).exit_code == 0
    answered_about(emulator, "job_madeup")
    result = cli("download", "--pending")
    refused(result, asked, "job_madeup")
    assert saved_here(tmp_path) == [] and unsaved_in_ledger(cli) == [asked]
    emulator.faults.clear()  # the truth again: the job is still there to save
    assert cli("download", "--pending").exit_code == 0 and unsaved_in_ledger(cli) == []


def test_batch_refuses_an_answer_about_another_job(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    Path("b.txt").write_text("one prompt\n")
    answered_about(emulator, "job_madeup")
    result = cli("run", "flux-dev", "--batch", "b.txt", "--json", *FAST)
    [line] = [json.loads(x) for x in result.stdout.splitlines()]
    assert result.exit_code == 10, result.output
    assert line["error"]["code"] == "wrong_job" and line["files"] == []
    assert f"when asked about job {line['jobId']}" in line["error"]["message"]
    assert saved_here(tmp_path) == [] and unsaved_in_ledger(cli) == [line["jobId"]]


def test_engine_wait_refuses_an_answer_about_another_job(emulator: Emulator) -> None:
    from pixeldojo_cli import Client, engine

    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        job = client.run("flux-dev", {"prompt": "x"})
        answered_about(emulator, "job_madeup")
        with pytest.raises(WrongJobError):
            list(engine.wait(client, job.id, poll_interval=0.05, max_poll_interval=0.1))


def test_the_listener_refuses_an_answer_about_another_job(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    other = submitted(cli, "other")
    answered_about(emulator, other)
    listening = Listening(emulator, tmp_path, "-o", "out")
    try:
        asked = cli("run", "flux-dev", "mine", "--no-wait", "--webhook-url", listening.url)
        asked = asked.stdout.strip()
        wait_for(lambda: any(asked in line and "wrong_job" in line for line in listening.stderr))
        status, _, body = post(listening.url, {"jobId": asked, "status": "completed"})
    finally:
        code, lines, stderr = listening.stop()
    assert f"answered about job {other} when asked about job {asked}" in stderr
    assert (status, json.loads(body)["queued"]) == (202, True), "not marked done"
    assert code == 0 and lines == [] and "Traceback" not in stderr
    out = tmp_path / "out"
    assert not out.exists() or saved_here(out) == []
    assert unsaved_in_ledger(cli) == sorted([asked, other])


def test_an_answer_with_no_job_id_still_stands_for_the_asked_job(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    answered_about(emulator, None)
    result = cli("run", "flux-dev", "mine", *FAST)
    asked = submitted_id(result.stderr)
    assert result.exit_code == 0, result.output
    assert saved_here(tmp_path) == sorted([f"{asked}-1.png", f"{asked}.json"])
    assert cli("jobs", "show", asked).exit_code == 0


# --- a list is a hint ----------------------------------------------------------------


@pytest.fixture
def own_look_soon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(following, "OWN_LOOK_INTERVAL", 0.5)


@pytest.mark.usefixtures("own_look_soon")
def test_a_lagging_list_does_not_stall_jobs_wait(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    jobs = [submitted(cli, "a"), submitted(cli, "b"), submitted(cli, "c")]
    emulator.add_fault("stale_list", method="GET", path=r"/jobs$", count=-1)
    result = cli("jobs", "wait", *jobs, "--timeout", "20", *FAST)
    assert result.exit_code == 0, result.output
    assert saved_here(tmp_path) == sorted(f"{j}{end}" for j in jobs for end in ("-1.png", ".json"))
    assert emulator.requests_to("GET", r"/jobs$"), "the list was asked, and lagged"


@pytest.mark.usefixtures("own_look_soon")
def test_a_lagging_list_does_not_stall_a_batch(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    Path("b.txt").write_text("one\ntwo\nthree\n")
    emulator.add_fault("stale_list", method="GET", path=r"/jobs$", count=-1)
    result = cli("run", "flux-dev", "--batch", "b.txt", "--timeout", "20", "--json", *FAST)
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [line["outcome"] for line in lines] == ["saved"] * 3
    assert unsaved_in_ledger(cli) == []


def test_the_own_look_is_slow_by_default() -> None:
    assert 30 <= following.OWN_LOOK_INTERVAL <= 120


def test_a_list_entry_stands_only_for_the_job_it_names_exactly() -> None:
    from pixeldojo_cli.api.results import jobs_by_id, parse_job_list

    listed = parse_job_list(
        [
            {"jobId": 123, "id": "job_a", "status": "completed"},  # read as job_a: not trusted
            {"jobId": "", "id": "job_b", "status": "completed"},
            {"jobId": "job_c", "status": "completed"},
            {"jobId": "job_c", "status": "processing"},  # two answers for job_c: neither
            {"id": "job_d", "status": "processing"},
            {"jobId": "job_e", "id": "other", "status": "processing"},  # two ids: neither
            {"job": {"jobId": "job_f", "status": "processing"}, "id": "other"},
            {"jobId": "job_g", "data": {"jobId": "other"}, "status": "processing"},
            {"job": {"jobId": "job_h", "status": "processing"}},
        ]
    )
    assert sorted(jobs_by_id(listed)) == ["job_d", "job_h"]


def test_a_list_that_lies_about_a_job_does_not_end_its_wait(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    decoy = submitted(cli, "decoy")
    assert cli("jobs", "wait", decoy, "--no-download", *FAST).exit_code == 0
    jobs = [submitted(cli, "a"), submitted(cli, "b")]
    decoy_url = f"{emulator.files_url}/outputs/{decoy}/1.png"
    lies = [
        {"jobId": 7, "id": jobs[0], "status": "completed", "output": {"images": [decoy_url]}},
        {"jobId": jobs[1], "status": "completed", "output": {"images": [decoy_url]}},
        {"jobId": jobs[1], "status": "processing"},
    ]
    emulator.add_fault(
        "status",
        status=200,
        method="GET",
        path=r"/jobs$",
        body=json.dumps({"jobs": lies}),
        count=-1,
    )
    result = cli("jobs", "wait", *jobs, *FAST)
    assert result.exit_code == 0, result.output
    for job_id in jobs:
        saved = (tmp_path / f"{job_id}-1.png").read_bytes()
        assert as_served(saved) == emulator.output_file(job_id, 1)
    assert not emulator.requests_to("GET", rf"/outputs/{decoy}/", target="files")


def test_webhook_replay_refuses_an_answer_about_another_job(
    cli: Invoke, emulator: Emulator, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, _ = receiver
    asked = cli("run", "flux-dev", "x", "--webhook-url", url, "--no-download", *FAST)
    asked_id = submitted_id(asked.stderr)
    answered_about(emulator, "job_madeup", path=rf"/jobs/{asked_id}/webhook$", method="POST")
    refused(cli("webhook", "replay", asked_id), asked_id, "job_madeup")


# --- one rule for every id an answer gives (after the outside attack) ----------------

# Every place this package reads a job's id (the listener's notifications
# included), each naming `other`: an answer giving any of them for another job
# than the one asked about is refused, at the top level or inside a wrapper.
SPELLINGS: dict[str, Callable[[str], dict[str, Any]]] = {
    "jobId": lambda other: {"jobId": other},
    "job_id": lambda other: {"job_id": other},
    "jobID": lambda other: {"jobID": other},
    "JobId": lambda other: {"JobId": other},
    "id beside the asked jobId": lambda other: {"jobId": ASKED, "id": other},
    "id beside a null jobId": lambda other: {"jobId": None, "id": other},
    "job as a string": lambda other: {"job": other},
    "data.jobId": lambda other: {"data": {"jobId": other}},
    "data.jobId beside the asked jobId": lambda other: {"jobId": ASKED, "data": {"jobId": other}},
    "job.jobId": lambda other: {"job": {"jobId": other}},
    "job.id": lambda other: {"job": {"id": other}},
    "data.job.id": lambda other: {"data": {"job": {"id": other}}},
    "payload.job_id": lambda other: {"payload": {"job_id": other}},
    "an outer id, an inner record without one": lambda other: {"id": other, "job": {}},
    "an outer jobId, the inner naming the asked one": lambda other: {
        "jobId": other,
        "job": {"jobId": ASKED},
    },
}
RECORD = {"status": "completed", "output": {"images": ["https://example.invalid/1.png"]}}


def naming(spelling: str, other: str) -> dict[str, Any]:
    """A completed job's answer that gives `other` as its id the `spelling` way."""
    answer = SPELLINGS[spelling](other)
    if isinstance(answer.get("job"), dict):
        return {**answer, "job": {**RECORD, **answer["job"]}}
    return {**RECORD, **answer}


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_every_id_an_answer_gives_is_checked(spelling: str) -> None:
    from pixeldojo_cli.api.results import check_about

    with pytest.raises(WrongJobError) as raised:
        parse_job_about(naming(spelling, "job_other"), ASKED)
    assert "job_other" in raised.value.message and raised.value.exit_code == 10
    with pytest.raises(WrongJobError):
        check_about(naming(spelling, "job_other"), ASKED)  # a webhook replay's answer


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_an_answer_giving_the_asked_id_every_way_stands_for_it(spelling: str) -> None:
    assert parse_job_about(naming(spelling, ASKED), ASKED).id == ASKED


@pytest.mark.parametrize("spelling", list(SPELLINGS))
def test_the_listener_reads_a_notified_id_where_answers_are_checked(spelling: str) -> None:
    from pixeldojo_cli.engine.webhooks import job_id_from_notification

    notification = SPELLINGS[spelling]("job_notified")
    if ASKED not in json.dumps(notification):  # one id given: the listener takes it
        assert job_id_from_notification(notification) == "job_notified"


def decoy_answer(emulator: Emulator, decoy: str) -> str:
    """The other job's record without its id, under an outer `id` naming it."""
    url = f"{emulator.files_url}/outputs/{decoy}/1.png"
    return json.dumps({"id": decoy, "job": {"status": "completed", "output": {"images": [url]}}})


@pytest.mark.parametrize("command", [("download",), ("jobs", "show"), ("jobs", "wait")])
def test_a_wrapper_whose_outer_id_names_another_job_is_refused(
    cli: Invoke, emulator: Emulator, tmp_path: Path, command: tuple[str, ...]
) -> None:
    asked, decoy = completed_jobs(cli, "mine", "decoy")
    body = decoy_answer(emulator, decoy)
    emulator.add_fault("status", status=200, method="GET", path=rf"/{asked}$", body=body, count=-1)
    result = cli(*command, asked)
    refused(result, asked, decoy)
    assert saved_here(tmp_path) == [] and unsaved_in_ledger(cli) == sorted([asked, decoy])
    assert not emulator.requests_to("GET", rf"/outputs/{decoy}/", target="files")


def completed_jobs(cli: Invoke, *prompts: str) -> list[str]:
    jobs = [submitted(cli, prompt) for prompt in prompts]
    assert cli("jobs", "wait", *jobs, "--no-download", *FAST).exit_code == 0
    return jobs


REPLAY_ANSWERS = {
    "id": {"id": "job_other", "delivery": {"status": "delivered"}},
    "a null jobId and an id": {"jobId": None, "id": "job_other"},
    "a job wrapper": {"job": {"jobId": "job_other"}, "delivery": {"status": "delivered"}},
    "job_id": {"job_id": "job_other"},
}


@pytest.mark.parametrize("name", list(REPLAY_ANSWERS))
def test_webhook_replay_checks_every_id_its_answer_gives(
    cli: Invoke, emulator: Emulator, name: str
) -> None:
    asked = submitted(cli, "mine")
    body = json.dumps(REPLAY_ANSWERS[name])
    emulator.add_fault("status", status=200, method="POST", path=r"/webhook$", body=body)
    refused(cli("webhook", "replay", asked), asked, "job_other")


# --- the message tells the two ids apart ---------------------------------------------

LONG = "job_" + "x" * 100
LOOK_ALIKES = {
    "a no-break space": ("job_1", "job_1\u00a0"),
    "an ideographic space": ("job_1", "job_1\u3000"),
    "a combining mark": ("job_e", "job_e\u0301"),
    "a variation selector": ("job_1", "job_1\ufe0f"),
    "NFC and NFD": ("job_caf\u00e9", "job_cafe\u0301"),
    "a trailing space": ("job_1", "job_1 "),
    "a Cyrillic letter": ("job_abc", "job_ab\u0441"),
    "past the cut": (LONG + "A", LONG + "B"),
    "a number spelling the id": ("123", 123),
}


@pytest.mark.parametrize("name", list(LOOK_ALIKES))
def test_ids_that_look_alike_are_shown_apart(name: str) -> None:
    asked, answered = LOOK_ALIKES[name]
    message = WrongJobError(asked, answered).message
    theirs, mine = message.removeprefix("The API answered about job ").split(
        " when asked about job "
    )
    assert theirs.strip() != mine.removesuffix(".").strip(), message
    assert message.replace("\u2026", "").isascii() and message.isprintable(), message
    assert len(message) < 250


def test_run_shows_an_id_with_a_no_break_space_escaped(cli: Invoke, emulator: Emulator) -> None:
    answered_about(emulator, lambda asked: asked + "\u00a0")
    result = cli("run", "flux-dev", "mine", *FAST)
    asked = submitted_id(result.stderr)
    refused(result, asked, asked + "\\xa0")


def test_the_hint_says_which_job_nothing_was_saved_for(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    first, asked, other = completed_jobs(cli, "a", "b", "c")
    answered_about(emulator, other, path=rf"/jobs/{asked}$")
    result = cli("download", first, asked, other)
    refused(result, asked, other)
    assert "either job" not in result.stderr
    assert f"neither for job {asked} nor under job {other}" in result.stderr
    assert saved_here(tmp_path) == sorted(
        f"{j}{e}" for j in (first, other) for e in ("-1.png", ".json")
    )


# --- a submit answer naming two jobs --------------------------------------------------


def test_a_submit_answer_naming_two_jobs_is_followed_under_its_jobid_and_said(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    def two_ids(answer: Any) -> Any:
        return {**answer, "job": {"jobId": "job_decoy", "status": "pending"}}

    emulator.add_fault("reshape", method="POST", path=r"/run$", other=two_ids)
    result = cli("run", "flux-dev", "mine", *FAST)
    asked = submitted_id(result.stderr)
    assert result.exit_code == 0, result.output
    assert "job_decoy" in result.stderr and f"following {asked}" in result.stderr
    assert saved_here(tmp_path) == [f"{asked}-1.png", f"{asked}.json"]
    assert unsaved_in_ledger(cli) == [] and cli("jobs", "show", asked).exit_code == 0


@pytest.mark.parametrize("order", ["the other first", "the asked first"])
def test_an_id_key_given_twice_with_two_values_is_refused(
    cli: Invoke, emulator: Emulator, tmp_path: Path, order: str
) -> None:
    asked, decoy = completed_jobs(cli, "mine", "decoy")
    ids = [f'"jobId": "{decoy}"', f'"jobId": "{asked}"']
    url = f"{emulator.files_url}/outputs/{decoy}/1.png"
    first, second = ids if order == "the other first" else ids[::-1]
    body = f'{{{first}, {second}, "status": "completed", "output": {{"images": ["{url}"]}}}}'
    emulator.add_fault("status", status=200, method="GET", path=rf"/{asked}$", body=body, count=-1)
    result = cli("download", asked)
    assert result.exit_code == 10 and "(wrong_job)" in result.stderr, result.output
    assert saved_here(tmp_path) == [] and unsaved_in_ledger(cli) == sorted([asked, decoy])
