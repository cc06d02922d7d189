"""`pixeldojo webhook listen`: notifications in, each job looked up through the API
and saved exactly once; forged URLs never followed; bad requests refused; clean stops."""

from __future__ import annotations

import http.client
import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.api.results import Job
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine.webhooks import Delivery, WebhookListener, job_id_from_notification
from pixeldojo_cli.store.downloads import download_outputs

from conftest import PYTHON, TEST_KEY, Invoke, run_subprocess_env


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
    """Poll until `predicate()` is truthy (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting")


def post(
    url: str,
    body: bytes | Any,
    *,
    method: str = "POST",
    content_type: str | None = "application/json",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP request to the listener: (status, headers, body)."""
    parts = urlsplit(url)
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        all_headers = {"Content-Type": content_type} if content_type else {}
        all_headers.update(headers or {})
        connection.request(method, parts.path or "/", body=data, headers=all_headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def port_open(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "", parts.port or 80), timeout=1).close()
    except OSError:
        return False
    return True


def completed_job(client: Client, **inputs: Any) -> Job:
    job = client.run("flux-dev", {"prompt": "x", **inputs})
    return wait_for(lambda: (j := client.get_job(job.id)).status == "completed" and j)


class Harness:
    """A listener against the emulator, saving into `out` with the library's downloads."""

    def __init__(self, emulator: Emulator, folder: Path, **knobs: Any) -> None:
        self.client = Client(api_key=TEST_KEY, base_url=emulator.base_url)
        self.folder = folder
        self.outcomes: list[Delivery] = []
        self.saves: list[str] = []
        self.saving = threading.Event()  # set when a save has begun
        self.gate = threading.Event()  # saves wait for it
        self.gate.set()
        knobs.setdefault("final_state_wait", 5.0)
        self.listener = WebhookListener(
            self.client, self.save, on_outcome=self.outcomes.append, **knobs
        ).start()
        self.url = self.listener.url

    def save(self, job: Job) -> list[Path]:
        self.saves.append(job.id)
        self.saving.set()
        self.gate.wait(30)
        return [f.path for f in download_outputs(self.client.transport, job, self.folder)]

    def outcome(self, job_id: str) -> Delivery:
        return wait_for(lambda: next((o for o in self.outcomes if o.job_id == job_id), None))

    def close(self) -> None:
        self.gate.set()
        self.listener.stop(grace=5)
        self.client.close()


@pytest.fixture
def harness(emulator: Emulator, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(**knobs: Any) -> Harness:
        made.append(Harness(emulator, tmp_path / "out", **knobs))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture
def foreign_host() -> Iterator[tuple[str, list[str]]]:
    """Another host: its URL, and every request it was sent (any method)."""
    seen: list[str] = []

    class Any_(BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self.send_response(200)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"evil")

        do_GET = do_POST = do_HEAD = _any

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Any_)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


# --- the core ---------------------------------------------------------------


def test_a_real_delivery_is_looked_up_and_saved(
    harness: Callable[..., Harness], emulator: Emulator
) -> None:
    h = harness()
    job = h.client.run("flux-dev", {"prompt": "x", "num_outputs": 2}, webhook_url=h.url)
    outcome = h.outcome(job.id)
    assert outcome.outcome == "saved" and outcome.status == "completed"
    assert [Path(p).name for p in outcome.files] == [f"{job.id}-1.png", f"{job.id}-2.png"]
    for n, path in enumerate(outcome.files, start=1):
        assert Path(path).read_bytes() == emulator.output_file(job.id, n)
    [delivery] = emulator.webhook_deliveries
    assert (delivery["status"], delivery["httpStatus"]) == ("delivered", 202)
    assert emulator.requests_to("GET", rf"/jobs/{job.id}$"), "looked up through the API"


def test_forged_urls_in_a_notification_are_never_followed(
    harness: Callable[..., Harness], emulator: Emulator, foreign_host: tuple[str, list[str]]
) -> None:
    h = harness()
    evil, seen = foreign_host
    job = completed_job(h.client)
    forged = {
        "jobId": job.id,
        "status": "completed",
        "statusUrl": f"{evil}/jobs/{job.id}",
        "output": {"images": [f"{evil}/planted.png"]},
        "assets": [{"url": f"{evil}/../../planted.sh"}],
    }
    assert post(h.url, forged)[0] == 202
    assert h.outcome(job.id).outcome == "saved"
    stranger = {"jobId": "job_0000forged", "status": "completed", "output": {"images": [evil]}}
    assert post(h.url, stranger)[0] == 202
    refused = h.outcome("job_0000forged")
    assert refused.outcome == "error" and refused.error is not None
    assert refused.error.code == "not_found"
    assert seen == [], "nothing was ever asked of the other host"
    assert sorted(p.name for p in h.folder.iterdir()) == [f"{job.id}-1.png"]
    assert all(job.id in r.path for r in emulator.requests_to(target="files"))
    assert h.saves == [job.id]


