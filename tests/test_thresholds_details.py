"""Details of the threshold metrics that the broader tests leave open: undefined rates, tie-breaking, pooled calibration."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import recall_score

from lossbench import thresholds as thr


def test_sensitivity_with_no_positive_to_find_is_undefined_not_zero():
    # sensitivity = TP / (TP + FN) is 0 / 0 when y has no positives: NaN, as scikit-learn's recall with zero_division=nan
    scores = torch.tensor([[[0.2], [0.7]]], dtype=torch.float64)
    y = torch.zeros(2, 1)
    m = thr.sweep(scores, y, torch.tensor([0.5]))
    expected = recall_score([0, 0], [0, 1], zero_division=np.nan)
    assert np.isnan(expected) and np.isnan(m["sensitivity"][0, 0].item())
    assert m["specificity"][0, 0].item() == 0.5  # one of the two negatives is called negative


def test_specificity_with_no_negative_to_find_is_undefined_not_zero():
    # specificity = TN / (TN + FP) is 0 / 0 when y has no negatives: NaN, as scikit-learn's recall of class 0
    scores = torch.tensor([[[0.2], [0.7]]], dtype=torch.float64)
    y = torch.ones(2, 1)
    m = thr.sweep(scores, y, torch.tensor([0.5]))
    expected = recall_score([1, 1], [0, 1], pos_label=0, zero_division=np.nan)
    assert np.isnan(expected) and np.isnan(m["specificity"][0, 0].item())
    assert m["sensitivity"][0, 0].item() == 0.5


def test_an_undefined_metric_is_never_the_best_threshold():
    # a NaN metric (0 / 0) counts below every real value: the best threshold is the largest defined one
    metric = torch.tensor([[0.6, torch.nan, 0.8, torch.nan, 0.7]], dtype=torch.float64)
    grid = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    assert thr.best_threshold_index(metric, grid).tolist() == [2]
    metric = torch.tensor([[0.2, torch.nan, torch.nan, torch.nan, 0.3]], dtype=torch.float64)  # NaN at 0.5 too
    assert thr.best_threshold_index(metric, grid).tolist() == [4]


def test_maxima_equal_but_for_float_rounding_are_a_tie_broken_towards_one_half():
    # balanced accuracy (0.3 + 0) / 2 and (0.1 + 0.2) / 2 are both 0.15 (the second is one bit above): a tie, so 0.5 wins
    sweep = {"sensitivity": torch.tensor([[0.3, 0.1]], dtype=torch.float64),
             "specificity": torch.tensor([[0.0, 0.2]], dtype=torch.float64)}
    metric = thr.selection_metric(sweep, "balanced_accuracy")
    assert metric[0, 0].item() != metric[0, 1].item()  # the floats differ, the values do not
    assert thr.best_threshold_index(metric, torch.tensor([0.5, 0.7], dtype=torch.float64)).tolist() == [0]


@pytest.mark.parametrize("low, high", [(0.3, 0.7), (0.04, 0.96), (0.42, 0.58)])
def test_maxima_equally_far_from_one_half_go_to_the_lower_threshold_on_the_default_grid(low, high):
    # 0.7 - 0.5 is 0.19999999999999996 in floats, 0.5 - 0.3 is 0.2: the distances are equal to 9 decimals, so the lower wins
    grid = thr.threshold_grid()
    metric = torch.zeros(1, len(grid), dtype=torch.float64)
    metric[0, round(low * 100) - 1] = metric[0, round(high * 100) - 1] = 1.0
    assert grid[thr.best_threshold_index(metric, grid)].item() == low
    descending = grid.flip(0)  # the lower threshold by its value, not the first index: any order of the grid
    assert descending[thr.best_threshold_index(metric.flip(1), descending)].item() == low


def test_calibration_pools_the_outputs_of_each_example_in_the_order_of_the_scores():
    # with K outputs the bins hold every (example, output) pair: scikit-learn's calibration_curve on the flattened arrays
    g = torch.Generator().manual_seed(3)
    n, k = 60, 4
    scores = torch.rand(2, n, k, generator=g, dtype=torch.float64)
    y = (torch.rand(n, k, generator=g) < torch.tensor([0.1, 0.4, 0.7, 0.95])).float()  # labels of very different rates
    cal = thr.calibration(scores, y, bins=5)
    for m in range(2):
        s, t = scores[m].numpy().reshape(-1), y.numpy().reshape(-1)
        prob_true, prob_pred = calibration_curve(t, s, n_bins=5, strategy="uniform")
        filled = cal["count"][m] > 0
        np.testing.assert_allclose(cal["fraction_positive"][m][filled].numpy(), prob_true, atol=1e-12)
        np.testing.assert_allclose(cal["mean_predicted"][m][filled].numpy(), prob_pred, atol=1e-12)
        counts = cal["count"][m][filled].numpy()
        assert cal["ece"][m].item() == pytest.approx(np.sum(counts / (n * k) * np.abs(prob_true - prob_pred)))
