"""Time to file: the published poll schedule against the learned one, and one
rate budget shared by concurrent processes. Run by hand (not in CI):

    python benchmarks/latency.py                  # both parts, ~8 minutes
    python benchmarks/latency.py --part schedule  # or: --part concurrency

Part 1, schedules. One time-scaled emulator (`--scale`, default 0.2: a 60 s
video job takes 12 s; its 60/min limit scaled to match) serves three arms at
once, each a process of its own with its own key and rate budget, each running
one job at a time over the same shuffled mix of models:

- `published`: `fixed_schedule(2, 30)`, what the CLI did before;
- `cold`: `learned_schedule([], modality)` for every job (a model seen for the
  first time; its modality, image or video, from `GET /models/{id}` as `run`
  asks before it submits);
- `learned`: `learned_schedule(history, modality)` with the history a real ledger (in a
  scratch folder) records as the jobs finish: cold for a model's first three
  jobs, warm after (only the warm jobs are reported as `warm`).

Each arm starts its next job `--gap` seconds (real scale, default 5) after the
last one's file landed, as a person or a script between jobs would: back to
back, fast jobs alone would spend the 60/min budget, and the lag would measure
the rate limiter rather than the schedule (part 2 measures the budget).

Every number is in real-scale seconds (wall seconds / scale), so the fixed
2 s/30 s schedule means what it means for real jobs. Lag is the moment the
output file is on disk minus the moment the job completed on the server, so it
includes the poll's and the download's own time (~5-20 ms on loopback, which
the scale magnifies fivefold); both ends are the emulator's own `createdAt` and
`completedAt` against this machine's clock. Requests and 429 answers are counted
from each arm's HTTP trace.

Part 2, the shared rate budget. `pixeldojo emulator serve` standalone (60
requests/min), then `xargs -P8` running `pixeldojo -v run` 8 x N times, once
with PIXELDOJO_SHARED_RATE_BUDGET=0 (each process its own 60/min budget, as
before) and once with the shared budget; 429 answers and requests are counted
from the `-v` traces.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.api.results import Job
from pixeldojo_cli.engine import JobSeen, Recorder, WaitOptions, follow
from pixeldojo_cli.engine.schedule import Schedule, fixed_schedule, learned_schedule
from pixeldojo_cli.store.downloads import download_outputs
from pixeldojo_cli.store.ledger import Ledger

# (model, inputs, class): two of each speed, as in the emulator's catalogue.
MODELS: list[tuple[str, dict[str, Any], str]] = [
    ("p-image", {"prompt": "a"}, "fast image (0.5-3 s)"),
    ("flux-dev", {"prompt": "a"}, "fast image (0.5-3 s)"),
    ("wan-image", {"prompt": "a"}, "image (3-8 s)"),
    ("flux-2-max", {"prompt": "a"}, "slow image (8-20 s)"),
    ("xai-video", {"prompt": "a"}, "video (30-120 s)"),
    ("seedance-1.5", {"prompt": "a"}, "video (30-120 s)"),
]


@dataclass
class Outcome:
    model: str
    kind: str  # published, cold, warm
    duration: float  # real-scale seconds the job took on the server
    lag: float  # real-scale seconds from completion to the file on disk
    polls: int


# The emulator, in a process of its own: prints its base URL, serves until stdin closes.
EMULATOR = """
import sys
from pixeldojo_cli.emulator import Emulator
scale, seed = float(sys.argv[1]), int(sys.argv[2])
with Emulator(time_scale=scale, rate_limit=60, rate_window=60 * scale, credits=10**7,
              seed=seed) as api:
    print(api.base_url, flush=True)
    sys.stdin.read()
"""


class Scaled:
    """A schedule run on a time-scaled emulator: it sees real-scale seconds,
    and its delays are scaled back down to wall seconds."""

    def __init__(self, inner: Schedule, scale: float) -> None:
        self.inner, self.scale = inner, scale

    def delay(self, elapsed: float, polls: int) -> float:
        return self.inner.delay(elapsed / self.scale, polls) * self.scale

    def eta(self, elapsed: float) -> float | None:
        return self.inner.eta(elapsed / self.scale)


def follow_one(client: Client, job: Job, schedule: Scaled, recorder: Recorder) -> tuple[Job, int]:
    """The engine's own `follow` for one job, with the schedule under test."""
    seen: list[JobSeen] = []
    ended = follow(
        client,
        [job],
        WaitOptions(),
        recorder=recorder,
        schedule_for=lambda model: schedule,
        notify=lambda event: seen.append(event) if isinstance(event, JobSeen) else None,
    )
    final = ended[job.id]
    if isinstance(final, Exception):
        raise final
    return final, len(seen) - 1  # the first event is the job as submitted, not a poll


