"""The webhook listener against senders that reconnect over and over, a path it
could never match, and a bug met on one request (issue 24, class 5, round two):
a real sender that keeps making progress is never the one cut, `--path` is what
the listener can match, and one request's failure never ends the serving."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from test_hostile_listener import (
    Drippers,
    NoJobs,
    closed_by_server,
    connect,
    head_of,
    make_listener,  # noqa: F401 (a fixture, shared)
)
from test_webhooks import Harness, completed_job, post, wait_for

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine.webhook_http import Answer, Head, RequestLoop
from pixeldojo_cli.engine.webhooks import WebhookListener

from conftest import PYTHON, Invoke, run_subprocess_env


class Churners:
    """Connections that send the start of a request and wait; each one cut is
    opened again at once, from the same address (as churn_raw.py does)."""

    def __init__(self, url: str, source: str, count: int) -> None:
        self.url, self.source = url, source
        self.start = head_of(url)[:40]
        self.opened = 0
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        for _ in range(count):
            self._open()
        self._thread = threading.Thread(target=self._churn, daemon=True)
        self._thread.start()

    def _open(self) -> None:
        sock = connect(self.url, self.source)
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.send(self.start)
        self._selector.register(sock, selectors.EVENT_READ)
        self.opened += 1

    def _churn(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.1):
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    gone = not sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    gone = True
                if gone:
                    self._selector.unregister(sock)
                    sock.close()
                    if not self._stop.is_set():
                        self._open()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]


def paced_post(url: str, source: str, document: dict[str, Any], pause: float = 0.1) -> bytes:
    """POST `document` from `source` in pieces of 16 bytes, `pause` seconds apart:
    a sender that keeps making progress, slowly. The answer's status line."""
    body = json.dumps(document).encode()
    request = head_of(url, len(body)) + body
    with connect(url, source) as sock:
        sock.settimeout(15)
        for at in range(0, len(request), 16):
            sock.sendall(request[at : at + 16])
            time.sleep(pause)
        answer = b""
        while b"\r\n" not in answer and (more := sock.recv(4096)):
            answer += more
    return answer.split(b"\r\n")[0]


# --- who is cut: the connection idle longest, not the one making progress ----------


@pytest.mark.parametrize(
    "knobs",
    [
        {},  # `webhook listen`'s limits: 48 connections from one address are room enough
        {"max_connections": 24, "max_per_peer": 4},  # at the cap, all from one address
    ],
    ids=["below-the-cap", "at-the-cap"],
)
def test_a_paced_sender_is_not_cut_by_churners_and_drippers_from_its_own_address(
    emulator: Emulator, tmp_path: Path, knobs: dict[str, Any]
) -> None:
    h = Harness(emulator, tmp_path / "out", **knobs)
    churners = Churners(h.url, "127.0.0.2", 40)
    drippers = Drippers(h.url, ["127.0.0.2"] * 8)
    try:
        wait_for(lambda: churners.opened >= 40 and drippers.opened >= 8)
        time.sleep(1)  # the churners reconnect, the drippers drip
        job = completed_job(h.client)
        status_line = paced_post(h.url, "127.0.0.2", {"jobId": job.id})
        assert status_line.startswith(b"HTTP/1.0 202 "), status_line
        assert h.outcome(job.id).outcome == "saved"
        assert (h.folder / f"{job.id}-1.png").exists()
    finally:
        churners.close()
        drippers.close()
        h.close()


