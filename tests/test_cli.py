"""The program as a user's shell runs it: entry points, global options, start-up, the emulator."""

from __future__ import annotations

import signal
import subprocess
import zlib
from pathlib import Path

from pixeldojo_cli import __version__
from pixeldojo_cli.emulator import Emulator

from conftest import FAST, PYTHON, TEST_KEY, Invoke, pixeldojo, run_subprocess_env


def assert_valid_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    assert int.from_bytes(data[29:33], "big") == zlib.crc32(data[12:29])
    assert data.endswith(b"IEND\xaeB`\x82")


def test_python_m_and_version() -> None:
    done = pixeldojo("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"pixeldojo {__version__}")


def test_help_does_not_import_httpx_or_rich_progress() -> None:
    for args in (["--help"], ["--version"], ["run", "--help"]):
        done = subprocess.run(
            [PYTHON, "-X", "importtime", "-m", "pixeldojo_cli", *args],
            capture_output=True,
            text=True,
            env=run_subprocess_env(),
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
        assert "httpx" not in imported, args
        assert "rich.progress" not in imported, args


def test_help_shows_examples_and_exit_codes() -> None:
    top = pixeldojo("--help")
    assert "--emulator" in top.stdout and "Exit codes" in top.stdout
    run = pixeldojo("run", "--help")
    assert "Examples" in run.stdout and "--dry-run" in run.stdout


def test_readme_first_command_writes_a_png_and_prints_its_path(tmp_path: Path) -> None:
    done = pixeldojo("--emulator", "run", "flux-dev", "a lighthouse at dusk", *FAST, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    [line] = done.stdout.splitlines()
    path = tmp_path / line
    assert path.suffix == ".png" and path.parent == tmp_path
    assert_valid_png(path)
    assert "Traceback" not in done.stderr


def test_emulator_environment_variable_and_options_after_the_command(tmp_path: Path) -> None:
    env = run_subprocess_env(PIXELDOJO_EMULATOR="1")
    done = pixeldojo(
        "run",
        "flux-1.1-pro",
        "A sunset",
        "-p",
        "aspect_ratio=16:9",
        "--seed",
        "42",
        *FAST,
        "-q",
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert_valid_png(tmp_path / done.stdout.strip())
    assert done.stderr == ""  # -q, hoisted from after the command
    hoisted = pixeldojo("run", "flux-dev", "x", "--dry-run", "--emulator", cwd=tmp_path)
    assert hoisted.returncode == 0, hoisted.stderr


def test_unknown_option_is_exit_2_without_a_traceback() -> None:
    done = pixeldojo("run", "flux-dev", "x", "--no-such-flag")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and "--no-such-flag" in done.stderr


def test_verbose_trace_masks_the_key(cli: Invoke, emulator: Emulator) -> None:
    result = cli("-v", "run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0, result.output
    assert TEST_KEY not in result.stderr + result.stdout
    api_lines = [line for line in result.stderr.splitlines() if "/api/v1/jobs/" in line]
    assert api_lines and all(f"Bearer ****{TEST_KEY[-4:]}" in line for line in api_lines)
    file_lines = [line for line in result.stderr.splitlines() if emulator.files_url in line]
    assert file_lines and all("no Authorization" in line for line in file_lines)


def test_emulator_serve_prints_the_base_url_and_serves_a_whole_run(tmp_path: Path) -> None:
    from conftest import exit_code_within

    env = run_subprocess_env()
    server = subprocess.Popen(
        [PYTHON, "-m", "pixeldojo_cli", "emulator", "serve", "--latency", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        assert line.startswith("PIXELDOJO_BASE_URL=http://127.0.0.1:")
        base_url = line.split("=", 1)[1]
        client_env = run_subprocess_env(PIXELDOJO_BASE_URL=base_url, PIXELDOJO_API_KEY="anything")
        done = pixeldojo("run", "flux-dev", "from a pipeline", *FAST, env=client_env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert_valid_png(tmp_path / done.stdout.strip())
    finally:
        server.send_signal(signal.SIGTERM)
        assert exit_code_within(server, 10) == 0


def leaf_sections() -> dict[str, str]:
    """docs/cli.md (generated from the app, kept fresh by a test): one section per command."""
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "cli.md").read_text()
    sections = re.split(r"\n## ", text)[1:]
    return {s.splitlines()[0].strip("`"): s for s in sections if "\nCommands:\n" not in s}


def test_every_command_has_a_summary_a_description_and_examples() -> None:
    leaves = leaf_sections()
    assert len(leaves) >= 18
    for name, section in leaves.items():
        page = section.split("```text\n", 1)[1]
        head = page.split("\nArguments:\n")[0].split("\nOptions:\n")[0]
        description = [line for line in head.splitlines()[1:] if line.strip()]
        assert len(description) >= 2, f"{name}: a summary and a longer description"
        examples = page.split("Example")[-1] if "Example" in page else ""
        assert examples.count("pixeldojo ") >= 1, f"{name}: at least one example"


def test_no_arguments_shows_the_command_list() -> None:
    done = pixeldojo()
    assert "Commands" in done.stdout + done.stderr
    for command in ("run", "models", "jobs", "download", "auth", "config", "emulator"):
        assert command in done.stdout + done.stderr
