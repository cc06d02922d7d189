"""Whole-process start-up: `pixeldojo --version` / `--help` beside a bare Typer app.

Run by hand (not in CI): `python benchmarks/startup.py [RUNS]`. Prints the median
and the spread of wall-clock times over RUNS runs (default 21) after 3 warm-ups.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time

BARE_TYPER = """
import typer
app = typer.Typer()
@app.command()
def main(version: bool = typer.Option(False, "--version")) -> None:
    print("bare 0")
app()
"""


def timed(argv: list[str], runs: int) -> list[float]:
    for _ in range(3):
        subprocess.run(argv, capture_output=True, check=True)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    script = shutil.which("pixeldojo")
    cases = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "bare Typer app --version": [sys.executable, "-c", BARE_TYPER, "--version"],
        "bare Typer app, pretty_exceptions off": [
            sys.executable,
            "-c",
            BARE_TYPER.replace("Typer()", "Typer(pretty_exceptions_enable=False)"),
            "--version",
        ],
        "python -m pixeldojo_cli --version": [sys.executable, "-m", "pixeldojo_cli", "--version"],
        "python -m pixeldojo_cli --help": [sys.executable, "-m", "pixeldojo_cli", "--help"],
    }
    if script:
        cases["pixeldojo --version (console script)"] = [script, "--version"]
    print(f"{'command':40} {'median ms':>10} {'min':>7} {'max':>7}   ({runs} runs)")
    for name, argv in cases.items():
        times = timed(argv, runs)
        print(f"{name:40} {statistics.median(times):10.1f} {min(times):7.1f} {max(times):7.1f}")


if __name__ == "__main__":
    main()
