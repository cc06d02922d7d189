"""Do `run` and `models` start as fast with the `[mcp]` extra installed as without?

Run by hand (not in CI): `python benchmarks/mcp_startup.py [RUNS]` in an
environment where the extra is installed. The extra's only effect on these
commands is that click becomes importable (uvicorn needs it), and httpx then
imports its own command line (click, rich.syntax, pygments) on `import httpx`;
`pixeldojo_cli.cli` marks that module absent so httpx takes its fallback.

Three set-ups, each the median (and spread) of RUNS runs after 3 warm-ups of
`run flux-dev x --dry-run` and `models` against an emulator on loopback (started
here, so its own start is not counted). The process's CPU time (user + system)
is the measure: on a busy machine wall-clock time mostly measures the others.

- without the extra: a shadow `click` and `mcp` that cannot be imported;
- with the extra: as installed;
- with the extra, httpx's command line paid: httpx imported before our package
  (what every start cost before the fix).
"""

from __future__ import annotations

import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pixeldojo_cli
from pixeldojo_cli.emulator import Emulator

COMMANDS = [["run", "flux-dev", "x", "--dry-run"], ["models"]]
PAYING = "import httpx, runpy; runpy.run_module('pixeldojo_cli', run_name='__main__')"


def shadow_folder() -> str:
    """A folder whose `click` and `mcp` fail to import, as when the extra is absent."""
    folder = Path(tempfile.mkdtemp(prefix="pixeldojo-no-extra-"))
    for name in ("click", "mcp"):
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text("raise ImportError('not installed')\n")
    return str(folder)


def cpu_ms(argv: list[str], env: dict[str, str]) -> float:
    """The CPU time (user + system) one run of `argv` took, in milliseconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, capture_output=True, check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return used * 1000


def timed(argv: list[str], runs: int, env: dict[str, str]) -> list[float]:
    for _ in range(3):
        cpu_ms(argv, env)
    return [cpu_ms(argv, env) for _ in range(runs)]


def line(label: str, times: list[float]) -> str:
    spread = f"{min(times):.0f}-{max(times):.0f}"
    return f"  {label:<40} median {statistics.median(times):5.0f} ms CPU  (range {spread})"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    compileall.compile_dir(os.path.dirname(pixeldojo_cli.__file__), quiet=1)
    here = os.environ.get("PYTHONPATH", "")
    emulator = Emulator(rate_limit=0).start()
    home = tempfile.mkdtemp(prefix="pixeldojo-bench-home-")
    base = {
        **os.environ,
        "HOME": home,
        "XDG_CACHE_HOME": home,
        "XDG_DATA_HOME": home,
        "XDG_CONFIG_HOME": home,
        "PIXELDOJO_BASE_URL": emulator.base_url,
        "PIXELDOJO_API_KEY": "pd_test_benchmark",
        # Each run its own rate budget: a hundred runs a minute would wait for a shared one.
        "PIXELDOJO_SHARED_RATE_BUDGET": "0",
    }
    without = {**base, "PYTHONPATH": os.pathsep.join(p for p in (shadow_folder(), here) if p)}
    me = [sys.executable, "-m", "pixeldojo_cli"]
    paying = [sys.executable, "-c", PAYING]
    for args in COMMANDS:
        print(f"pixeldojo {' '.join(args)}  ({runs} runs)")
        print(line("without the extra", timed(me + args, runs, without)))
        print(line("with the extra", timed(me + args, runs, base)))
        print(line("with the extra, httpx's CLI imported", timed(paying + args, runs, base)))
    emulator.stop()


if __name__ == "__main__":
    main()
