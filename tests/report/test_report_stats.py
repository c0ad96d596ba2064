"""The statistics of ``lossopt report`` against brute force and hand computations."""

from __future__ import annotations

import itertools
import math
import statistics

import pytest

from lossopt.core.report.stats import (
    bootstrap_difference,
    budget_curve,
    expected_best,
    performance_ratios,
    profile,
    target_of,
    time_to_target,
)

GRID = [0.62, 0.91, 0.85, 0.91, 0.30, 0.77]  # one value per learning rate, with a tie


@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("k", range(1, len(GRID) + 1))
def test_expected_best_equals_the_mean_over_every_k_subset(mode, k):
    pick = max if mode == "max" else min
    brute = statistics.fmean(pick(subset) for subset in itertools.combinations(GRID, k))
    assert expected_best(GRID, k, mode) == pytest.approx(brute, abs=1e-12)


def test_budget_curve_runs_from_the_mean_to_the_best_and_never_falls():
    curve = budget_curve(GRID)
    assert curve[0] == pytest.approx(statistics.fmean(GRID)) and curve[-1] == max(GRID)
    assert all(a <= b + 1e-12 for a, b in itertools.pairwise(curve))
    assert budget_curve(GRID, "min")[-1] == min(GRID)
    with pytest.raises(ValueError, match="k=7"):
        expected_best(GRID, 7)


def test_performance_profile_of_a_three_task_toy_by_hand():
    """Tasks a, b (accuracy, larger is better) and c (MSE, smaller is better).

    best: a 0.90 (P), b 0.80 (Q), c 0.5 (Q)
    ratios P: a 0.90/0.90 = 1, b 0.80/0.40 = 2, c 0.6/0.5 = 1.2
           Q: a 0.90/0.60 = 1.5, b 1, c 1
           R: a 0.90/0.45 = 2, b failed = inf, c not run
    """
    P, Q, R = ("ce", "adam"), ("focal", "sgd"), ("mse", "sgd")
    results = {
        "a": {P: 0.90, Q: 0.60, R: 0.45},
        "b": {P: 0.40, Q: 0.80, R: None},
        "c": {P: 0.6, Q: 0.5},
    }
    ratios = performance_ratios(results, {"a": "max", "b": "max", "c": "min"})
    assert ratios[P] == pytest.approx({"a": 1.0, "b": 2.0, "c": 1.2})
    assert ratios[Q] == pytest.approx({"a": 1.5, "b": 1.0, "c": 1.0})
    assert ratios[R] == {"a": 2.0, "b": math.inf}
    hand = {  # tau: (rho_P, rho_Q, rho_R)
        1.0: (1 / 3, 2 / 3, 0.0),
        1.2: (2 / 3, 2 / 3, 0.0),
        1.5: (2 / 3, 1.0, 0.0),
        2.0: (1.0, 1.0, 0.5),
        100.0: (1.0, 1.0, 0.5),
    }
    for tau, expected in hand.items():
        got = tuple(profile(ratios[p], tau) for p in (P, Q, R))
        assert got == pytest.approx(expected), tau


def test_ratio_is_infinite_for_a_value_on_the_wrong_side_of_zero():
    ratios = performance_ratios({"t": {"p": 0.0, "q": 0.5}}, {"t": "max"})
    assert ratios == {"p": {"t": math.inf}, "q": {"t": 1.0}}


def test_bootstrap_interval_separates_distinct_pairs_and_ties_equal_ones():
    best = [0.95, 0.96, 0.97]
    low, high = bootstrap_difference([0.80, 0.81, 0.82], best)
    assert low <= high < 0 and low > -0.2
    low, high = bootstrap_difference([0.96, 0.95, 0.97], best)
    assert low < 0 < high
    assert bootstrap_difference([0.9], best) is None
    assert bootstrap_difference([0.80, 0.81], best) == bootstrap_difference([0.80, 0.81], best)


def test_time_to_target_is_the_first_epoch_that_reaches_it():
    history = [(1, 0.5, 2_000), (2, 0.8, 3_500), (3, 0.7, 5_000), (4, 0.9, 6_000)]
    assert time_to_target(history, 1_000, 0.8, "max") == (2, 2.5)
    assert time_to_target(history, 1_000, 0.95, "max") is None
    assert time_to_target(history, 1_000, 0.6, "min") == (1, 1.0)
    assert target_of(0.9, "max", 0.9) == pytest.approx(0.81)
    assert target_of(0.9, "min", 0.9) == pytest.approx(1.0)
