"""File inputs under attack (issue 25, an outside review): `@job:ID/N` of a job
that expired unseen or whose saved file was deleted or edited, a file swapped
after its check while the upload command runs, types the client takes and the
emulator must take too, settings written outside [defaults], upload URLs that
are not UTF-8 or name an impossible port, a command's child that left its
session, output without end, and `webhook_url` given as an input. Each
refusal: one line, its exit code, nothing submitted."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.emulator.png import render
from tests.conftest import FAST, Invoke, make_invoker

MODEL = "flux-kontext-pro"


def posts(emulator: Emulator) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in emulator.requests_to("POST", r"/run$")]


def write_config(home: Path, text: str) -> None:
    folder = home / "xdg_config_home" / "pixeldojo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(text)
    (folder / "config.toml").chmod(0o600)


def command_config(home: Path, words: list[str], **extra: Any) -> None:
    import tomli_w

    write_config(
        home, tomli_w.dumps({"defaults": {"upload": "command", "upload_command": words, **extra}})
    )


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(render("x", 1, 0, 16, 16))
    return path


def one_line_refusal(result: Any, code: int, emulator: Emulator, before: int = 0) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert len(posts(emulator)) == before
    return str(result.stderr.splitlines()[0])


# --- B1, B2: @job:ID/N once the job expired ------------------------------------------------


def _expiring(make_emulator: Callable[..., Emulator]) -> tuple[Emulator, Invoke]:
    emulator = make_emulator(ttl=1.0, latency=0.1)
    return emulator, make_invoker(emulator)


def test_an_expired_job_never_seen_here_is_exit_7_saying_so(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator, cli = _expiring(make_emulator)
    submitted = cli("run", "flux-dev", "a fox", "--no-wait", "--json")
    assert submitted.exit_code == 0, submitted.output
    job_id = json.loads(submitted.stdout)["jobId"]
    time.sleep(1.6)
    result = cli(
        "run", MODEL, "x", "-p", f"image_url=@job:{job_id}/1", env={"PIXELDOJO_UPLOAD": "data"}
    )
    line = one_line_refusal(result, 7, emulator, before=1)
    assert "expired" in line and "seen or saved on this machine" in line


def _expired_saved_output(
    make_emulator: Callable[..., Emulator],
) -> tuple[Emulator, Invoke, str, Path]:
    emulator, cli = _expiring(make_emulator)
    result = cli("run", "flux-dev", "a fox", "--json", "-o", "out", *FAST)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    time.sleep(1.6)
    return emulator, cli, document["jobId"], Path(document["files"][0]["path"])


def test_an_expired_output_whose_saved_file_was_deleted_is_exit_7(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator, cli, job_id, saved = _expired_saved_output(make_emulator)
    saved.unlink()
    result = cli(
        "run", MODEL, "x", "-p", f"image_url=@job:{job_id}/1", env={"PIXELDOJO_UPLOAD": "data"}
    )
    line = one_line_refusal(result, 7, emulator, before=1)
    assert "expired" in line and "is gone" in line


def test_an_expired_output_whose_saved_file_was_edited_is_not_sent_as_the_job_output(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator, cli, job_id, saved = _expired_saved_output(make_emulator)
    data = bytearray(saved.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, still a PNG by its first bytes
    saved.write_bytes(bytes(data))
    result = cli(
        "run", MODEL, "x", "-p", f"image_url=@job:{job_id}/1", env={"PIXELDOJO_UPLOAD": "data"}
    )
    line = one_line_refusal(result, 7, emulator, before=1)
    assert "has changed since it was saved" in line


# --- B3: the upload command reads a private copy -------------------------------------------

SWAPPING_UPLOADER = """\
import json, os, shutil, sys
path, sha, folder, original = sys.argv[1:5]
with open(original, "wb") as swap:  # the file changes after its check, before the read
    swap.write(b"GIF89a other bytes entirely")
seen = {"path": path, "mode": os.stat(path).st_mode & 0o777,
        "folder_mode": os.stat(os.path.dirname(path)).st_mode & 0o777}
with open(os.path.join(folder, "seen.json"), "w") as out:
    json.dump(seen, out)
