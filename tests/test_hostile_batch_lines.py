"""Batch files are read as `wc -l` reads them (issue 24, class 3): lines end at
`\\n` (and `\\r\\n`) only, a byte-order mark at the start is dropped before the
comment and JSON checks, line numbers are the file's, a line that is not UTF-8
is one clear error, and the file is planned streaming, holding no line's text."""

from __future__ import annotations

import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.core.errors import UsageError
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine.batch_file import BatchFile
from pixeldojo_cli.engine.batch_lines import plan_batch, request_key

from conftest import TEST_KEY, Invoke

POLL = ("--poll-interval", "0.1", "--max-poll-interval", "0.4")
BOM = "\ufeff"
# Characters str.splitlines() would end a line at: here they are text.
NOT_LINE_ENDS = ["\u2028", "\u2029", "\x85", "\x0c", "\x0b", "\x1c", "\x1d", "\x1e"]


def posts(emulator: Emulator) -> int:
    return len(emulator.requests_to("POST", r"/run$"))


def prompts(emulator: Emulator) -> list[str]:
    return sorted(job.inputs["prompt"] for job in emulator.jobs.values())


def planned(result: Any) -> list[dict[str, Any]]:
    """The lines `--dry-run` printed."""
    return [json.loads(line) for line in result.stdout.splitlines() if line]


def entries_of(data: bytes) -> list[tuple[int, str | dict[str, Any]]]:
    return [(number, entry) for number, _, entry in BatchFile(io.BytesIO(data), "f").entries()]


# --- the splitter ---------------------------------------------------------------------------


@pytest.mark.parametrize("char", NOT_LINE_ENDS, ids=[hex(ord(c)) for c in NOT_LINE_ENDS])
def test_only_newline_ends_a_line(char: str) -> None:
    data = f"one {char} more\ntwo{char}\n{char}three\n".encode()
    assert data.count(b"\n") == 3  # what `wc -l` says
    assert entries_of(data) == [(1, f"one {char} more"), (2, "two"), (3, "three")]


def test_crlf_ends_a_line_and_no_cr_is_left_in_a_prompt() -> None:
    assert entries_of(b"one\r\ntwo\r\n\r\nfour") == [(1, "one"), (2, "two"), (4, "four")]


def test_a_bom_is_dropped_before_the_comment_and_json_checks() -> None:
    assert entries_of(f"{BOM}# a comment\nprompt\n".encode()) == [(2, "prompt")]
    assert entries_of(f'{BOM}{{"prompt": "cat"}}\n'.encode()) == [(1, {"prompt": "cat"})]


def test_a_bom_anywhere_but_the_start_is_text() -> None:
    assert entries_of(f"one\n{BOM}two\n".encode()) == [(1, "one"), (2, f"{BOM}two")]


def test_a_json_error_names_the_files_line_and_the_column_not_the_parsers_line() -> None:
    with pytest.raises(UsageError) as caught:
        entries_of(b'one\n\n  {"prompt": "x",}\n')
    message = caught.value.message
    assert (
        message.startswith("--batch 'f' line 3 is not valid JSON") and "column 18" in message
    )  # the `}`
    assert "line 1" not in message


def test_a_line_that_is_not_utf8_names_the_files_line() -> None:
    with pytest.raises(UsageError) as caught:
        entries_of("one\u2028still one\n# two\nthree \xff\n".encode().replace(b"\xc3\xbf", b"\xff"))
    assert "line 3 is not UTF-8" in caught.value.message
    assert "\n" not in caught.value.message


# --- the command ----------------------------------------------------------------------------


@pytest.mark.parametrize("char", NOT_LINE_ENDS, ids=[hex(ord(c)) for c in NOT_LINE_ENDS])
def test_a_three_line_file_is_three_paid_jobs_whatever_is_inside_its_lines(
    cli: Invoke, emulator: Emulator, char: str
) -> None:
    as_json = json.dumps({"prompt": f"x{char}y"}, ensure_ascii=False)  # raw unless a control
    Path("b.txt").write_text(f"a {char} fox\nan owl{char}a cat\n{as_json}\n")
    result = cli("run", "flux-dev", "--batch", "b.txt", "-o", "out", *POLL)
    assert result.exit_code == 0, result.output
    assert posts(emulator) == 3
    assert prompts(emulator) == sorted([f"a {char} fox", f"an owl{char}a cat", f"x{char}y"])
    assert char not in result.stderr  # never raw on a terminal