def seconds_between(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        raise SystemExit("the emulator's job answers lack createdAt/completedAt")
    return (end - start).total_seconds()


class Counter:
    """Requests and 429 answers, from the client's HTTP trace."""

    def __init__(self) -> None:
        self.requests = self.refused = 0

    def __call__(self, line: str) -> None:
        self.requests += line.startswith("> ")
        self.refused += line.startswith("< 429")


def pick_schedule(arm: str, history: list[float], modality: str | None) -> tuple[Schedule, str]:
    if arm == "published":
        return fixed_schedule(2, 30), "published"
    if arm == "cold":
        return learned_schedule([], modality), "cold"
    return learned_schedule(history, modality), "warm" if len(history) >= 3 else "first three"


def run_arm(arm: str, key: str, base_url: str, scale: float, plan: list[int], gap: float) -> None:
    """One arm, in its own process: its jobs one at a time, one JSON line each,
    then a last line with its request counts."""
    folder = Path(tempfile.mkdtemp(prefix=f"pixeldojo-latency-{arm}-"))
    counter = Counter()
    client = Client(api_key=key, base_url=base_url, rate_window=60 * scale, trace=counter)
    ledger = Ledger(folder / "jobs.sqlite3")
    warm_up = client.run("flux-dev", {"prompt": "warm-up"})  # imports, first connections
    while not warm_up.is_terminal:
        time.sleep(0.05)
        warm_up = client.get_job(warm_up.id)
    download_outputs(client.transport, warm_up, folder / "out")
    for model, _, _ in MODELS:
        client.get_model(model)  # as `run` does before each submission
    counter.requests = counter.refused = 0
    for index in plan:
        time.sleep(gap * scale)
        model, inputs, _ = MODELS[index]
        history = [d / scale for d in ledger.durations(base_url, model)]
        schedule, kind = pick_schedule(arm, history, client.modality_of(model))
        job = client.run(model, inputs)
        ledger.record_submission(
            job,
            base_url=base_url,
            profile="default",
            model=model,
            inputs=inputs,
            estimated_credits=None,
            output_dir=folder,
        )
        job, polls = follow_one(
            client, job, Scaled(schedule, scale), Recorder(ledger, base_url, "default")
        )
        download_outputs(client.transport, job, folder / "out")
        on_disk = datetime.now(UTC)
        duration = seconds_between(job.created_at, job.completed_at) / scale
        lag = seconds_between(job.completed_at, on_disk) / scale
        print(json.dumps(asdict(Outcome(model, kind, duration, lag, polls))), flush=True)
    print(json.dumps({"requests": counter.requests, "refused": counter.refused}), flush=True)
    ledger.close()
    client.close()
    shutil.rmtree(folder, ignore_errors=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def goal(outcome: Outcome) -> float:
    """The issue's lag goal for one job (warm): max(0.5 s, 10 % of its duration)."""
    return max(0.5, 0.10 * outcome.duration)


def summarise(label: str, outcomes: list[Outcome]) -> str:
    if not outcomes:
        return f"| {label} | - | - | - | - | - |"
    lags = [o.lag for o in outcomes]
    shares = [o.lag / o.duration * 100 for o in outcomes]
    polls = statistics.mean(o.polls for o in outcomes)
    within = sum(1 for o in outcomes if o.lag <= goal(o)) / len(outcomes) * 100
    return (
        f"| {label} | {len(outcomes)} | {statistics.median(lags):.2f} / {percentile(lags, 0.9):.2f}"
        f" | {statistics.median(shares):.0f} % / {percentile(shares, 0.9):.0f} %"
        f" | {polls:.1f} | {within:.0f} % |"
    )


ARMS = {"published": "key-published-0000", "cold": "key-cold-0000", "learned": "key-learned-0000"}


def schedule_part(jobs_per_model: int, scale: float, seed: int, only: set[str], gap: float) -> None:
    chosen = [i for i, (model, _, _) in enumerate(MODELS) if not only or model in only]
    plan = [i for i in chosen for _ in range(jobs_per_model)]
    random.Random(seed).shuffle(plan)
    server = subprocess.Popen(
        [sys.executable, "-c", EMULATOR, str(scale), str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip()
        started = time.monotonic()
        arms = {
            arm: subprocess.Popen(
                [
                    *(sys.executable, __file__, "--arm", arm, "--key", key),
                    *("--base-url", base_url, "--scale", str(scale)),
                    *("--plan", ",".join(map(str, plan)), "--gap", str(gap)),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for arm, key in ARMS.items()
        }
        lines = {arm: process.communicate()[0].splitlines() for arm, process in arms.items()}
        wall = time.monotonic() - started
    finally:
        server.communicate(input="", timeout=30)
    outcomes = [Outcome(**json.loads(line)) for arm in lines for line in lines[arm][:-1]]
    counts = {arm: json.loads(lines[arm][-1]) for arm in lines}
    print(
        f"\nSchedules: {jobs_per_model} jobs per model per arm, time scale {scale}, "
        f"{gap:g} s between jobs, {wall:.0f} s wall"
    )
    for arm, count in counts.items():
        print(f"  {arm}: {count['requests']} API requests, {count['refused']} answered 429")
    header = (
        "| schedule | jobs | lag s, median / p90 | lag % of duration, median / p90 "
        "| polls per job | within max(0.5 s, 10 %) |\n|---|---|---|---|---|---|"
    )
    kinds = ("published", "cold", "first three", "warm")
    by_kind = {kind: [o for o in outcomes if o.kind == kind] for kind in kinds}
    for klass in dict.fromkeys(MODELS[i][2] for i in chosen):
        names = {m for m, _, c in MODELS if c == klass}
        print(f"\n{klass}\n{header}")
        for kind in ("published", "cold", "warm"):
            print(summarise(kind, [o for o in by_kind[kind] if o.model in names]))
    print(f"\nall models\n{header}")
    for kind in kinds:
        print(summarise(kind, by_kind[kind]))
    published = statistics.mean(o.polls for o in by_kind["published"])
    for kind in ("cold", "warm"):
        if by_kind[kind]:
            # Warm jobs are a subset of the plan: compare with the published arm's
            # polls on the same models, job for job in plan order.
            same = [o for o in by_kind["published"] if o.model in {w.model for w in by_kind[kind]}]
            ratio = statistics.mean(o.polls for o in by_kind[kind]) / statistics.mean(
                o.polls for o in same or by_kind["published"]
            )
            print(f"  {kind}: {ratio:.2f}x the published schedule's polls per job")
    print(f"  published: {published:.1f} polls per job")


# --- part 2: concurrent processes -------------------------------------------------


def concurrency_part(runs_per_process: int) -> None:
    pixeldojo = shutil.which("pixeldojo") or sys.exit("needs `pixeldojo` on PATH")
    print(f"\nConcurrency: xargs -P8, {8 * runs_per_process} runs of flux-dev, 60 requests/min")
    print("| rate budget | runs | outputs saved | API requests | 429 answers | wall s |")
    print("|---|---|---|---|---|---|")
    for label, shared in (("per process (before)", "0"), ("shared (after)", "1")):
        scratch = Path(tempfile.mkdtemp(prefix="pixeldojo-xargs-"))
        env = {
            **os.environ,
            "XDG_DATA_HOME": str(scratch / "data"),
            "XDG_CONFIG_HOME": str(scratch / "config"),
            "XDG_CACHE_HOME": str(scratch / "cache"),
            "PIXELDOJO_SHARED_RATE_BUDGET": shared,
        }
        server = subprocess.Popen(
            [pixeldojo, "emulator", "serve", "--rate-limit", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        try:
            assert server.stdout is not None
            base_url = server.stdout.readline().strip().split("=", 1)[1]
            env.update(PIXELDOJO_BASE_URL=base_url, PIXELDOJO_API_KEY="benchmark-key-0000")
            prompts = "".join(f"prompt {n}\n" for n in range(8 * runs_per_process))
            started = time.monotonic()
            xargs = ["xargs", "-P8", "-n1", "-d", "\n"]
            done = subprocess.run(
                [*xargs, pixeldojo, "-v", "run", "flux-dev", "-o", str(scratch / "out")],
                input=prompts,
                capture_output=True,
                text=True,
                env=env,
                cwd=scratch,
            )
            wall = time.monotonic() - started
        finally:
            server.terminate()
            server.wait(timeout=10)
        trace = done.stderr.splitlines()
        requests = sum(1 for line in trace if line.startswith("> ") and base_url in line)
        refused = sum(1 for line in trace if line.startswith("< 429"))
        saved = len(done.stdout.split())
        print(
            f"| {label} | {8 * runs_per_process} | {saved} | {requests} | {refused} | {wall:.0f} |"
        )
        shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--part", choices=("schedule", "concurrency", "both"), default="both")
    parser.add_argument("--jobs", type=int, default=12, help="jobs per model per arm")
    parser.add_argument("--scale", type=float, default=0.2, help="emulator time scale")
    parser.add_argument("--runs", type=int, default=4, help="runs per process (part 2)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--models", default="", help="comma-separated subset of the models")
    parser.add_argument("--gap", type=float, default=5.0, help="seconds between one arm's jobs")
    parser.add_argument("--arm", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--plan", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.arm:
        plan = [int(index) for index in args.plan.split(",")]
        run_arm(args.arm, args.key, args.base_url, args.scale, plan, args.gap)
        return
    if args.part in ("schedule", "both"):
        only = {name for name in args.models.split(",") if name}
        schedule_part(args.jobs, args.scale, args.seed, only, args.gap)
    if args.part in ("concurrency", "both"):
        concurrency_part(args.runs)


if __name__ == "__main__":
    main()
