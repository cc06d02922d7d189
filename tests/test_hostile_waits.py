"""Every wait is a deadline, round two (issue 24, class 5, after the outside attack):
a request body the server takes in bursts, a resolver that takes its time, a
Retry-After past the deadline on a job already paid for, one API call's retries
as a whole, the budget file's lock, the batch's count, the preview.

Slow resolvers are simulated (`socket.getaddrinfo` replaced in-process, or by a
`sitecustomize` in a child): nothing here asks real DNS. Timed bounds are
generous (the machine may be loaded); the code before the fix took minutes."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from test_hostile_deadlines import in_thread
from test_hostile_deadlines import timed as deadline_timed

from pixeldojo_cli.api import transport as transport_module
from pixeldojo_cli.api.origin import origin_of
from pixeldojo_cli.api.ratelimit import RateLimiter, SharedBudget
from pixeldojo_cli.api.transport import RetryPolicy, Transport
from pixeldojo_cli.core import deadlines
from pixeldojo_cli.core.errors import (
    DeadlineError,
    PixelDojoError,
    RateLimitError,
    RequestTimeoutError,
)
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.downloads import download_file

from conftest import TEST_KEY, Invoke, run_subprocess_env

BIG_BODY = 100_000_000
# The server takes the body 2 MB every half second: each send() the client makes
# ends well inside any timeout it has left, and the whole body takes 25 s. (Much
# slower, and a send() waits long enough for the old per-send cut to end it.)
SLOW_READ = {"after_bytes": 2_000_000, "delay": 0.5}
SLOW_NAME = "api.slow.test"


# The deadline tests' runners; a child here may wait on a 30 s resolver, so 60 s.
timed = partial(deadline_timed, limit=60)


# --- a request body taken in bursts ----------------------------------------------------


def test_run_timeout_holds_against_a_server_taking_the_body_in_bursts(
    emulator: Emulator, tmp_path: Path
) -> None:
    # Before: each send() had the whole timeout again (`run -i` took 17-26 s at 5 s;
    # this one took 30 s).
    emulator.add_fault("slow_read", method="POST", path=r"/run$", count=-1, **SLOW_READ)
    inputs = tmp_path / "big.json"
    inputs.write_text('{"prompt": "' + "x" * BIG_BODY + '"}')
    args = ["run", "flux-dev", "-i", str(inputs), "--timeout", "4s"]
    done, took = timed(args, run_subprocess_env(emulator))
    assert took < 15, f"run --timeout 4s took {took:.2f} s"
    if done.returncode == 10:  # part of it went: check before paying again
        assert "pixeldojo jobs list" in done.stderr
    else:  # on a loaded machine the deadline may pass before the first byte went
        assert done.returncode == 9 and "nothing was submitted" in done.stderr, done.stderr


@pytest.fixture
def slow_tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An https server on loopback (certificate for 127.0.0.1) that takes a request
    body as the `slow_read` fault does: (base URL, certificate)."""
    cert = make_certificate(tmp_path, "IP:127.0.0.1")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True) as tls:
                while not stop.is_set():
                    taken = 0
                    while taken < SLOW_READ["after_bytes"]:  # a TLS record at a time
                        data = tls.recv(65536)
                        if not data:
                            return
                        taken += len(data)
                    time.sleep(SLOW_READ["delay"])
        except OSError:
            pass

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"https://127.0.0.1:{listener.getsockname()[1]}/api/v1", cert
    stop.set()
    listener.close()


