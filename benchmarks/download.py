"""Loopback download throughput and peak memory: `pixeldojo download` vs `curl -o`.

Run by hand (not in CI):

    python benchmarks/download.py [SIZE_MIB] [RUNS]     # default 1024 MiB, 3 runs

The emulator serves one output padded to SIZE_MIB (a valid PNG with a big
ancillary chunk, streamed, never held in memory). Both tools fetch the same URL
to a fresh folder in turn; whole-process wall time and peak RSS (from wait4)
are reported, median of RUNS.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pixeldojo_cli.client import Client
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


def main() -> None:
    size_mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    pixeldojo = shutil.which("pixeldojo")
    curl = shutil.which("curl")
    if not pixeldojo or not curl:
        raise SystemExit("needs `pixeldojo` (pip install -e .) and `curl` on PATH")
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
        results: dict[str, list[tuple[float, float]]] = {"curl -o": [], "pixeldojo download": []}
        for n in range(runs):
            target = scratch / f"curl-{n}"
            target.mkdir()
            results["curl -o"].append(measure([curl, "-s", "-o", str(target / "x.png"), url], env))
            assert (target / "x.png").stat().st_size == size
            shutil.rmtree(target)
            target = scratch / f"pixeldojo-{n}"
            results["pixeldojo download"].append(
                measure([pixeldojo, "-q", "download", job.id, "-o", str(target), "--force"], env)
            )
            assert (target / f"{job.id}-1.png").stat().st_size == size
            shutil.rmtree(target)
        shutil.rmtree(scratch)
    print(f"{size / 2**20:.0f} MiB over loopback, median of {runs} runs")
    print(f"{'tool':22} {'seconds':>8} {'MiB/s':>8} {'peak RSS MiB':>13}")
    speeds = {}
    for name, samples in results.items():
        seconds = statistics.median(s for s, _ in samples)
        rss = max(r for _, r in samples)
        speeds[name] = size / 2**20 / seconds
        print(f"{name:22} {seconds:8.2f} {speeds[name]:8.0f} {rss:13.1f}")
    print(f"pixeldojo / curl throughput: {speeds['pixeldojo download'] / speeds['curl -o']:.2f}x")


if __name__ == "__main__":
    main()
