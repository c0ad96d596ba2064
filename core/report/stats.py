"""The statistics of ``lossopt report`` across tasks and budgets: plain functions of
numbers, so each is checked by hand (``tests/report/test_report_stats.py``).

Every function takes a ``mode`` ("max": larger is better, "min": smaller is better)
instead of assuming one, because a study across tasks monitors accuracy on some tasks
and MSE on others.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from math import comb

__all__ = [
    "TAUS",
    "bootstrap_difference",
    "budget_curve",
    "expected_best",
    "performance_ratios",
    "profile",
    "profile_order",
    "target_of",
    "time_to_target",
]


TAUS = (1.0, 1.02, 1.05, 1.1, 1.25, 1.5)  # where the profile tables read ρ(τ)


def _better(mode: str) -> float:
    return 1.0 if mode == "max" else -1.0


def expected_best(values: Sequence[float], k: int, mode: str = "max") -> float:
    """The expected best of ``k`` of ``values`` drawn at random without replacement.

    Exact (Dodge et al. 2019, "Show your work", here over subsets): with the values
    sorted from worst to best, ``v[i]`` (0-based) is the best of a k-subset when it is
    drawn and the k - 1 others come from the i worse ones, so
    ``E = sum_i v[i] * C(i, k-1) / C(n, k)``. Ties do not change the sum.
    """
    n = len(values)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be between 1 and the {n} values")
    ordered = sorted(values, key=lambda v: _better(mode) * v)
    return sum(v * comb(i, k - 1) for i, v in enumerate(ordered)) / comb(n, k)


def budget_curve(values: Sequence[float], mode: str = "max") -> list[float]:
    """``expected_best(values, k)`` for k = 1 … len(values): the tuning-budget curve."""
    return [expected_best(values, k, mode) for k in range(1, len(values) + 1)]


def performance_ratios(
    results: Mapping[str, Mapping[tuple, float | None]], modes: Mapping[str, str]
) -> dict[tuple, dict[str, float]]:
    """Dolan–Moré performance ratios ``{pair: {task: r}}``, r ≥ 1, 1 for the best.

    results: ``{task: {pair: best-lr result, or None when every job failed}}``.
    r is best/value where larger is better and value/best where smaller is, so
    "within a factor τ of the best" is r ≤ τ; a failed pair, or a value on the wrong
    side of 0, has r = inf. A pair gets a ratio on the tasks it ran on only.
    """
    ratios: dict[tuple, dict[str, float]] = {}
    for task, by_pair in results.items():
        done = [v for v in by_pair.values() if v is not None]
        pick = max if modes[task] == "max" else min
        best = pick(done) if done else None
        for pair, value in by_pair.items():
            ratios.setdefault(pair, {})[task] = _ratio(value, best, modes[task])
    return ratios


def _ratio(value: float | None, best: float | None, mode: str) -> float:
    if value is None or best is None:
        return math.inf
    if value == best:
        return 1.0
    num, den = (best, value) if mode == "max" else (value, best)
    return num / den if num > 0 and den > 0 else math.inf


def profile(ratios: Mapping[str, float], tau: float) -> float:
    """ρ(τ): the share of a pair's tasks on which its ratio is at most τ."""
    return sum(r <= tau for r in ratios.values()) / len(ratios) if ratios else 0.0


def bootstrap_difference(
    values: Sequence[float],
    best: Sequence[float],
    resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of mean(values) - mean(best), the seeds of each
    resampled with replacement; None with fewer than two seeds on either side."""
    if len(values) < 2 or len(best) < 2:
        return None
    rng = random.Random(seed)
    diffs = sorted(
        statistics.fmean(rng.choices(values, k=len(values)))
        - statistics.fmean(rng.choices(best, k=len(best)))
        for _ in range(resamples)
    )
    tail = (1.0 - level) / 2
    low = diffs[int(tail * (resamples - 1))]
    high = diffs[math.ceil((1.0 - tail) * (resamples - 1))]
    return low, high


def target_of(best: float, mode: str, fraction: float) -> float:
    """The default target: within a factor 1/fraction of the best on the task
    (fraction × best where larger is better, best / fraction where smaller is)."""
    return fraction * best if mode == "max" else best / fraction


def time_to_target(
    history: Sequence[tuple[int, float, int]], start_ms: int, target: float, mode: str
) -> tuple[int, float] | None:
    """(epoch, wall seconds since the job started) of the first epoch whose value
    reaches ``target``; None when none does. history: ``(epoch, value, ms)``."""
    for epoch, value, ms in history:
        if (value >= target) if mode == "max" else (value <= target):
            return epoch, max(ms - start_ms, 0) / 1000.0
    return None


def profile_order(ratios: dict[tuple[str, str], dict[str, float]]) -> list[tuple[str, str]]:
    """Pairs from the best profile down: by the mean of ρ over ``TAUS``, then by the
    number of tasks they ran on (a pair run on one task has an easy profile)."""
    score = {p: statistics.fmean(profile(r, tau) for tau in TAUS) for p, r in ratios.items()}
    return sorted(ratios, key=lambda p: (-score[p], -len(ratios[p]), p))
