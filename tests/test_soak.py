"""Soak: many jobs through faults injected at 5 %, and nothing lost, nothing paid twice.

`.ci/run` runs the short form (50 jobs). The full run is 200 jobs:

    PIXELDOJO_SOAK_JOBS=200 python -m pytest -q -m soak tests/test_soak.py
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.store.ledger import Ledger

from conftest import as_served, make_invoker

JOBS = int(os.environ.get("PIXELDOJO_SOAK_JOBS", "50"))
RATE = 0.05


class LedgerHog:
    """Another process's long writes: holds the ledger's write lock for `hold` s in
    every `every` s (shorter than the bounded wait, so writes wait and land)."""

    def __init__(self, path: Path, hold: float = 0.3, every: float = 1.5) -> None:
        self.path, self.hold, self.every = path, hold, every
        self.held = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, timeout=5)
        while not self._stop.wait(self.every):
            with contextlib.suppress(sqlite3.Error):
                db.execute("BEGIN EXCLUSIVE")
                self.held += 1
                time.sleep(self.hold)
                db.execute("ROLLBACK")
        db.close()

    def __enter__(self) -> LedgerHog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.soak
@pytest.mark.usefixtures("fast_retries")
def test_soak_every_output_on_disk_exactly_once(
    make_emulator: Callable[..., Emulator],
    isolated_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pixeldojo_cli.store import downloads
    from pixeldojo_cli.store.settings import ledger_path

    monkeypatch.setattr(downloads, "RETRY_BASE_DELAY", 0.01)
    emulator = make_emulator(latency=0.3, rate_limit=0, seed=20261125)
    for kind, target, extra in [
        ("status", "api", {"status": 503, "method": "GET"}),
        ("status", "api", {"status": 429, "retry_after": "0"}),  # any endpoint, POST included
        ("reset", "api", {"method": "GET"}),
        ("status", "files", {"status": 503}),
        ("truncate", "files", {"after_bytes": 100}),
        ("status", "files", {"status": 404}),  # a transient 404: never taken for expiry
        ("gzip", "files", {}),  # encoded although identity was asked for
        ("gzip", "files", {"after_bytes": 100}),  # encoded, and cut
    ]:
        emulator.add_fault(kind, target=target, count=-1, probability=RATE, **extra)
    config = isolated_env / "xdg_config_home" / "pixeldojo" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(
        "[defaults]\nrate_limit = 100000\npoll_interval = 0.05\nmax_poll_interval = 0.2\n"
    )
    cli = make_invoker(emulator)
    Ledger().close()

    started = time.monotonic()
    submitted, refused = [], 0
    with LedgerHog(ledger_path()) as hog:
        for n in range(JOBS):
            result = cli("run", "flux-dev", f"soak {n}", "--no-wait", "-o", "out")
            if result.exit_code == 0:
                submitted.append(result.stdout.strip())
            else:  # only a fault that surely stopped the job may end here: nothing created
                assert result.exit_code == 10, result.output
                refused += 1
        time.sleep(0.4)
        for _ in range(5):  # the cron sweep, until nothing is pending
            sweep = cli("download", "--pending")
            assert sweep.exit_code in (0, 10), sweep.output  # 10: some left for the next
            if "Nothing pending" in sweep.stderr:
                break
    elapsed = time.monotonic() - started

    # Every submitted job's output on disk, exactly once, byte for byte.
    out = tmp_path / "out"
    pngs = sorted(out.glob("*.png"))
    assert [p.name for p in pngs] == sorted(f"{job}-1.png" for job in submitted)
    for png in pngs:
        job_id = png.name.rsplit("-", 1)[0]
        assert as_served(png.read_bytes()) == emulator.output_file(job_id, 1)
        assert json.loads((out / f"{job_id}.json").read_text())["jobId"] == job_id
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary leftovers

    # The ledger holds them all, each downloaded.
    with Ledger() as ledger:
        rows = ledger.jobs()
    assert sorted(r.id for r in rows) == sorted(submitted)
    assert all(r.downloaded for r in rows)

    # Nothing paid twice: one emulator job per prompt, and no job the CLI does not know.
    prompts = collections.Counter(job.inputs["prompt"] for job in emulator.jobs.values())
    assert max(prompts.values()) == 1
    assert sorted(emulator.jobs) == sorted(submitted)

    # The key never went to the file origin.
    file_requests = emulator.requests_to(target="files")
    assert file_requests and all(r.authorization is None for r in file_requests)

    fired = sum(fault.fired for fault in emulator.faults._faults)
    api = len(emulator.requests_to(target="api"))
    print(
        f"\nsoak: {JOBS} submits ({refused} refused by a fault, none created), "
        f"{len(submitted)} jobs saved, {api} API + {len(file_requests)} file requests, "
        f"{fired} faults fired, ledger held {hog.held} times, {elapsed:.1f} s"
    )
    kinds: collections.Counter[str] = collections.Counter()
    for fault in emulator.faults._faults:
        kinds[f"{fault.kind} {fault.status if fault.kind == 'status' else ''}".strip()] += (
            fault.fired
        )
    print("faults: " + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items())))
