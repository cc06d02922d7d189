"""When to poll a job: the published fixed schedule, and one that learns.

Pure functions of numbers: no I/O, no clock, no httpx, typer or rich. The
polling loop asks a `Schedule` how long to wait before each poll, given the
seconds since the job was submitted and the polls made so far; the history
(earlier durations of the same model on the same API, most recent first)
comes from the ledger.

- `fixed_schedule(first, maximum)`: the API's published best practice, `first`
  seconds, doubling, capped at `maximum` (2 s and 30 s by default). Forced by
  `--poll-interval` / `--max-poll-interval` or their config keys.
- `learned_schedule(durations)`: with at least `MIN_HISTORY` earlier durations,
  sparse polls before the job is expected to finish and dense ones while it
  is likely to (lag goal: max(0.5 s, 10 %) of the duration); with fewer, a cold
  schedule that starts at 0.75 s and waits 0.45x the elapsed time, so the
  lag stays a bounded fraction of the duration. A video model (the API's own
  `modality`) is probed once at 0.75 s, then left alone until 10 s: video
  generation takes tens of seconds, and the polls an image job needs in its
  first seconds would be spent on nothing.

Every delay of every schedule is at least `FLOOR` seconds (a shorter interval
asked for is raised to it), so none polls one job faster than the rate budget
allows for long; the learned ones wait at most `MAX_DELAY` (the published cap)
between polls, as the published one does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from statistics import NormalDist, median
from typing import Protocol

# Never poll one job more often than this (seconds): 4/s at the very most, and
# the shared rate limiter spreads bursts under the API's limit anyway.
FLOOR = 0.25
# The published cap between polls; no schedule waits longer than this.
MAX_DELAY = 30.0
# Earlier durations needed before the history is trusted.
MIN_HISTORY = 3
# How many of the most recent durations count (a model's speed drifts).
WINDOW = 20

# Cold schedule: first poll at COLD_FIRST s, then every COLD_GROWTH x elapsed
# (each poll 1.45x the time of the last: a median overshoot of about
# sqrt(1.45) - 1 = 20 % of the job's time, leaving room under the 25 % goal for
# the poll's and the download's own time). A video model's second poll waits for
# VIDEO_COLD_START s: the one early probe still catches a job that was done at
# once, and the growth starts where video jobs begin to finish.
COLD_FIRST = 0.75
COLD_GROWTH = 0.45
VIDEO_COLD_START = 10.0
VIDEO = "video"

# Learned schedule: the lag aimed at is max(LAG_ABS, LAG_REL x duration); where
# a job is most likely to finish, polls come DENSE_FACTOR x that apart (the
# median lag is about half a gap).
LAG_ABS = 0.5
LAG_REL = 0.10
DENSE_FACTOR = 1.5
# Spread of log-durations: floor (a model never quite repeats itself) and cap.
MIN_SIGMA = 0.10
MAX_SIGMA = 1.0
# Past exp(mu + HIGH_Z sigma) the history no longer predicts the finish.
HIGH_Z = 2.5
# Probes before the first planned poll are no earlier than this (seconds).
PROBE_MIN = 4.0

_NORMAL = NormalDist()


class Schedule(Protocol):
    """How long to wait before the next poll of one job."""

    def delay(self, elapsed: float, polls: int) -> float:
        """Seconds to wait before the next poll, `elapsed` seconds after the job was
        submitted and after `polls` polls."""
        ...

    def eta(self, elapsed: float) -> float | None:
        """Expected seconds until the job completes; None without a history."""
        ...


def _clean(durations: Sequence[float]) -> list[float]:
    """The most recent `WINDOW` usable durations (positive, finite, under a day),
    each at least `FLOOR`: no job is seen done sooner than that, and a planted
    `5e-324` must not take the fit's arithmetic below what a float holds."""
    usable = [
        max(FLOOR, float(d))
        for d in durations
        if isinstance(d, int | float) and not isinstance(d, bool) and 0 < d < 86400
    ]
    return usable[:WINDOW]


@dataclass(frozen=True)
class _Fit:
    """A robust log-normal fit: mu = median of log durations, sigma from their MAD."""

    mu: float
    sigma: float

    @classmethod
    def of(cls, durations: Sequence[float]) -> _Fit:
        logs = [math.log(d) for d in durations]
        mu = median(logs)
        mad = median(abs(x - mu) for x in logs)
        sigma = min(MAX_SIGMA, max(MIN_SIGMA, 1.4826 * mad))
        return cls(mu, sigma)

    def quantile(self, z: float) -> float:
        return math.exp(self.mu + z * self.sigma)

    def remaining(self, elapsed: float) -> float | None:
        """The median of the time left, given the job has run `elapsed` seconds
        (None once it has run far past anything seen)."""
        if elapsed <= 0:
            return self.quantile(0.0)
        done = _NORMAL.cdf((math.log(elapsed) - self.mu) / self.sigma)
        if done > 0.995:
            return None
        target = done + (1 - done) / 2
        return max(0.0, self.quantile(_NORMAL.inv_cdf(target)) - elapsed)