def test_at_the_cap_the_idlest_connection_of_an_address_over_its_share_is_cut(
    make_listener: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    listener, jobs = make_listener(max_per_peer=4, max_connections=8, request_timeout=60)
    other = connect(listener.url, "127.0.0.3")  # the idlest of all, from another address
    other.sendall(head_of(listener.url)[:10])
    flood = [connect(listener.url, "127.0.0.2") for _ in range(7)]
    for sock in flood:
        sock.sendall(b"POST")
    time.sleep(0.5)  # all 8 are read: room for each, more than 4 from one address (a proxy)
    assert not any(closed_by_server(sock) for sock in [other, *flood])
    for sock in flood[:2]:
        sock.sendall(b" ")  # progress: now the least idle of their address
    time.sleep(0.5)
    flood.append(connect(listener.url, "127.0.0.2"))  # the 9th: someone must go
    wait_for(lambda: closed_by_server(flood[2]))
    more = [connect(listener.url, f"127.0.0.{n}") for n in (4, 5, 6)]  # 127.0.0.2 down to 4
    for sock in flood[3:6]:
        wait_for(lambda sock=sock: closed_by_server(sock))
    alive = [other, flood[0], flood[1], flood[6], flood[7], *more]
    assert not any(closed_by_server(sock) for sock in alive), "only the idlest of 127.0.0.2"
    other.sendall(head_of(listener.url)[10:] + b'{"jobId": "job_a1"} ')
    assert other.recv(4096).startswith(b"HTTP/1.0 202 ")
    for sock in [*flood, *more, other]:
        sock.close()
    assert wait_for(lambda: jobs.asked) == ["job_a1"]


# --- one request's failure is answered; the loop serves on --------------------------


class FailsOnBoom:
    """A responder with a bug on one path."""

    def check_head(self, head: Head) -> Answer | int:
        if head.target == "/boom":
            raise UnicodeEncodeError("utf-8", "\udcff", 0, 1, "a planted bug")
        return Answer(200, {"ok": True})

    def answer(self, head: Head, body: bytes) -> Answer:
        return Answer(200, {"ok": True})


def test_one_request_s_failure_is_answered_500_and_the_loop_serves_on() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    loop = RequestLoop(server, FailsOnBoom())
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    try:
        for target in ("/boom", "/fine", "/boom", "/fine"):
            with connect(url) as sock:
                sock.sendall(f"GET {target} HTTP/1.1\r\n\r\n".encode())
                answer = sock.recv(4096)
            assert answer.startswith(b"HTTP/1.0 500 " if target == "/boom" else b"HTTP/1.0 200 ")
        assert thread.is_alive() and loop.failure is None
    finally:
        loop.stop()
        thread.join(5)


PLANT_FAILURE = """
import sys
from pixeldojo_cli.engine import webhook_http

def _expire(self, now):
    if self._open:
        raise RuntimeError("a planted failure")

webhook_http.RequestLoop._expire = _expire
from pixeldojo_cli.cli import main
sys.argv[0] = "pixeldojo"
main()
"""


def test_a_server_thread_that_dies_ends_the_command_with_one_line(
    emulator: Emulator, tmp_path: Path
) -> None:
    process = subprocess.Popen(
        [PYTHON, "-c", PLANT_FAILURE, "webhook", "listen", "--port", "0", "--path", "/k3y"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run_subprocess_env(emulator),
        cwd=tmp_path,
    )
    try:
        assert process.stderr is not None
        start = process.stderr.readline()
        url = start.split("Listening on ", 1)[1].split()[0]
        with connect(url) as sock:
            sock.sendall(b"POST")
            wait_for(lambda: closed_by_server(sock))
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 1, err
    assert "The listener stopped answering: RuntimeError: a planted failure" in err
    assert "Traceback" not in err


# --- --path: only what the listener can match ----------------------------------------


@pytest.mark.parametrize(
    "path", ["/hook\udcff", "/wébhook", "//x", "/a b", "/a?b", "/a#b", "/a%zz", "/a\tb", "x"]
)
def test_a_path_the_listener_could_never_match_is_refused(cli: Invoke, path: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:  # were it let through: no hang
        port = str(taken.getsockname()[1])
        result = cli("webhook", "listen", "--port", port, "--path", path)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--path" in lines[0] and "Traceback" not in result.output
    with pytest.raises(ValueError):
        WebhookListener(NoJobs(), lambda job: [], path=path)


def test_a_percent_encoded_path_matches_however_the_sender_encodes_it() -> None:
    listener = WebhookListener(NoJobs(), lambda job: [], path="/w%C3%A9bhook").start()
    try:
        assert listener.url.endswith("/w%C3%A9bhook")  # printed as it is matched
        base = listener.url.rsplit("/", 1)[0]
        for n, target in enumerate([b"/w%C3%A9bhook", b"/w%c3%a9bhook", "/wébhook".encode()]):
            body = json.dumps({"jobId": f"job_p{n}"}).encode()
            request = b"POST %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (
                target,
                len(body),
                body,
            )
            with connect(listener.url) as sock:
                sock.sendall(request)
                assert sock.recv(4096).startswith(b"HTTP/1.0 202 "), target
        assert post(base + "/w%C3%A9bhookx", {"jobId": "job_x"})[0] == 404
    finally:
        listener.stop(grace=1)
