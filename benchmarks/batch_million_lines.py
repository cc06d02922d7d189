"""Planning a batch file of a million lines: time and peak memory.

Run by hand (not a test; a minute or two):

    python benchmarks/batch_million_lines.py [LINES] [--tracemalloc]   # 1,000,000 lines

Writes a file of LINES lines (prompts, JSON lines, comments, blank lines, a
few repeats, U+2028 inside some), then plans it as `run --batch FILE` does
before spending anything (read streaming, every line checked against the
schema, priced and keyed), timed, with the process's peak RSS before and after;
then the second pass `--dry-run` makes (every line's body, read again). With
`--tracemalloc`, plans it once more to report the peak of Python allocations
(slower: tracemalloc about doubles the time).
"""

from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from pixeldojo_cli.api.client import Client
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.engine.batch_file import BatchFile
from pixeldojo_cli.engine.batch_lines import Plan, plan_batch

KEY = "benchmark-key-0000"


def write_file(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write("\ufeff# a batch of many lines\n")
        for n in range(1, lines):
            if n % 50 == 0:
                out.write("\n")
            elif n % 10 == 0:
                out.write(json.dumps({"prompt": f"a cat number {n}", "num_outputs": 2}) + "\n")
            elif n % 1000 == 7:
                out.write("a repeated prompt\n")
            else:
                out.write(f"a fox number {n} in the snow\u2028at dusk, photographed\n")


def plan(model: Any, schema: dict[str, Any], path: Path) -> Plan:
    with path.open("rb") as stream:
        return plan_batch(model, schema, BatchFile(stream, str(path)), {})


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--tracemalloc"]
    lines = int(args[0]) if args else 1_000_000
    scratch = Path(tempfile.mkdtemp(prefix="pixeldojo-million-"))
    path = scratch / "prompts.txt"
    write_file(path, lines)
    with Emulator(latency=0.0) as api, Client(api_key=KEY, base_url=api.base_url) as client:
        model, schema = client.model_with_schema("flux-dev")
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    planned = plan(model, schema, path)
    seconds = time.perf_counter() - started
    rss_after = peak_rss_mib()
    print(f"file: {lines:,} lines, {path.stat().st_size / 2**20:.1f} MiB")
    print(
        f"planned {len(planned):,} jobs in {seconds:.1f} s ({seconds / lines * 1e6:.0f} us a line)"
    )
    print(f"peak RSS: {rss_before:.0f} MiB before planning, {rss_after:.0f} MiB after")
    started = time.perf_counter()
    with path.open("rb") as stream:
        planned.source.file = BatchFile(stream, str(path))
        bodies = sum(1 for _ in planned.bodies())
    print(f"--dry-run's second pass: {bodies:,} bodies in {time.perf_counter() - started:.1f} s")
    if "--tracemalloc" in sys.argv:
        del planned
        tracemalloc.start()
        plan(model, schema, path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"planning's peak of Python allocations (tracemalloc): {peak / 2**20:.1f} MiB")
    path.unlink()
    scratch.rmdir()


if __name__ == "__main__":
    main()