def _mills(z: float) -> float:
    """pdf(z) / (1 - cdf(z)) of the standard normal (its hazard), for any z: far in
    the tail both underflow to 0, and the ratio tends to z."""
    survival = 0.5 * math.erfc(z / math.sqrt(2))  # accurate in the tail, as 1 - cdf is not
    density = _NORMAL.pdf(z)
    if survival > 0.0 and density > 0.0:
        return density / survival
    return z + 1 / z if z > 0 else 0.0


def _eta_from(durations: Sequence[float], elapsed: float) -> float | None:
    usable = _clean(durations)
    if len(usable) < MIN_HISTORY:
        return None
    return _Fit.of(usable).remaining(elapsed)


def at_floor(delay: float) -> float:
    """`delay`, or `FLOOR` when it is shorter (or not a number): no schedule polls
    one job more often than that."""
    return delay if delay >= FLOOR else FLOOR


def _bounded(delay: float) -> float:
    return min(MAX_DELAY, at_floor(delay))


@dataclass(frozen=True)
class FixedSchedule:
    """`first`, doubling each poll, capped at `maximum` (the published schedule).

    `history` only feeds the ETA; it never changes when to poll.
    """

    first: float
    maximum: float
    history: tuple[float, ...] = ()

    def delay(self, elapsed: float, polls: int) -> float:
        """`first` x 2^polls, at most `maximum`; `FLOOR` for anything shorter (so
        the doubling starts from the floor, not from a tiny `first`)."""
        first, longest = at_floor(self.first), at_floor(self.maximum)
        return min(max(first, longest), first * 2.0 ** min(max(polls, 0), 64))

    def eta(self, elapsed: float) -> float | None:
        """From the history when there is one; else None."""
        return _eta_from(self.history, elapsed)


@dataclass(frozen=True)
class ColdSchedule:
    """No history: first poll at `COLD_FIRST`, then every `COLD_GROWTH` x elapsed
    (at least `FLOOR`, at most `MAX_DELAY`), so the overshoot stays a bounded
    fraction of the job's time. For a video model (`kind` "video") the second
    poll waits until `VIDEO_COLD_START`."""

    kind: str | None = None

    def delay(self, elapsed: float, polls: int) -> float:
        """The next poll at max(`COLD_FIRST`, (1 + `COLD_GROWTH`) x elapsed), or
        for video at `VIDEO_COLD_START` after the first."""
        elapsed = max(0.0, elapsed)
        if polls <= 0 and elapsed < COLD_FIRST:
            return max(FLOOR, COLD_FIRST - elapsed)
        if self.kind == VIDEO and elapsed < VIDEO_COLD_START:
            return _bounded(VIDEO_COLD_START - elapsed)
        return _bounded(COLD_GROWTH * elapsed)

    def eta(self, elapsed: float) -> float | None:
        """Unknown without history."""
        return None


