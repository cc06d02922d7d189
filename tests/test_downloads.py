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

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.api.results import Job
from pixeldojo_cli.core.errors import DownloadError, ExpiredError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine import wait
from pixeldojo_cli.store import downloads, files
from pixeldojo_cli.store.downloads import download_outputs
from pixeldojo_cli.store.files import (
    extension_for,
    output_path,
    recorded_files,
    sanitize_component,
)

from conftest import TEST_KEY, as_served


def completed_job(emulator: Emulator, **inputs: object) -> tuple[Client, Job]:
    client = Client(api_key=TEST_KEY, base_url=emulator.base_url)
    job = client.run("flux-dev", {"prompt": "p", **inputs})
    final = list(wait(client, job.id, poll_interval=0.05, max_poll_interval=0.1))[-1]
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
    from pixeldojo_cli.store import downloads

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
    monkeypatch.setattr(files, "file_sha256", None)  # a call would fail the test
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
    api = "https://pixeldojo.ai/api/v1"
    (tmp_path / "job_1.json").write_text(
        json.dumps(
            {
                "jobId": "job_1",
                "baseUrl": api,
                "files": [{"path": "job_1-1.png", "size": 3, "sha256": "abc", "url": "u"}],
            }
        )
    )
    [(n, record)] = recorded_files(tmp_path, "job_1", api).items()
    assert (n, record.sha256, record.mtime_ns, record.size) == (1, "abc", None, 3)


# --- two jobs, one name --------------------------------------------------------------


def as_job(job_id: str, source: Job) -> Job:
    """A completed job named `job_id` whose outputs are `source`'s (ids the
    emulator would never make: non-ASCII, or another API's)."""
    from pixeldojo_cli.api.results import parse_job

    return parse_job({**source.raw, "jobId": job_id})


def save_job(client: Client, job: Job, folder: Path) -> list[files.DownloadedFile]:
    """The engine's save: sidecar and ledger say what is already there."""
    from pixeldojo_cli.engine import SaveOptions, save

    return save(client, job, SaveOptions(folder=folder))


@pytest.mark.parametrize(
    "first, second",
    [("job_é", "job_e"), ("job_e", "job_é"), ("job/1", "job_1"), ("job 1", "job/1")],
)
def test_two_job_ids_that_sanitise_alike_never_share_a_file(
    make_emulator: Callable[..., Emulator], tmp_path: Path, first: str, second: str
) -> None:
    emulator = make_emulator()
    client, one = completed_job(emulator, seed=1)
    _, two = completed_job(emulator, seed=2)
    [a] = save_job(client, as_job(first, one), tmp_path)
    [b] = save_job(client, as_job(second, two), tmp_path)  # not "already saved and intact"
    assert not b.skipped and a.path != b.path
    assert as_served(a.path.read_bytes()) == emulator.output_file(one.id, 1)
    assert as_served(b.path.read_bytes()) == emulator.output_file(two.id, 1)
    sidecars = {json.loads(p.read_text())["jobId"] for p in tmp_path.glob("*.json")}
    assert sidecars == {first, second}
    [again] = save_job(client, as_job(second, two), tmp_path)  # its own files are kept
    assert again.skipped and again.path == b.path


