"""`pixeldojo mcp`: the MCP server, driven by the official SDK's own stdio client
(`mcp.client.stdio.stdio_client` + `ClientSession`) as an assistant drives it,
against the emulator over loopback, in the test's private HOME and XDG folders."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult

from pixeldojo_cli.emulator import Emulator

from conftest import PYTHON, exit_code_within, pixeldojo, run_subprocess_env

T = TypeVar("T")

TOOLS = {
    "list_models",
    "model_schema",
    "estimate_cost",
    "generate",
    "job_status",
    "wait_for_job",
    "download_job",
    "search_history",
}


def posts(emulator: Emulator) -> int:
    return len(emulator.requests_to("POST", r"/run$"))


@asynccontextmanager
async def session(
    *args: str, emulator: Emulator | None, errlog: Path, env: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    """`python -m pixeldojo_cli [ARGS] mcp` (ARGS before `mcp` are global flags;
    `--` separates them from the command's), initialised, its stderr in `errlog`."""
    global_args, command_args = _split(args)
    params = StdioServerParameters(
        command=PYTHON,
        args=["-m", "pixeldojo_cli", *global_args, "mcp", *command_args],
        env=run_subprocess_env(emulator, **(env or {})),
    )
    with errlog.open("w") as log:
        async with (
            stdio_client(params, errlog=log) as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            yield client


def _split(args: tuple[str, ...]) -> tuple[list[str], list[str]]:
    if "--" in args:
        at = args.index("--")
        return list(args[:at]), list(args[at + 1 :])
    return [], list(args)


def drive(
    scenario: Callable[[ClientSession], Awaitable[T]],
    *args: str,
    emulator: Emulator | None,
    errlog: Path,
    env: dict[str, str] | None = None,
) -> T:
    """Run one scenario against a fresh server session (`env`: more variables)."""

    async def main() -> T:
        async with session(*args, emulator=emulator, errlog=errlog, env=env) as client:
            return await scenario(client)

    return asyncio.run(main())


def answer(result: CallToolResult) -> dict[str, Any]:
    """A successful tool call's structured answer (the same JSON as its text)."""
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    text = result.content[0].text  # type: ignore[union-attr]
    assert json.loads(text) == result.structured_content
    return result.structured_content


def error_of(result: CallToolResult) -> dict[str, Any]:
    """A tool error: the CLI's error line as text, its error document as structure."""
    assert result.is_error
    assert isinstance(result.structured_content, dict)
    error: dict[str, Any] = result.structured_content["error"]
    text = result.content[0].text  # type: ignore[union-attr]
    assert text.startswith(f"error: {error['message']} ({error['code']})")
    return error


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_initialise_and_list_the_tools(tmp_path: Path) -> None:
    async def scenario(client: ClientSession) -> set[str]:
        return {tool.name for tool in (await client.list_tools()).tools}

    names = drive(scenario, "--emulator", "--", "-o", "out", emulator=None, errlog=tmp_path / "e")
    assert names == TOOLS


def test_generate_saves_files_that_match_the_sidecar_and_records_the_job(
    emulator: Emulator, tmp_path: Path
) -> None:
    async def scenario(client: ClientSession) -> dict[str, Any]:
        return answer(
            await client.call_tool(
                "generate", {"model": "flux-dev", "prompt": "a red fox", "inputs": {"seed": 7}}
            )
        )

    out = tmp_path / "out"
    found = drive(scenario, "-o", str(out), "--checksum", emulator=emulator, errlog=tmp_path / "e")
    assert found["outcome"] == "saved" and found["model"] == "flux-dev"
    assert found["creditsCharged"] == 1 and found["seconds"] >= 0
    sidecar = json.loads(Path(found["sidecar"]).read_text())
    assert sidecar["jobId"] == found["jobId"]
    assert len(found["files"]) == len(sidecar["files"]) == 1
    file = Path(found["files"][0]["path"])
    assert file.is_absolute() and file.parent == out
    recorded = sidecar["files"][0]
    assert file.stat().st_size == recorded["size"] == found["files"][0]["size"]
    assert sha256(file) == recorded["sha256"] == found["files"][0]["sha256"]
    ledger = pixeldojo("jobs", "list", "--local", "--json", env=run_subprocess_env(emulator))
    [job] = json.loads(ledger.stdout)
    assert job["jobId"] == found["jobId"] and job["saved"] is True
    assert job["inputs"] == {"prompt": "a red fox", "seed": 7}


def test_a_bad_input_is_a_tool_error_and_spends_nothing(emulator: Emulator, tmp_path: Path) -> None:
    async def scenario(client: ClientSession) -> list[CallToolResult]:
        return [
            await client.call_tool(
                "generate", {"model": "flux-dev", "prompt": "x", "inputs": {"num_outputs": "x"}}
            ),
            await client.call_tool("generate", {"model": "flux-dev", "inputs": {"colour": 1}}),
            await client.call_tool("generate", {"model": "no-such-model", "prompt": "x"}),
        ]

    wrong_type, unknown, no_model = drive(
        scenario, "-o", "out", emulator=emulator, errlog=tmp_path / "e"
    )
    assert error_of(wrong_type) == {
        "code": "usage_error",
        "message": 'num_outputs must be of type integer, got "x".',
        "exit_code": 2,
    }
    assert error_of(unknown)["code"] == "usage_error"
    assert error_of(no_model)["code"] == "not_found"
    assert error_of(no_model)["exit_code"] == 6
    assert posts(emulator) == 0
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_wait_false_returns_the_job_id_at_once_and_wait_for_job_saves_it(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=1.0)

    async def scenario(client: ClientSession) -> tuple[dict[str, Any], ...]:
        submitted = answer(
            await client.call_tool("generate", {"model": "flux-dev", "prompt": "x", "wait": False})
        )
        status = answer(await client.call_tool("job_status", {"job_id": submitted["jobId"]}))
        saved = answer(await client.call_tool("wait_for_job", {"job_id": submitted["jobId"]}))
        again = answer(await client.call_tool("download_job", {"job_id": submitted["jobId"]}))
        return submitted, status, saved, again

    submitted, status, saved, again = drive(
        scenario, "-o", "out", emulator=emulator, errlog=tmp_path / "e"
    )
    assert submitted["status"] != "completed" and "files" not in submitted
    assert status["jobId"] == submitted["jobId"] and status["saved"] is False
    assert saved["outcome"] == "saved" and Path(saved["files"][0]["path"]).is_file()
    assert Path(saved["sidecar"]).is_file()
    assert again["files"][0]["path"] == saved["files"][0]["path"]
    assert posts(emulator) == 1


def test_max_credits_refuses_a_job_that_would_pass_it_before_submitting(
    emulator: Emulator, tmp_path: Path
) -> None:
    async def scenario(client: ClientSession) -> list[CallToolResult]:
        ask = {"model": "flux-dev", "prompt": "x", "wait": False}
        return [await client.call_tool("generate", ask), await client.call_tool("generate", ask)]

    first, second = drive(
        scenario, "-o", "out", "--max-credits", "1.5", emulator=emulator, errlog=tmp_path / "e"
    )
    assert answer(first)["sessionSpent"] == 1 and answer(first)["creditsLeft"] == 0.5
    error = error_of(second)
    assert error["code"] == "max_credits" and error["exit_code"] == 4
    assert "--max-credits 1.5" in error["message"]
    assert posts(emulator) == 1


def test_max_credits_that_is_not_a_number_of_credits_is_refused_as_run_refuses_it(
    tmp_path: Path,
) -> None:
    for value in ("nan", "inf", "-1", "lots"):
        done = pixeldojo("mcp", "--max-credits", value, env=run_subprocess_env(), cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "--max-credits must be a number of credits" in done.stderr


def test_the_budget_holds_in_a_session_and_ignore_budget_skips_it(
    emulator: Emulator, tmp_path: Path
) -> None:
    async def scenario(client: ClientSession) -> CallToolResult:
        return await client.call_tool(
            "generate", {"model": "flux-dev", "prompt": "x", "wait": False}
        )

    none_left = {"PIXELDOJO_BUDGET_DAILY": "0"}
    refused = drive(scenario, "-o", "out", emulator=emulator, errlog=tmp_path / "e", env=none_left)
    assert error_of(refused)["code"] == "budget_exceeded" and posts(emulator) == 0
    allowed = drive(scenario, "-o", "out", "--ignore-budget", emulator=emulator,
                    errlog=tmp_path / "e", env=none_left)  # fmt: skip
    assert answer(allowed)["jobId"] and posts(emulator) == 1


def test_estimate_cost_prices_the_request_and_submits_nothing(
    emulator: Emulator, tmp_path: Path
) -> None:
    async def scenario(client: ClientSession) -> dict[str, Any]:
        ask = {"model": "flux-dev", "prompt": "x", "inputs": {"num_outputs": 2}}
        return answer(await client.call_tool("estimate_cost", ask))

    found = drive(scenario, "-o", "out", emulator=emulator, errlog=tmp_path / "e")
    seed = found["body"].pop("seed")  # auto_seed: the seed it would send, shown
    assert isinstance(seed, int) and found["body"] == {"prompt": "x", "num_outputs": 2}
    assert found["estimatedCredits"] == 2 and found["submitted"] is False
    assert posts(emulator) == 0


def test_list_models_and_model_schema_answer_as_models_does(
    emulator: Emulator, tmp_path: Path
) -> None:
    async def scenario(client: ClientSession) -> tuple[dict[str, Any], ...]:
        videos = answer(await client.call_tool("list_models", {"type": "video"}))
        schema = answer(await client.call_tool("model_schema", {"model": "flux-dev"}))
        return videos, schema

    videos, schema = drive(scenario, emulator=emulator, errlog=tmp_path / "e")
    cli = json.loads(
        pixeldojo("models", "--type", "video", "--json", env=run_subprocess_env(emulator)).stdout
    )
    assert videos["models"] == cli and videos["count"] == len(cli) > 0
    assert schema["id"] == "flux-dev" and "prompt" in schema["requestSchema"]["properties"]


def test_search_history_finds_jobs_with_the_ledgers_filters(
    emulator: Emulator, tmp_path: Path
) -> None:
    async def scenario(client: ClientSession) -> tuple[dict[str, Any], ...]:
        for prompt in ("a lighthouse at dusk", "a red fox"):
            answer(await client.call_tool("generate", {"model": "flux-dev", "prompt": prompt}))
        fox = answer(await client.call_tool("search_history", {"search": "FOX"}))
        every = answer(await client.call_tool("search_history", {"model": "flux-*", "limit": 5}))
        none = answer(await client.call_tool("search_history", {"status": "failed"}))
        return fox, every, none

    fox, every, none = drive(scenario, "-o", "out", emulator=emulator, errlog=tmp_path / "e")
    assert [job["inputs"]["prompt"] for job in fox["jobs"]] == ["a red fox"]
    assert fox["jobs"][0]["saved"] is True and fox["jobs"][0]["files"]
    assert every["count"] == 2 and none["count"] == 0


def test_stdout_carries_only_the_protocol_under_the_embedded_emulator(tmp_path: Path) -> None:
    """Raw JSON-RPC lines in, every line out is JSON-RPC; status goes to stderr."""
    lines = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "test", "version": "1"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "generate", "arguments": {"model": "flux-dev", "prompt": "x"}},
        },
    ]
    proc = subprocess.Popen(
        [PYTHON, "-m", "pixeldojo_cli", "--emulator", "mcp", "-o", str(tmp_path / "out")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run_subprocess_env(),
    )
    assert proc.stdin is not None and proc.stdout is not None
    for line in lines:
        proc.stdin.write(json.dumps(line) + "\n")
    proc.stdin.flush()
    answers = [json.loads(proc.stdout.readline()) for _ in range(2)]
    proc.stdin.close()
    assert exit_code_within(proc, 30) == 0
    assert proc.stdout.read() == ""
    assert [a["id"] for a in answers] == [1, 2]
    assert answers[1]["result"]["structuredContent"]["outcome"] == "saved"
    assert "embedded emulator" in (proc.stderr.read() if proc.stderr else "")


def test_a_job_still_running_when_the_client_goes_away_stays_in_the_ledger(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emulator = make_emulator(latency=60)
    env = run_subprocess_env(emulator)
    proc = subprocess.Popen(
        [PYTHON, "-m", "pixeldojo_cli", "mcp", "-o", str(tmp_path / "out")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    call = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "generate", "arguments": {"model": "flux-dev", "prompt": "x"}},
    }
    proc.stdin.write(json.dumps(initialize) + "\n")
    proc.stdin.flush()
    proc.stdout.readline()
    proc.stdin.write(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}) + "\n")
    proc.stdin.write(json.dumps(call) + "\n")
    proc.stdin.flush()
    deadline = time.monotonic() + 30
    while posts(emulator) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.stdin.close()  # the assistant goes away while the job runs
    assert exit_code_within(proc, 30) == 0
    ledger = pixeldojo("jobs", "list", "--local", "--unsaved", "--json", env=env)
    [job] = json.loads(ledger.stdout)
    assert job["status"] in ("pending", "processing") and job["saved"] is False


