"""Whole-process start-up: `pixeldojo --version` / `--help` beside a bare Typer app.

Run by hand (not in CI): `python benchmarks/startup.py [RUNS]`. Prints the median
and the spread of wall-clock times over RUNS runs (default 21) after 3 warm-ups.
The package is byte-compiled first, as an installed wheel is (an editable install
under PYTHONDONTWRITEBYTECODE would otherwise compile our modules on every start).
"""

from __future__ import annotations

import compileall
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import pixeldojo_cli
from pixeldojo_cli.api.model_cache import ModelCache
from pixeldojo_cli.emulator.catalogue import build_catalogue
from pixeldojo_cli.store.settings import cache_dir

CACHED_API = "http://127.0.0.1:9/api/v1"  # never reached: the cache answers
CATALOGUE = list(build_catalogue())

# The reference: a bare two-command Typer app with an eager --version, as ours has.
BARE_TYPER = """
import typer
app = typer.Typer()
def version(value: bool) -> None:
    if value:
        print("bare 0")
        raise typer.Exit()
@app.callback()
def main(v: bool = typer.Option(False, "--version", callback=version, is_eager=True)) -> None:
    pass
@app.command()
def one(name: str) -> None:
    print(name)
@app.command()
def two(count: int = 1) -> None:
    print(count)
app()
"""


def timed(argv: list[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    full_env = {**os.environ, **(env or {})}
    for _ in range(3):
        subprocess.run(argv, capture_output=True, check=True, env=full_env)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True, env=full_env)
        times.append((time.perf_counter() - started) * 1000)
    return times


def completing(line: str, **env: str) -> dict[str, str]:
    words = line.split()
    return {
        "_PIXELDOJO_COMPLETE": "complete_bash",
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
        **env,
    }


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 21
    compileall.compile_dir(os.path.dirname(pixeldojo_cli.__file__), quiet=1)
    script = shutil.which("pixeldojo")
    me = [script] if script else [sys.executable, "-m", "pixeldojo_cli"]
    cache_home = tempfile.mkdtemp(prefix="pixeldojo-bench-cache-")
    os.environ["XDG_CACHE_HOME"] = cache_home
    ModelCache(cache_dir(), CACHED_API).save_models(
        [{"id": m, "name": m, "type": "image"} for m in CATALOGUE]
    )
    cases: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "bare two-command Typer app --version": (
            [sys.executable, "-c", BARE_TYPER, "--version"],
            None,
        ),
        "pixeldojo --version": ([*me, "--version"], None),
        "pixeldojo --help": ([*me, "--help"], None),
        "TAB: pixeldojo mo<TAB>": (me, completing("pixeldojo mo")),
        "TAB: pixeldojo run fl<TAB> (cached ids)": (
            me,
            completing(
                "pixeldojo run fl", PIXELDOJO_BASE_URL=CACHED_API, XDG_CACHE_HOME=cache_home
            ),
        ),
        "TAB: pixeldojo run fl<TAB> (--emulator)": (
            me,
            completing("pixeldojo run fl", PIXELDOJO_EMULATOR="1"),
        ),
    }
    print(f"{'command':42} {'median ms':>10} {'min':>7} {'max':>7}   ({runs} runs)")
    reference = None
    for name, (argv, env) in cases.items():
        times = timed(argv, runs, env)
        median = statistics.median(times)
        if name.startswith("bare"):
            reference = median
        ratio = (
            f"  {median / reference:.2f}x bare Typer" if reference and "bare" not in name else ""
        )
        print(f"{name:42} {median:10.1f} {min(times):7.1f} {max(times):7.1f}{ratio}")


if __name__ == "__main__":
    main()