shutil.copyfile(path, os.path.join(folder, sha))
print("http://127.0.0.1:9/" + sha)
"""


def test_the_upload_command_reads_a_private_copy_of_the_checked_bytes(
    cli: Invoke, emulator: Emulator, picture: Path, tmp_path: Path, isolated_env: Path
) -> None:
    import hashlib

    original = picture.read_bytes()
    script, served = tmp_path / "up.py", tmp_path / "served"
    script.write_text(SWAPPING_UPLOADER)
    served.mkdir()
    words = [sys.executable, str(script), "{path}", "{sha256}", str(served), str(picture)]
    command_config(isolated_env, words)
    result = cli("run", MODEL, "x", "-p", "image_url=@photo.png", "--no-wait")
    assert result.exit_code == 0, result.output
    digest = hashlib.sha256(original).hexdigest()
    assert (served / digest).read_bytes() == original  # what the URL holds: the checked bytes
    assert posts(emulator)[0]["image_url"].endswith("/" + digest)
    seen = json.loads((served / "seen.json").read_text())
    assert seen["path"] != str(picture) and Path(seen["path"]).name == picture.name
    assert (seen["mode"], seen["folder_mode"]) == (0o600, 0o700)
    assert not Path(seen["path"]).parent.exists()  # deleted after


# --- B4: the types the client sends, the emulator takes ------------------------------------

SAMPLES = {
    "image/png": b"\x89PNG\r\n\x1a\n",
    "image/jpeg": b"\xff\xd8\xff\xe0",
    "image/gif": b"GIF89a",
    "image/webp": b"RIFF\x10\x00\x00\x00WEBPVP8 ",
    "image/tiff": b"II*\x00\x08\x00\x00\x00",
    "image/avif": b"\x00\x00\x00\x1cftypavif",
    "image/heic": b"\x00\x00\x00\x1cftypheic",
    "image/heif": b"\x00\x00\x00\x1cftypmif1",
    "video/mp4": b"\x00\x00\x00\x1cftypisom",
    "video/quicktime": b"\x00\x00\x00\x14ftypqt  ",
    "video/webm": b"\x1a\x45\xdf\xa3\x9fB\x86\x81\x01webm",
    "video/x-matroska": b"\x1a\x45\xdf\xa3\x9fB\x86\x81\x01matroska",
    "video/x-msvideo": b"RIFF\x10\x00\x00\x00AVI LIST",
    "audio/mpeg": b"ID3\x04\x00",
    "audio/wav": b"RIFF\x10\x00\x00\x00WAVEfmt ",
    "audio/ogg": b"OggS\x00",
    "audio/flac": b"fLaC\x00",
    "audio/mp4": b"\x00\x00\x00\x1cftypM4A ",
}


def _data_uri(mime: str, head: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(head + bytes(64)).decode()}"


def test_every_type_the_client_sniffs_the_emulator_takes() -> None:
    from pixeldojo_cli.emulator.data_uris import _MAGIC, data_uri_problem
    from pixeldojo_cli.inputs.local_files import SNIFFED_TYPES, sniff

    assert set(_MAGIC) == set(SNIFFED_TYPES) == set(SAMPLES)
    for mime, head in SAMPLES.items():
        assert sniff(head + bytes(64)) == mime
        assert data_uri_problem(_data_uri(mime, head)) is None, mime


def test_the_emulator_reads_webp_wav_and_avi_past_riff() -> None:
    from pixeldojo_cli.emulator.data_uris import data_uri_problem

    wav, webp = SAMPLES["audio/wav"], SAMPLES["image/webp"]
    assert data_uri_problem(_data_uri("image/webp", wav)) == "data: URI is not a image/webp file"
    assert data_uri_problem(_data_uri("audio/wav", webp)) == "data: URI is not a audio/wav file"
    assert data_uri_problem(_data_uri("video/x-msvideo", wav)) is not None


def test_a_tiff_goes_inline_and_the_emulator_takes_it(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    (tmp_path / "scan.tif").write_bytes(SAMPLES["image/tiff"] + bytes(200))
    result = cli(
        "run", MODEL, "x", "-p", "image_url=@scan.tif", *FAST, env={"PIXELDOJO_UPLOAD": "data"}
    )
    assert result.exit_code == 0, result.output
    assert posts(emulator)[0]["image_url"].startswith("data:image/tiff;base64,")


# --- B5: a setting outside [defaults] ----------------------------------------------------


@pytest.mark.parametrize(
    "line", ['upload = "data"', 'budget_daily = "5"', 'output_dir = "x"', 'api_key = "pd_x"']
)
def test_a_setting_at_the_top_of_config_toml_is_refused_not_ignored(
    cli: Invoke, emulator: Emulator, picture: Path, isolated_env: Path, line: str
) -> None:
    write_config(isolated_env, f"{line}\n\n[defaults]\nchecksum = false\n")
    result = cli("run", MODEL, "x", "-p", "image_url=@photo.png", "--no-wait")
    refusal = one_line_refusal(result, 2, emulator)
    key = line.split(" ")[0]
    assert f"{key} is at the top of the file, outside any table" in refusal
    assert "[defaults]" in result.stderr or "[profiles.default]" in result.stderr
    assert "pd_x" not in result.output


# --- B6: the URL an upload command prints --------------------------------------------------


@pytest.mark.parametrize(
    ("printed", "why"),
    [
        (b"http://a.example/\xff\xfe", "is not UTF-8 text"),
        (b"http://a.example:99999/x", "valid port"),
        (b"http://a.example:0/x", "valid port"),
    ],
)
def test_an_upload_url_that_is_not_utf8_or_names_an_impossible_port_is_refused(
    cli: Invoke, emulator: Emulator, picture: Path, isolated_env: Path, printed: bytes, why: str
) -> None:
    code = f"import sys; sys.stdout.buffer.write({printed!r} + b'\\n')"
    command_config(isolated_env, [sys.executable, "-c", code, "{path}"])
    result = cli("run", MODEL, "x", "-p", "image_url=@photo.png", "--no-wait")
    assert why in one_line_refusal(result, 10, emulator)


# --- B7 and output without end: the command is stopped whole --------------------------------

LEAVES_ITS_SESSION = """\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"],
                         start_new_session=True)
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(300)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux's /proc")
def test_a_child_that_left_the_commands_session_is_killed_at_the_deadline(
    cli: Invoke, emulator: Emulator, picture: Path, isolated_env: Path, tmp_path: Path
) -> None:
    pid_file = tmp_path / "child.pid"
    words = [sys.executable, "-c", LEAVES_ITS_SESSION, str(pid_file)]
    command_config(isolated_env, words, upload_timeout="2s")
    result = cli("run", MODEL, "x", "-p", "image_url=@photo.png", "--no-wait")
    assert "did not finish within 2 s" in one_line_refusal(result, 10, emulator)
    pid = int(pid_file.read_text())
    try:
        for _ in range(50):  # SIGKILL is delivered at once; its reaping may lag a little
            if not _running(pid):
                break
            time.sleep(0.1)
        assert not _running(pid)
    finally:
        if _running(pid):
            os.kill(pid, 9)


