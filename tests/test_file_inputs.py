"""Your own pictures in (issue 25): `@PATH` and `@job:ID/N` values in URL inputs,
the `data` and `command` uploaders, the checks before anything is spent, the
upload cache, and what the ledger and the sidecar remember. Against the
emulator, with an upload command of the tests' own: a script that copies the
file into a folder served on loopback and prints its URL."""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.emulator.png import render
from tests.conftest import FAST, TEST_KEY, Invoke, pixeldojo, run_subprocess_env

UPLOADER = """\
import os, shutil, sys, time
path, sha, name, folder, base = sys.argv[1:6]
mode = os.environ.get("UPLOADER_MODE", "ok")
with open(os.path.join(folder, "log.txt"), "a") as log:
    log.write(repr(sys.argv[1:]) + "\\n")
if os.environ.get("UPLOADER_ENV_FILE"):
    with open(os.environ["UPLOADER_ENV_FILE"], "w") as out:
        out.write(repr(dict(os.environ)))
if mode == "hang":
    time.sleep(60)
if mode == "fail":
    print("uploading...", file=sys.stderr)
    print("AccessDenied: bucket says no \\x1b[31m", file=sys.stderr)
    sys.exit(3)
shutil.copyfile(path, os.path.join(folder, sha))
print("some progress")
if mode == "nourl":
    sys.exit(0)
print("ftp://example.com/x" if mode == "ftp" else base + "/" + sha)
"""


def post_bodies(emulator: Emulator) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in emulator.requests_to("POST", r"/run$")]