def test_a_bom_before_a_comment_and_a_json_line_pays_for_neither_as_a_prompt(
    cli: Invoke, emulator: Emulator
) -> None:
    Path("b.txt").write_bytes(f'{BOM}# not a prompt\n{{"prompt": "a cat"}}\n'.encode())
    result = cli("run", "flux-dev", "--batch", "b.txt", "-o", "out", *POLL)
    assert result.exit_code == 0, result.output
    assert prompts(emulator) == ["a cat"]
    Path("c.txt").write_bytes(f'{BOM}{{"prompt": "an owl"}}\n'.encode())
    result = cli("run", "flux-dev", "--batch", "c.txt", "--dry-run")
    assert [line["body"]["prompt"] for line in planned(result)] == ["an owl"]


def test_stdin_is_read_by_the_same_rules(cli: Invoke, emulator: Emulator) -> None:
    text = f"{BOM}# comment\r\none\u2028two\r\n\x0cthree\x1c\r\n"
    result = cli("run", "flux-dev", "--batch", "-", "--dry-run", input=text.encode())
    assert result.exit_code == 0, result.output
    assert [(line["line"], line["body"]["prompt"]) for line in planned(result)] == [
        (2, "one\u2028two"),
        (3, "three"),
    ]


def test_line_numbers_in_messages_are_the_files(cli: Invoke, emulator: Emulator) -> None:
    Path("b.txt").write_text('one\u2028two\x85three\n\n# c\x0cd\n{"prompt": "", "x\u2029": 1}\n')
    result = cli("run", "flux-dev", "--batch", "b.txt")
    assert result.exit_code == 2, result.output
    assert "line 4" in result.stderr and "line 6" not in result.stderr
    assert "\u2029" not in result.stderr
    assert posts(emulator) == 0


def test_a_line_not_utf8_is_one_clear_error_and_nothing_is_spent(
    cli: Invoke, emulator: Emulator
) -> None:
    Path("b.txt").write_bytes(b"one\n\xc3\x28 two\nthree\n")
    result = cli("run", "flux-dev", "--batch", "b.txt")
    assert result.exit_code == 2, result.output
    assert "line 2 is not UTF-8" in result.stderr
    assert "Traceback" not in result.output
    assert posts(emulator) == 0


def test_a_bad_last_line_of_a_long_file_spends_nothing(cli: Invoke, emulator: Emulator) -> None:
    lines = [f"prompt {n}" for n in range(3000)] + ['{"prompt": "x", "num_outputs": "many"}']
    Path("b.txt").write_text("\n".join(lines) + "\n")
    result = cli("run", "flux-dev", "--batch", "b.txt")
    assert result.exit_code == 2, result.output
    assert "line 3001" in result.stderr
    assert posts(emulator) == 0


# --- planning, streaming --------------------------------------------------------------------


@pytest.fixture
def flux(emulator: Emulator) -> Any:
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        return client.model_with_schema("flux-dev")


def test_planning_holds_no_lines_text(flux: Any, tmp_path: Path) -> None:
    model, schema = flux
    path = tmp_path / "big.txt"
    line = "a prompt of many words " * 400  # about 9 kB
    path.write_text("".join(f"{n} {line}\n" for n in range(1000)))  # about 9 MB
    with path.open("rb") as stream:
        batch_file = BatchFile(stream, str(path))
        tracemalloc.start()
        try:
            plan = plan_batch(model, schema, batch_file, {})
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert len(plan) == 1000
        assert peak < 2_000_000 + 17_000_000  # a few lines at a time, and the repeat filter
        assert plan.lines()[999].inputs["prompt"] == f"999 {line.strip()}"


def test_repeated_lines_keep_the_keys_of_earlier_versions(flux: Any, tmp_path: Path) -> None:
    model, schema = flux
    path = tmp_path / "b.txt"
    path.write_text("a\nb\na\n\na\nb\n")
    with path.open("rb") as stream:
        plan = plan_batch(model, schema, BatchFile(stream, "b.txt"), {})
        keys = [line.key for line in plan.lines()]

    def key(prompt: str, occurrence: int) -> str:
        return request_key(model.id, {"prompt": prompt}, occurrence)

    assert keys == [key("a", 0), key("b", 0), key("a", 1), key("a", 2), key("b", 1)]


def test_a_file_changed_after_planning_is_not_submitted_as_planned(
    flux: Any, tmp_path: Path
) -> None:
    model, schema = flux
    path = tmp_path / "b.txt"
    path.write_text("one\ntwo\n")
    with path.open("rb") as stream:
        lines = plan_batch(model, schema, BatchFile(stream, "b.txt"), {}).lines()
        path.write_text("one\nTWO\n")  # rewritten in place
        assert lines[0].inputs["prompt"] == "one"
        with pytest.raises(UsageError, match="changed after it was checked: line 2"):
            lines[1].submission(model.id, tmp_path, None)