def test_duplicate_and_concurrent_notifications_save_once(
    harness: Callable[..., Harness], emulator: Emulator
) -> None:
    h = harness(workers=4)
    job = completed_job(h.client, num_outputs=2)
    emulator.add_fault("delay", target="files", delay=0.3, count=-1)  # keep the save in flight
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: post(h.url, {"job": {"jobId": job.id}})[0], range(32)))
    assert sorted(set(answers)) == [200, 202] and answers.count(202) == 1
    assert h.outcome(job.id).outcome == "saved"
    status, _, body = post(h.url, {"jobId": job.id})  # after the save: still once
    assert status == 200 and json.loads(body)["duplicate"] is True
    assert h.saves == [job.id]
    assert len(emulator.requests_to("GET", r"/outputs/", target="files")) == 2
    assert [o.outcome for o in h.outcomes] == ["saved"]


def test_a_job_the_ledger_has_saved_is_skipped(
    harness: Callable[..., Harness], emulator: Emulator
) -> None:
    class Saved:
        def is_saved(self, job_id: str) -> bool:
            return True

        def remember(self, job: Job) -> None:
            raise AssertionError("a saved job is not looked up")

        def knows(self, job_id: str) -> bool:
            return True

    h = harness(book=Saved())
    job = completed_job(h.client)
    looked_up = len(emulator.requests_to("GET", r"/jobs/"))
    assert post(h.url, {"jobId": job.id})[0] == 202
    assert h.outcome(job.id).outcome == "skipped"
    assert h.saves == [] and len(emulator.requests_to("GET", r"/jobs/")) == looked_up


def test_bad_requests_are_refused_with_the_right_codes(
    harness: Callable[..., Harness], emulator: Emulator
) -> None:
    h = harness(max_body=1024, path="/hooks/pixeldojo")
    base = h.url.rsplit("/hooks/", 1)[0]
    status, headers, _ = post(h.url, b"", method="GET", content_type=None)
    assert status == 405 and headers["Allow"] == "POST"
    assert post(h.url, {"jobId": "job_1"}, method="PUT")[0] == 405
    assert post(base + "/", {"jobId": "job_1"})[0] == 404
    assert post(base + "/hooks/other", {"jobId": "job_1"})[0] == 404
    assert post(h.url, b"jobId=job_1", content_type="application/x-www-form-urlencoded")[0] == 415
    assert post(h.url, b"{not json")[0] == 400
    assert post(h.url, b"\xff\xfe")[0] == 400
    for no_id in ({}, [], "job_1", {"event": "x"}, {"jobId": "../../etc/passwd"}, {"jobId": True}):
        assert post(h.url, no_id)[0] == 400, no_id
    assert post(h.url, {"jobId": "job_1", "pad": "x" * 2000})[0] == 413
    status, _, _ = post(h.url, b"{}", headers={"Transfer-Encoding": "chunked"})
    assert status == 411
    assert emulator.requests_to("GET", r"/jobs/") == [], "nothing refused was looked up"


def test_a_notification_nested_past_any_depth_is_a_400_not_a_traceback(
    harness: Callable[..., Harness], emulator: Emulator, capfd: pytest.CaptureFixture[str]
) -> None:
    h = harness(max_body=400_000)
    assert post(h.url, b"[" * 100_000 + b"]" * 100_000)[0] == 400
    assert "Traceback" not in capfd.readouterr().err
    assert emulator.requests_to("GET", r"/jobs/") == []


def test_a_full_queue_answers_503(emulator: Emulator, tmp_path: Path) -> None:
    started, release = threading.Event(), threading.Event()

    class Slow:
        def get_job(self, job_id: str) -> Job:
            started.set()
            release.wait(10)
            return Job(id=job_id, status="failed", output_urls=[], raw={})

    listener = WebhookListener(Slow(), lambda job: [], workers=1, queue_size=1).start()
    try:
        assert post(listener.url, {"jobId": "job_a"})[0] == 202
        started.wait(10)
        assert post(listener.url, {"jobId": "job_b"})[0] == 202
        status, headers, _ = post(listener.url, {"jobId": "job_c"})
        assert status == 503 and headers["Retry-After"] == "5"
    finally:
        release.set()
        listener.stop(grace=5)


