"""The fault matrix: each promise of the contract held under an injected fault,
against the emulator over real sockets."""

from __future__ import annotations

import email.utils
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.core.errors import ExitCode, SubmissionUncertainError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import Ledger, ledger_path

from conftest import (
    FAST,
    PYTHON,
    TEST_KEY,
    Invoke,
    make_invoker,
    max_in_any_window,
    run_subprocess_env,
)

KEEP_LOOKING = "pixeldojo jobs list"


def finished_job(cli: Invoke, *args: str) -> str:
    path = cli("run", "flux-dev", "x", *args, *FAST).stdout.strip()
    return Path(path).name.rsplit("-", 1)[0]


# --- 429 ---------------------------------------------------------------------

ENDPOINTS = [
    ("GET", r"/models$", ["models", "--json"]),
    ("GET", r"/models/flux-dev$", ["models", "show", "flux-dev", "--json"]),
    ("GET", r"/models/flux-dev/schema$", ["models", "schema", "flux-dev"]),
    ("POST", r"/run$", ["run", "flux-dev", "x", "--no-wait"]),
    ("GET", r"/jobs/job_", ["jobs", "show", "{job}"]),
    ("GET", r"/jobs$", ["jobs", "list", "--json"]),
    ("POST", r"/webhook$", ["webhook", "replay", "{job}"]),
]


def http_date_in(seconds: float) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


@pytest.mark.parametrize("retry_after", [None, "1", "http-date"])
@pytest.mark.parametrize(
    ("method", "path", "args"), ENDPOINTS, ids=[e[2][0] + " " + e[2][1] for e in ENDPOINTS]
)
def test_a_429_burst_on_any_endpoint_is_ridden_out(
    emulator: Emulator,
    cli: Invoke,
    method: str,
    path: str,
    args: list[str],
    retry_after: str | None,
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    # A receiver that answers, so that the replayed webhook is delivered (exit 0).
    job = finished_job(cli, "--webhook-url", receiver[0])
    header = http_date_in(2) if retry_after == "http-date" else retry_after
    emulator.add_fault("status", status=429, method=method, path=path, retry_after=header, count=2)
    before = len(emulator.requests)
    started = time.monotonic()
    result = cli(*[a.replace("{job}", job) for a in args])
    assert result.exit_code == 0, result.output
    hits = emulator.requests_to(method, path)
    assert len(hits) >= 3  # two 429s, then the answer
    if retry_after == "1":
        assert time.monotonic() - started >= 2 * 0.99
    times = [r.at for r in emulator.requests[before:]]
    assert max_in_any_window(times, 60) <= 60


def test_a_retry_after_of_zero_does_not_send_the_retries_at_once(
    emulator: Emulator, cli: Invoke
) -> None:
    """`Retry-After: 0` on a burst of 429s: the client backs off and slows down as
    with no header (at least the limiter's 60/45 s after each 429), never sending
    the retries back to back."""
    job = finished_job(cli)
    emulator.add_fault("status", status=429, method="GET", path="/jobs/", retry_after="0", count=2)
    before = len(emulator.requests)
    result = cli("jobs", "show", job)
    assert result.exit_code == 0, result.output
    times = [r.at for r in emulator.requests[before:] if r.target == "api"]
    assert len(times) == 3
    assert times[1] - times[0] >= 60 / 45 * 0.99 and times[2] - times[1] >= 60 / 45 * 0.99


@pytest.mark.slow
def test_the_limiter_keeps_under_the_servers_limit_in_every_window(
    make_emulator: Callable[..., Emulator],
) -> None:
    # The 60-per-60 s rule scaled down 30x (10 per 2 s) so that it runs in seconds.
    emulator = make_emulator(rate_limit=10, rate_window=2.0)
    client = Client(api_key=TEST_KEY, base_url=emulator.base_url, rate_limit=10)
    client.transport.limiter.window = 2.0
    for _ in range(35):
        client.list_jobs(limit=1)
    statuses = [r for r in emulator.requests if r.target == "api"]
    assert len(statuses) == 35  # not one was refused with a 429, so none was repeated
    assert max_in_any_window([r.at for r in statuses], 2.0) <= 10


# --- 5xx on GETs ---------------------------------------------------------------


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_burst_on_polls_is_retried(emulator: Emulator, cli: Invoke, status: int) -> None:
    emulator.add_fault("status", status=status, method="GET", path=r"/jobs/", count=3)
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0, result.output


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_persistent_5xx_exits_10_with_the_code_and_message(
    emulator: Emulator, cli: Invoke, status: int
) -> None:
    emulator.add_fault("status", status=status, path=r"/jobs", count=-1, message="upstream sad")
    result = cli("jobs", "list")
    assert result.exit_code == 10
    [line, *_] = result.stderr.splitlines()
    assert "upstream sad" in line and "(internal_error)" in line
    assert len(emulator.requests_to("GET", r"/jobs")) == 5  # the retry budget, no more


# --- POST .../run: never twice ----------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 500, "code": "submission_failed"},
        {"kind": "status", "status": 500, "code": "credit_error"},
        {"kind": "status", "status": 503},
        {"kind": "reset"},
    ],
    ids=["submission_failed", "credit_error", "503", "reset after the body was sent"],
)
def test_a_submit_that_may_have_reached_the_server_is_sent_once(
    emulator: Emulator, cli: Invoke, fault: dict[str, Any]
) -> None:
    emulator.add_fault(fault.pop("kind"), method="POST", path=r"/run$", count=-1, **fault)
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 10
    assert len(emulator.requests_to("POST", r"/run$")) == 1
    assert KEEP_LOOKING in result.stderr