def test_an_id_that_needs_no_sanitising_keeps_the_readme_name(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    client, job = completed_job(emulator)
    [saved] = save_job(client, job, tmp_path)
    assert saved.path.name == f"{job.id}-1.png"
    meta = json.loads((tmp_path / f"{job.id}.json").read_text())
    assert (meta["jobId"], meta["baseUrl"]) == (job.id, emulator.base_url)


def test_the_same_job_id_from_two_apis_into_one_folder_is_two_jobs(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    first_api, second_api = make_emulator(), make_emulator()
    first_client, first = completed_job(first_api, seed=1)
    second_client, second = completed_job(second_api, seed=2)
    job_id = "job_same"
    [a] = save_job(first_client, as_job(job_id, first), tmp_path)
    [b] = save_job(second_client, as_job(job_id, second), tmp_path)
    assert a.path.name == f"{job_id}-1.png"  # the first keeps the usual name
    assert not b.skipped and b.path != a.path and b.path.name.startswith(f"{job_id}-")
    assert as_served(a.path.read_bytes()) == first_api.output_file(first.id, 1)
    assert as_served(b.path.read_bytes()) == second_api.output_file(second.id, 1)
    assert {json.loads(p.read_text())["baseUrl"] for p in tmp_path.glob("*.json")} == {
        first_api.base_url,
        second_api.base_url,
    }
    [kept_a] = save_job(first_client, as_job(job_id, first), tmp_path)
    [kept_b] = save_job(second_client, as_job(job_id, second), tmp_path)
    assert kept_a.skipped and kept_b.skipped
    assert len(first_api.requests_to(target="files")) == 1
    assert len(second_api.requests_to(target="files")) == 1


def test_a_sidecar_is_believed_only_for_its_own_job_and_api(tmp_path: Path) -> None:
    api = "https://pixeldojo.ai/api/v1"
    (tmp_path / "job_1-1.png").write_bytes(b"abc")
    entry = {"path": "job_1-1.png", "size": 3, "url": "u"}
    for meta in (
        {"jobId": "job_1", "files": [entry]},  # written before sidecars named their API
        {"jobId": "job_1", "baseUrl": "http://127.0.0.1:9/api/v1", "files": [entry]},
        {"jobId": "job_2", "baseUrl": api, "files": [entry]},
    ):
        (tmp_path / "job_1.json").write_text(json.dumps(meta))
        assert recorded_files(tmp_path, "job_1", api) == {}
    (tmp_path / "job_1.json").write_text(
        json.dumps({"jobId": "job_1", "baseUrl": api, "files": [entry]})
    )
    assert list(recorded_files(tmp_path, "job_1", api)) == [1]


# --- a transient error is not expiry -------------------------------------------------


def test_one_404_on_an_output_before_its_expiry_is_retried(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    emulator.add_fault("status", target="files", status=404, count=1)
    client, job = completed_job(emulator)
    [saved] = download_outputs(client.transport, job, tmp_path)
    assert saved.path.read_bytes() == emulator.output_file(job.id, 1)


@pytest.mark.parametrize(
    "fault",
    [{"kind": "status", "status": 404}, {"kind": "status", "status": 503}, {"kind": "reset"}],
)
def test_a_persistent_error_before_expiry_is_a_retryable_download_error_not_expiry(
    make_emulator: Callable[..., Emulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fault: dict[str, object],
) -> None:
    emulator = make_emulator()
    fault = dict(fault)
    kind = str(fault.pop("kind"))
    emulator.add_fault(kind, target="files", count=-1, **fault)  # type: ignore[arg-type]
    client, job = completed_job(emulator)
    assert job.expires_at is not None  # a day ahead
    monkeypatch.setattr(downloads, "RETRY_BASE_DELAY", 0.001)
    out = tmp_path / "out"
    with pytest.raises(DownloadError) as info:
        download_outputs(client.transport, job, out)
    assert not isinstance(info.value, ExpiredError)
    assert info.value.exit_code == 10
    assert len(emulator.requests_to(target="files")) == 5  # retried, then given up for now
    assert list(out.iterdir()) == []


def test_a_404_after_the_expiry_is_expiry(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    emulator = make_emulator()
    emulator.add_fault("status", target="files", status=404, count=-1)
    client, job = completed_job(emulator)
    past = datetime.now(UTC) - timedelta(minutes=1)
    with pytest.raises(ExpiredError):
        download_outputs(client.transport, job, tmp_path, expires_at=past)
    assert len(emulator.requests_to(target="files")) == 1  # no retries for the gone


# --- Content-Encoding ----------------------------------------------------------------


def test_an_output_served_gzip_encoded_anyway_is_saved_decoded(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    emulator.add_fault("gzip", target="files", count=1)
    client, job = completed_job(emulator)
    [saved] = download_outputs(client.transport, job, tmp_path)
    assert saved.path.read_bytes() == emulator.output_file(job.id, 1)
    assert saved.size == len(emulator.output_file(job.id, 1))
    [request] = emulator.requests_to(target="files")
    assert request.headers["accept-encoding"] == "identity"


def test_an_encoded_download_cut_short_starts_again_instead_of_resuming(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    emulator.add_fault("gzip", target="files", after_bytes=100, count=1)
    emulator.add_fault("gzip", target="files", count=1)
    client, job = completed_job(emulator)
    [saved] = download_outputs(client.transport, job, tmp_path)
    assert saved.path.read_bytes() == emulator.output_file(job.id, 1)
    assert [r.headers.get("range") for r in emulator.requests_to(target="files")] == [None, None]


def test_an_encoded_answer_cut_then_a_plain_one_is_whole(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    emulator.add_fault("gzip", target="files", after_bytes=100, count=1)
    client, job = completed_job(emulator)
    [saved] = download_outputs(client.transport, job, tmp_path)
    assert saved.path.read_bytes() == emulator.output_file(job.id, 1)


def test_a_plain_cut_then_an_encoded_answer_is_whole(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator()
    emulator.add_fault("truncate", target="files", after_bytes=100, count=1)
    emulator.add_fault("gzip", target="files", count=1)
    client, job = completed_job(emulator)
    [saved] = download_outputs(client.transport, job, tmp_path)
    assert saved.path.read_bytes() == emulator.output_file(job.id, 1)


def test_an_encoded_output_that_expands_beyond_reason_is_refused(
    make_emulator: Callable[..., Emulator], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = make_emulator(output_bytes=4 * 2**20)  # mostly zeros: gzip shrinks it ~1000x
    emulator.add_fault("gzip", target="files", count=-1)
    client, job = completed_job(emulator)
    [fine] = download_outputs(client.transport, job, tmp_path / "a")  # under the floor
    assert fine.size == len(emulator.output_body(job.id, 1))
    monkeypatch.setattr(downloads, "DECODE_FLOOR", 2**20)
    with pytest.raises(DownloadError, match="decodes to more than"):
        download_outputs(client.transport, job, tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []


# --- the output folder, before anything is spent ---------------------------------------


def test_an_output_folder_that_is_a_file_is_refused_before_submitting(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(files.WriteError) as info:
        files.ensure_writable_folder(afile)
    assert info.value.exit_code == 2 and "is a file" in info.value.message
    with pytest.raises(files.WriteError):
        files.ensure_writable_folder(afile / "below")


def test_a_writable_output_folder_is_created_and_left_clean(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "deeper"
    files.ensure_writable_folder(folder)
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_a_read_only_output_folder_is_refused(tmp_path: Path) -> None:
    import tempfile

    from test_ledger import as_another_user

    folder = Path(tempfile.mkdtemp(prefix="pixeldojo-ro-"))
    try:
        folder.chmod(0o555)

        def check() -> str:
            try:
                files.ensure_writable_folder(folder)
            except files.WriteError as exc:
                return f"{exc.exit_code}: {exc.message}"
            return "written"

        assert as_another_user(check).startswith("2: Cannot write in the output folder")
    finally:
        folder.chmod(0o755)
        folder.rmdir()


# --- leftovers ----------------------------------------------------------------------


def test_stale_temporary_files_of_any_output_are_cleared_from_the_folder(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    import time

    emulator = make_emulator()
    client, job = completed_job(emulator)
    old = time.time() - 2 * 3600
    stale = [tmp_path / ".job_other-3.k2j4h5g6.part", tmp_path / ".job_other.json.a1b2c3d4.part"]
    kept = [tmp_path / ".job_live-1.q1w2e3r4.part", tmp_path / ".notes", tmp_path / "mine.part"]
    for path in stale + kept:
        path.write_bytes(b"x")
    for path in [*stale, kept[1], kept[2]]:
        os.utime(path, (old, old))
    download_outputs(client.transport, job, tmp_path)
    assert [p.exists() for p in stale] == [False, False]
    assert all(p.exists() for p in kept)  # fresh (another process), or not ours


def test_a_pending_sweep_that_meets_a_404_before_expiry_keeps_the_job_for_the_next(
    make_emulator: Callable[..., Emulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pixeldojo_cli.store.ledger import Ledger

    from conftest import make_invoker

    emulator = make_emulator(latency=0.1)
    cli = make_invoker(emulator)
    submitted = cli("run", "flux-dev", "x", "--no-wait", "-o", "out")
    assert submitted.exit_code == 0, submitted.output
    [job_id] = emulator.jobs
    monkeypatch.setattr(downloads, "RETRY_BASE_DELAY", 0.001)
    emulator.add_fault("status", target="files", status=404, count=-1)
    import time

    time.sleep(0.3)
    first = cli("download", "--pending")
    assert first.exit_code == 10, first.output  # not 7: nothing is lost
    assert job_id in first.stderr
    with Ledger() as ledger:
        [pending] = ledger.jobs()
    assert pending.needs_saving() and not pending.lost
    emulator.faults.clear()
    second = cli("download", "--pending")
    assert second.exit_code == 0, second.output
    assert as_served((Path("out") / f"{job_id}-1.png").read_bytes()) == emulator.output_file(
        job_id, 1
    )