def test_it_answers_before_the_download_is_done(
    harness: Callable[..., Harness], emulator: Emulator
) -> None:
    h = harness()
    job = completed_job(h.client)
    h.gate.clear()  # no save may finish until the answer is in
    assert post(h.url, {"jobId": job.id})[0] == 202
    assert not (h.folder / f"{job.id}-1.png").exists() and h.outcomes == []
    h.gate.set()
    assert h.outcome(job.id).outcome == "saved"
    assert (h.folder / f"{job.id}-1.png").exists()


def test_job_id_shapes_are_tolerated() -> None:
    shapes: list[tuple[Any, str | None]] = [
        ({"jobId": "job_1"}, "job_1"),
        ({"job_id": "job_1"}, "job_1"),
        ({"id": "job_1"}, "job_1"),
        ({"event": "job.completed", "job": {"jobId": "job_1", "status": "completed"}}, "job_1"),
        ({"job": {"id": "job_1"}}, "job_1"),
        ({"data": {"jobId": "job_1"}}, "job_1"),
        ({"data": {"job": {"id": "job_1"}}}, "job_1"),
        ({"id": "evt_9", "type": "job.completed", "data": {"jobId": "job_1"}}, "job_1"),
        ({"jobId": 12345}, "12345"),
        ({"jobId": " job_1 "}, "job_1"),
        ({}, None),
        ([{"jobId": "job_1"}], None),
        ("job_1", None),
        ({"jobId": ""}, None),
        ({"jobId": "a/b"}, None),
        ({"jobId": "x" * 300}, None),
        # `job` as a string names a job, in a notification as in any answer
        # (issue 24: one rule, `api.results.id_claims`, for every id the package reads).
        ({"jobId": None, "job": "job_1"}, "job_1"),
        ({"JobId": "job_1"}, "job_1"),
    ]
    for body, expected in shapes:
        assert job_id_from_notification(body) == expected, body


# --- stopping -----------------------------------------------------------------


def test_stop_finishes_the_save_under_way_and_hands_back_the_queue(
    harness: Callable[..., Harness], emulator: Emulator
) -> None:
    h = harness(workers=1)
    first, second = completed_job(h.client), completed_job(h.client)
    h.gate.clear()
    assert post(h.url, {"jobId": first.id})[0] == 202
    h.saving.wait(10)  # the first save is under way, held at the gate
    assert post(h.url, {"jobId": second.id})[0] == 202
    stopping = ThreadPoolExecutor(max_workers=1).submit(h.listener.stop, 10)
    wait_for(lambda: not port_open(h.url))  # no longer accepting...
    h.gate.set()  # ...and only then may the first save go on
    left = stopping.result(timeout=30)
    assert left == [second.id]
    assert [(o.job_id, o.outcome) for o in h.outcomes] == [(first.id, "saved")]
    assert (h.folder / f"{first.id}-1.png").exists()
    assert not (h.folder / f"{second.id}-1.png").exists()
    with pytest.raises(OSError):
        post(h.url, {"jobId": second.id})


def test_stop_hands_back_a_save_that_outlasts_the_grace(
    harness: Callable[..., Harness], emulator: Emulator
) -> None:
    remembered: list[str] = []

    class Book:
        def is_saved(self, job_id: str) -> bool:
            return False

        def remember(self, job: Job) -> None:
            remembered.append(job.id)

        def knows(self, job_id: str) -> bool:
            return job_id in remembered

    h = harness(book=Book())
    job = completed_job(h.client)
    h.gate.clear()  # the save never ends while the listener stops
    assert post(h.url, {"jobId": job.id})[0] == 202
    h.saving.wait(10)
    assert h.listener.stop(grace=0.2) == [job.id]
    assert job.id in remembered, "recorded before the save, so `download --pending` has it"
    assert h.outcomes == []


# --- the command ----------------------------------------------------------------


