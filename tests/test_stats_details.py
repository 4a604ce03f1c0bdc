"""Details of the seed statistics that the broader tests leave open: the confidence level, cut intervals, finite counts."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from lossbench import stats

RUNS = pd.DataFrame({
    "loss": ["a"] * 4 + ["b"] * 4, "seed": [0, 1, 2, 3] * 2,
    "final_train_loss": [0.30, 0.42, 0.35, 0.50, 0.20, 0.45, 0.30, 0.33],
})  # fmt: skip


def test_summarize_uses_the_confidence_it_is_given_for_the_means_and_the_differences():
    # rule: summarize's intervals are Student's t at the requested level (here 90%), as scipy.stats.t.interval
    row = stats.summarize(RUNS, "final_train_loss", baseline="b", confidence=0.9).set_index("loss").loc["a"]
    a = RUNS.loc[RUNS.loss == "a", "final_train_loss"].to_numpy()
    d = a - RUNS.loc[RUNS.loss == "b", "final_train_loss"].to_numpy()
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(scipy_stats.t.interval(0.9, 3, loc=a.mean(), scale=scipy_stats.sem(a)))
    assert (row["diff_low"], row["diff_high"]) == pytest.approx(scipy_stats.t.interval(0.9, 3, loc=d.mean(), scale=scipy_stats.sem(d)))


def test_band_uses_the_confidence_it_is_given():
    # rule: band's interval is Student's t at the requested level (here 80%), as scipy.stats.t.interval
    b = stats.band(RUNS, "final_train_loss", ["loss"], confidence=0.8).set_index("loss")
    for loss in ("a", "b"):
        x = RUNS.loc[RUNS.loss == loss, "final_train_loss"].to_numpy()
        expected = scipy_stats.t.interval(0.8, len(x) - 1, loc=x.mean(), scale=scipy_stats.sem(x))
        assert (b.loc[loss, "ci_low"], b.loc[loss, "ci_high"]) == pytest.approx(expected)


def test_a_difference_of_chosen_thresholds_is_cut_to_the_width_of_the_sweep():
    # rule: two thresholds on 0.01..0.99 differ by at most 0.98, so their paired difference is cut to [-0.98, 0.98]
    runs = pd.DataFrame({"loss": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "best_threshold": [0.05, 0.95, 0.95, 0.05]})
    row = stats.summarize(runs, "best_threshold", baseline="b").set_index("loss").loc["a"]
    assert row["diff_mean"] == pytest.approx(0.0)
    assert (row["diff_low"], row["diff_high"]) == pytest.approx((-0.98, 0.98))


def test_mean_ci_accepts_a_range_of_a_single_value():
    # rule: `within` needs low <= high, so a range whose ends are equal is allowed and cuts the interval to that value
    assert stats.mean_ci([0.2, 0.4], within=(0.3, 0.3)) == pytest.approx((0.3, 0.3, 0.3, 2))


def test_summarize_counts_only_the_seeds_with_a_finite_value():
    # rule: n is the number of finite values the mean and the interval are taken over, not the number of rows
    runs = pd.DataFrame({"loss": ["a"] * 3, "seed": [0, 1, 2], "final_train_loss": [0.2, np.nan, 0.4]})
    row = stats.summarize(runs, "final_train_loss", baseline=None).iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(0.3)
