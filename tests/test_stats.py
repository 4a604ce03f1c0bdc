"""Seed statistics against scipy."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from lossbench import stats


@pytest.mark.parametrize("n", [2, 3, 10, 30])
def test_mean_ci_is_the_student_t_interval(n):
    x = np.random.default_rng(n).normal(0.7, 0.05, size=n)
    mean, low, high, count = stats.mean_ci(x)
    expected = scipy_stats.t.interval(0.95, n - 1, loc=x.mean(), scale=scipy_stats.sem(x))
    assert count == n and mean == pytest.approx(x.mean())
    assert (low, high) == pytest.approx(expected)


def test_mean_ci_skips_non_finite_values_and_has_no_interval_for_one_value():
    assert stats.mean_ci([0.5, np.nan, np.inf])[3] == 1
    mean, low, high, n = stats.mean_ci([0.5])
    assert mean == 0.5 and np.isnan(low) and np.isnan(high)
    assert np.isnan(stats.mean_ci([])[0])


def test_paired_difference_is_taken_seed_by_seed():
    # the pairing matters: a constant difference of 0.01 has a zero-width interval,
    # although both losses vary a lot over seeds
    base = np.array([0.60, 0.80, 0.70, 0.90])
    runs = pd.DataFrame({"loss": ["a"] * 4 + ["b"] * 4, "seed": [0, 1, 2, 3] * 2, "acc": list(base + 0.01) + list(base)})
    row = stats.summarize(runs, ["acc"], baseline="b").set_index("loss").loc["a"]
    assert row["diff_mean"] == pytest.approx(0.01)
    assert row["diff_high"] - row["diff_low"] == pytest.approx(0.0, abs=1e-12)
    assert row["ci_high"] - row["ci_low"] > 0.2


def test_paired_difference_uses_only_seeds_both_losses_have():
    runs = pd.DataFrame({"loss": ["a", "a", "a", "b", "b"], "seed": [0, 1, 2, 0, 1], "acc": [1.0, 2.0, 9.0, 0.0, 1.0]})
    row = stats.summarize(runs, ["acc"], baseline="b").set_index("loss").loc["a"]
    assert row["diff_n"] == 2 and row["diff_mean"] == pytest.approx(1.0)


def test_paired_difference_matches_seeds_not_row_order():
    """The difference is loss minus baseline on the same seed, whatever order the rows come in."""
    runs = pd.DataFrame({"loss": ["a"] * 3 + ["b"] * 3, "seed": [0, 1, 2, 2, 0, 1],
                         "acc": [0.60, 0.80, 0.70, 0.75, 0.50, 0.85]})
    row = stats.summarize(runs, ["acc"], baseline="b").set_index("loss").loc["a"]
    d = np.array([0.60 - 0.50, 0.80 - 0.85, 0.70 - 0.75])  # seed 0, 1, 2, by hand
    expected = scipy_stats.t.interval(0.95, 2, loc=d.mean(), scale=scipy_stats.sem(d))
    assert row["diff_n"] == 3 and row["diff_mean"] == pytest.approx(d.mean())
    assert (row["diff_low"], row["diff_high"]) == pytest.approx(expected)


def test_band_groups_by_the_given_columns():
    frame = pd.DataFrame({"loss": ["a"] * 6, "epoch": [0, 0, 0, 1, 1, 1], "v": [1.0, 2.0, 3.0, 5.0, 5.0, 5.0]})
    b = stats.band(frame, "v", ["loss", "epoch"]).set_index("epoch")
    assert b.loc[0, "mean"] == 2.0 and b.loc[0, "ci_low"] < 2.0 < b.loc[0, "ci_high"]
    assert b.loc[1, "ci_low"] == b.loc[1, "ci_high"] == 5.0


def test_band_agrees_with_mean_ci_for_every_group():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"loss": rng.choice(["a", "b"], 60), "epoch": rng.integers(0, 4, 60), "v": rng.normal(size=60)})
    frame.loc[3, "v"] = np.inf  # missing values and infinities count as absent
    frame.loc[4, "v"] = np.nan
    b = stats.band(frame, "v", ["loss", "epoch"])
    for _, row in b.iterrows():
        group = frame[(frame.loss == row["loss"]) & (frame.epoch == row["epoch"])]["v"]
        mean, low, high, n = stats.mean_ci(group.to_numpy())
        assert (row["mean"], row["ci_low"], row["ci_high"], row["n"]) == pytest.approx((mean, low, high, n), nan_ok=True)


def test_intervals_stop_at_the_ends_of_a_metrics_range():
    """Two seeds far apart: the t-interval reaches past 0 and 1, where no accuracy can lie."""
    runs = pd.DataFrame({"loss": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1],
                         "test_accuracy": [0.55, 0.95, 0.05, 0.99], "final_train_loss": [0.1, 0.9, 0.2, 0.3]})
    s = stats.summarize(runs, ["test_accuracy", "final_train_loss"], baseline="b").set_index(["loss", "metric"])
    mean, low, high, _ = stats.mean_ci([0.55, 0.95])
    assert (low, high) != (0.0, 1.0) and low < 0 and high > 1  # the plain interval
    assert s.loc[("a", "test_accuracy"), ["ci_low", "ci_high"]].tolist() == [0.0, 1.0]
    assert s.loc[("a", "test_accuracy"), "mean"] == pytest.approx(mean)
    # a difference of accuracies lies between -1 and 1: 0.5 and -0.04, an interval far wider than that
    assert s.loc[("a", "test_accuracy"), ["diff_low", "diff_high"]].tolist() == [-1.0, 1.0]
    # a loss has no upper end: its interval is left as it is
    loss_low, loss_high = stats.mean_ci([0.1, 0.9])[1:3]
    assert s.loc[("a", "final_train_loss"), ["ci_low", "ci_high"]].tolist() == pytest.approx([loss_low, loss_high])
    assert loss_low < 0


def test_a_chosen_thresholds_interval_stops_at_the_ends_of_the_sweep():
    """The sweep tries 0.01 to 0.99, so a chosen threshold's interval cannot reach 0 or 1."""
    runs = pd.DataFrame({"loss": ["a"] * 2, "seed": [0, 1], "best_threshold": [0.05, 0.95]})
    row = stats.summarize(runs, "best_threshold", baseline=None).iloc[0]
    assert stats.mean_ci([0.05, 0.95])[1] < 0  # the plain interval
    assert (row["ci_low"], row["ci_high"]) == (0.01, 0.99)