class Listening:
    """`pixeldojo webhook listen` in its own process, its lines read as they come."""

    def __init__(self, emulator: Emulator, cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [PYTHON, "-m", "pixeldojo_cli", "webhook", "listen", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=run_subprocess_env(emulator),
            cwd=cwd,
        )
        self.stdout: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.process.stdout, self.stdout.put)).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self.stderr.append)).start()
        line = wait_for(lambda: next((x for x in self.stderr if "Listening on" in x), None))
        self.url = line.split("Listening on ", 1)[1].split()[0]

    @staticmethod
    def _read(stream: Any, put: Callable[[str], None]) -> None:
        for line in stream:
            put(line.rstrip("\n"))

    def line(self) -> str:
        return self.stdout.get(timeout=20)

    def stop(self) -> tuple[int, list[str], str]:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()  # the test fails; the listener does not outlive it
            raise
        rest: list[str] = []
        while True:
            try:
                rest.append(self.stdout.get(timeout=1))
            except queue.Empty:
                break
        return code, rest, "\n".join(self.stderr)


def test_listen_saves_a_run_no_wait_job_end_to_end(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    hook = tmp_path / "hook.py"
    hook.write_text(
        "import os, pathlib\n"
        "pathlib.Path('hook-' + os.environ['PIXELDOJO_JOB_ID']).write_text(\n"
        "    os.environ['PIXELDOJO_FILES'] + '|' + os.environ['PIXELDOJO_FILE'])\n"
    )
    listening = Listening(emulator, tmp_path, "-o", "out", "--exec", f"{PYTHON} {hook}")
    try:
        submitted = cli("run", "flux-dev", "x", "-p", "num_outputs=2", "--no-wait",
                        "--webhook-url", listening.url)  # fmt: skip
        job_id = submitted.stdout.strip()
        assert submitted.exit_code == 0 and job_id.startswith("job_"), submitted.stderr
        line = listening.line()
    finally:
        code, rest, stderr = listening.stop()
    assert line.split("\t") == [job_id, f"out/{job_id}-1.png", f"out/{job_id}-2.png"]
    assert (tmp_path / "out" / f"{job_id}.json").exists(), "the sidecar is written"
    files = f"out/{job_id}-1.png\nout/{job_id}-2.png"
    assert wait_for(lambda: (tmp_path / f"hook-{job_id}").exists())
    assert (tmp_path / f"hook-{job_id}").read_text() == f"{files}|out/{job_id}-1.png"
    assert code == 0 and rest == [] and "Stopped." in stderr
    assert "Traceback" not in stderr and TEST_KEY not in stderr
    pending = cli("download", "--pending")
    assert pending.exit_code == 0 and pending.stdout == "", "the ledger has it as saved"


def test_sigterm_hands_back_unsaved_jobs_to_the_ledger(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    listening = Listening(emulator, tmp_path, "-o", "out", "--json", "--grace", "0.3s")
    try:
        emulator.add_fault("delay", target="files", delay=4.0)
        job_id = cli("run", "flux-dev", "x", "--no-wait", "--webhook-url", listening.url).stdout
        job_id = job_id.strip()
        wait_for(lambda: emulator.requests_to(target="files"))  # its download is under way
    finally:
        code, lines, stderr = listening.stop()
    assert code == 0, stderr
    assert [json.loads(x) for x in lines] == [
        {"jobId": job_id, "outcome": "handed_back", "files": [], "inLedger": True}
    ]
    assert f"pixeldojo download {job_id}" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out" / f"{job_id}-1.png").exists()
    pending = cli("download", "--pending")  # into the folder `run` was given (here: cwd)
    assert pending.exit_code == 0, pending.stderr
    assert pending.stdout.strip() == str((tmp_path / f"{job_id}-1.png").resolve())


def test_listen_refuses_what_it_cannot_do_before_listening(cli: Invoke) -> None:
    result = cli("webhook", "listen", "--exec", "no-such-command-pixeldojo")
    assert result.exit_code == 2 and "not an executable" in result.stderr
    result = cli("webhook", "listen", "--exec", "'unclosed")
    assert result.exit_code == 2
    result = cli("webhook", "listen", "--path", "no-slash")
    assert result.exit_code == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = cli("webhook", "listen", "--port", str(taken.getsockname()[1]))
    assert result.exit_code == 2 and "Cannot listen" in result.stderr
    assert "Traceback" not in result.output


def test_exec_gets_no_shell(tmp_path: Path) -> None:
    from pixeldojo_cli.cli.commands.webhook import _exec_argv

    argv = _exec_argv(f"{sys.executable} -c 'print(1)' \"$PIXELDOJO_FILE\" ; rm -rf x")
    assert argv == [sys.executable, "-c", "print(1)", "$PIXELDOJO_FILE", ";", "rm", "-rf", "x"]