def test_a_submit_that_timed_out_is_sent_once(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator()
    emulator.add_fault("delay", method="POST", path=r"/run$", delay=2.0)
    client = Client(api_key=TEST_KEY, base_url=emulator.base_url, timeout=0.5)
    with pytest.raises(SubmissionUncertainError) as caught:
        client.run("flux-dev", {"prompt": "x"})
    assert caught.value.exit_code == ExitCode.NETWORK
    assert KEEP_LOOKING in caught.value.hint
    time.sleep(2.2)
    assert len(emulator.requests_to("POST", r"/run$")) == 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_submit_whose_connection_failed_before_sending_is_retried(
    make_emulator: Callable[..., Emulator],
) -> None:
    port = free_port()  # nothing listens yet: the first attempts are refused
    started: list[Emulator] = []
    threading.Timer(0.3, lambda: started.append(make_emulator(port=port))).start()
    client = Client(api_key=TEST_KEY, base_url=f"http://127.0.0.1:{port}/api/v1")
    job = client.run("flux-dev", {"prompt": "x"})
    assert job.id and len(started[0].requests_to("POST", r"/run$")) == 1


# --- malformed answers -------------------------------------------------------------

MALFORMED: dict[str, dict[str, Any]] = {
    "invalid JSON": {"body": b'{"jobId": '},
    "an HTML error page": {
        "body": b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        "content_type": "text/html",
    },
    "an empty body": {"body": b""},
    "no jobId": {"body": b'{"status": "completed"}'},
    "a list": {"body": b"[1, 2, 3]"},
    "17 MiB": {"body": b'{"pad": "' + b"x" * (17 * 2**20) + b'"}'},
    "a 2 MB gzip of 2 GiB": {"kind": "bomb", "size": 2 * 2**30},
    "nested 100,000 deep": {"kind": "deep", "depth": 100_000},
    "600,000 empty objects": {"body": b"[" + b"{}," * 600_000 + b"{}]"},
}


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("name", list(MALFORMED))
@pytest.mark.parametrize("where", ["submit", "poll"])
def test_a_malformed_answer_is_one_clean_error(
    emulator: Emulator, cli: Invoke, name: str, where: str
) -> None:
    fault = {"kind": "status", **MALFORMED[name]}
    method, path = ("POST", r"/run$") if where == "submit" else ("GET", r"/jobs/")
    emulator.add_fault(fault.pop("kind"), status=200, method=method, path=path, count=-1, **fault)
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 10, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ") or "\nerror: " in result.stderr
    assert len(emulator.requests_to("POST", r"/run$")) == 1
    if where == "submit":  # the server took it: the job may exist
        assert KEEP_LOOKING in result.stderr


@pytest.mark.parametrize("output", ["42", '{"images": 7}', '{"video": [null, 3]}', '"not a url"'])
def test_outputs_of_unexpected_types_do_not_crash(
    emulator: Emulator, cli: Invoke, output: str
) -> None:
    job = json.loads(cli("run", "flux-dev", "x", "--no-wait", "--json").stdout)["jobId"]
    body = f'{{"jobId": "{job}", "status": "completed", "output": {output}}}'.encode()
    emulator.add_fault("status", status=200, method="GET", path=r"/jobs/", body=body, count=-1)
    result = cli("jobs", "wait", job, *FAST)
    assert result.exit_code in (0, 10)
    assert "Traceback" not in result.output


# --- slow server -------------------------------------------------------------------


@pytest.mark.slow
def test_a_trickling_server_cannot_hold_a_timeout(
    make_emulator: Callable[..., Emulator],
) -> None:
    # Every answer to a poll takes 200 s to arrive, a piece every second: never long
    # enough for a read timeout. Only a deadline on the whole exchange ends it, so
    # the command must be done well inside the 60 s this test allows it.
    emulator = make_emulator(latency=30)
    emulator.add_fault("trickle", method="GET", path=r"/jobs/", delay=200, count=-1)
    done = subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli", "run", "flux-dev", "x", "--timeout", "2", *FAST],
        capture_output=True,
        text=True,
        env=run_subprocess_env(emulator),
        timeout=60,
    )
    assert done.returncode == 9, done.stderr
    [job_id] = emulator.jobs
    assert f"pixeldojo jobs wait {job_id}" in done.stderr
    with Ledger() as ledger:
        assert [j.id for j in ledger.jobs()] == [job_id]


