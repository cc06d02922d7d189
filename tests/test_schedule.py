"""The poll schedules, as pure functions: jobs of known duration are simulated
against each schedule (polls made, lag between completion and the poll that
saw it), and compared with the published schedule on the same durations.
No clock anywhere: these are numbers in, numbers out."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixeldojo_cli.engine.schedule import (
    COLD_FIRST,
    COLD_GROWTH,
    FLOOR,
    MAX_DELAY,
    VIDEO_COLD_START,
    ColdSchedule,
    FixedSchedule,
    LearnedSchedule,
    Schedule,
    choose_schedule,
    fixed_schedule,
    format_eta,
    learned_schedule,
    simulate,
)

PUBLISHED = fixed_schedule(2, 30)

# Synthetic models: (typical low, typical high) seconds, as the emulator's are.
WORKLOADS = {"fast image": (1.0, 3.0), "slow image": (8.0, 20.0), "video": (30.0, 120.0)}


def draws(low: float, high: float, n: int, seed: int) -> list[float]:
    """Log-normal durations with ~95 % between `low` and `high`."""
    rng = random.Random(seed)
    mu = (math.log(low) + math.log(high)) / 2
    sigma = (math.log(high) - math.log(low)) / 4
    return [rng.lognormvariate(mu, sigma) for _ in range(n)]


def lag_goal(duration: float) -> float:
    return max(0.5, 0.10 * duration)


def run_all(schedule: Schedule, durations: list[float]) -> tuple[list[int], list[float]]:
    results = [simulate(schedule, d) for d in durations]
    return [p for p, _ in results], [lag for _, lag in results]


# --- the published schedule -------------------------------------------------------


def test_fixed_schedule_is_first_then_doubling_capped() -> None:
    assert [PUBLISHED.delay(0, n) for n in range(7)] == [2, 4, 8, 16, 30, 30, 30]


def test_fixed_schedule_polls_a_ten_second_job_three_times() -> None:
    assert simulate(PUBLISHED, 10) == (3, 4.0)  # at 2, 6 and 14 s


def test_fixed_schedule_rejects_non_positive_intervals() -> None:
    with pytest.raises(ValueError):
        fixed_schedule(0, 30)


# --- cold: no history -------------------------------------------------------------


def test_cold_schedule_first_poll_is_well_under_two_seconds() -> None:
    assert learned_schedule([]).delay(0.0, 0) == COLD_FIRST < 2


def test_cold_schedule_grows_gently() -> None:
    schedule = learned_schedule([])
    elapsed, polls = 0.0, 0
    while elapsed < 60:
        delay = schedule.delay(elapsed, polls)
        if polls:
            assert delay <= 0.5 * elapsed + 1e-9
        elapsed, polls = elapsed + delay, polls + 1


@pytest.mark.parametrize("name", WORKLOADS)
def test_cold_median_lag_is_within_a_quarter_of_the_duration(name: str) -> None:
    durations = draws(*WORKLOADS[name], n=300, seed=1)
    _, lags = run_all(learned_schedule([]), durations)
    assert statistics.median(lag / d for lag, d in zip(lags, durations, strict=True)) <= 0.25


def test_cold_lag_is_never_more_than_half_the_duration() -> None:
    schedule = learned_schedule([])
    for duration in [COLD_FIRST * 1.01 + 0.37 * n for n in range(400)]:
        _, lag = simulate(schedule, duration)
        assert lag <= 0.5 * duration + 1e-9


def test_cold_polls_cost_at_most_the_early_start_over_twice_the_published() -> None:
    # Starting at 0.75 s rather than 2 s costs up to three polls before 2 s;
    # beyond that, the cold schedule spends at most twice the published polls.
    for duration in [0.05 * n for n in range(1, 3000)]:
        cold, _ = simulate(learned_schedule([]), duration)
        published, _ = simulate(PUBLISHED, duration)
        assert cold <= 2 * published + 3


def test_cold_video_schedule_probes_once_early_then_waits_for_video_time() -> None:
    schedule = learned_schedule([], kind="video")
    assert schedule.delay(0.0, 0) == COLD_FIRST
    assert schedule.delay(COLD_FIRST, 1) == pytest.approx(VIDEO_COLD_START - COLD_FIRST)
    assert schedule.delay(VIDEO_COLD_START, 2) == pytest.approx(COLD_GROWTH * VIDEO_COLD_START)


def test_a_job_done_at_once_is_seen_by_the_first_poll_whatever_the_model() -> None:
    for kind in (None, "image", "video", "unknown"):
        assert simulate(learned_schedule([], kind=kind), 0.01) == (1, COLD_FIRST - 0.01)


def test_an_image_or_unknown_model_gets_the_generic_cold_schedule() -> None:
    generic = learned_schedule([])
    for kind in ("image", "unknown", "VIDEO ", ""):
        schedule = learned_schedule([], kind=kind)
        assert [schedule.delay(t, n) for n, t in enumerate((0, 0.75, 1.2, 9))] == [
            generic.delay(t, n) for n, t in enumerate((0, 0.75, 1.2, 9))
        ]


@pytest.mark.parametrize("workload", [(20.0, 60.0), (30.0, 120.0), (60.0, 300.0)])
def test_cold_video_median_lag_is_within_a_quarter_of_the_duration(
    workload: tuple[float, float],
) -> None:
    durations = draws(*workload, n=300, seed=4)
    _, lags = run_all(learned_schedule([], kind="video"), durations)
    assert statistics.median(lag / d for lag, d in zip(lags, durations, strict=True)) <= 0.25


def test_cold_video_polls_fewer_than_the_generic_cold_schedule() -> None:
    durations = draws(30.0, 120.0, n=300, seed=5)
    video, _ = run_all(learned_schedule([], kind="video"), durations)
    generic, _ = run_all(learned_schedule([]), durations)
    published, _ = run_all(PUBLISHED, durations)
    assert sum(video) <= sum(generic) - 4 * len(durations)
    assert sum(video) <= 1.5 * sum(published)


def test_cold_over_a_mix_of_image_and_video_models_stays_within_the_goals() -> None:
    # The benchmark's mix: two fast image models, an image, a slow image and two
    # video models, each seen for the first time.
    mix = [
        ((0.5, 1.5), None),
        ((1.0, 3.0), "image"),
        ((3.0, 6.0), "image"),
        ((8.0, 20.0), "image"),
        ((30.0, 120.0), "video"),
        ((30.0, 120.0), "video"),
    ]
    cold_polls, published_polls, shares = 0, 0, []
    for seed, (workload, kind) in enumerate(mix):
        durations = draws(*workload, n=500, seed=seed)
        polls, lags = run_all(learned_schedule([], kind=kind), durations)
        cold_polls += sum(polls)
        published_polls += sum(run_all(PUBLISHED, durations)[0])
        shares += [lag / d for lag, d in zip(lags, durations, strict=True)]
    assert statistics.median(shares) <= 0.25
    assert cold_polls <= 2 * published_polls


def test_one_or_two_earlier_jobs_are_still_cold() -> None:
    assert isinstance(learned_schedule([10.0, 11.0]), ColdSchedule)
    assert isinstance(learned_schedule([10.0, 11.0, 12.0]), LearnedSchedule)


# --- warm: three or more earlier jobs ---------------------------------------------


@pytest.mark.parametrize("name", WORKLOADS)
def test_warm_median_lag_is_within_half_a_second_or_ten_percent(name: str) -> None:
    history = draws(*WORKLOADS[name], n=20, seed=2)
    durations = draws(*WORKLOADS[name], n=300, seed=3)
    _, lags = run_all(learned_schedule(history), durations)
    ratio = [lag / lag_goal(d) for lag, d in zip(lags, durations, strict=True)]
    assert statistics.median(ratio) <= 1.0


@pytest.mark.parametrize("name", WORKLOADS)
def test_warm_polls_at_most_twice_the_published_schedule(name: str) -> None:
    history = draws(*WORKLOADS[name], n=20, seed=2)
    durations = draws(*WORKLOADS[name], n=300, seed=3)
    learned, _ = run_all(learned_schedule(history), durations)
    published, _ = run_all(PUBLISHED, durations)
    assert sum(learned) <= 2 * sum(published)


@pytest.mark.parametrize("name", WORKLOADS)
def test_warm_lag_beats_the_published_schedule(name: str) -> None:
    history = draws(*WORKLOADS[name], n=20, seed=2)
    durations = draws(*WORKLOADS[name], n=300, seed=3)
    _, learned = run_all(learned_schedule(history), durations)
    _, published = run_all(PUBLISHED, durations)
    assert statistics.median(learned) < statistics.median(published)


def test_warm_schedule_polls_sparsely_before_the_expected_finish() -> None:
    schedule = learned_schedule([60.0, 55.0, 65.0, 58.0, 62.0])
    times, elapsed, polls = [], 0.0, 0
    while elapsed < 60:
        elapsed += schedule.delay(elapsed, polls)
        polls += 1
        times.append(elapsed)
    early = [t for t in times if t < 40]
    late = [t for t in times if 50 <= t < 60]
    assert len(early) <= 3  # two probes and the first planned poll, at most
    assert len(late) >= 2


def test_a_wider_spread_starts_dense_polling_earlier() -> None:
    tight = learned_schedule([10.0, 10.2, 9.8, 10.1, 9.9])
    spread = learned_schedule([10.0, 6.0, 15.0, 8.0, 13.0])
    assert isinstance(tight, LearnedSchedule) and isinstance(spread, LearnedSchedule)
    assert spread.first_poll < tight.first_poll < 10.0


def test_outliers_barely_move_the_schedule() -> None:
    clean = draws(8.0, 20.0, n=17, seed=4)
    with_outliers = [300.0, *clean[:8], 0.2, *clean[8:], 900.0]
    a, b = learned_schedule(clean), learned_schedule(with_outliers)
    assert isinstance(a, LearnedSchedule) and isinstance(b, LearnedSchedule)
    assert b.first_poll == pytest.approx(a.first_poll, rel=0.15)
    durations = draws(8.0, 20.0, n=200, seed=5)
    _, lags = run_all(b, durations)
    assert statistics.median(lag / lag_goal(d) for lag, d in zip(lags, durations, strict=True)) <= 1


def test_only_the_recent_window_counts() -> None:
    # The model got faster: 20 recent jobs of ~2 s, 100 older ones of ~40 s.
    recent = draws(1.5, 2.5, n=20, seed=6)
    schedule = learned_schedule([*recent, *draws(30, 50, n=100, seed=7)])
    assert schedule.eta(0.0) == pytest.approx(statistics.median(recent), rel=0.1)


def test_a_job_faster_than_its_history_is_caught_by_a_probe() -> None:
    schedule = learned_schedule([60.0, 55.0, 65.0, 58.0, 62.0])
    assert isinstance(schedule, LearnedSchedule)
    _, lag = simulate(schedule, 5.0)
    assert lag <= schedule.first_poll / 4


def test_a_job_slower_than_its_history_still_ends_with_bounded_lag() -> None:
    schedule = learned_schedule([10.0, 11.0, 9.0, 10.5])
    _, lag = simulate(schedule, 200.0)
    assert lag <= 0.5 * 200


def test_unusable_durations_are_ignored() -> None:
    junk = [math.nan, math.inf, -3.0, 0.0, 1e9]
    assert isinstance(learned_schedule([*junk, 10.0, 11.0]), ColdSchedule)
    assert isinstance(learned_schedule([*junk, 10.0, 11.0, 12.0]), LearnedSchedule)


histories = st.lists(st.one_of(st.floats(min_value=0.01, max_value=1e5), st.floats()), max_size=30)


@given(histories, st.floats(min_value=0, max_value=1e5), st.integers(min_value=0, max_value=500))
def test_every_delay_is_between_the_floor_and_the_published_cap(
    history: list[float], elapsed: float, polls: int
) -> None:
    delay = learned_schedule(history).delay(elapsed, polls)
    assert 0.25 <= FLOOR <= delay <= MAX_DELAY


@given(histories, st.floats(min_value=0.01, max_value=3000))
def test_one_job_never_polls_above_the_rate_limit(history: list[float], duration: float) -> None:
    schedule = learned_schedule(history)
    times, elapsed, polls = [], 0.0, 0
    while elapsed < duration:
        elapsed += schedule.delay(elapsed, polls)
        polls += 1
        times.append(elapsed)
    # At most 60 polls in any 60 s window (the API's published limit).
    for i, start in enumerate(times):
        assert sum(1 for t in times[i:] if t < start + 60) <= 60


# --- precedence ---------------------------------------------------------------------


def test_an_explicit_interval_forces_the_fixed_schedule() -> None:
    history = [10.0, 11.0, 12.0]
    forced = choose_schedule(history, 1.0, None)
    assert isinstance(forced, FixedSchedule)
    assert [forced.delay(0, n) for n in range(6)] == [1, 2, 4, 8, 16, 30]
    capped = choose_schedule(history, None, 5.0)
    assert [capped.delay(0, n) for n in range(3)] == [2, 4, 5]


def test_without_explicit_intervals_the_schedule_learns() -> None:
    assert isinstance(choose_schedule([], None, None), ColdSchedule)
    assert choose_schedule([], None, None, "video") == ColdSchedule("video")
    assert isinstance(choose_schedule([], 2.0, None, "video"), FixedSchedule)
    assert isinstance(choose_schedule([10.0, 11.0, 12.0], None, None), LearnedSchedule)


# --- ETA --------------------------------------------------------------------------


def test_eta_is_unknown_without_history() -> None:
    assert learned_schedule([]).eta(3.0) is None
    assert PUBLISHED.eta(3.0) is None


def test_eta_counts_down_from_the_median() -> None:
    schedule = learned_schedule([10.0, 9.0, 11.0, 10.0, 10.5])
    assert schedule.eta(0.0) == pytest.approx(10.0, rel=0.05)
    assert schedule.eta(4.0) == pytest.approx(6.0, rel=0.1)


def test_eta_of_an_overdue_job_stays_positive_then_gives_up() -> None:
    schedule = learned_schedule([10.0, 9.0, 11.0, 10.0, 10.5])
    overdue = schedule.eta(11.5)
    assert overdue is not None and overdue > 0
    assert schedule.eta(100.0) is None


def test_a_forced_schedule_still_has_an_eta_from_history() -> None:
    forced = choose_schedule([10.0, 9.0, 11.0], 2.0, 30.0)
    assert forced.eta(0.0) == pytest.approx(10.0, rel=0.05)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, ""),
        (math.nan, ""),
        (-1.0, ""),
        (0.4, "<1s left"),
        (12.4, "~12s left"),
        (59.6, "~1m00s left"),
        (125.0, "~2m05s left"),
        (3720.0, "~1h02m left"),
    ],
)
def test_format_eta(seconds: float | None, text: str) -> None:
    assert format_eta(seconds) == text
