"""Downloads: atomic, resumed with Range after a cut, names that never escape the folder."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixeldojo_cli import downloads
from pixeldojo_cli.client import Client
from pixeldojo_cli.downloads import (
    download_outputs,
    extension_for,
    output_path,
    recorded_files,
    sanitize_component,
)
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.errors import DownloadError, ExpiredError
from pixeldojo_cli.results import Job

from conftest import TEST_KEY


def completed_job(emulator: Emulator, **inputs: object) -> tuple[Client, Job]:
    client = Client(api_key=TEST_KEY, base_url=emulator.base_url)
    job = client.run("flux-dev", {"prompt": "p", **inputs})
    final = list(client.wait(job.id, poll_interval=0.05, max_poll_interval=0.1))[-1]
    return client, final


@pytest.mark.parametrize("after_bytes", [0, 1, 100, 1000])
def test_a_download_cut_mid_body_resumes_with_identical_bytes(
    make_emulator: Callable[..., Emulator], tmp_path: Path, after_bytes: int
) -> None:
    emulator = make_emulator()
    emulator.add_fault("truncate", target="files", after_bytes=after_bytes, count=2)
    client, job = completed_job(emulator)
    out = tmp_path / "out"
    [saved] = download_outputs(client.transport, job, out)
    assert saved.path.read_bytes() == emulator.output_file(job.id, 1)
    ranges = [r.headers.get("range") for r in emulator.requests_to(target="files")]
    if after_bytes:  # each cut resumes where the last one stopped
        assert ranges == [None, f"bytes={after_bytes}-", f"bytes={2 * after_bytes}-"]
    else:  # nothing received: start again
        assert ranges == [None, None, None]
    assert [p.name for p in out.iterdir()] == [saved.path.name]


def test_a_download_that_keeps_failing_leaves_no_file_under_a_final_name(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    emulator.add_fault("truncate", target="files", after_bytes=50, count=-1)
    client, job = completed_job(emulator)
    from pixeldojo_cli import downloads

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DownloadError):
        downloads.download_file(
            client.transport,
            job.output_urls[0],
            out,
            job.id,
            1,
            max_attempts=3,
            sleep=lambda s: None,
        )
    assert list(out.iterdir()) == []


def test_an_expired_output_is_exit_7(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    emulator.add_fault("status", target="files", status=410, count=1)
    client, job = completed_job(emulator)
    out = tmp_path / "out"
    with pytest.raises(ExpiredError) as info:
        download_outputs(client.transport, job, out)
    assert info.value.exit_code == 7
    assert list(out.iterdir()) == []


def test_several_outputs_are_downloaded_in_order(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    client, job = completed_job(emulator, num_outputs=4)
    files = download_outputs(client.transport, job, tmp_path)
    assert [f.path.name for f in files] == [f"{job.id}-{n}.png" for n in range(1, 5)]
    assert [f.path.read_bytes() for f in files] == [
        emulator.output_file(job.id, n) for n in range(1, 5)
    ]


@pytest.mark.parametrize(
    "url, content_type, ext",
    [
        ("https://x/a/b.PNG", None, "png"),
        ("https://x/a/b.jpeg?sig=1", None, "jpg"),
        ("https://x/a/b", "video/mp4", "mp4"),
        ("https://x/a/b", "image/webp; charset=binary", "webp"),
        ("https://x/a/b", None, "bin"),
        ("https://x/a/b.tar%2F..%2Fx", None, "bin"),
    ],
)
def test_extension_from_url_path_or_content_type(
    url: str, content_type: str | None, ext: str
) -> None:
    assert extension_for(url, content_type) == ext


@pytest.mark.parametrize(
    "hostile", ["..%2F..%2Fx.png", "/etc/passwd", "a\x00b", "..", "../../x", "C:\\x", ""]
)
def test_hostile_names_stay_inside_the_folder(tmp_path: Path, hostile: str) -> None:
    path = output_path(tmp_path, hostile, 1, hostile)
    assert path.parent == tmp_path
    assert "/" not in path.name and "\x00" not in path.name and not path.name.startswith(".")


@given(st.text(), st.text(max_size=20))
def test_no_job_id_or_extension_escapes_the_folder(job_id: str, ext: str) -> None:
    folder = Path("/tmp/pixeldojo-out")
    path = output_path(folder, job_id, 1, ext)
    assert path.parent == folder
    assert sanitize_component(job_id) not in ("", ".", "..")


def test_a_temporary_file_left_by_a_killed_download_is_cleared_later(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    import os
    import time

    emulator = make_emulator()
    client, job = completed_job(emulator)
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".{job.id}-1.abc123.part"
    fresh = out / f".{job.id}-1.def456.part"  # another process, still writing
    for leftover in (stale, fresh):
        leftover.write_bytes(b"partial")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    [saved] = download_outputs(client.transport, job, out)
    assert not stale.exists() and fresh.exists()
    assert saved.path.read_bytes() == emulator.output_file(job.id, 1)


def _files_fetched(emulator: Emulator) -> int:
    return len(emulator.requests_to("GET", target="files"))


def _same_size_edit(path: Path) -> None:
    """Change the content, keep the size and put the old modification time back."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_by_default_an_unchanged_file_is_kept_by_size_and_time_without_hashing(
    make_emulator: Callable[..., Emulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, job = completed_job(make_emulator())
    [saved] = download_outputs(client.transport, job, tmp_path)
    assert saved.sha256 is None and saved.mtime_ns == saved.path.stat().st_mtime_ns
    monkeypatch.setattr(downloads, "file_sha256", None)  # a call would fail the test
    [kept] = download_outputs(client.transport, job, tmp_path, existing={1: saved})
    assert kept.skipped


def test_by_default_a_file_written_since_is_downloaded_again(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    client, job = completed_job(emulator)
    [saved] = download_outputs(client.transport, job, tmp_path)
    os.utime(saved.path, ns=(0, saved.path.stat().st_mtime_ns - 10**9))  # e.g. an editor's save
    [again] = download_outputs(client.transport, job, tmp_path, existing={1: saved})
    assert not again.skipped and _files_fetched(emulator) == 2


def test_with_checksum_an_edit_that_keeps_size_and_time_is_caught(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    client, job = completed_job(emulator)
    [saved] = download_outputs(client.transport, job, tmp_path, checksum=True)
    assert saved.sha256 == hashlib.sha256(saved.path.read_bytes()).hexdigest()
    _same_size_edit(saved.path)
    [fooled] = download_outputs(client.transport, job, tmp_path, existing={1: saved})
    assert fooled.skipped  # what the quick check cannot see, as with rsync
    [repaired] = download_outputs(
        client.transport, job, tmp_path, existing={1: saved}, checksum=True
    )
    assert not repaired.skipped
    assert repaired.path.read_bytes() == emulator.output_file(job.id, 1)


def test_with_checksum_a_file_saved_without_a_hash_is_downloaded_again(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    client, job = completed_job(emulator)
    [saved] = download_outputs(client.transport, job, tmp_path)
    [again] = download_outputs(client.transport, job, tmp_path, existing={1: saved}, checksum=True)
    assert not again.skipped and again.sha256 is not None and _files_fetched(emulator) == 2


def test_a_record_with_a_hash_and_no_time_is_checked_by_its_hash(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    client, job = completed_job(emulator)
    [saved] = download_outputs(client.transport, job, tmp_path, checksum=True)
    older = replace(saved, mtime_ns=None)  # as recorded before times were kept
    [kept] = download_outputs(client.transport, job, tmp_path, existing={1: older})
    assert kept.skipped and kept.mtime_ns == saved.path.stat().st_mtime_ns
    _same_size_edit(saved.path)
    [again] = download_outputs(client.transport, job, tmp_path, existing={1: older})
    assert not again.skipped and _files_fetched(emulator) == 2


def test_metadata_from_before_times_were_kept_is_still_read(tmp_path: Path) -> None:
    (tmp_path / "job_1.json").write_text(
        json.dumps({"files": [{"path": "job_1-1.png", "size": 3, "sha256": "abc", "url": "u"}]})
    )
    [(n, record)] = recorded_files(tmp_path, "job_1").items()
    assert (n, record.sha256, record.mtime_ns, record.size) == (1, "abc", None, 3)