# --- the key stays home ---------------------------------------------------------


@pytest.fixture
def third_party() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """Another origin that serves a PNG and records the headers it was sent."""
    seen: list[dict[str, str]] = []
    png = Path(__file__).parent.joinpath("conftest.py").read_bytes()[:0] or b"\x89PNG\r\n\x1a\n"

    class Files(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Files)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("status", [301, 302, 307])
def test_output_redirects_to_other_origins_never_carry_the_key(
    emulator: Emulator, cli: Invoke, third_party: tuple[str, list[dict[str, str]]], status: int
) -> None:
    elsewhere, seen = third_party
    emulator.add_fault(
        "redirect", target="files", status=status, location=f"{elsewhere}/x.png", count=-1
    )
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0, result.output
    assert seen and all("authorization" not in headers for headers in seen)
    assert all(r.authorization is None for r in emulator.requests_to(target="files"))


def test_a_status_url_on_another_origin_is_not_followed(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator()
    emulator.status_url_base = emulator.files_url  # a statusUrl on the other origin
    result = make_invoker(emulator)("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0, result.output
    assert not emulator.requests_to(path=r"/jobs", target="files")
    assert all(r.authorization is None for r in emulator.requests_to(target="files"))


def test_plain_http_outputs_from_an_https_api_are_refused(tmp_path: Path) -> None:
    from pixeldojo_cli.api.transport import Transport
    from pixeldojo_cli.core.errors import DownloadError
    from pixeldojo_cli.store.downloads import download_file

    fetched: list[httpx.Request] = []
    transport = Transport(
        "https://api.example/api/v1",
        TEST_KEY,
        http=httpx.Client(
            transport=httpx.MockTransport(lambda r: fetched.append(r) or httpx.Response(200))
        ),
    )
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DownloadError) as caught:
        download_file(transport, "http://cdn.example/1.png", out, "job_1", 1)
    assert "plain http" in caught.value.message
    assert fetched == [] and list(out.iterdir()) == []


# --- the disk ----------------------------------------------------------------------


def test_an_output_folder_that_is_a_file_is_refused_before_anything_is_spent(
    emulator: Emulator, cli: Invoke, tmp_path: Path
) -> None:
    (tmp_path / "taken").write_text("not a folder")
    result = cli("run", "flux-dev", "x", "-o", "taken", *FAST)
    assert result.exit_code == 2
    assert "taken" in result.stderr and "Traceback" not in result.output
    assert not emulator.requests_to("POST")  # checked locally: no credit spent
    assert "Nothing pending" in cli("download", "--pending").stderr


def test_a_full_disk_is_a_clear_error_and_the_sweep_saves_the_job_later(
    emulator: Emulator, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from pixeldojo_cli.store import partfile

    real_write = partfile.PartFile.write

    def full(self: Any, chunk: bytes) -> None:
        raise partfile.WriteError(f"Cannot write {self.path.name}: {os.strerror(errno.ENOSPC)}.")

    monkeypatch.setattr(partfile.PartFile, "write", full)
    result = cli("run", "flux-dev", "x", "-o", "out", *FAST)
    assert result.exit_code == 2
    assert "No space left on device" in result.stderr
    assert [p.name for p in Path("out").iterdir() if not p.name.startswith(".")] == []
    monkeypatch.setattr(partfile.PartFile, "write", real_write)
    saved = cli("download", "--pending")
    assert saved.exit_code == 0 and saved.stdout.strip().endswith("-1.png")


def test_a_disk_that_fills_up_at_fsync_is_a_clear_error_and_no_final_file(
    emulator: Emulator, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from pixeldojo_cli.store import partfile

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(partfile.os, "fsync", full)
    result = cli("run", "flux-dev", "x", "-o", "out", *FAST)
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.stderr and "Traceback" not in result.output
    assert [p.name for p in Path("out").iterdir() if not p.name.startswith(".")] == []


# --- config and ledger --------------------------------------------------------------


def test_concurrent_logins_lose_no_key(emulator: Emulator, isolated_env: Path) -> None:
    env = run_subprocess_env(emulator)
    env.pop("PIXELDOJO_API_KEY")
    procs = [
        subprocess.Popen(
            [
                PYTHON,
                "-m",
                "pixeldojo_cli",
                "--profile",
                f"p{n}",
                "auth",
                "login",
                "--with-token",
                "--no-verify",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for n in range(6)
    ]
    for n, proc in enumerate(procs):
        _, err = proc.communicate(f"key-number-{n}-abcdefgh".encode(), timeout=60)
        assert proc.returncode == 0, err
    import tomllib

    config = tomllib.loads(
        (isolated_env / "xdg_config_home" / "pixeldojo" / "config.toml").read_text()
    )
    assert {name: table["api_key"] for name, table in config["profiles"].items()} == {
        f"p{n}": f"key-number-{n}-abcdefgh" for n in range(6)
    }


def test_an_unreadable_config_is_a_one_line_error(cli: Invoke, isolated_env: Path) -> None:
    (isolated_env / "xdg_config_home" / "pixeldojo" / "config.toml").mkdir(parents=True)
    result = cli("models")
    assert result.exit_code == 2
    assert "config file" in result.stderr and "Traceback" not in result.output


def test_a_damaged_ledger_is_moved_aside_and_recording_goes_on(cli: Invoke) -> None:
    ledger_path().parent.mkdir(parents=True, exist_ok=True)
    ledger_path().write_bytes(b"this is not a database" * 100)
    result = cli("run", "flux-dev", "x", "--no-wait")
    assert result.exit_code == 0, result.output
    assert "damaged" in result.stderr
    with Ledger() as ledger:
        assert [j.id for j in ledger.jobs()] == [result.stdout.strip()]
    assert list(ledger_path().parent.glob("jobs.sqlite3.damaged-*"))
