"""Every JSON file on disk that the CLI reads back is as untrusted as an API
answer: the rate budget, output sidecars, the ledger's side file and the model
cache. Damaged, huge or nested past any sane depth, each is ignored like a
missing one; never a traceback (Python's own decoder stops near 1,000 levels
with a RecursionError, which is not a ValueError)."""

from __future__ import annotations

import json
from pathlib import Path

from pixeldojo_cli.client import Client
from pixeldojo_cli.completion import _cache_path, known_modality, known_model_ids
from pixeldojo_cli.downloads import recorded_files
from pixeldojo_cli.emulator import Emulator
from pixeldojo_cli.ledger import Ledger, pending_records_path

from conftest import FAST, TEST_KEY, Invoke

DEEP = b"[" * 100_000  # well under every size cap, far past the decoder's depth


def test_a_sidecar_nested_too_deep_is_no_jobs_and_the_save_goes_on(
    cli: Invoke, emulator: Emulator, tmp_path: Path
) -> None:
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        job = client.run("flux-dev", {"prompt": "x"})
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / f"{job.id}.json").write_bytes(DEEP)
    assert recorded_files(folder, job.id, emulator.base_url) == {}
    result = cli("jobs", "wait", job.id, "-o", str(folder), *FAST)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.split()) == 1
    # Unreadable, it was nobody's record: it now says what was saved beside it.
    assert json.loads((folder / f"{job.id}.json").read_text())["jobId"] == job.id


def test_a_side_file_line_nested_too_deep_is_skipped_and_the_rest_replayed(
    emulator: Emulator, tmp_path: Path
) -> None:
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        job = client.run("flux-dev", {"prompt": "x"})
    path = tmp_path / "jobs.sqlite3"
    with Ledger(path) as ledger:
        good = json.dumps(
            {
                "op": "submitted",
                "base_url": emulator.base_url,
                "profile": "default",
                "job": job.raw,
                "model": "flux-dev",
                "inputs": {"prompt": "x"},
                "estimated_credits": 1,
                "output_dir": str(tmp_path),
            }
        ).encode()
        pending_records_path(path).write_bytes(DEEP + b"\n" + good + b"\n")
        ledger.replay_deferred()
        assert pending_records_path(path).read_bytes() == b""


def test_a_model_cache_nested_too_deep_is_ignored(cli: Invoke, emulator: Emulator) -> None:
    cache = _cache_path("models", emulator.base_url)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(DEEP)
    assert known_modality(emulator.base_url, "flux-dev") is None
    assert known_model_ids(emulator.base_url) == []
    with Client(api_key=TEST_KEY, base_url=emulator.base_url) as client:
        assert client.modality_of("flux-dev") is None
    result = cli("run", "flux-dev", "x", *FAST)
    assert result.exit_code == 0, result.output
    assert cli("run", "flux-dve", "x").exit_code != 1  # the did-you-mean reads it too


def test_a_model_cache_too_big_is_ignored(emulator: Emulator) -> None:
    cache = _cache_path("models", emulator.base_url)
    cache.parent.mkdir(parents=True, exist_ok=True)
    entry = {"id": "flux-dev", "name": "x", "type": "video"}
    cache.write_text(json.dumps([entry] + [{"id": "x" * 64}] * 300_000))
    assert known_modality(emulator.base_url, "flux-dev") is None
