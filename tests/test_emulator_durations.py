"""The emulator's jobs take realistic, varied time: each model its own spread,
scaled by a time factor, or one fixed latency when asked."""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx

from pixeldojo_cli.emulator import Emulator

from conftest import FAST, PYTHON, TEST_KEY, pixeldojo, run_subprocess_env

AUTH = {"Authorization": f"Bearer {TEST_KEY}"}


def durations(emulator: Emulator, model: str, n: int = 300) -> list[float]:
    return [emulator.job_duration(emulator.catalogue[model]) for _ in range(n)]


def test_each_model_has_its_own_spread_of_durations(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=None, seed=1)
    fast = durations(emulator, "flux-2-klein-4b")
    slow = durations(emulator, "flux-2-max")
    video = durations(emulator, "xai-video")
    assert 1 <= statistics.median(fast) <= 3
    assert 8 <= statistics.median(slow) <= 20
    assert 30 <= statistics.median(video) <= 120
    for spread in (fast, slow, video):
        assert statistics.pstdev(spread) > 0.1 * statistics.median(spread)
        assert 0.9 * max(spread) > min(spread) * 1.5


def test_the_same_seed_gives_the_same_durations(make_emulator: Callable[..., Emulator]) -> None:
    first = make_emulator(latency=None, seed=7)
    second = make_emulator(latency=None, seed=7)
    assert durations(first, "flux-dev", 20) == durations(second, "flux-dev", 20)


def test_time_scale_scales_every_duration(make_emulator: Callable[..., Emulator]) -> None:
    real = make_emulator(latency=None, seed=3)
    scaled = make_emulator(latency=None, seed=3, time_scale=0.01)
    for a, b in zip(
        durations(real, "xai-video", 20), durations(scaled, "xai-video", 20), strict=True
    ):
        assert abs(b - a * 0.01) < 1e-9


def test_latency_forces_one_duration_for_every_job(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator(latency=0.3, time_scale=0.01)
    assert set(durations(emulator, "xai-video", 10) + durations(emulator, "p-image", 10)) == {0.3}


def finished_job(emulator: Emulator) -> dict[str, object]:
    answer = httpx.post(
        f"{emulator.base_url}/models/flux-dev/run", json={"prompt": "x"}, headers=AUTH
    )
    job_id = answer.json()["jobId"]
    for _ in range(500):
        job: dict[str, object] = httpx.get(
            f"{emulator.base_url}/jobs/{job_id}", headers=AUTH
        ).json()
        if job["status"] == "completed":
            return job
        time.sleep(0.01)
    raise AssertionError("the job never completed")


def test_a_job_answer_carries_its_creation_and_completion_times(
    make_emulator: Callable[..., Emulator],
) -> None:
    emulator = make_emulator(latency=None, time_scale=0.01)
    job = finished_job(emulator)
    created = datetime.fromisoformat(str(job["createdAt"]).replace("Z", "+00:00"))
    completed = datetime.fromisoformat(str(job["completedAt"]).replace("Z", "+00:00"))
    [emulated] = emulator.jobs.values()
    assert abs((completed - created).total_seconds() - emulated.latency) < 1e-3


def test_job_times_can_be_left_out(make_emulator: Callable[..., Emulator]) -> None:
    emulator = make_emulator(latency=0.05, job_times=False)
    job = finished_job(emulator)
    assert "createdAt" not in job and "completedAt" not in job


def test_emulator_serve_takes_a_time_scale(tmp_path: Path) -> None:
    from conftest import exit_code_within

    server = subprocess.Popen(
        [PYTHON, "-m", "pixeldojo_cli", "emulator", "serve", "--time-scale", "0.01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=run_subprocess_env(),
    )
    try:
        assert server.stdout is not None
        base_url = server.stdout.readline().strip().split("=", 1)[1]
        env = run_subprocess_env(PIXELDOJO_BASE_URL=base_url, PIXELDOJO_API_KEY="anything")
        done = pixeldojo("run", "xai-video", "a minute of video", *FAST, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        assert exit_code_within(server, 10) == 0
