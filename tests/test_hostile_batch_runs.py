"""A batch run against a hostile world (issue 24, class 3, second round): the
file edited while its jobs run, standard input that never ends or never ends a
line, a batch of many lines run without scanning them all for each one, and
the limits of a line and of a file, counted as `wc -l` counts them."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine.batch_file import MAX_BATCH_LINES, MAX_LINE_BYTES, BatchFile
from pixeldojo_cli.engine.batch_lines import Line

from conftest import PYTHON, Invoke, run_subprocess_env

POLL = ("--poll-interval", "0.1", "--max-poll-interval", "0.3")


def posts(emulator: Emulator) -> int:
    return len(emulator.requests_to("POST", r"/run$"))


def start_batch(
    emulator: Emulator, path: Path, *args: str, **popen: object
) -> subprocess.Popen[str]:
    """`pixeldojo run flux-dev --batch PATH ARGS...` as a separate process."""
    command = [PYTHON, "-m", "pixeldojo_cli", "run", "flux-dev", "--batch", str(path), *args]
    return subprocess.Popen(
        command,
        env=run_subprocess_env(emulator),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,  # type: ignore[call-overload]
    )


def wait_for_posts(emulator: Emulator, count: int, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while posts(emulator) < count:
        assert time.monotonic() < deadline, f"{posts(emulator)} POSTs, waited for {count}"
        time.sleep(0.02)


def json_lines(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines()]  # each line JSON, or it fails


# --- the file edited while its batch runs -------------------------------------------------------


def test_a_file_edited_after_its_lines_were_paid_for_ends_every_paid_job_well(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=2.0)
    path = tmp_path / "b.txt"
    path.write_text("a red fox\na blue fox\n")
    proc = start_batch(emulator, path, "--json", "-o", str(tmp_path / "out"), *POLL)
    wait_for_posts(emulator, 2)
    path.write_text("edited for the next batch while this one ran\n")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    documents = json_lines(out)
    assert sorted((d["line"], d["outcome"]) for d in documents) == [(1, "saved"), (2, "saved")]
    sidecars = sorted((tmp_path / "out").glob("*.json"))
    prompts = sorted(json.loads(p.read_text())["inputs"]["prompt"] for p in sidecars)
    assert prompts == ["a blue fox", "a red fox"]  # what was asked, not what the file says now
    assert posts(emulator) == 2


def test_a_line_changed_before_it_is_submitted_is_refused_alone_and_the_batch_goes_on(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=1.5)
    path = tmp_path / "b.txt"
    path.write_bytes(b"line one\nline two\nline three\n")
    args = ("--json", "--concurrency", "1", "-o", str(tmp_path / "out"), *POLL)
    proc = start_batch(emulator, path, *args)
    wait_for_posts(emulator, 1)
    with path.open("r+b") as file:  # in place, the same size: only line 2 differs
        file.write(b"line one\nLINE TWO\nline three\n")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, err
    documents = json_lines(out)
    assert [(d["line"], d["outcome"]) for d in documents] == [
        (1, "saved"),
        (2, "error"),
        (3, "saved"),
    ]
    assert "changed after it was checked: line 2" in json.dumps(documents[1]["error"])
    assert posts(emulator) == 2
    assert "Batch of 3 lines" in err and "Traceback" not in err


# --- standard input and FIFOs -------------------------------------------------------------------


def test_standard_input_that_never_ends_is_refused_at_the_line_limit(
    emulator: Emulator, tmp_path: Path
) -> None:
    temp = tmp_path / "temp"
    temp.mkdir()
    yes = subprocess.Popen(["yes", "a cat"], stdout=subprocess.PIPE)
    assert yes.stdout is not None
    try:
        env = run_subprocess_env(emulator, TMPDIR=str(temp))
        done = subprocess.run(
            [PYTHON, "-m", "pixeldojo_cli", "run", "flux-dev", "--batch", "-", "--dry-run"],
            stdin=yes.stdout,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,  # was for ever, 5 GB of temporary file in 18 s
        )
    finally:
        yes.kill()
        yes.wait()
    assert done.returncode == 2, done.stderr
    assert f"more than {MAX_BATCH_LINES:,} lines" in done.stderr
    assert done.stdout == "" and posts(emulator) == 0
    assert list(temp.iterdir()) == []


def test_a_line_that_never_ends_fails_at_the_line_limit_from_stdin_and_from_a_fifo(
    emulator: Emulator, tmp_path: Path
) -> None:
    env = run_subprocess_env(emulator)
    command = [PYTHON, "-m", "pixeldojo_cli", "run", "flux-dev", "--dry-run", "--batch"]
    with open("/dev/zero", "rb") as zeros:
        done = subprocess.run(
            [*command, "-"], stdin=zeros, capture_output=True, text=True, env=env, timeout=120
        )
    assert done.returncode == 2, done.stderr
    assert "line 1 is longer than 16 MiB" in done.stderr
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=_write_zeros_until_closed, args=(fifo,), daemon=True)
    writer.start()
    done = subprocess.run(
        [*command, str(fifo)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "line 1 is longer than 16 MiB" in done.stderr and "Traceback" not in done.stderr
    writer.join(timeout=30)
    assert posts(emulator) == 0


def _write_zeros_until_closed(fifo: Path) -> None:
    try:
        with fifo.open("wb") as out:
            while True:
                out.write(bytes(1 << 20))
    except OSError:  # the reader closed it (EPIPE)
        pass


def test_the_copy_of_standard_input_has_no_name_and_only_its_owner_can_read_it(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=1.5)
    temp = tmp_path / "temp"
    temp.mkdir()
    command = [PYTHON, "-m", "pixeldojo_cli", "run", "flux-dev", "--batch", "-", "--no-download"]
    proc = subprocess.Popen(
        [*command, *POLL],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run_subprocess_env(emulator, TMPDIR=str(temp)),
    )
    assert proc.stdin is not None
    proc.stdin.write("a cat\nan owl\n")
    proc.stdin.close()
    wait_for_posts(emulator, 2)
    copies = [
        fd for fd in Path(f"/proc/{proc.pid}/fd").iterdir() if os.readlink(fd).startswith(str(temp))
    ]
    assert list(temp.iterdir()) == []  # no name: nothing to leave behind, even after SIGKILL
    assert copies and all(stat.S_IMODE(os.stat(fd).st_mode) == 0o600 for fd in copies)
    proc.kill()
    proc.wait()
    proc.stdout.close()  # type: ignore[union-attr]
    proc.stderr.close()  # type: ignore[union-attr]
    assert list(temp.iterdir()) == []


# --- limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize("end", [b"\n", b"\r\n", b""], ids=["lf", "crlf", "none"])
@pytest.mark.parametrize("copy", [False, True], ids=["file", "stdin"])
def test_a_line_of_exactly_16_MiB_is_read_and_one_byte_more_is_refused(
    end: bytes, copy: bool
) -> None:
    longest = b"x" * MAX_LINE_BYTES
    rest = b"two\n" if end else b""  # (without a line end, the longest line is the last)
    entries = list(BatchFile(io.BytesIO(longest + end + rest), "f", copy=copy).entries())
    lengths = [(number, len(entry)) for number, _, entry in entries]
    assert lengths == [(1, MAX_LINE_BYTES), (2, 3)][: 2 if end else 1]
    with pytest.raises(UsageError, match="line 1 is longer than 16 MiB"):
        list(BatchFile(io.BytesIO(longest + b"x" + end), "f", copy=copy).entries())


def test_a_small_file_edited_in_place_is_seen_changed(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.engine.batch_lines import plan_batch

    from conftest import TEST_KEY

    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        model, schema = client.model_with_schema("flux-dev")
    path = tmp_path / "b.txt"
    path.write_bytes(b"one\ntwo\nthree\n")  # far less than a read buffer
    with path.open("rb") as stream:
        lines = plan_batch(model, schema, BatchFile(stream, "b.txt"), {}).lines()
        assert lines[1].inputs["prompt"] == "two"
        with path.open("r+b") as file:
            file.write(b"one\nTWO\nthree\n")
        with pytest.raises(UsageError, match="changed after it was checked: line 2"):
            lines[1].submission(model.id, tmp_path, None)


def test_messages_about_a_line_name_the_file_and_read_well(cli: Invoke, emulator: Emulator) -> None:
    Path("b.txt").write_text('one\n{"prompt": "x\n')
    result = cli("run", "flux-dev", "--batch", "b.txt", "--dry-run")
    assert result.exit_code == 2
    assert (
        "--batch 'b.txt' line 2 is not valid JSON: Unterminated string starting at column 12."
        in (result.stderr)
    )
    Path("c.txt").write_text('one\n{"prompt": "x", "num_outputs": 99}\n')
    result = cli("run", "flux-dev", "--batch", "c.txt", "--dry-run")
    assert result.exit_code == 2 and "line 2: " in result.stderr
    assert ".." not in result.stderr and " at at " not in result.stderr


# --- a batch of many lines ----------------------------------------------------------------------


def test_running_a_batch_looks_at_each_line_a_few_times_not_once_per_line(
    cli: Invoke, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = 3000
    Path("b.txt").write_text("".join(f"a fox {n}\n" for n in range(lines)))
    looks = 0
    done = Line.done

    def counted(line: Line) -> bool:
        nonlocal looks
        looks += 1
        return bool(done.fget(line))  # type: ignore[attr-defined]

    monkeypatch.setattr(Line, "done", property(counted))
    result = cli("run", "flux-dev", "--batch", "b.txt", "--max-credits", "0", "--progress", "none")
    assert result.exit_code == 4, result.output  # every line over the cap: nothing spent
    assert posts(emulator) == 0
    assert looks < 20 * lines  # was about lines * lines / 2: 4.5 million