@pytest.fixture
def picture(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(render("x", 1, 0, 16, 16))
    return path


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder served over HTTP on loopback, and its URL."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def write_config(home: Path, **values: Any) -> None:
    import tomli_w

    folder = home / "xdg_config_home" / "pixeldojo"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(tomli_w.dumps({"defaults": values}))
    (folder / "config.toml").chmod(0o600)


@pytest.fixture
def uploader(isolated_env: Path, tmp_path: Path, served: tuple[Path, str]) -> Callable[..., Path]:
    """Configure `upload = command` with the tests' uploader; returns its log file."""
    script = tmp_path / "uploader.py"
    script.write_text(UPLOADER)
    folder, base = served

    def configure(**extra: Any) -> Path:
        command = [sys.executable, str(script), "{path}", "{sha256}", "{name}", str(folder), base]
        write_config(isolated_env, upload="command", upload_command=command, **extra)
        return folder / "log.txt"

    return configure


def uploads(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


# --- @PATH with upload = data, and the emulator ------------------------------------


def test_a_local_picture_goes_inline_as_a_data_uri(
    cli: Invoke, emulator: Emulator, picture: Path
) -> None:
    result = cli(
        "run", "flux-kontext-pro", "at night", "-p", "image_url=@photo.png", *FAST,
        env={"PIXELDOJO_UPLOAD": "data"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [body] = post_bodies(emulator)
    prefix = "data:image/png;base64,"
    assert body["image_url"].startswith(prefix)
    assert base64.b64decode(body["image_url"][len(prefix) :]) == picture.read_bytes()


def test_the_embedded_emulator_takes_a_file_with_no_configuration(
    tmp_path: Path, picture: Path
) -> None:
    env = run_subprocess_env(XDG_CONFIG_HOME=str(tmp_path / "nothing-here"))
    result = pixeldojo(
        "--emulator", "run", "flux-kontext-pro", "at night", "-p", "image_url=@photo.png",
        "--poll-interval", "0.2", env=env, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(".png")


def test_json_literals_input_files_and_batch_lines_take_at_values(
    cli: Invoke, emulator: Emulator, picture: Path, tmp_path: Path
) -> None:
    env = {"PIXELDOJO_UPLOAD": "data"}
    literal = cli(
        "run", "flux-kontext-pro", "x", "-p", 'image_urls:=["@photo.png", "@photo.png"]',
        "--no-wait", env=env,
    )  # fmt: skip
    (tmp_path / "in.json").write_text('{"image_url": "@photo.png"}')
    from_file = cli("run", "flux-kontext-pro", "x", "--input", "in.json", "--no-wait", env=env)
    (tmp_path / "lines.jsonl").write_text('{"prompt": "a", "image_url": "@photo.png"}\n')
    batch = cli("run", "flux-kontext-pro", "--batch", "lines.jsonl", "--no-wait", env=env)
    assert [r.exit_code for r in (literal, from_file, batch)] == [0, 0, 0], batch.output
    bodies = post_bodies(emulator)
    assert all(u.startswith("data:image/png") for u in bodies[0]["image_urls"])
    assert bodies[1]["image_url"].startswith("data:image/png")
    assert bodies[2]["image_url"].startswith("data:image/png")


def test_the_prompt_is_never_read_as_a_file(cli: Invoke, emulator: Emulator, picture: Path) -> None:
    result = cli("run", "flux-kontext-pro", "@photo.png", "--no-wait")
    assert result.exit_code == 0, result.output
    assert post_bodies(emulator)[0]["prompt"] == "@photo.png"


def test_an_at_value_for_an_input_that_takes_no_url_is_a_usage_error(
    cli: Invoke, emulator: Emulator, picture: Path
) -> None:
    result = cli("run", "flux-kontext-pro", "x", "-p", "aspect_ratio=@photo.png")
    assert result.exit_code == 2
    assert "aspect_ratio takes no URL" in result.stderr
    assert "image_url, image_urls" in result.stderr  # the hint: where files go
    assert not emulator.requests_to("POST")


def test_a_double_at_is_a_literal_at_never_a_file(
    cli: Invoke, emulator: Emulator, picture: Path
) -> None:
    result = cli("run", "flux-kontext-pro", "x", "-p", "image_url=@@photo.png")
    assert result.exit_code == 2
    assert '"@photo.png"' in result.stderr and "must be a URI" in result.stderr
    assert not emulator.requests_to("POST")


def test_no_uploader_set_stops_before_anything_is_spent(
    cli: Invoke, emulator: Emulator, picture: Path
) -> None:
    result = cli("run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png")
    assert result.exit_code == 2
    assert 'upload = "data"' in result.stderr and 'upload = "command"' in result.stderr
    assert "upload_command" in result.stderr
    assert not emulator.requests_to("POST")


def test_the_emulator_refuses_a_data_uri_that_is_not_its_declared_type(
    emulator: Emulator,
) -> None:
    import httpx

    fake = "data:image/png;base64," + base64.b64encode(b"hello, not a picture").decode()
    answer = httpx.post(
        f"{emulator.base_url}/models/flux-kontext-pro/run",
        json={"prompt": "x", "image_url": fake},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "validation_error"


# --- --dry-run --------------------------------------------------------------------------


def test_dry_run_lists_each_file_and_uploads_nothing(
    cli: Invoke, emulator: Emulator, picture: Path, uploader: Callable[..., Path]
) -> None:
    import hashlib

    log = uploader()
    text = cli("run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png", "--dry-run")
    as_json = cli(
        "run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png", "--dry-run", "--json"
    )
    digest = hashlib.sha256(picture.read_bytes()).hexdigest()
    assert text.exit_code == 0 and as_json.exit_code == 0, text.output
    assert str(picture) in text.stderr and digest in text.stderr and "image/png" in text.stderr
    [listed] = json.loads(as_json.stdout)["files"]
    assert listed == {
        "input": "image_url", "index": None, "path": str(picture),
        "size": picture.stat().st_size, "type": "image/png", "sha256": digest,
    }  # fmt: skip
    assert uploads(log) == 0
    assert not emulator.requests_to("POST")


# --- bad files: one line, exit 2, nothing uploaded or submitted ------------------------


def _refused(cli: Invoke, emulator: Emulator, value: str, log: Path) -> str:
    result = cli("run", "flux-kontext-pro", "x", "-p", f"image_url=@{value}", *FAST)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not emulator.requests_to("POST")
    assert uploads(log) == 0
    return result.stderr.splitlines()[0]


def test_a_folder_is_refused(
    cli: Invoke, emulator: Emulator, tmp_path: Path, uploader: Callable[..., Path]
) -> None:
    (tmp_path / "pics").mkdir()
    assert "is a folder" in _refused(cli, emulator, "pics", uploader())


def test_a_fifo_is_refused_without_waiting_on_it(
    cli: Invoke, emulator: Emulator, tmp_path: Path, uploader: Callable[..., Path]
) -> None:
    os.mkfifo(tmp_path / "pipe.png")
    assert "FIFO" in _refused(cli, emulator, "pipe.png", uploader())


def test_a_device_is_refused(
    cli: Invoke, emulator: Emulator, uploader: Callable[..., Path]
) -> None:
    assert "is a device" in _refused(cli, emulator, "/dev/null", uploader())


def test_a_missing_file_is_refused(
    cli: Invoke, emulator: Emulator, uploader: Callable[..., Path]
) -> None:
    assert "does not exist" in _refused(cli, emulator, "nowhere.png", uploader())


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 000")
def test_an_unreadable_file_is_refused(
    cli: Invoke, emulator: Emulator, picture: Path, uploader: Callable[..., Path]
) -> None:
    picture.chmod(0)
    assert "permission denied" in _refused(cli, emulator, "photo.png", uploader())


def test_a_text_file_posing_as_a_png_is_refused_by_its_bytes(
    cli: Invoke, emulator: Emulator, tmp_path: Path, uploader: Callable[..., Path]
) -> None:
    (tmp_path / "fake.png").write_text("just text\n")
    line = _refused(cli, emulator, "fake.png", uploader())
    assert "not a picture, video or sound file" in line


def test_a_video_for_a_picture_input_is_refused(
    cli: Invoke, emulator: Emulator, tmp_path: Path, uploader: Callable[..., Path]
) -> None:
    (tmp_path / "clip.png").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    assert "takes a picture, but clip.png is video/mp4" in _refused(
        cli, emulator, "clip.png", uploader()
    )


def test_an_empty_file_is_refused(
    cli: Invoke, emulator: Emulator, tmp_path: Path, uploader: Callable[..., Path]
) -> None:
    (tmp_path / "empty.png").write_bytes(b"")
    assert "is empty" in _refused(cli, emulator, "empty.png", uploader())


def test_a_file_over_the_data_cap_is_refused(
    cli: Invoke, emulator: Emulator, tmp_path: Path, isolated_env: Path
) -> None:
    big = tmp_path / "big.png"
    with big.open("wb") as out:
        out.write(render("x", 1, 0, 8, 8))
        out.truncate(11 * 1024 * 1024)  # sparse: no 11 MiB written
    write_config(isolated_env, upload="data")
    assert "at most 10.0 MiB" in _refused(cli, emulator, "big.png", tmp_path / "no-log")


def test_a_path_with_a_line_break_is_refused(
    cli: Invoke, emulator: Emulator, tmp_path: Path, uploader: Callable[..., Path]
) -> None:
    (tmp_path / "two\nlines.png").write_bytes(render("x", 1, 0, 8, 8))
    assert "line break" in _refused(cli, emulator, "two\nlines.png", uploader())


def test_a_path_that_is_not_utf8_is_refused(
    tmp_path: Path, emulator: Emulator, uploader: Callable[..., Path]
) -> None:
    log = uploader()
    name = b"caf\xe9.png"
    (tmp_path / os.fsdecode(name)).write_bytes(render("x", 1, 0, 8, 8))
    env = run_subprocess_env(emulator, XDG_CONFIG_HOME=os.environ["XDG_CONFIG_HOME"])
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "pixeldojo_cli", "run", "flux-kontext-pro", "x", "-p",
         b"image_url=@" + name],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "not UTF-8" in result.stderr and "Traceback" not in result.stderr
    assert not emulator.requests_to("POST") and uploads(log) == 0


# --- the upload command -----------------------------------------------------------------


def _upload_fails(cli: Invoke, emulator: Emulator, mode: str, **env: str) -> tuple[str, int]:
    result = cli(
        "run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png", *FAST,
        env={"UPLOADER_MODE": mode, **env},
    )  # fmt: skip
    assert result.exit_code == 10, result.output
    assert "Traceback" not in result.output
    assert not emulator.requests_to("POST")
    return result.stderr.splitlines()[0], len(result.stderr.splitlines())


def test_a_file_goes_through_the_upload_command(
    cli: Invoke, emulator: Emulator, picture: Path, uploader: Callable[..., Path]
) -> None:
    import hashlib

    uploader()
    result = cli("run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png", *FAST)
    assert result.exit_code == 0, result.output
    [body] = post_bodies(emulator)
    assert body["image_url"].endswith("/" + hashlib.sha256(picture.read_bytes()).hexdigest())
    import httpx

    assert httpx.get(body["image_url"]).content == picture.read_bytes()


def test_an_uploader_that_prints_no_url_submits_nothing(
    cli: Invoke, emulator: Emulator, picture: Path, uploader: Callable[..., Path]
) -> None:
    uploader()
    line, _ = _upload_fails(cli, emulator, "nourl")
    assert "some progress" in line and "not an http(s) URL" in line


def test_an_uploader_that_prints_a_non_http_url_submits_nothing(
    cli: Invoke, emulator: Emulator, picture: Path, uploader: Callable[..., Path]
) -> None:
    uploader()
    line, _ = _upload_fails(cli, emulator, "ftp")
    assert "ftp://example.com/x" in line and "not an http(s) URL" in line


def test_an_uploader_that_hangs_is_stopped_at_its_deadline(
    cli: Invoke, emulator: Emulator, picture: Path, uploader: Callable[..., Path]
) -> None:
    uploader(upload_timeout=1)
    line, _ = _upload_fails(cli, emulator, "hang")
    assert "did not finish within 1 s" in line


def test_an_uploader_that_fails_says_its_stderr_made_safe(
    cli: Invoke, emulator: Emulator, picture: Path, uploader: Callable[..., Path]
) -> None:
    uploader()
    line, _ = _upload_fails(cli, emulator, "fail")
    assert "failed (exit 3)" in line and "AccessDenied: bucket says no" in line
    assert "\x1b" not in line and "\\u001b" in line


def test_the_upload_command_never_sees_the_api_key(
    cli: Invoke, emulator: Emulator, picture: Path, tmp_path: Path,
    uploader: Callable[..., Path],
) -> None:  # fmt: skip
    uploader()
    seen = tmp_path / "env.txt"
    result = cli(
        "run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png", "--no-wait",
        env={"UPLOADER_ENV_FILE": str(seen), "SOME_COPY": TEST_KEY},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert TEST_KEY not in seen.read_text()
    assert "PIXELDOJO_API_KEY" not in seen.read_text()


def test_placeholders_stay_whole_arguments(
    cli: Invoke, emulator: Emulator, tmp_path: Path, uploader: Callable[..., Path]
) -> None:
    odd = tmp_path / "my photo; rm -rf $HOME '*'.png"
    odd.write_bytes(render("x", 1, 0, 8, 8))
    log = uploader()
    result = cli("run", "flux-kontext-pro", "x", "-p", f"image_url=@{odd.name}", "--no-wait")
    assert result.exit_code == 0, result.output
    args = eval(log.read_text().splitlines()[0])  # the script logs its argv's repr
    assert Path(args[0]).name == odd.name  # {path}: a private copy of it, named as it is
    assert args[2] == "my_photo_rm_-rf_HOME_.png"


def test_the_same_file_is_uploaded_once_while_upload_ttl_lasts(
    cli: Invoke, emulator: Emulator, picture: Path, uploader: Callable[..., Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    log = uploader()
    for _ in range(2):
        result = cli("run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png", "--no-wait")
        assert result.exit_code == 0, result.output
    (tmp_path / "lines.jsonl").write_text("a\nb\nc\n")
    batch = cli(
        "run", "flux-kontext-pro", "--batch", "lines.jsonl", "-p", "image_url=@photo.png",
        "--no-wait",
    )  # fmt: skip
    assert batch.exit_code == 0, batch.output
    assert uploads(log) == 1
    assert len({body["image_url"] for body in post_bodies(emulator)}) == 1


def test_upload_ttl_zero_uploads_every_time(
    cli: Invoke, emulator: Emulator, picture: Path, uploader: Callable[..., Path]
) -> None:
    log = uploader(upload_ttl=0)
    for _ in range(2):
        assert cli("run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png",
                   "--no-wait").exit_code == 0  # fmt: skip
    assert uploads(log) == 2


# --- @job:ID/N ----------------------------------------------------------------------------


def _first_job(cli: Invoke, *extra: str) -> tuple[str, dict[str, Any]]:
    result = cli("run", "flux-dev", "a fox", "--json", *FAST, *extra)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    return document["jobId"], document


def test_an_earlier_output_goes_by_its_url_while_it_lasts(cli: Invoke, emulator: Emulator) -> None:
    job_id, document = _first_job(cli, "-p", "num_outputs=2")
    result = cli("run", "flux-kontext-pro", "x", "-p", f"image_url=@job:{job_id}/2", "--no-wait")
    assert result.exit_code == 0, result.output
    assert post_bodies(emulator)[-1]["image_url"] == document["output"]["images"][1]


def test_a_bare_job_ref_with_several_outputs_asks_which(cli: Invoke, emulator: Emulator) -> None:
    job_id, _ = _first_job(cli, "-p", "num_outputs=2")
    result = cli("run", "flux-kontext-pro", "x", "-p", f"image_url=@job:{job_id}")
    assert result.exit_code == 2
    assert f"@job:{job_id}/1" in result.stderr
    assert len(emulator.requests_to("POST", r"/run$")) == 1


def test_an_expired_output_sends_the_file_saved_here(
    make_emulator: Callable[..., Emulator], tmp_path: Path, isolated_env: Path
) -> None:
    from tests.conftest import make_invoker

    emulator = make_emulator(ttl=1.0, latency=0.1)
    cli = make_invoker(emulator)
    job_id, document = _first_job(cli)
    import time

    time.sleep(1.5)
    write_config(isolated_env, upload="data")
    result = cli("run", "flux-kontext-pro", "x", "-p", f"image_url=@job:{job_id}/1", "--no-wait")
    assert result.exit_code == 0, result.output
    saved = Path(document["files"][0]["path"]).read_bytes()
    sent = post_bodies(emulator)[-1]["image_url"]
    assert base64.b64decode(sent.split(",", 1)[1]) == saved


def test_an_expired_output_not_saved_here_is_exit_7(
    make_emulator: Callable[..., Emulator],
) -> None:
    from tests.conftest import make_invoker

    emulator = make_emulator(ttl=1.0, latency=0.1)
    cli = make_invoker(emulator)
    job_id, _ = _first_job(cli, "--no-download")
    import time

    time.sleep(1.5)
    result = cli("run", "flux-kontext-pro", "x", "-p", f"image_url=@job:{job_id}/1")
    assert result.exit_code == 7, result.output
    assert "not saved on this machine" in result.stderr
    assert len(emulator.requests_to("POST", r"/run$")) == 1


def test_a_job_nobody_knows_is_exit_6(cli: Invoke, emulator: Emulator) -> None:
    result = cli("run", "flux-kontext-pro", "x", "-p", "image_url=@job:job_nope/1")
    assert result.exit_code == 6, result.output
    assert "known neither to the job ledger nor to the API" in result.stderr
    assert not emulator.requests_to("POST")


# --- remembered ---------------------------------------------------------------------------


def test_the_ledger_and_the_sidecar_remember_each_file_input(
    cli: Invoke, emulator: Emulator, picture: Path, tmp_path: Path,
    uploader: Callable[..., Path],
) -> None:  # fmt: skip
    import hashlib

    uploader()
    result = cli(
        "run", "flux-kontext-pro", "x", "-p", "image_url=@photo.png", "--json", "-o", "out",
        *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    job_id = json.loads(result.stdout)["jobId"]
    digest = hashlib.sha256(picture.read_bytes()).hexdigest()
    url = post_bodies(emulator)[0]["image_url"]
    sidecar = json.loads((tmp_path / "out" / f"{job_id}.json").read_text())
    [entry] = sidecar["fileInputs"]
    assert (entry["path"], entry["sha256"], entry["url"]) == (str(picture), digest, url)
    shown = cli("jobs", "show", job_id)
    assert shown.exit_code == 0, shown.output
    assert str(picture) in shown.output and digest in shown.output and url in shown.output
    as_json = json.loads(cli("jobs", "show", job_id, "--json").stdout)
    assert as_json["local"]["fileInputs"][0]["sha256"] == digest


def test_an_older_ledger_gains_the_uploads_and_input_files_tables(tmp_path: Path) -> None:
    import sqlite3

    from pixeldojo_cli.store.ledger import Ledger, upload_record

    path = tmp_path / "jobs.sqlite3"
    Ledger(path).close()
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE uploads")
        db.execute("DROP TABLE input_files")
        db.execute("PRAGMA user_version = 5")  # v5: before uploads and input_files
    with Ledger(path) as ledger:
        ledger.apply(upload_record("command:x", "ab" * 32, "https://h/x", 3, "image/png"))
        assert ledger.upload_url("command:x", "ab" * 32, 3600) == "https://h/x"
        assert ledger.upload_url("command:y", "ab" * 32, 3600) is None  # another uploader
        import time

        time.sleep(0.05)
        assert ledger.upload_url("command:x", "ab" * 32, 0.01) is None  # older than the ttl
