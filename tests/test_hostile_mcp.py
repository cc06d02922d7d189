"""`pixeldojo mcp` against a hostile server and a client that cancels or goes
away: the session's cap holds whatever a server says it charged, a cancelled
call stops, and the server ends at once (and quietly) when its client does.
Driven with raw JSON-RPC over the server's stdio, against the emulator."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pixeldojo_cli.cli.mcp_tools import SpendCap
from pixeldojo_cli.core.errors import SpendCapError
from pixeldojo_cli.emulator import Emulator

from conftest import PYTHON, exit_code_within, run_subprocess_env


class RawClient:
    """`pixeldojo mcp` as a subprocess, spoken to line by line."""

    def __init__(self, emulator: Emulator, folder: Path) -> None:
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "pixeldojo_cli", "mcp", "-o", str(folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=run_subprocess_env(emulator),
        )
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stderr: list[str] = []
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        self.send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                },
            }
        )
        self.answer(1)
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            self.answers.put(json.loads(line))

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        self.stderr.extend(self.proc.stderr)

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()

    def call(self, request_id: int, name: str, arguments: dict[str, Any]) -> None:
        params = {"name": name, "arguments": arguments}
        self.send({"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params})

    def answer(self, request_id: int) -> dict[str, Any]:
        while True:
            message = self.answers.get(timeout=60)
            if message.get("id") == request_id:
                return message

    def job_without_waiting(self) -> str:
        self.call(2, "generate", {"model": "flux-dev", "prompt": "x", "wait": False})
        job_id: str = self.answer(2)["result"]["structuredContent"]["jobId"]
        return job_id

    def close(self, seconds: float) -> int:
        """Close stdin (the client goes away); the exit code within `seconds`."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        return exit_code_within(self.proc, seconds)


def gets(emulator: Emulator) -> int:
    return len(emulator.requests_to("GET", r"/jobs/"))


def soon(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "it never happened"
        time.sleep(0.05)


def test_a_negative_or_absurd_charge_never_gives_the_session_credits_back() -> None:
    cap = SpendCap(1.0)
    for charged in (-5.0, float("nan"), float("-inf"), 0.0):
        fresh = SpendCap(1.0)
        fresh.settle(fresh.reserve(1.0, "flux-dev"), charged)
        assert fresh.spent == 1.0, charged
    cap.settle(cap.reserve(1.0, "flux-dev"), -5.0)
    try:
        cap.reserve(1.0, "flux-dev")
    except SpendCapError:
        pass
    else:
        raise AssertionError("a second job passed --max-credits 1")


def test_a_charge_above_the_estimate_counts_in_full() -> None:
    cap = SpendCap(10.0)
    cap.settle(cap.reserve(1.0, "flux-dev"), 4.0)
    assert cap.spent == 4.0


def test_the_server_ends_at_once_and_quietly_when_its_client_goes_away_during_a_retry_after(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=3600)
    emulator.add_fault(
        "status", method="GET", path=r"/jobs/", status=429, retry_after="100", count=-1
    )
    client = RawClient(emulator, tmp_path / "out")
    job_id = client.job_without_waiting()
    client.call(3, "wait_for_job", {"job_id": job_id})
    soon(lambda: gets(emulator) >= 1)
    time.sleep(0.5)  # now paused on the Retry-After
    assert client.close(20) == 0  # not 100 s later
    time.sleep(0.2)
    log = "".join(client.stderr)
    assert "Unexpected error" not in log and "bug" not in log, log


def test_a_cancelled_wait_stops_polling(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=3600)
    client = RawClient(emulator, tmp_path / "out")
    job_id = client.job_without_waiting()
    client.call(3, "wait_for_job", {"job_id": job_id})
    soon(lambda: gets(emulator) >= 1)
    client.send({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 3}})
    time.sleep(1)
    before = gets(emulator)
    time.sleep(6)  # a wait still going polls every 2-4 s here
    assert gets(emulator) == before
    assert client.close(20) == 0


def test_a_prompt_with_a_newline_comes_back_unchanged_and_no_raw_control_reaches_the_client(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    client = RawClient(emulator, tmp_path / "out")
    prompt = "line1\nline2\x1b[31m\u202e"
    client.call(2, "estimate_cost", {"model": "flux-dev", "prompt": prompt})
    result = client.answer(2)["result"]
    body = result["structuredContent"]["body"]
    assert body["prompt"] == "line1\nline2\x1b[31m\\u202e"  # bidi made visible, the rest exact
    assert json.loads(result["content"][0]["text"])["body"] == body
    assert client.close(20) == 0
    for line in client.lines:  # what went down the wire
        assert "\u202e" not in line and not any(ord(c) < 0x20 for c in line.rstrip("\n"))


def test_an_empty_job_id_is_a_usage_error_before_anything_is_asked(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    client = RawClient(emulator, tmp_path / "out")
    for request_id, tool in enumerate(("job_status", "wait_for_job", "download_job"), start=2):
        client.call(request_id, tool, {"job_id": " "})
        result = client.answer(request_id)["result"]
        assert result["isError"] is True
        assert result["structuredContent"]["error"]["code"] == "usage_error", tool
        assert "jobs wait" not in result["content"][0]["text"]
    assert gets(emulator) == 0
    assert client.close(20) == 0
