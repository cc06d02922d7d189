"""`pixeldojo api`: any API path with the key, the rate limiter and the retry rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.cli.commands.api import printable_body, typed_value
from pixeldojo_cli.emulator import Emulator

from conftest import TEST_KEY, Invoke, make_invoker


def run_posts(emulator: Emulator) -> list[Any]:
    return [json.loads(r.body) for r in emulator.requests_to("POST", r"/run$")]


def test_get_prints_the_answer_as_received_to_a_pipe(cli: Invoke, emulator: Emulator) -> None:
    result = cli("api", "models")
    assert result.exit_code == 0, result.stderr
    answer = json.loads(result.stdout)
    assert len(answer["models"]) == 36
    [request] = emulator.requests_to("GET", r"/models$")
    assert request.authorization == f"Bearer {TEST_KEY}"


def test_paths_as_the_api_docs_write_them_work_too(cli: Invoke, emulator: Emulator) -> None:
    for path in (
        "/models/flux-dev",
        "/api/v1/models/flux-dev",
        f"{emulator.base_url}/models/flux-dev",
    ):
        result = cli("api", path)
        assert result.exit_code == 0, (path, result.stderr)
        assert json.loads(result.stdout)["apiId"] == "flux-dev"
    assert len(emulator.requests_to("GET", r"^/api/v1/models/flux-dev$")) == 3


def test_fields_go_to_the_query_string_for_get(cli: Invoke) -> None:
    result = cli("api", "models", "-X", "GET", "-f", "modality=video")
    assert result.exit_code == 0, result.stderr
    models = json.loads(result.stdout)["models"]
    assert models and {m["modality"] for m in models} == {"video"}


def test_post_run_sends_typed_fields_as_a_json_body_once(cli: Invoke, emulator: Emulator) -> None:
    result = cli(
        "api", "POST", "models/flux-dev/run",
        "-f", "prompt=a fox", "-F", "seed=42", "-F", "num_outputs=2", "-f", "output_format=png",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["jobId"].startswith("job_")
    assert run_posts(emulator) == [
        {"prompt": "a fox", "output_format": "png", "seed": 42, "num_outputs": 2}
    ]


def test_fields_make_the_default_method_post_as_with_gh(cli: Invoke, emulator: Emulator) -> None:
    result = cli("api", "models/flux-dev/run", "-f", "prompt=x")
    assert result.exit_code == 0, result.stderr
    assert run_posts(emulator) == [{"prompt": "x"}]


def test_input_sends_standard_input_as_the_body(cli: Invoke, emulator: Emulator) -> None:
    result = cli(
        "api", "POST", "models/flux-dev/run", "--input", "-", input='{"prompt": "from stdin"}'
    )
    assert result.exit_code == 0, result.stderr
    [request] = emulator.requests_to("POST", r"/run$")
    assert request.body == b'{"prompt": "from stdin"}'
    assert request.headers["content-type"] == "application/json"


def test_typed_fields_follow_gh(tmp_path: Path) -> None:
    (tmp_path / "prompt.txt").write_text("from a file")
    assert typed_value("true") is True and typed_value("false") is False
    assert typed_value("null") is None
    assert typed_value("42") == 42 and typed_value("-1.5") == -1.5
    assert typed_value('["a", 1]') == ["a", 1] and typed_value('{"k": 2}') == {"k": 2}
    assert typed_value(f"@{tmp_path / 'prompt.txt'}") == "from a file"
    for text in ("1e309", "NaN", "16:9", "abc", "1.2.3", ""):
        assert typed_value(text) == text


def test_an_error_answer_is_printed_and_exits_by_the_table(
    cli: Invoke, emulator: Emulator, make_emulator: Any
) -> None:
    result = cli("api", "jobs/job_nope")
    assert result.exit_code == 6
    assert json.loads(result.stdout)["error"]["code"] == "not_found"
    assert "not_found" in result.stderr

    result = cli("api", "POST", "models/flux-dev/run", "-F", "seed=x")
    assert result.exit_code == 2, "400 validation_error: a usage error"

    locked = make_emulator(key="the-only-key-0123456789")
    result = make_invoker(locked)("api", "jobs")
    assert result.exit_code == 3
    assert json.loads(result.stdout)["error"]["code"] == "unauthorized"


@pytest.mark.usefixtures("fast_retries")
def test_rate_limited_to_the_end_exits_8_and_a_5xx_exits_10(
    cli: Invoke, emulator: Emulator
) -> None:
    emulator.add_fault("status", path=r"/jobs$", status=429, retry_after="0", count=-1)
    assert cli("api", "jobs").exit_code == 8
    emulator.add_fault("status", path=r"/models$", status=502, count=-1)
    result = cli("api", "models")
    assert result.exit_code == 10
    assert len(emulator.requests_to("GET", r"/models$")) == 5, "a GET is retried"


@pytest.mark.usefixtures("fast_retries")
def test_get_is_retried_through_a_5xx_burst(cli: Invoke, emulator: Emulator) -> None:
    emulator.add_fault("status", path=r"/models$", status=503, count=2)
    result = cli("api", "models")
    assert result.exit_code == 0, result.stderr
    assert len(emulator.requests_to("GET", r"/models$")) == 3


@pytest.mark.usefixtures("fast_retries")
@pytest.mark.parametrize("fault", [{"kind": "status", "status": 500}, {"kind": "reset"}])
def test_a_post_is_never_sent_twice(cli: Invoke, emulator: Emulator, fault: dict[str, Any]) -> None:
    emulator.add_fault(fault.pop("kind"), method="POST", path=r"/run$", count=-1, **fault)
    result = cli("api", "POST", "models/flux-dev/run", "-f", "prompt=x")
    assert result.exit_code == 10
    assert len(emulator.requests_to("POST", r"/run$")) == 1
    assert "jobs list" in result.stderr, "says to check before submitting again"


def test_include_prints_the_status_line_and_headers_first(cli: Invoke) -> None:
    result = cli("api", "-i", "jobs/job_nope")
    assert result.exit_code == 6
    head, _, body = result.stdout.partition("\n\n")
    lines = head.splitlines()
    assert lines[0] == "HTTP/1.1 404 Not Found"
    assert "Content-Type: application/json" in lines
    assert json.loads(body)["error"]["code"] == "not_found"


def test_an_absolute_url_on_another_origin_is_refused(
    cli: Invoke, emulator: Emulator, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = receiver
    for target in (url, emulator.files_url + "/outputs/x/1.png", "//example.com/api/v1/models"):
        result = cli("api", "POST", target, "-f", "a=b")
        assert result.exit_code == 2, target
        assert "refusing to send the key" in result.stderr
    assert received == [] and emulator.requests == []


def test_the_authorization_header_cannot_be_set(cli: Invoke, emulator: Emulator) -> None:
    for header in ("Authorization: Bearer other", "authorization:x", "Host: example.com"):
        result = cli("api", "models", "-H", header)
        assert result.exit_code == 2, header
    assert emulator.requests == []
    assert cli("api", "models", "-H", "X-Trace: 7").exit_code == 0
    assert emulator.requests[0].headers["x-trace"] == "7"


def test_the_key_is_never_printed(cli: Invoke) -> None:
    for args in (["-v", "api", "-i", "models"], ["-v", "api", "-i", "jobs/job_nope"]):
        result = cli(*args)
        assert "Bearer ****cdef" in result.stderr, "the trace shows the masked key"
        assert TEST_KEY not in result.stdout + result.stderr


def test_models_need_no_key(emulator: Emulator) -> None:
    result = make_invoker(emulator, key=None)("api", "models/flux-dev/schema")
    assert result.exit_code == 0, result.stderr
    assert "properties" in json.loads(result.stdout)["schema"]


def test_bad_arguments_are_usage_errors(cli: Invoke, emulator: Emulator) -> None:
    for args in (
        ["api", "GET", "models", "extra"],
        ["api", "G E T", "models"],
        ["api", "POST", "models", "-X", "GET"],
        ["api", "models", "-f", "novalue"],
        ["api", "models", "-F", "k={bad json"],
        ["api", "models", "-H", "no colon"],
        ["api", "models", "--input", "/no/such/file"],
    ):
        result = cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
    assert emulator.requests == []


def test_on_a_terminal_json_is_indented_and_control_characters_never_pass() -> None:
    body = json.dumps({"name": "a\x1b[31mred\u009b", "n": 1}).encode()
    pretty = printable_body(body, terminal=True).decode()
    assert pretty.startswith("{\n  ") and "\x1b" not in pretty and "\u009b" not in pretty
    assert json.loads(pretty) == json.loads(body)
    raw = printable_body(body, terminal=False)
    assert json.loads(raw) == json.loads(body) and b"\xc2\x9b" not in raw
    text = printable_body(b"<html>\x1b[2J oops</html>", terminal=False)
    assert text == b"<html>\\x1b[2J oops</html>"
    assert printable_body(b"", terminal=True) == b""
