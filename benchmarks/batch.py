"""Requests spent by a batch against the real rate limit, counted in the emulator.

Run by hand (not in CI; about two minutes at 60 requests/min):

    python benchmarks/batch.py [JOBS] [LATENCY_S]      # default 100 jobs of 20 s

Reports the API requests of `pixeldojo run MODEL --batch FILE` (submits, list
polls, single polls), the 429 answers, the requests per minute achieved against
the 60 allowed, and, as the reference, what JOBS separate `run`s would spend on
polling: the polls of one measured `run` of the same latency, times JOBS.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pixeldojo_cli.emulator import Emulator

KEY = "benchmark-key-0000"


def main() -> None:
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    latency = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    pixeldojo = shutil.which("pixeldojo") or sys.exit("needs `pixeldojo` on PATH")
    scratch = Path(tempfile.mkdtemp(prefix="pixeldojo-batch-"))
    env = {
        **os.environ,
        "PIXELDOJO_API_KEY": KEY,
        "XDG_DATA_HOME": str(scratch / "data"),
        "XDG_CONFIG_HOME": str(scratch / "config"),
        "XDG_CACHE_HOME": str(scratch / "cache"),
    }
    with Emulator(latency=latency, rate_limit=60, credits=10**6) as api:
        env["PIXELDOJO_BASE_URL"] = api.base_url
        subprocess.run(
            [pixeldojo, "-q", "run", "flux-dev", "one job"],
            env=env,
            check=True,
            cwd=scratch,
            stdout=subprocess.DEVNULL,
        )
        single_polls = len(api.requests_to("GET", r"/jobs/job_"))
        time.sleep(61)  # a fresh rate-limit window for the batch
        api.requests.clear()
        api.rate_limited = 0
        (scratch / "prompts.txt").write_text("".join(f"prompt {n}\n" for n in range(jobs)))
        started = time.monotonic()
        subprocess.run(
            [pixeldojo, "-q", "run", "flux-dev", "--batch", "prompts.txt", "-o", "out"],
            env=env,
            check=True,
            cwd=scratch,
            stdout=subprocess.DEVNULL,
        )
        elapsed = time.monotonic() - started
        api_requests = [r for r in api.requests if r.target == "api"]
        times = sorted(r.at for r in api_requests)
        busiest = max(sum(1 for t in times if start <= t < start + 60) for start in times)
        submits = len(api.requests_to("POST", r"/run$"))
        list_polls = len(api.requests_to("GET", r"/jobs$"))
        job_polls = len(api.requests_to("GET", r"/jobs/job_"))
        saved = len(list((scratch / "out").glob("*.png")))
        rate_limited = api.rate_limited
    shutil.rmtree(scratch)
    print(f"batch of {jobs} jobs of {latency:g} s, rate limit 60/min")
    print(
        f"  API requests          {len(api_requests):6}  ({submits} submits, "
        f"{list_polls} list polls, {job_polls} single polls)"
    )
    print(f"  429 answers           {rate_limited:6}")
    print(
        f"  polls in all          {list_polls + job_polls:6}  vs {single_polls * jobs} for "
        f"{jobs} separate runs ({single_polls} each)"
    )
    print(f"  wall time             {elapsed:6.1f} s")
    print(f"  busiest 60 s window   {busiest:6}  requests of 60 allowed")
    print(f"  outputs saved         {saved:6}")


if __name__ == "__main__":
    main()
