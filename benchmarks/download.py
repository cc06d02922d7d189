"""Loopback download throughput and peak memory: `pixeldojo download` vs `curl -o`.

Run by hand (not in CI):

    python benchmarks/download.py [SIZE_MIB] [RUNS]     # default 1024 MiB, 11 runs

The emulator serves one output padded to SIZE_MIB (a valid PNG with a big
ancillary chunk, streamed, never held in memory). curl, `pixeldojo download`
and `pixeldojo download --checksum` fetch the same URL to a fresh folder in
turn, which one goes first rotating run by run, after one warm-up each. Reported:
whole-process wall time (median of RUNS, fastest-slowest) and peak RSS (wait4).

The package is byte-compiled first, as an installed wheel is, so that an
editable install under PYTHONDONTWRITEBYTECODE does not pay to compile our own
modules on every start.
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
from collections.abc import Callable
from pathlib import Path

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.emulator import Emulator

KEY = "benchmark-key-0000"


def measure(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one whole process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


Command = Callable[[Path], list[str]]


def race(
    commands: dict[str, Command],
    runs: int,
    scratch: Path,
    env: dict[str, str],
    name: str,
    size: int,
) -> dict[str, list[tuple[float, float]]]:
    """Each command RUNS times into a fresh folder, rotating which goes first."""
    results: dict[str, list[tuple[float, float]]] = {tool: [] for tool in commands}
    for n in range(runs + 1):  # run 0 warms every tool up and is not counted
        order = list(commands)[n % len(commands) :] + list(commands)[: n % len(commands)]
        for tool in order:
            target = scratch / f"run-{n}"
            target.mkdir()
            sample = measure(commands[tool](target), env)
            assert (target / name).stat().st_size == size, f"{tool} wrote a short file"
            shutil.rmtree(target)
            if n:
                results[tool].append(sample)
    return results


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 11
    pixeldojo = shutil.which("pixeldojo")
    curl = shutil.which("curl")
    if not pixeldojo or not curl:
        raise SystemExit("needs `pixeldojo` (pip install -e .) and `curl` on PATH")
    package = Path(__file__).resolve().parent.parent / "pixeldojo_cli"
    compileall.compile_dir(package, quiet=1)
    with Emulator(latency=0.05, output_bytes=size_mib * 2**20, rate_limit=0) as api:
        client = Client(api_key=KEY, base_url=api.base_url)
        job = client.run("flux-dev", {"prompt": "a big one"})
        job = list(client.wait(job.id, poll_interval=0.1))[-1]
        url = job.output_urls[0]
        size = len(api.output_body(job.id, 1))
        # tmpfs when there is one: the disk is not what is measured here
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        scratch = Path(tempfile.mkdtemp(prefix="pixeldojo-bench-", dir=shm))
        env = {
            **os.environ,
            "PIXELDOJO_BASE_URL": api.base_url,
            "PIXELDOJO_API_KEY": KEY,
            "XDG_DATA_HOME": str(scratch / "data"),
            "XDG_CONFIG_HOME": str(scratch / "config"),
        }
        fetch = [pixeldojo, "-q", "download", job.id, "--force", "-o"]
        commands: dict[str, Command] = {
            "curl -o": lambda target: [curl, "-s", "-o", str(target / f"{job.id}-1.png"), url],
            "pixeldojo download": lambda target: [*fetch, str(target)],
            "  with --checksum": lambda target: [*fetch, str(target), "--checksum"],
        }
        try:  # a run that fails must not leave GiBs in tmpfs to slow the next one
            results = race(commands, runs, scratch, env, f"{job.id}-1.png", size)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{size / 2**20:.0f} MiB over loopback, median of {runs} runs (fastest-slowest)")
    print(f"{'tool':22} {'seconds':>8} {'range':>11} {'MiB/s':>8} {'peak RSS MiB':>13}")
    speeds = {}
    for name, samples in results.items():
        times = [s for s, _ in samples]
        seconds = statistics.median(times)
        rss = max(r for _, r in samples)
        speeds[name] = size / 2**20 / seconds
        spread = f"{min(times):.2f}-{max(times):.2f}"
        print(f"{name:22} {seconds:8.2f} {spread:>11} {speeds[name]:8.0f} {rss:13.1f}")
    for name in list(commands)[1:]:
        print(f"{name.strip()} / curl throughput: {speeds[name] / speeds['curl -o']:.2f}x")


if __name__ == "__main__":
    main()