def test_without_the_extra_it_says_what_to_install_and_exits_2(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "mcp"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('the [mcp] extra is not installed')\n")
    pythonpath = run_subprocess_env().get("PYTHONPATH", "")
    env = run_subprocess_env(PYTHONPATH=f"{shadow.parent}:{pythonpath}")
    done = pixeldojo("--emulator", "mcp", env=env)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "error: `pixeldojo mcp` needs the MCP SDK: pip install 'pixeldojo-cli[mcp]' (usage_error)"
    ]


def imported_modules(*args: str) -> set[str]:
    """Every module a `pixeldojo ARGS` process imports (`-X importtime`)."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-m", "pixeldojo_cli", *args],
        capture_output=True,
        text=True,
        env=run_subprocess_env(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return {
        line.split("|")[-1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("--version",),
        ("--emulator", "run", "flux-dev", "x", "--dry-run"),
        ("--emulator", "models"),
    ],
    ids=["help", "version", "run-dry-run", "models"],
)
def test_start_up_imports_neither_the_mcp_sdk_nor_pygments(args: tuple[str, ...]) -> None:
    """With the extra installed click can be imported, and `import httpx` would then
    import httpx's command line (click, pygments, rich.syntax): about 60 ms each start."""
    assert "mcp" in sys.modules  # installed here: the extra is present, as in CI
    modules = imported_modules(*args)
    assert "pixeldojo_cli" in modules
    assert not {m for m in modules if m.split(".")[0] in ("mcp", "pygments", "click")}
    assert "rich.syntax" not in modules  # (httpx's own command line imports it, and the above)


def test_generate_with_thumbnail_adds_a_small_png_never_the_output(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    import base64
    import io

    from PIL import Image

    async def scenario(client: ClientSession) -> CallToolResult:
        ask = {"model": "flux-dev", "prompt": "x", "thumbnail": True}
        return await client.call_tool("generate", ask)

    emulator = make_emulator(image_size=1024)
    result = drive(scenario, "-o", "out", emulator=emulator, errlog=tmp_path / "e")
    found = answer(result)
    [image] = [block for block in result.content if block.type == "image"]
    assert found["thumbnail"] == image.mime_type == "image/png"  # type: ignore[union-attr]
    png = base64.b64decode(image.data)  # type: ignore[union-attr]
    with Image.open(found["files"][0]["path"]) as output:
        assert max(output.size) == 1024
    with Image.open(io.BytesIO(png)) as picture:
        assert picture.format == "PNG" and max(picture.size) == 256
