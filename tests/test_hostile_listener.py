"""The webhook listener against hostile senders (issue 24, classes 5 and 12): every
request read under a whole deadline, connections capped per peer without locking
out a real notification, headers and bodies capped, a path nobody can guess by
default, and no temporary file left behind by a stop."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from test_webhooks import Harness, completed_job, post, wait_for

from pixeldojo_cli.api.results import Job
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine.webhooks import WebhookListener

from conftest import PYTHON, Invoke, run_subprocess_env

TOKEN_PATH = re.compile(r"/webhook/[A-Za-z0-9_-]{22,}")


class NoJobs:
    """A job source that knows no job (nothing here is ever saved)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get_job(self, job_id: str) -> Job:
        self.asked.append(job_id)
        return Job(id=job_id, status="failed", output_urls=[], raw={})


@pytest.fixture
def make_listener() -> Iterator[Callable[..., tuple[WebhookListener, NoJobs]]]:
    made: list[WebhookListener] = []

    def make(**knobs: Any) -> tuple[WebhookListener, NoJobs]:
        jobs = NoJobs()
        made.append(WebhookListener(jobs, lambda job: [], **knobs).start())
        return made[-1], jobs

    yield make
    for listener in made:
        listener.stop(grace=1)


def connect(url: str, source: str = "127.0.0.1") -> socket.socket:
    """A connection to the listener from the loopback address `source`."""
    parts = urlsplit(url)
    sock = socket.create_connection(
        (parts.hostname or "", parts.port or 80), timeout=5, source_address=(source, 0)
    )
    return sock


def head_of(url: str, length: int = 20) -> bytes:
    path = urlsplit(url).path
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def closed_by_server(sock: socket.socket) -> bool:
    """The server closed the connection (it may have said why first). Never waits."""
    was = sock.gettimeout()
    sock.setblocking(False)
    try:
        data = sock.recv(65536, socket.MSG_PEEK)
        while data and (data := sock.recv(65536)):  # an answer: read it to the end
            pass
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.settimeout(was)
    return True


def raw(url: str, request: bytes) -> int:
    """Send `request` whole on a fresh connection; the status answered."""
    with connect(url) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n" not in answer:
            more = sock.recv(4096)
            if not more:
                break
            answer += more
    return int(answer.split(b" ", 2)[1])


class Drippers:
    """Connections that send a request one byte at a time, for ever: each cut one
    is opened again at once, as a hostile sender would."""

    def __init__(self, url: str, sources: list[str], every: float = 0.5) -> None:
        self.url = url
        self.request = head_of(url) + b"x" * 20
        self.every = every
        self.slots = [[source, None, 0] for source in sources]  # source, socket, bytes sent
        self.opened = 0
        self._stop = threading.Event()
        for slot in self.slots:
            self._open(slot)
        self._thread = threading.Thread(target=self._drip, daemon=True)
        self._thread.start()

    def _open(self, slot: list[Any]) -> None:
        if slot[1] is not None:
            slot[1].close()
        try:
            slot[1], slot[2] = connect(self.url, slot[0]), 0
            self.opened += 1
        except OSError:
            slot[1] = None

    def _drip(self) -> None:
        while not self._stop.wait(self.every):
            for slot in self.slots:
                sock, sent = slot[1], slot[2]
                if sock is None or closed_by_server(sock):
                    self._open(slot)
                    continue
                try:
                    sock.send(self.request[sent : sent + 1])
                    slot[2] = min(sent + 1, len(self.request) - 1)  # never the last byte
                except OSError:
                    self._open(slot)

    def open_now(self) -> int:
        return sum(
            1 for slot in self.slots if slot[1] is not None and not closed_by_server(slot[1])
        )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for slot in self.slots:
            if slot[1] is not None:
                slot[1].close()


# --- class 5: every request under a whole deadline, connections capped -----------


