"""Metadata inside the file: a saved PNG, JPEG or WebP output carries the job's
model, inputs (prompt, seed), id, API and creation time, written with the
standard library before the final rename, never touching the pixels (each
picture is decoded before and after). The sidecar records the size and
SHA-256 as served and as saved; the intact-file check, `--checksum` and a
resumed download keep working; `embed_metadata` off, a video or a file that is
not a whole picture keep the bytes as served; the key never goes into a file."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.embedded import read_embedded
from pixeldojo_cli.store.embedding import embed
from pixeldojo_cli.store.provenance import Provenance

from conftest import FAST, Invoke, make_invoker

MADE = Provenance(
    job_id="job_abc",
    model="flux-dev",
    inputs={"prompt": "a red fox", "seed": 1234, "aspect_ratio": "1:1"},
    api="https://pixeldojo.ai/api/v1",
    created="2025-01-02T03:04:05Z",
    credits=1.0,
)


def sample(fmt: str, mode: str = "RGB", **options: Any) -> bytes:
    """A small picture with varied pixels, made by Pillow."""
    picture = Image.new(mode, (37, 23))
    picture.putdata(
        [
            tuple((x * 7 + y * 3 + c * 50) % 256 for c in range(len(mode)))
            for y in range(23)
            for x in range(37)
        ]  # type: ignore[misc]
    )
    out = io.BytesIO()
    picture.save(out, fmt, **options)
    return out.getvalue()


def pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as picture:
        picture.load()
        return picture.mode, picture.size, picture.tobytes()


def stamped(data: bytes, tmp_path: Path, made: Provenance = MADE) -> bytes | None:
    """`data` with `made` embedded, through files as a download does; None if not."""
    source, target = tmp_path / "served", tmp_path / "saved"
    source.write_bytes(data)
    with source.open("rb") as src, target.open("w+b") as dst:
        done = embed(src, dst, len(data), made, tool="pixeldojo-cli test", secret="pd_test_key")
    return target.read_bytes() if done else None


SAMPLES: dict[str, Callable[[], bytes]] = {
    "png": lambda: sample("PNG"),
    "png-rgba": lambda: sample("PNG", "RGBA"),
    "jpeg": lambda: sample("JPEG", quality=90),
    "jpeg-exif": lambda: sample("JPEG", exif=Image.Exif()),
    "webp-lossy": lambda: sample("WEBP", quality=80),
    "webp-lossless": lambda: sample("WEBP", lossless=True),
    "webp-alpha": lambda: sample("WEBP", "RGBA", lossless=True),
    "webp-extended": lambda: sample("WEBP", exif=b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x00"),
}


@pytest.mark.parametrize("name", list(SAMPLES))
def test_metadata_is_written_into_the_picture_and_the_pixels_are_the_same(
    name: str, tmp_path: Path
) -> None:
    served = SAMPLES[name]()
    saved = stamped(served, tmp_path)
    assert saved is not None and saved != served
    assert pixels(saved) == pixels(served)
    (tmp_path / "out.bin").write_bytes(saved)
    found = read_embedded(tmp_path / "out.bin")
    assert found.provenance is not None, found.problems
    assert found.provenance.job_id == "job_abc" and found.provenance.seed == 1234
    assert found.provenance.prompt == "a red fox" and found.provenance.model == "flux-dev"
    assert found.provenance.created == "2025-01-02T03:04:05Z"
    assert found.problems == ()


def test_other_programs_read_it_too(tmp_path: Path) -> None:
    png = stamped(sample("PNG"), tmp_path)
    assert png is not None
    with Image.open(io.BytesIO(png)) as picture:
        assert json.loads(picture.text["pixeldojo"])["jobId"] == "job_abc"  # type: ignore[attr-defined]
        assert picture.text["parameters"].startswith("a red fox\nSeed: 1234")  # type: ignore[attr-defined]
    for fmt in ("JPEG", "WEBP"):
        data = stamped(sample(fmt), tmp_path)
        assert data is not None
        with Image.open(io.BytesIO(data)) as picture:
            xmp = picture.info.get("xmp")
            assert xmp and b"pixeldojo:json" in xmp and b"a red fox" in xmp


def test_a_servers_own_claim_is_replaced_by_ours(tmp_path: Path) -> None:
    fake = Provenance("job_fake", "evil", {"prompt": "not what you asked"})
    claimed = stamped(sample("PNG"), tmp_path, fake)
    assert claimed is not None
    saved = stamped(claimed, tmp_path)
    assert saved is not None and b"job_fake" not in saved
    assert saved.count(b"pixeldojo\x00") == 1


@pytest.mark.parametrize(
    "served",
    [b"\x00\x00\x00\x18ftypmp42" + bytes(100), b"not a picture", b"", sample("PNG")[:60]],
    ids=["video", "text", "empty", "truncated-png"],
)
def test_what_is_not_a_whole_picture_is_left_as_served(served: bytes, tmp_path: Path) -> None:
    assert stamped(served, tmp_path) is None


def test_a_long_prompt_is_cut_to_fit_a_jpeg_segment(tmp_path: Path) -> None:
    long = Provenance("job_l", "flux-dev", {"prompt": "fox " * 50_000, "seed": 3})
    saved = stamped(sample("JPEG"), tmp_path, long)
    assert saved is not None
    (tmp_path / "l.jpg").write_bytes(saved)
    found = read_embedded(tmp_path / "l.jpg").provenance
    assert found is not None and found.truncated and found.seed == 3
    assert pixels(saved) == pixels(sample("JPEG"))


def test_a_key_in_the_inputs_is_masked_in_the_file(tmp_path: Path) -> None:
    leaky = Provenance("job_k", "flux-dev", {"prompt": "use pd_test_key please"})
    saved = stamped(sample("PNG"), tmp_path, leaky)
    assert saved is not None and b"pd_test_key" not in saved


# --- through the CLI, against the emulator ------------------------------------------


def saved_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix != ".json")


def sidecar_of(folder: Path) -> dict[str, Any]:
    [path] = folder.glob("*.json")
    return json.loads(path.read_text())


def served_bytes(emulator: Emulator) -> bytes:
    [job_id] = emulator.jobs
    return emulator.output_file(job_id, 1)


def test_run_saves_a_png_with_the_job_in_it_and_the_sidecar_keeps_both_hashes_and_sizes(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    result = cli("run", "flux-dev", "a red fox", "-o", "out", "--checksum", *FAST)
    assert result.exit_code == 0, result.stderr
    [path] = saved_files(tmp_path / "out")
    saved, served = path.read_bytes(), served_bytes(emulator)
    assert pixels(saved) == pixels(served) and saved != served
    found = read_embedded(path).provenance
    [job_id] = emulator.jobs
    assert found is not None and found.job_id == job_id and found.api == emulator.base_url
    assert found.inputs == json.loads(emulator.requests_to("POST", r"/run$")[0].body)
    assert found.credits == 1.0 and found.created is not None
    [entry] = sidecar_of(tmp_path / "out")["files"]
    assert entry["size"] == len(saved) and entry["sha256"] == hashlib.sha256(saved).hexdigest()
    assert entry["servedSize"] == len(served)
    assert entry["servedSha256"] == hashlib.sha256(served).hexdigest()


def test_the_sidecar_keeps_both_hashes_without_checksum_too(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    result = cli("run", "flux-dev", "a red fox", "-o", "out", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    [path] = saved_files(tmp_path / "out")
    saved, served = path.read_bytes(), served_bytes(emulator)
    [entry] = sidecar_of(tmp_path / "out")["files"]
    assert entry["servedSha256"] == hashlib.sha256(served).hexdigest()
    assert entry["savedSha256"] == hashlib.sha256(saved).hexdigest()
    assert "sha256" not in entry  # the checked hash stays --checksum's
    assert json.loads(result.stdout)["files"][0]["sha256"] is None


@pytest.mark.parametrize(
    ("name", "fmt", "content_type"),
    [("pic.jpg", "JPEG", "image/jpeg"), ("pic.webp", "WEBP", "image/webp")],
)
def test_run_saves_jpeg_and_webp_outputs_with_xmp(
    make_emulator: Callable[..., Emulator],
    tmp_path: Path,
    name: str,
    fmt: str,
    content_type: str,
) -> None:
    emulator = make_emulator(output_name=name)
    served = sample(fmt)
    emulator.add_fault(
        "status", target="files", path="/outputs/", status=200, body=served,
        content_type=content_type, count=-1,
    )  # fmt: skip
    result = make_invoker(emulator)("run", "flux-dev", "a red fox", "-o", "out", *FAST)
    assert result.exit_code == 0, result.stderr
    [path] = saved_files(tmp_path / "out")
    saved = path.read_bytes()
    assert pixels(saved) == pixels(served)
    found = read_embedded(path).provenance
    assert found is not None and found.prompt == "a red fox" and found.seed is not None


def test_embed_metadata_off_keeps_the_bytes_as_served(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    assert cli("config", "set", "embed_metadata", "off").exit_code == 0
    result = cli("run", "flux-dev", "a red fox", "-o", "out", *FAST)
    assert result.exit_code == 0, result.stderr
    [path] = saved_files(tmp_path / "out")
    assert path.read_bytes() == served_bytes(emulator)
    assert "servedSize" not in sidecar_of(tmp_path / "out")["files"][0]


def test_a_video_keeps_the_sidecar_only(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(output_name="clip.mp4")
    video = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(2000)
    emulator.add_fault(
        "status", target="files", path="/outputs/", status=200, body=video,
        content_type="video/mp4", count=-1,
    )  # fmt: skip
    result = make_invoker(emulator)("run", "seedance-1.5", "waves", "-o", "out", *FAST)
    assert result.exit_code == 0, result.stderr
    [path] = saved_files(tmp_path / "out")
    assert path.suffix == ".mp4" and path.read_bytes() == video
    assert sidecar_of(tmp_path / "out")["files"][0]["size"] == len(video)


@pytest.mark.parametrize("checksum", [[], ["--checksum"]], ids=["quick-check", "checksum"])
def test_a_saved_picture_with_metadata_is_found_intact_and_not_downloaded_again(
    cli: Invoke, emulator: Emulator, tmp_path: Path, checksum: list[str]
) -> None:
    result = cli("run", "flux-dev", "a red fox", "-o", "out", *checksum, *FAST)
    assert result.exit_code == 0, result.stderr
    [path] = saved_files(tmp_path / "out")
    before = path.stat().st_mtime_ns, path.read_bytes()
    [job_id] = emulator.jobs
    again = cli("download", job_id, "-o", "out", *checksum)
    assert again.exit_code == 0, again.stderr
    assert "already saved and intact" in again.stderr
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before
    assert len(emulator.requests_to("GET", "/outputs/", target="files")) == 1
    entry = sidecar_of(tmp_path / "out")["files"][0]
    assert entry["size"] == len(before[1]) and entry["servedSize"] == len(served_bytes(emulator))
    if checksum:
        assert entry["servedSha256"] == hashlib.sha256(served_bytes(emulator)).hexdigest()
        assert entry["sha256"] == hashlib.sha256(before[1]).hexdigest()
    else:  # no --checksum: no checked hash, but the sidecar says what the rewrite changed
        assert "sha256" not in entry
        assert entry["servedSha256"] == hashlib.sha256(served_bytes(emulator)).hexdigest()
        assert entry["savedSha256"] == hashlib.sha256(before[1]).hexdigest()


def test_a_picture_changed_since_is_downloaded_again_under_checksum(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    assert cli("run", "flux-dev", "a red fox", "-o", "out", "--checksum", *FAST).exit_code == 0
    [path] = saved_files(tmp_path / "out")
    good = path.read_bytes()
    stat = path.stat()
    damaged = bytearray(good)
    damaged[-20] ^= 0xFF  # same size, same time: only the hash tells
    path.write_bytes(bytes(damaged))
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    [job_id] = emulator.jobs
    again = cli("download", job_id, "-o", "out", "--checksum")
    assert again.exit_code == 0, again.stderr
    assert len(emulator.requests_to("GET", "/outputs/", target="files")) == 2
    assert pixels(path.read_bytes()) == pixels(served_bytes(emulator))
    assert read_embedded(path).provenance is not None


def test_a_resumed_download_gets_its_metadata_once_whole(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.add_fault("truncate", target="files", path="/outputs/", after_bytes=100)
    result = cli("run", "flux-dev", "a red fox", "-o", "out", *FAST)
    assert result.exit_code == 0, result.stderr
    gets = emulator.requests_to("GET", "/outputs/", target="files")
    assert [r.headers.get("range") for r in gets] == [None, "bytes=100-"]
    [path] = saved_files(tmp_path / "out")
    assert pixels(path.read_bytes()) == pixels(served_bytes(emulator))
    assert read_embedded(path).provenance is not None
    assert not list((tmp_path / "out").glob(".*.part"))


KEY = "pd_test_echo_9f8e7d6c5b4a3210zyxw"  # made up: never a real key


def test_the_key_never_goes_into_a_saved_file(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(echo_key=True)
    result = make_invoker(emulator, key=KEY)("run", "flux-dev", "a red fox", "-o", "out", *FAST)
    assert result.exit_code == 0, result.stderr
    [job] = emulator.jobs.values()
    assert KEY in emulator.output_urls(job)[0]  # the server did echo it
    [path] = saved_files(tmp_path / "out")
    data = path.read_bytes().decode("latin-1")
    assert not [KEY[i : i + 8] for i in range(len(KEY) - 7) if KEY[i : i + 8] in data]
    assert read_embedded(path).provenance is not None