def make_certificate(folder: Path, names: str) -> Path:
    """A self-signed certificate for `names` (a subjectAltName list) in `folder`."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert = folder / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=test", "-addext", f"subjectAltName={names}"),
            *("-keyout", str(folder / "key.pem"), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_body_taken_in_bursts_ends_by_the_whole_request_deadline(
    scheme: str,
    emulator: Emulator,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `api -X POST --input` without --timeout: the 120 s whole-attempt bound held
    # per send() only, still sending at 250 s. Here the bound is 2 s (25 s before;
    # TLS held already: one SSL_write runs against one timeout, a guard here).
    if scheme == "https":
        base_url, cert = request.getfixturevalue("slow_tls_server")
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    else:
        emulator.add_fault("slow_read", method="POST", path=r"/run$", count=-1, **SLOW_READ)
        base_url = emulator.base_url
    transport = Transport(base_url, TEST_KEY, total_timeout=2, retry=RetryPolicy(max_attempts=1))
    body = b"x" * BIG_BODY
    started = time.monotonic()
    try:
        outcome = in_thread(
            lambda: transport.request("POST", "models/flux-dev/run", content=body), limit=40
        )
    finally:
        transport.close()
    assert isinstance(outcome, RequestTimeoutError), outcome
    assert time.monotonic() - started < 10


# --- a resolver that takes its time ----------------------------------------------------


@pytest.fixture
def slow_resolver_env(tmp_path: Path, emulator: Emulator) -> dict[str, str]:
    """A child's environment whose resolver takes 30 s for names under `slow.test`
    (then answers 127.0.0.1), with the API at such a name."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import socket, time\n"
        "_real = socket.getaddrinfo\n"
        "def _slow(host, *args, **kwargs):\n"
        "    if isinstance(host, str) and host.endswith('slow.test'):\n"
        "        time.sleep(30)\n"
        "        host = '127.0.0.1'\n"
        "    return _real(host, *args, **kwargs)\n"
        "socket.getaddrinfo = _slow\n"
    )
    env = run_subprocess_env(emulator)
    env["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    env["PIXELDOJO_BASE_URL"] = emulator.base_url.replace("127.0.0.1", SLOW_NAME)
    return env


def test_a_tab_waits_for_a_slow_resolver_no_longer_than_its_deadline(
    slow_resolver_env: dict[str, str],
) -> None:
    env = {**slow_resolver_env, "_PIXELDOJO_COMPLETE": "complete_bash"}
    asks_nothing = {**env, "COMP_WORDS": "pixeldojo ru", "COMP_CWORD": "1"}
    start_up = min(timed([], asks_nothing)[1] for _ in range(2))  # this machine, now
    done, took = timed([], {**env, "COMP_WORDS": "pixeldojo run fl", "COMP_CWORD": "2"})
    assert took < start_up + 4, f"the TAB took {took:.2f} s ({start_up:.2f} s to start)"
    assert done.returncode == 0 and done.stderr == ""


def test_run_timeout_holds_against_a_slow_resolver(
    slow_resolver_env: dict[str, str], emulator: Emulator
) -> None:
    done, took = timed(["run", "flux-dev", "x", "--timeout", "3s"], slow_resolver_env)
    assert took < 15, f"run --timeout 3s took {took:.2f} s"
    assert done.returncode == 9, done.stderr
    assert "--timeout was reached" in done.stderr and not emulator.jobs


@pytest.mark.parametrize("server", ["slow resolver", "server that never answers"])
def test_jobs_wait_for_a_job_never_reached_says_so_by_the_deadline(
    server: str, slow_resolver_env: dict[str, str], emulator: Emulator
) -> None:
    env = slow_resolver_env
    if server != "slow resolver":
        env = run_subprocess_env(emulator)
        emulator.add_fault("drip", method="GET", path=r"/jobs", delay=5, count=-1)
    job_id = "job_0123456789abcdef"
    done, took = timed(["jobs", "wait", job_id, "--timeout", "3s"], env)
    assert took < 15, f"jobs wait --timeout 3s took {took:.2f} s"
    assert done.returncode == 9, done.stderr
    assert f"No answer about job {job_id} came from the API" in done.stderr
    assert "still running" not in done.stderr
    assert f"pixeldojo jobs wait {job_id}" in done.stderr


def slow_system_resolver(monkeypatch: pytest.MonkeyPatch, seconds: float) -> list[str]:
    """`socket.getaddrinfo` taking `seconds` for names under `slow.test` (then
    answering 127.0.0.1); the list records each slow name asked."""
    real = socket.getaddrinfo
    asked: list[str] = []

    def slow(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith("slow.test"):
            asked.append(host)
            time.sleep(seconds)
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    return asked


def test_an_output_download_waits_for_a_slow_resolver_no_longer_than_the_deadline(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The output address rule resolves the name itself (CheckedBackend): the same cut.
    slow_system_resolver(monkeypatch, 30)
    transport = Transport(emulator.base_url, TEST_KEY)
    port = emulator.files_url.rsplit(":", 1)[1].split("/")[0]
    url = f"http://files.slow.test:{port}/outputs/x.png"

    def fetch() -> Any:
        with deadlines.within(2):
            return download_file(transport, url, tmp_path, "job_x", 1, max_attempts=2)

    started = time.monotonic()
    try:
        outcome = in_thread(fetch, limit=40)
    finally:
        transport.close()
    assert isinstance(outcome, PixelDojoError), outcome
    assert time.monotonic() - started < 8


def test_a_slow_resolvers_answer_is_waited_for_across_attempts_not_asked_again(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Connecting may take 1 s; the resolver takes 2.5: the first attempts give up,
    # a later one gets the same lookup's answer (it is not started over each time).
    asked = slow_system_resolver(monkeypatch, 2.5)
    base_url = emulator.base_url.replace("127.0.0.1", SLOW_NAME)
    transport = Transport(base_url, TEST_KEY, timeout=1.0, retry=RetryPolicy(base_delay=0.05))
    try:
        response = in_thread(lambda: transport.request("GET", "models"), limit=30)
    finally:
        transport.close()
    assert not isinstance(response, Exception), response
    assert response.status_code == 200 and asked == [SLOW_NAME]


def test_a_certificate_is_still_checked_against_the_hosts_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Connections go to the resolved address; TLS still verifies the URL's name.
    import http.server

    class Models(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "14")
            self.end_headers()
            self.wfile.write(b'{"models": []}')

        def log_message(self, format: str, *args: object) -> None:
            pass

    results = {}
    for name in ("localhost", "elsewhere.test"):
        folder = tmp_path / name
        folder.mkdir()
        cert = make_certificate(folder, f"DNS:{name}")
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Models)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, folder / "key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        url = f"https://localhost:{server.server_address[1]}/api/v1"
        transport = Transport(url, TEST_KEY, retry=RetryPolicy(max_attempts=1))
        try:
            results[name] = transport.request("GET", "models").status_code
        except PixelDojoError as exc:
            results[name] = exc.message
        finally:
            transport.close()
            server.shutdown()
            server.server_close()
    assert results["localhost"] == 200
    assert "CERTIFICATE_VERIFY_FAILED" in str(results["elsewhere.test"]), results


# --- a Retry-After past the deadline on a job already paid for -------------------------


def followed(cli: Invoke, emulator: Emulator, command: str, tmp_path: Path, *extra: str) -> Any:
    """`command` following one job whose polls are answered 429 with Retry-After: 3600."""
    fast = ("--poll-interval", "0.25", "--max-poll-interval", "0.5")
    if command == "jobs wait":
        job_id = cli("run", "flux-dev", "x", "--no-wait").stdout.strip()
    emulator.add_fault(
        "status", status=429, retry_after="3600", method="GET", path=r"/jobs", count=-1
    )
    if command == "run":
        return cli("run", "flux-dev", "x", *fast, *extra)
    if command == "jobs wait":
        return cli("jobs", "wait", job_id, *fast, *extra)
    (tmp_path / "prompts.txt").write_text("a lighthouse\n")
    return cli("run", "flux-dev", "--batch", str(tmp_path / "prompts.txt"), *fast, *extra)


@pytest.mark.parametrize("timeout", [[], ["--timeout", "20s"]], ids=["no timeout", "timeout"])
@pytest.mark.parametrize("command", ["run", "jobs wait", "run --batch"])
def test_a_long_retry_after_on_a_poll_names_the_job_and_how_to_resume(
    cli: Invoke, emulator: Emulator, tmp_path: Path, command: str, timeout: list[str]
) -> None:
    # Before: exit 8, "Wait a minute and try again" and no job id: an invitation
    # to submit (and pay) again for a job pending in the ledger.
    result = followed(cli, emulator, command, tmp_path, *timeout)
    [job_id] = emulator.jobs
    if command == "run --batch" and timeout:  # the batch's own way to resume
        assert "Rerun the same command to resume" in result.stderr, result.stderr
    else:
        assert f"pixeldojo jobs wait {job_id}" in result.stderr, result.stderr
    assert "try again" not in result.stderr.lower()
    assert len(emulator.requests_to("POST", r"/run$")) == 1
    if timeout:  # a pause past the deadline ends it as the deadline does
        assert result.exit_code == 9, result.stderr
    else:
        assert result.exit_code == 8, result.stderr


# --- one API call as a whole -----------------------------------------------------------


@pytest.mark.parametrize("fault", ["drip", "429"])
def test_one_api_call_gives_up_after_its_whole_bound(emulator: Emulator, fault: str) -> None:
    # Without --timeout, 5 attempts of 120 s each and the pauses: 10.4 min on a
    # dripping server (18 with 429s). Here attempts of 1 s and a bound of 2.5 s.
    if fault == "drip":
        emulator.add_fault("drip", method="GET", path=r"/models$", delay=0.5, count=-1)
    else:
        emulator.add_fault("status", status=429, retry_after="1", path=r"/models$", count=-1)
    transport = Transport(
        emulator.base_url, TEST_KEY, total_timeout=1, call_timeout=2.5, retry=RetryPolicy()
    )
    started = time.monotonic()
    try:
        outcome = in_thread(lambda: transport.request("GET", "models"), limit=60)
    finally:
        transport.close()
    took = time.monotonic() - started
    assert isinstance(outcome, RateLimitError if fault == "429" else RequestTimeoutError), outcome
    assert took < 6, f"the call took {took:.2f} s"
    assert len(emulator.requests_to("GET", r"/models$")) < RetryPolicy().max_attempts
    assert transport_module.CALL_DEADLINE == 180  # what the README says


def test_a_command_deadline_longer_than_the_call_bound_decides(emulator: Emulator) -> None:
    emulator.add_fault("status", status=503, path=r"/models$", count=3)
    transport = Transport(
        emulator.base_url, TEST_KEY, call_timeout=0.01, retry=RetryPolicy(base_delay=0.1)
    )
    try:
        with deadlines.within(30):
            response = transport.request("GET", "models")
    finally:
        transport.close()
    assert response.status_code == 200
    assert len(emulator.requests_to("GET", r"/models$")) == 4


# --- the budget file's lock ------------------------------------------------------------


def test_the_budget_files_lock_is_not_waited_for_past_the_deadline(tmp_path: Path) -> None:
    # Before: 2 s whatever the deadline (`run --timeout 1s` took 4.6 s).
    budget = SharedBudget.open(
        tmp_path, origin_of(httpx.URL("http://127.0.0.1:1/")), TEST_KEY, window=60
    )
    assert budget is not None
    limiter = RateLimiter(60, budget=budget)
    holder = os.open(budget.path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process, stopped with the lock
    started = time.monotonic()
    try:
        with deadlines.within(0.3), pytest.raises(DeadlineError):
            limiter.acquire()
    finally:
        os.close(holder)
        limiter.close()
    assert time.monotonic() - started < 1.5


# --- the batch's count -----------------------------------------------------------------


def test_a_batch_cut_by_its_deadline_counts_its_unfinished_lines_as_its_summary_does(
    emulator: Emulator, tmp_path: Path
) -> None:
    emulator.add_fault("drip", method="GET", path=r"/jobs", delay=0.3, count=-1)
    (tmp_path / "prompts.txt").write_text("one\ntwo\nthree\n")
    args = ["run", "flux-dev", "--batch", str(tmp_path / "prompts.txt"), "--timeout", "6s"]
    done, _ = timed(args, run_subprocess_env(emulator))
    assert done.returncode == 9, done.stderr
    warned = re.search(r"with (\d+) lines? unfinished \((\d+) still running", done.stderr)
    counted = re.search(r"timed_out\s+(\d+)", done.stderr)
    assert warned and counted, done.stderr
    assert warned[1] == counted[1] == warned[2] == str(len(emulator.jobs)), done.stderr


# --- the preview -----------------------------------------------------------------------


def test_no_preview_is_drawn_once_the_deadline_has_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: `run --timeout 5s --preview` decoded a big picture after the deadline.
    from pixeldojo_cli.cli import preview
    from pixeldojo_cli.cli.outputs import Presentation

    drawn: list[Path] = []
    notes: list[str] = []
    monkeypatch.setattr(preview, "show_preview", lambda path, render: drawn.append(path))
    state: Any = SimpleNamespace(render=SimpleNamespace(note=notes.append))
    picture = tmp_path / "job_x-1.png"
    with deadlines.within(0):
        Presentation(preview=True).finish(state, [str(picture)])
    assert drawn == [] and notes == ["No preview of job_x-1.png: --timeout was reached."]
    with deadlines.within(60):
        Presentation(preview=True).finish(state, [str(picture)])
    assert drawn == [picture]