@pytest.mark.parametrize("phase", ["headers", "body"])
def test_a_dripping_request_is_cut_at_its_whole_deadline(
    make_listener: Callable[..., tuple[WebhookListener, NoJobs]], phase: str
) -> None:
    listener, jobs = make_listener(request_timeout=1.0)
    request = head_of(listener.url, length=200)
    start = len(request) if phase == "body" else 0
    with connect(listener.url) as sock:
        sock.sendall(request[:start])
        dripped = 0
        # One byte every 0.2 s: each read is quick, the whole request never is.
        while dripped < 40 and not closed_by_server(sock):
            sock.send(b"x" if phase == "body" else request[dripped : dripped + 1])
            dripped += 1
            time.sleep(0.2)
        assert closed_by_server(sock), "cut well before 40 bytes at 0.2 s each (8 s)"
    assert dripped < 40
    assert jobs.asked == []


def test_a_real_notification_is_saved_while_slow_senders_hold_connections(
    emulator: Emulator, tmp_path: Path
) -> None:
    h = Harness(emulator, tmp_path / "out")  # the limits `webhook listen` runs with
    loopbacks = [f"127.0.0.{n}" for n in (2, 3, 4, 5)]
    drippers = Drippers(h.url, ["127.0.0.1"] * 44 + loopbacks * 3)
    try:
        wait_for(lambda: drippers.opened >= 56)  # every slow sender has connected...
        time.sleep(1)  # ...and dripped a byte or two
        job = completed_job(h.client)
        started = time.monotonic()
        status, _, _ = post(h.url, {"jobId": job.id})  # from 127.0.0.1, as the drippers
        answered_in = time.monotonic() - started
        assert status == 202
        assert h.outcome(job.id).outcome == "saved"
        assert (h.folder / f"{job.id}-1.png").exists()
        # And one the API itself delivers (the emulator, from 127.0.0.1 too):
        sent = h.client.run("flux-dev", {"prompt": "x"}, webhook_url=h.url)
        assert h.outcome(sent.id).outcome == "saved"
        delivered = wait_for(
            lambda: [d for d in emulator.webhook_deliveries if d["jobId"] == sent.id]
        )
        assert (delivered[0]["status"], delivered[0]["httpStatus"]) == ("delivered", 202)
        assert drippers.open_now() >= 20, "the slow senders were still there"
    finally:
        drippers.close()
        h.close()
    assert answered_in < 5, "a bound on waiting, well past 'a couple of seconds'"


@pytest.mark.parametrize(
    "shape, status",
    [
        ("a request line past 8 KiB", 414),
        ("a header line past 8 KiB", 431),
        ("more than 64 header lines", 431),
        ("headers past 32 KiB in all", 431),
        ("a folded header line", 400),
        ("two different Content-Lengths", 400),
        ("a signed Content-Length", 411),
        ("a body past the cap", 413),
    ],
)
def test_headers_and_bodies_are_capped(
    make_listener: Callable[..., tuple[WebhookListener, NoJobs]], shape: str, status: int
) -> None:
    listener, jobs = make_listener(max_body=1024)
    path = urlsplit(listener.url).path
    line = f"POST {path} HTTP/1.1\r\n"
    headers = "Content-Type: application/json\r\nContent-Length: 20\r\n"
    body = '{"jobId": "job_ab1"}'
    if shape == "a request line past 8 KiB":
        line = f"POST {path}?{'q' * 9000} HTTP/1.1\r\n"
    elif shape == "a header line past 8 KiB":
        headers += f"X-Pad: {'p' * 9000}\r\n"
    elif shape == "more than 64 header lines":
        headers += "".join(f"X-{n}: 1\r\n" for n in range(70))
    elif shape == "headers past 32 KiB in all":
        headers += "".join(f"X-{n}: {'p' * 2000}\r\n" for n in range(20))
    elif shape == "a folded header line":
        headers += "X-Note: one\r\n two\r\n"
    elif shape == "two different Content-Lengths":
        headers += "Content-Length: 2\r\n"
    elif shape == "a signed Content-Length":
        headers = headers.replace("Length: 20", "Length: +20")
    elif shape == "a body past the cap":
        headers = headers.replace("Length: 20", "Length: 1025")
    assert raw(listener.url, f"{line}{headers}\r\n{body}".encode()) == status
    assert raw(listener.url, f"POST {path} HTTP/1.1\r\n{'Content-Type: application/json'}"
               f"\r\nContent-Length: 20\r\n\r\n{body}".encode()) == 202  # fmt: skip
    assert wait_for(lambda: jobs.asked) == ["job_ab1"], "nothing refused was looked up"