@pytest.mark.parametrize("confidence", [95, 0, 1, -0.5, float("nan"), True, "0.95"], ids=str)
def test_mean_ci_refuses_a_confidence_that_is_not_between_0_and_1(confidence):
    with pytest.raises(ValueError) as info:
        stats.mean_ci([1.0, 2.0, 3.0], confidence=confidence)
    assert str(info.value) == f"Expected `confidence` to be a number between 0 and 1 (0.95 for 95%), but got {confidence!r}."


def test_mean_ci_accepts_a_numpy_confidence():
    assert stats.mean_ci([1.0, 2.0, 3.0], confidence=np.float64(0.95))[1] == pytest.approx(stats.mean_ci([1.0, 2.0, 3.0])[1])


@pytest.mark.parametrize("within", [(1.0, 0.0), (0.0, float("nan")), (0.0,)], ids=["reversed", "nan", "one-end"])
def test_mean_ci_refuses_a_range_whose_low_end_is_above_its_high_end(within):
    with pytest.raises(ValueError) as info:
        stats.mean_ci([0.2, 0.4], within=within)
    assert str(info.value) == f"Expected `within` to be a range (low, high) with low <= high, or None, but got {within!r}."


RUNS = pd.DataFrame({"loss": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "acc": [0.8, 0.9, 0.7, 0.7]})


def test_summarize_takes_a_single_metric_name_as_one_metric():
    pd.testing.assert_frame_equal(stats.summarize(RUNS, "acc", baseline="b"), stats.summarize(RUNS, ["acc"], baseline="b"))


def test_summarize_refuses_a_baseline_that_is_not_among_the_losses():
    with pytest.raises(ValueError) as info:
        stats.summarize(RUNS, ["acc"], baseline="c")
    assert str(info.value) == "Expected `baseline` to be one of the losses 'a', 'b', or None, but got 'c'."


def test_summarize_and_band_refuse_a_percentage_as_confidence():
    with pytest.raises(ValueError, match="Expected `confidence` to be a number between 0 and 1"):
        stats.summarize(RUNS, ["acc"], baseline=None, confidence=95)
    with pytest.raises(ValueError, match="Expected `confidence` to be a number between 0 and 1"):
        stats.band(RUNS, "acc", ["loss"], confidence=95)


@pytest.mark.parametrize(
    "metric, expected",
    [
        *[(name, (0.0, 1.0)) for name in ("test_accuracy", "val_accuracy_best", "test_auc", "val_auc", "test_f1_best",
                                          "test_sensitivity", "test_specificity_best", "test_exact_match", "test_ece",
                                          "diverged")],  # fmt: skip
        ("best_threshold", (0.01, 0.99)),
        ("final_train_loss", None),
        ("val_loss", None),
    ],
)
def test_every_summary_metric_has_the_range_its_values_can_take(metric, expected):
    assert stats.metric_range(metric) == expected
