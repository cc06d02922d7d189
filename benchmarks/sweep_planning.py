"""Planning time of a sweep against the number of values listed, offline.

Run by hand (not in CI; about a minute):

    python benchmarks/sweep_planning.py [LARGEST]     # default 20,000 values

Plans `run flux-dev x --matrix seed=1,2,...,N` (N values listed, each a piece
of its own) and `--matrix seed=1..N` (one range) for N doubling up to LARGEST,
against the emulator's catalogue, and prints the seconds and microseconds per
job of each. Planning checks and prices every job, so it grows with the jobs;
a listed value must cost what a range's value costs. Reference: before the
values were found by binary search, 10,000 listed values took 15 s against
4 s for `1..10000`, and 20,000 listed values x 5 did not finish in 120 s.
"""

from __future__ import annotations

import sys
import time

from pixeldojo_cli import Client
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine.sweeps import SweepAsk, plan_sweep


def seconds_to_plan(found: list[tuple[object, dict[str, object]]], matrix: str) -> float:
    started = time.perf_counter()
    ask = SweepAsk(prompt="x", matrix=(matrix,), confirmed=True)
    plan_sweep(found, ask, lambda line: None)  # type: ignore[arg-type]
    return time.perf_counter() - started


def main() -> None:
    largest = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with Emulator(rate_limit=0) as api:
        found = [Client(api_key="k", base_url=api.base_url).model_with_schema("flux-dev")]
    print(f"{'values':>8} {'listed s':>9} {'range s':>9} {'us/job':>7} {'us/job':>7}")
    size = 2_500
    while size <= largest:
        listed = seconds_to_plan(found, "seed=" + ",".join(str(n) for n in range(1, size + 1)))
        ranged = seconds_to_plan(found, f"seed=1..{size}")
        print(
            f"{size:>8,} {listed:>9.2f} {ranged:>9.2f} "
            f"{listed / size * 1e6:>7.0f} {ranged / size * 1e6:>7.0f}"
        )
        size *= 2


if __name__ == "__main__":
    main()
