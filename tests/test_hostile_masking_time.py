"""Masking the key takes time linear in the text, whatever the text (issue 24,
class 10, second round): every string of every answer is masked, so a run of
backslashes, `%5c`, `%25`, `&amp;` or `\\u00` from a hostile server must not
make it quadratic (16 KiB of backslashes took 51 s), and a key holding a run of
backslashes must not make it exponential. Forms nested as deep as real encoders
nest them are still masked.

The timings run in a child process with a deadline, so that the code this
guards against fails the test instead of hanging it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

import pytest

from pixeldojo_cli.core.redact import redact
from pixeldojo_cli.emulator import Emulator

from conftest import TEST_KEY, pixeldojo, run_subprocess_env

KEY = "pd_test_Ab/9+x&y<z\"q'w\\e-0123456789"  # made up: never a real key
RUNS = ("\\", "%5c", "%5C", "%25", "&amp;", "\\u00", "\\x", "&#", "&#x0", "%u00", "%", "\\\\/")

TIMER = """
import json, sys, time
from pixeldojo_cli.core.redact import redact

def seconds(text, key):
    start = time.perf_counter()
    redact(text, key)
    return time.perf_counter() - start

key, units, sizes = json.loads(sys.argv[1])
seconds("warm up", key)
print(json.dumps({u: [min(seconds(u * (n // len(u)), key) for _ in "ab") for n in sizes] for u in units}))
"""


def mask_times(key: str, units: tuple[str, ...], sizes: tuple[int, ...]) -> dict[str, list[float]]:
    """Seconds to mask a run of each unit at each size, in a child process that
    must be done within a few minutes (quadratic masking would take days)."""
    done = subprocess.run(
        [sys.executable, "-c", TIMER, json.dumps([key, units, sizes])],
        capture_output=True,
        text=True,
        timeout=240,
        env=run_subprocess_env(),
    )
    assert done.returncode == 0, done.stderr
    times: dict[str, list[float]] = json.loads(done.stdout)
    return times


def test_masking_a_megabyte_of_any_escape_start_takes_linear_time() -> None:
    times = mask_times(KEY, RUNS, (256 << 10, 512 << 10, 1 << 20))
    for unit, (quarter, half, whole) in times.items():
        assert whole < 30, f"1 MiB of {unit!r}: {whole:.1f} s"  # was days for backslashes
        assert half <= 3 * quarter + 0.5, f"{unit!r}: {quarter:.2f} s, then {half:.2f} s"


@pytest.mark.parametrize("key", ["\\" * 8 + "pd_test_1234", "&" * 8 + "pd_test_1234"])
def test_a_key_holding_a_run_of_escape_characters_is_masked_in_linear_time(key: str) -> None:
    times = mask_times(key, ("\\", "%5c", "&amp;", "&"), (16 << 10, 32 << 10))
    for unit, (half, whole) in times.items():
        assert whole < 30, f"32 KiB of {unit!r}: {whole:.1f} s"
        assert whole <= 3 * half + 0.5, f"{unit!r}: {half:.2f} s, then {whole:.2f} s"


def test_a_key_holding_backslashes_is_masked_escaped_once_twice_and_three_times() -> None:
    key = "pd_" + "\\" * 3 + 'test"_/1234'
    shown = key
    for _ in range(3):
        shown = json.dumps(shown)[1:-1]
        assert redact(f"<{shown}>", key) == "<****1234>", shown
    assert redact(repr(key.encode()), key) == "b'****1234'"


@pytest.mark.parametrize(
    "shown",
    [
        "\\" * 8 + "u0070d_test_x",
        "%25252525" + "70d_test_x",
        "&amp;amp;amp;amp;#112;d_test_x",
        "%2525255cu0070d_test_x",
        "&#0000000000000000000000000112;d_test_x",
    ],
    ids=["8-backslashes", "percent-4-deep", "html-4-deep", "percent-backslash", "many-zeros"],
)
def test_forms_nested_as_deep_as_real_encoders_nest_them_are_masked(shown: str) -> None:
    assert redact(f"[{shown}]", "pd_test_x") == "[****]"


def test_an_answer_holding_a_megabyte_of_backslashes_ends_the_command_at_once(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=0.0)
    emulator.add_fault("status", status=400, path="/jobs", message="x" + "\\" * (1 << 20), count=-1)
    env = run_subprocess_env(emulator)
    for args in (("jobs", "list"), ("jobs", "list", "--json"), ("api", "GET", "/jobs")):
        done = pixeldojo(*args, env=env, timeout=120)  # was days
        assert done.returncode == 2, done.stderr[-300:]
        assert TEST_KEY not in done.stdout + done.stderr