# --- class 12: a path nobody can guess, no temporary file left ---------------------


def test_the_default_path_is_a_random_token_and_no_other_path_is_looked_up(
    make_listener: Callable[..., tuple[WebhookListener, NoJobs]],
) -> None:
    first, jobs = make_listener()
    second, _ = make_listener()
    path = urlsplit(first.url).path
    assert TOKEN_PATH.fullmatch(path) and TOKEN_PATH.fullmatch(urlsplit(second.url).path)
    assert path != urlsplit(second.url).path
    base = first.url[: -len(path)]
    near = path[:-1] + ("A" if path[-1] != "A" else "B")
    for wrong in ("/", "/webhook", "/webhook/", near, path + "x", path[:-1], "/" + path):
        assert post(base + wrong, {"jobId": "job_x1"})[0] == 404, wrong
    assert post(first.url, {"jobId": "job_x1"})[0] == 202
    assert post(first.url + "/", {"jobId": "job_x2"})[0] == 202
    assert wait_for(lambda: len(jobs.asked) == 2 and jobs.asked) == ["job_x1", "job_x2"]


class Listening:
    """`pixeldojo webhook listen` in its own process, with Ctrl-C handled as a
    terminal would deliver it."""

    def __init__(self, emulator: Emulator, cwd: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [PYTHON, "-m", "pixeldojo_cli", "webhook", "listen", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=run_subprocess_env(emulator),
            cwd=cwd,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        assert self.process.stderr is not None
        self.start_line = ""
        while "Listening on" not in self.start_line:
            line = self.process.stderr.readline()
            assert line, "it never listened"
            self.start_line += line
        self.url = self.start_line.split("Listening on ", 1)[1].split()[0]

    def stop(self, signum: int) -> tuple[int, str, str]:
        self.process.send_signal(signum)
        try:
            out, err = self.process.communicate(timeout=30)
        finally:
            self.process.kill()
        return self.process.returncode, out, self.start_line + err


def test_listen_prints_its_random_path_and_path_still_sets_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    listening = Listening(emulator, tmp_path)
    try:
        assert TOKEN_PATH.fullmatch(urlsplit(listening.url).path), listening.start_line
        assert post(listening.url.rsplit("/", 1)[0] + "/", {"jobId": "job_x1"})[0] == 404
    finally:
        code, _, err = listening.stop(signal.SIGTERM)
    assert code == 0, err
    chosen = Listening(emulator, tmp_path, "--path", "/hooks/k3y")
    try:
        assert urlsplit(chosen.url).path == "/hooks/k3y"
    finally:
        chosen.stop(signal.SIGTERM)
    assert emulator.requests_to("GET", r"/jobs/") == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "stall", "after_bytes": 100, "delay": 120},  # stops mid-body
        {"kind": "trickle", "delay": 120},  # a slow server
    ],
)
def test_a_stop_during_a_download_leaves_no_temporary_file(
    cli: Invoke, emulator: Emulator, tmp_path: Path, fault: dict[str, Any], signum: int
) -> None:
    fault = dict(fault)
    emulator.add_fault(str(fault.pop("kind")), target="files", count=-1, **fault)
    out = tmp_path / "out"
    listening = Listening(emulator, tmp_path, "-o", str(out), "--grace", "0.5s")
    try:
        submitted = cli("run", "flux-dev", "x", "--no-wait", "--webhook-url", listening.url)
        job_id = submitted.stdout.strip()
        wait_for(lambda: any(p.suffix == ".part" for p in out.glob(".*")), timeout=30)
    finally:
        code, _, err = listening.stop(signum)
    assert code == 0, err  # a stop is how a server ends: 0, as documented
    assert sorted(p.name for p in out.iterdir()) == [], "no .part, nothing under a final name"
    assert f"pixeldojo download {job_id}" in err and "Traceback" not in err
