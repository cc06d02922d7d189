"""A crash between write and rename never leaves a partial file under a final name.

Outputs stream into a hidden `.part` file that is renamed into place once
complete; sidecars (and every other JSON file) go through `write_json_atomic`,
the config file through `save_config`. Each test breaks one write at one step
(the write itself, as a disk that fills up; the fsync; the rename), or kills
the writing process with SIGKILL in the middle of a write, then looks in the
folder: the final name is absent or holds its previous complete content, and
nothing else is there but hidden `.part` files that are removed at once, or
once stale by `remove_stale_parts`.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from test_downloads import completed_job

from pixeldojo_cli.api.results import parse_job
from pixeldojo_cli.core.errors import PixelDojoError, WriteError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.downloads import download_outputs
from pixeldojo_cli.store.files import (
    STALE_PART_SECONDS,
    output_path,
    remove_stale_parts,
    write_json_atomic,
    write_metadata,
)
from pixeldojo_cli.store.settings import save_config

from conftest import TEST_KEY

API = "https://api.example/api/v1"
STEPS = ("write", "fsync", "rename")
# The disk fills up after this many bytes (or characters) of a file.
ROOM = 1000


class DiskFillsUp:
    """A file handle on a disk that fills up after `ROOM` bytes: the write that
    crosses it writes what fits, then fails with ENOSPC, as `write(2)` would."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.room = ROOM

    def write(self, data: Any) -> int:
        if len(data) > self.room:
            self.handle.write(data[: self.room])
            self.handle.flush()
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return int(self.handle.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)

    def __enter__(self) -> DiskFillsUp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()


def break_step(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    """From now on, every file written fails at `step`."""

    def fail(code: int) -> Callable[..., None]:
        def raise_it(*args: Any) -> None:
            raise OSError(code, os.strerror(code))

        return raise_it

    if step == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(
            os, "fdopen", lambda fd, *args, **kw: DiskFillsUp(real_fdopen(fd, *args, **kw))
        )
    elif step == "fsync":
        monkeypatch.setattr(os, "fsync", fail(errno.ENOSPC))
    else:
        monkeypatch.setattr(os, "replace", fail(errno.EACCES))


def leftovers(folder: Path, *final: str) -> list[str]:
    """What is in `folder` besides the final names."""
    return sorted(name for name in os.listdir(folder) if name not in final)


def made_stale(folder: Path, names: list[str]) -> None:
    """Age temporary files as if their writer had died more than an hour ago."""
    long_ago = time.time() - STALE_PART_SECONDS - 60
    for name in names:
        os.utime(folder / name, (long_ago, long_ago))


# --- JSON sidecars, other JSON files, the config file -------------------------------

A_JOB = {"jobId": "job_a", "status": "completed"}


def write_sidecar(folder: Path, version: str) -> None:
    job = parse_job(A_JOB)
    write_metadata(folder, job, "flux-dev", {"prompt": version * 500}, [], base_url=API)


def write_json(folder: Path, version: str) -> None:
    write_json_atomic(folder / "state.json", {"version": version * 500})


def write_config(folder: Path, version: str) -> None:
    save_config({"defaults": {"output_dir": version * 500}}, folder / "config.toml")


WRITERS = {
    "sidecar": ("job_a.json", write_sidecar),
    "json": ("state.json", write_json),
    "config": ("config.toml", write_config),
}


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("had_one", [False, True], ids=["new", "replacing"])
def test_a_json_or_config_write_broken_at_any_step_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, writer: str, had_one: bool
) -> None:
    name, write = WRITERS[writer]
    folder = tmp_path / "out"
    folder.mkdir()
    if had_one:
        write(folder, "old ")
    before = (folder / name).read_bytes() if had_one else None
    break_step(monkeypatch, step)
    with pytest.raises(PixelDojoError, match=r"No space left|Permission denied"):
        write(folder, "new ")
    monkeypatch.undo()
    if before is None:
        assert not (folder / name).exists()
    else:
        assert (folder / name).read_bytes() == before
    assert leftovers(folder, name) == []  # the temporary file went with the failure


SIDECAR_WRITER = """
import sys, time
from pathlib import Path
from pixeldojo_cli.api.results import parse_job
from pixeldojo_cli.store.files import write_metadata

class Slow:
    def __str__(self) -> str:  # json.dump's default=str: the write is half done
        print("writing", flush=True)
        time.sleep(120)
        return "never"

job = parse_job({"jobId": "job_a", "status": "completed"})
inputs = {"prompt": "new " * 50_000, "seed": Slow()}
write_metadata(Path(sys.argv[1]), job, "flux-dev", inputs, [], base_url=sys.argv[2])
"""