@dataclass(frozen=True)
class LearnedSchedule:
    """Polls planned from the history's log-normal fit.

    Where a job of this model is likely to finish (a high hazard: chance of
    finishing now, given it has not yet), polls come `DENSE_FACTOR` x the lag
    goal apart; elsewhere they thin out as 1/sqrt(hazard), the spacing that
    minimises lag plus polls. Each gap is measured at its far end, so the first
    poll lands near the start of the likely window rather than overshooting it.
    Before that first poll: up to two probes (a quarter and half of its time,
    each only when >= `PROBE_MIN`), so a job far faster than usual is not held
    up long. Past `HIGH_Z` spreads (slower than almost any seen): the cold
    schedule's growth.
    """

    fit: _Fit

    @cached_property
    def _median_hazard(self) -> float:
        return self._hazard(self.fit.quantile(0.0))

    @cached_property
    def first_poll(self) -> float:
        """When the first planned poll falls (seconds since submission)."""
        return self._next_after(0.0)

    @property
    def window_end(self) -> float:
        """Past this, the history no longer says when the job will finish."""
        return self.fit.quantile(HIGH_Z)

    def _hazard(self, t: float) -> float:
        """The chance of finishing at `t` given not before (per second); the
        log-normal's pdf over its survival, kept finite where either underflows."""
        t = max(t, FLOOR)
        z = (math.log(t) - self.fit.mu) / self.fit.sigma
        return _mills(z) / (self.fit.sigma * t)

    def _gap(self, t: float) -> float:
        """The gap wanted between polls around time `t`."""
        hazard = self._hazard(t)
        if hazard <= 0.0:
            return MAX_DELAY
        lag_goal = max(LAG_ABS, LAG_REL * t)
        return _bounded(DENSE_FACTOR * lag_goal * math.sqrt(self._median_hazard / hazard))

    def _next_after(self, t: float) -> float:
        """The earliest time t' after `t` whose wanted gap t' - t has been waited."""
        low, high = t + FLOOR, t + MAX_DELAY
        if low - t >= self._gap(low):
            return low
        for _ in range(30):  # bisection to ~1e-8 of the 30 s span
            middle = (low + high) / 2
            if middle - t >= self._gap(middle):
                high = middle
            else:
                low = middle
        return high

    def delay(self, elapsed: float, polls: int) -> float:
        """Seconds until the next poll (see the class docstring)."""
        elapsed = max(0.0, elapsed)
        if elapsed >= self.window_end:
            return _bounded(COLD_GROWTH * elapsed)
        first = self.first_poll
        if elapsed < first:
            for probe in (first / 4, first / 2):
                if probe >= PROBE_MIN and probe > elapsed + FLOOR / 2:
                    return _bounded(probe - elapsed)
            return _bounded(first - elapsed)
        return _bounded(self._next_after(elapsed) - elapsed)

    def eta(self, elapsed: float) -> float | None:
        """The median time left given the time already spent (None far past it)."""
        return self.fit.remaining(elapsed)


def fixed_schedule(
    first: float = 2.0, maximum: float = 30.0, *, history: Sequence[float] = ()
) -> Schedule:
    """The published schedule: `first` seconds, doubling, capped at `maximum`.

    Either under `FLOOR` counts as `FLOOR`; a `maximum` under `first` is raised
    to it. `history` (earlier durations, most recent first) is used only for the ETA.
    """
    if not (0 < first < math.inf and 0 < maximum < math.inf):
        raise ValueError("poll intervals must be positive and finite")
    first = at_floor(float(first))
    return FixedSchedule(first, max(first, at_floor(float(maximum))), tuple(_clean(history)))


def learned_schedule(durations: Sequence[float], kind: str | None = None) -> Schedule:
    """A schedule from earlier durations (seconds, most recent first) of the same
    model on the same API: dense around the expected finish with at least
    `MIN_HISTORY` of them, the cold schedule otherwise (`kind`, the model's
    modality when known, shapes the cold one: see `ColdSchedule`)."""
    usable = _clean(durations)
    if len(usable) < MIN_HISTORY:
        return ColdSchedule(VIDEO if kind == VIDEO else None)
    return LearnedSchedule(_Fit.of(usable))


def choose_schedule(
    durations: Sequence[float],
    first: float | None,
    maximum: float | None,
    kind: str | None = None,
) -> Schedule:
    """The precedence: an explicit `first` or `maximum` (flag or config key) forces
    the fixed schedule (the other bound at its published default); otherwise
    the learned one. The history feeds the ETA either way."""
    if first is not None or maximum is not None:
        first_value = 2.0 if first is None else first
        maximum_value = 30.0 if maximum is None else maximum
        return fixed_schedule(first_value, maximum_value, history=durations)
    return learned_schedule(durations, kind)


def format_eta(seconds: float | None) -> str:
    """A short ETA for the progress display: `~12s left`, `~2m05s left`,
    `~1h02m left`, `<1s left`; an empty string when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    if seconds < 1:
        return "<1s left"
    whole = round(seconds)
    if whole < 60:
        return f"~{whole}s left"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"~{minutes}m{secs:02d}s left"
    hours, minutes = divmod(minutes, 60)
    return f"~{hours}h{minutes:02d}m left"


def simulate(schedule: Schedule, duration: float) -> tuple[int, float]:
    """(polls, lag) for a job that completes `duration` seconds after submission,
    polled exactly on `schedule` with instant answers: the polls made, counting
    the one that saw it done, and how long after completion that poll came."""
    elapsed, polls = 0.0, 0
    while True:
        elapsed += schedule.delay(elapsed, polls)
        polls += 1
        if elapsed >= duration:
            return polls, elapsed - duration
