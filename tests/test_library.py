"""The library face: the README's Python example runs, the public names, the types."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest

import pixeldojo_cli
from pixeldojo_cli.emulator import Emulator

from conftest import PYTHON, TEST_KEY, run_subprocess_env

ROOT = Path(__file__).resolve().parent.parent


def readme_python_example() -> str:
    """The first ```python block of the README's "Use it from Python" section."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Use it from Python\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "the section has a Python example"
    return match.group(1)


def test_the_readme_python_example_runs_against_the_emulator(
    emulator: Emulator, tmp_path: Path
) -> None:
    done = subprocess.run(
        [PYTHON, "-c", readme_python_example()],
        capture_output=True,
        text=True,
        env=run_subprocess_env(emulator),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines[0].split()) >= 3, "a model: id, name, price"
    [png] = sorted((tmp_path / "renders").glob("job_*-1.png"))
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert f"{png.name[:-6]} completed" in lines
    assert f"renders/{png.name}" in lines
    assert lines[-1].startswith("not_found: ") and lines[-1].endswith("exit 6)")
    [run] = emulator.requests_to("POST", r"/run$")
    assert run.authorization == f"Bearer {TEST_KEY}"


def test_import_pixeldojo_cli_loads_no_http_library() -> None:
    code = "import sys, pixeldojo_cli; print('httpx' in sys.modules, 'typer' in sys.modules)"
    done = subprocess.run(
        [PYTHON, "-c", code], capture_output=True, text=True, env=run_subprocess_env()
    )
    assert done.stdout.split() == ["False", "False"], done.stderr


def test_every_public_name_is_the_real_thing() -> None:
    from pixeldojo_cli.api import results
    from pixeldojo_cli.api.client import Client
    from pixeldojo_cli.core import errors
    from pixeldojo_cli.engine import webhooks

    assert pixeldojo_cli.Client is Client
    assert pixeldojo_cli.NotFoundError is errors.NotFoundError
    assert pixeldojo_cli.Job is results.Job and pixeldojo_cli.ApiResponse is errors.ApiResponse
    assert pixeldojo_cli.WebhookListener is webhooks.WebhookListener
    for name in pixeldojo_cli.__all__:
        assert getattr(pixeldojo_cli, name) is not None, name
    error_classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.PixelDojoError)
    }
    assert error_classes <= set(pixeldojo_cli.__all__), "every error class is public"
    with pytest.raises(AttributeError):
        _ = pixeldojo_cli.NoSuchName  # type: ignore[attr-defined]


USER_SCRIPT = """
from pathlib import Path

from pixeldojo_cli import ApiResponse, Client, Job, Model, NotFoundError, PixelDojoError, WebhookListener


def first_image_model(client: Client) -> Model:
    return client.list_models(modality="image")[0]


def status_of(client: Client, job_id: str) -> str:
    try:
        job: Job = client.get_job(job_id)
    except NotFoundError as exc:
        return f"gone ({exc.code}, exit {int(exc.exit_code)})"
    except PixelDojoError as exc:
        return exc.message
    return job.status


def raw(client: Client) -> int:
    answer: ApiResponse = client.request("GET", "models")
    return answer.status


def save(job: Job) -> list[Path]:
    return [Path(f"{job.id}.png")]


def main() -> None:
    with Client(api_key="k", base_url="http://127.0.0.1:9/api/v1") as client:
        print(first_image_model(client).cost.describe(), status_of(client, "job_x"), raw(client))
        WebhookListener(client, save, port=0).stop()
"""


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
@pytest.mark.slow
def test_mypy_strict_accepts_a_user_script_against_the_installed_package(tmp_path: Path) -> None:
    """As a user's project sees it: the package installed (a .pth file in a fresh
    venv's site-packages), so mypy reads its types only thanks to `py.typed`."""
    assert (ROOT / "pixeldojo_cli" / "py.typed").is_file()
    venv = tmp_path / "venv"
    subprocess.run([PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "pixeldojo_cli_dev.pth").write_text(f"{ROOT}\n")
    script = tmp_path / "user_script.py"
    script.write_text(textwrap.dedent(USER_SCRIPT))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--python-executable", str(python),
         "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in run_subprocess_env().items() if k not in ("PYTHONPATH", "MYPYPATH")},
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert sysconfig.get_paths()["purelib"] != purelib, "not the venv the tests run in"
