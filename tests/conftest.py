"""Shared fixtures: every test gets private config/data/cache folders, a fresh
emulator on loopback, and a `cli` helper that runs the real CLI against it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from typer.testing import CliRunner, Result

from pixeldojo_cli.cli.app import app
from pixeldojo_cli.emulator import Emulator

# Timed numbers never go in assertions: a property test is about its property,
# not about how fast a loaded CI machine draws examples (no deadline, no "too slow").
hypothesis_settings.register_profile(
    "pixeldojo", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("pixeldojo")

TEST_KEY = "test-key-0123456789abcdef"  # made up: never a real key

Invoke = Callable[..., Result]


# What the terminal, the shell session or the machine running the suite would
# otherwise lend every test: colour and width choices, the terminal and
# multiplexer in use, a display to open files on, proxies for the loopback API,
# and the shell-completion protocol's variables.
LEAKY_VARIABLES = frozenset(
    {
        *("NO_COLOR", "FORCE_COLOR", "CI", "COLUMNS", "LINES", "COLORTERM"),
        *("TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES"),
        *("TMUX", "TMUX_PANE", "STY", "TERM_PROGRAM", "TERM_PROGRAM_VERSION", "KITTY_WINDOW_ID"),
        *("DISPLAY", "WAYLAND_DISPLAY"),
        *("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"),
        *("http_proxy", "https_proxy", "all_proxy", "no_proxy"),
        *("COMP_WORDS", "COMP_CWORD", "_TYPER_COMPLETE_ARGS", "_TYPER_COMPLETE_FISH_ACTION"),
    }
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private config, data and cache folders (and home) in the test's own tmp_path,
    the test's folder as cwd, and none of the caller's PIXELDOJO_* or terminal
    variables: every test sees the same machine, alone or beside others."""
    home = tmp_path / "home"
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        folder = home / name.lower()
        folder.mkdir(parents=True)
        monkeypatch.setenv(name, str(folder))
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith(("PIXELDOJO_", "_PIXELDOJO_")) or name in LEAKY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")  # not the caller's: `dumb` changes output
    monkeypatch.chdir(tmp_path)
    return home


@pytest.fixture(scope="session", autouse=True)
def app_built_once() -> Iterator[None]:
    """Typer turns the app's signatures into click commands on every `invoke`: a
    tenth of a second of CPU, a few minutes over the suite. A CLI process builds
    them once; so does each test process (nothing in them changes per call)."""
    import functools

    import typer.testing

    build = getattr(typer.testing, "_get_command", None)  # Typer's own name for it
    with pytest.MonkeyPatch.context() as patch:
        if build is not None:  # (another Typer: each invoke builds them, only slower)
            patch.setattr(typer.testing, "_get_command", functools.cache(build))
        yield


@pytest.fixture
def make_emulator() -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def make(**knobs: Any) -> Emulator:
        knobs.setdefault("latency", 0.2)
        emulator = Emulator(**knobs).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(make_emulator: Callable[..., Emulator]) -> Emulator:
    return make_emulator()


@pytest.fixture
def cli(emulator: Emulator) -> Invoke:
    """Run `pixeldojo ARGS...` in-process against the emulator, key from the environment."""
    return make_invoker(emulator)


def make_invoker(emulator: Emulator | None, key: str | None = TEST_KEY) -> Invoke:
    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        full_env: dict[str, str] = {}
        if emulator is not None:
            full_env["PIXELDOJO_BASE_URL"] = emulator.base_url
        if key is not None:
            full_env["PIXELDOJO_API_KEY"] = key
        full_env.update(env or {})
        return CliRunner().invoke(app, list(args), input=input, env=full_env, prog_name="pixeldojo")

    return invoke


FAST = ("--poll-interval", "0.05", "--max-poll-interval", "0.2")


def run_subprocess_env(emulator: Emulator | None = None, **extra: str) -> dict[str, str]:
    """An environment for running `python -m pixeldojo_cli` as a user's script would."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELDOJO_")}
    if emulator is not None:
        env["PIXELDOJO_BASE_URL"] = emulator.base_url
        env["PIXELDOJO_API_KEY"] = TEST_KEY
    env.update(extra)
    return env


PYTHON = sys.executable


def pixeldojo(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`python -m pixeldojo_cli ARGS...` as a separate process, as a user's script runs it."""
    return subprocess.run(
        [PYTHON, "-m", "pixeldojo_cli", *args],
        capture_output=True,
        text=True,
        env=env or run_subprocess_env(),
        cwd=cwd,
        timeout=timeout,
    )


def exit_code_within(proc: subprocess.Popen[str], seconds: float) -> int:
    """`proc`'s exit code once it ends; one that does not end in time is killed (a
    failing test leaves no server behind) and the test fails with TimeoutExpired."""
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same number of attempts, without the seconds of backoff between them."""
    from pixeldojo_cli.api import transport

    monkeypatch.setattr(
        transport, "DEFAULT_RETRY", transport.RetryPolicy(base_delay=0.01, max_delay=0.02)
    )


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A webhook receiver on loopback: its URL, and the JSON bodies it was sent."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def run_in_pty(
    args: list[str],
    env: dict[str, str],
    cwd: Path,
    *,
    stdout_too: bool = False,
    columns: int | None = None,
) -> tuple[int, str]:
    """Run `pixeldojo ARGS` with stderr (and with `stdout_too`, stdout) on a
    pseudo-terminal, optionally `columns` wide; returns (exit code, what the
    terminal received). Other streams stay pipes; stdin is empty."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    if columns is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(
        [PYTHON, "-m", "pixeldojo_cli", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_too else subprocess.PIPE,
        stderr=slave,
        env=env,
        cwd=cwd,
    )
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace")


def max_in_any_window(times: list[float], window: float) -> int:
    """The most of `times` that fall within any `window` seconds (a rate limit's view)."""
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The soak test first, then those marked slow, then the rest in their own order:
    with parallel workers, a long test started last would run on alone at the end."""

    def rank(item: pytest.Item) -> int:
        return next(
            (n for n, mark in enumerate(("soak", "slow")) if any(item.iter_markers(mark))), 2
        )

    items.sort(key=rank)


def as_served(data: bytes) -> bytes:
    """A saved output without the metadata this client writes into pictures (a
    PNG's `pixeldojo` and `parameters` iTXt chunks, a JPEG's XMP segment): the
    bytes as the server sent them, for tests that compare them exactly.
    Written apart from the code under test, so that it checks it."""
    import struct

    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        kept, at = [data[:8]], 8
        while at < len(data):
            (length,) = struct.unpack(">I", data[at : at + 4])
            piece = data[at : at + 12 + length]
            ours = piece[4:8] == b"iTXt" and piece[8:].startswith((b"pixeldojo\0", b"parameters\0"))
            kept += [] if ours else [piece]
            at += 12 + length
        return b"".join(kept)
    if data.startswith(b"\xff\xd8"):
        xmp = data.find(b"\xff\xe1", 2)
        if xmp != -1 and data[xmp + 4 :].startswith(b"http://ns.adobe.com/xap/1.0/\0"):
            (length,) = struct.unpack(">H", data[xmp + 2 : xmp + 4])
            return data[:xmp] + data[xmp + 2 + length :]
    return data