def test_a_sidecar_writer_killed_mid_write_leaves_the_old_sidecar_whole(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    write_sidecar(folder, "old ")
    before = (folder / "job_a.json").read_bytes()
    with writer_process([sys.executable, "-c", SIDECAR_WRITER, str(folder), API]) as child:
        wait_until(child, says_it_is_writing(child))
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert (folder / "job_a.json").read_bytes() == before
    [temporary] = leftovers(folder, "job_a.json")
    assert temporary.startswith(".job_a.json.") and temporary.endswith(".part")
    assert (folder / temporary).stat().st_size > 100_000  # killed half way, bytes on disk
    made_stale(folder, [temporary])
    remove_stale_parts(folder)
    assert leftovers(folder, "job_a.json") == []


# --- outputs ------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("had_one", [False, True], ids=["new", "replacing"])
def test_an_output_write_broken_at_any_step_leaves_the_old_file_whole(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, had_one: bool
) -> None:
    client, job = completed_job(emulator)
    folder = tmp_path / "out"
    folder.mkdir()
    final = output_path(folder, job.id, 1, "png")
    if had_one:
        final.write_bytes(b"an earlier complete output")
    break_step(monkeypatch, step)
    with pytest.raises(WriteError, match=r"No space left|Permission denied"):
        download_outputs(client.transport, job, folder)
    monkeypatch.undo()
    if had_one:
        assert final.read_bytes() == b"an earlier complete output"
        assert leftovers(folder, final.name) == []
    else:
        assert os.listdir(folder) == []


OUTPUT_WRITER = """
import sys
from pathlib import Path
from pixeldojo_cli.api.client import Client
from pixeldojo_cli.store.downloads import download_file

base_url, url, folder, job_id, key = sys.argv[1:]
client = Client(api_key=key, base_url=base_url)
download_file(client.transport, url, Path(folder), job_id, 1, max_attempts=1)
"""


def test_a_download_killed_mid_body_leaves_the_old_file_whole(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(image_size=1024)  # about 20 kB: more than a write buffer
    client, job = completed_job(emulator)
    size = len(emulator.output_file(job.id, 1))
    emulator.add_fault("stall", target="files", after_bytes=size - 100, delay=120)
    folder = tmp_path / "out"
    folder.mkdir()
    final = output_path(folder, job.id, 1, "png")
    final.write_bytes(b"an earlier complete output")
    argv = [sys.executable, "-c", OUTPUT_WRITER, emulator.base_url, job.output_urls[0]]
    with writer_process([*argv, str(folder), job.id, TEST_KEY]) as child:

        def half_written() -> bool:  # whatever the name it writes to
            return any(entry.stat().st_size >= size // 4 for entry in folder.iterdir())

        wait_until(child, half_written)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    assert final.read_bytes() == b"an earlier complete output"
    [temporary] = leftovers(folder, final.name)
    assert temporary.startswith(f".{job.id}-1.") and temporary.endswith(".part")
    made_stale(folder, [temporary])
    [saved] = download_outputs(client.transport, job, folder)  # the next run clears it
    assert saved.path == final and final.read_bytes() == emulator.output_file(job.id, 1)
    assert leftovers(folder, final.name) == []


# --- the writer processes -----------------------------------------------------------


@contextmanager
def writer_process(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """A child process that writes a file; killed, if still running, on the way out."""
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)


def wait_until(child: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    """Wait (at most 60 s) until `ready()` says the child is in the middle of its
    write; fail with its error output if it ends first."""
    deadline = time.monotonic() + 60
    while not ready():
        if child.poll() is not None:
            _, err = child.communicate()
            pytest.fail(f"the writer ended ({child.returncode}) before it was killed:\n{err}")
        if time.monotonic() > deadline:
            pytest.fail("the writer never got to the middle of its write")
        time.sleep(0.01)


def says_it_is_writing(child: subprocess.Popen[str]) -> Callable[[], bool]:
    """Ready once the child has printed its line (it then sleeps mid-write)."""
    assert child.stdout is not None
    stdout = child.stdout
    return lambda: bool(select.select([stdout], [], [], 0)[0]) and child.poll() is None
