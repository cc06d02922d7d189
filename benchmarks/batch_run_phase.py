"""Running a big batch, not only planning it: time and peak RSS of the CLI.

Run by hand (not a test; a minute or two):

    python benchmarks/batch_run_phase.py [LINES]      # 200,000 lines

Writes a file of LINES prompts and runs, each as its own process against an
embedded emulator: `run --batch FILE --dry-run` (planning, then every body
printed), then `run --batch FILE --max-credits 0` (planning, then the run
phase: every line goes through the batch's schedule and ends skipped, as over
the cap, so nothing is paid and no job waits). Prints each one's wall time
and the process's peak RSS; the second minus the first is about what the run
phase costs (the scheduling of every line, and a `Line` for each).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pixeldojo_cli.emulator import Emulator

KEY = "benchmark-key-0000"


def measure(args: list[str], env: dict[str, str]) -> tuple[int, float, float]:
    """(exit code, seconds, peak RSS in MiB) of `python -m pixeldojo_cli ARGS`."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixeldojo_cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    return os.waitstatus_to_exitcode(status), seconds, usage.ru_maxrss / 1024


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    scratch = Path(tempfile.mkdtemp(prefix="pixeldojo-run-phase-"))
    path = scratch / "prompts.txt"
    path.write_text("".join(f"a fox number {n} in the snow\n" for n in range(lines)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXELDOJO_")}
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME"):
        env[name] = str(scratch / name.lower())
    with Emulator(latency=0.0) as api:
        env.update(PIXELDOJO_BASE_URL=api.base_url, PIXELDOJO_API_KEY=KEY)
        batch = ["run", "flux-dev", "--batch", str(path), "--progress", "none", "-q"]
        for label, extra in (
            ("--dry-run", ["--dry-run"]),
            ("--max-credits 0", ["--max-credits", "0"]),
        ):
            code, seconds, rss = measure([*batch, *extra], env)
            print(f"{lines:,} lines, {label}: exit {code}, {seconds:.1f} s, peak RSS {rss:.0f} MiB")
    path.unlink()


if __name__ == "__main__":
    main()