def test_an_upload_command_that_prints_without_end_is_stopped(
    cli: Invoke, emulator: Emulator, picture: Path, isolated_env: Path
) -> None:
    code = (
        "import sys, time\n"
        "for _ in range(48): sys.stdout.write('x' * 2**20)\n"
        "sys.stdout.flush(); time.sleep(300)"
    )
    command_config(isolated_env, [sys.executable, "-c", code, "{path}"], upload_timeout="30s")
    started = time.monotonic()
    result = cli("run", MODEL, "x", "-p", "image_url=@photo.png", "--no-wait")
    assert "printed more than 16 MiB; it was stopped" in one_line_refusal(result, 10, emulator)
    assert time.monotonic() - started < 30  # stopped for its output, not at the deadline


# --- B8: webhook_url however it is given -------------------------------------------------


@pytest.mark.parametrize("how", ["-p", "--input", "--batch"])
def test_webhook_url_given_as_an_input_is_checked_as_the_flag_is(
    cli: Invoke, emulator: Emulator, picture: Path, tmp_path: Path, how: str
) -> None:
    (tmp_path / "in.json").write_text('{"webhook_url": "@photo.png"}')
    (tmp_path / "lines.jsonl").write_text('{"prompt": "x", "webhook_url": "@photo.png"}\n')
    given = {
        "-p": ["x", "-p", "webhook_url=@photo.png"],
        "--input": ["x", "--input", "in.json"],
        "--batch": ["--batch", "lines.jsonl"],
    }[how]
    result = cli("run", MODEL, *given, "--no-wait", env={"PIXELDOJO_UPLOAD": "data"})
    assert "webhook_url must be an http(s) URL" in one_line_refusal(result, 2, emulator)
