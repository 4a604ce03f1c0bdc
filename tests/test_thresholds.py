"""Threshold sweeps, AUC and calibration against scikit-learn."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

from lossbench import thresholds as thr


def _data(models=3, n=40, k=1, seed=0, ties=False):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(n, k, generator=g) < 0.35).float()
    scores = torch.rand(models, n, k, generator=g, dtype=torch.float64)
    if ties:
        scores = (scores * 8).round() / 8  # many tied scores, some exactly on thresholds
    return scores, y


@pytest.mark.parametrize("k", [1, 4])
def test_sweep_matches_scikit_learn_at_every_threshold(k):
    scores, y = _data(k=k)
    grid = thr.threshold_grid(9)
    swept = thr.sweep(scores, y, grid)
    y_flat = y.numpy().reshape(-1).astype(int)
    for m in range(scores.shape[0]):
        for j, t in enumerate(grid.tolist()):
            pred = (scores[m].numpy() >= t).astype(int)
            flat = pred.reshape(-1)
            tn, fp, fn, tp = confusion_matrix(y_flat, flat, labels=[0, 1]).ravel()
            assert swept["accuracy"][m, j] == pytest.approx(accuracy_score(y_flat, flat))
            assert swept["f1"][m, j] == pytest.approx(f1_score(y_flat, flat, zero_division=np.nan), nan_ok=True)
            assert swept["sensitivity"][m, j] == pytest.approx(tp / (tp + fn))
            assert swept["specificity"][m, j] == pytest.approx(tn / (tn + fp))
            # exact match: scikit-learn's subset accuracy on the multi-label arrays
            assert swept["exact_match"][m, j] == pytest.approx(accuracy_score(y.numpy().astype(int), pred))


def test_threshold_grid_runs_from_001_to_099_by_default():
    grid = thr.threshold_grid()
    assert len(grid) == 99 and grid[0] == pytest.approx(0.01) and grid[-1] == pytest.approx(0.99)
    assert grid[49] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="at least 2"):
        thr.threshold_grid(1)


def test_each_threshold_is_the_float_nearest_its_decimal_so_a_score_at_it_counts_as_positive():
    grid = thr.threshold_grid()
    assert grid.tolist() == [k / 100 for k in range(1, 100)]  # linspace alone is one bit off at 0.35, 0.55, ...
    scores = torch.tensor([[[0.35], [0.55]]], dtype=torch.float64)
    swept = thr.sweep(scores, torch.ones(2, 1), grid)
    assert swept["sensitivity"][0, 34] == 1.0 and swept["sensitivity"][0, 54] == 0.5  # both >= 0.35; 0.35 < 0.55


def test_best_threshold_prefers_the_maximum_closest_to_one_half():
    grid = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9])
    metric = torch.tensor([[0.6, 0.8, 0.7, 0.8, 0.5], [0.9, 0.1, 0.1, 0.1, 0.1], [0.7, 0.7, 0.7, 0.7, 0.7]])
    assert thr.best_threshold_index(metric, grid).tolist() == [1, 0, 2]


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "tied"])
@pytest.mark.parametrize("average", ["macro", "micro"])
def test_auc_matches_roc_auc_score(ties, average):
    scores, y = _data(k=5, ties=ties, n=60)
    ours = thr.auc(scores, y, average=average)
    for m in range(scores.shape[0]):
        if average == "micro":
            expected = roc_auc_score(y.numpy().reshape(-1), scores[m].numpy().reshape(-1))
        else:
            expected = roc_auc_score(y.numpy(), scores[m].numpy(), average="macro")
        assert ours[m].item() == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("average", ["macro", "micro"])
def test_auc_of_a_model_with_nan_scores_is_nan_and_the_others_are_unchanged(average):
    scores, y = _data(k=3, n=40)
    broken = scores.clone()
    broken[1, 5, 2] = torch.nan  # one score of model 1
    ours = thr.auc(broken, y, average=average)
    assert torch.isnan(ours[1])
    clean = thr.auc(scores, y, average=average)
    keep = torch.arange(scores.shape[0]) != 1
    torch.testing.assert_close(ours[keep], clean[keep], rtol=0, atol=0)


def test_macro_auc_leaves_out_labels_with_one_class():
    scores, y = _data(k=3, n=30)
    y[:, 2] = 0  # no positive for the last label
    ours = thr.auc(scores, y)
    expected = np.mean([roc_auc_score(y[:, j].numpy(), scores[0, :, j].numpy()) for j in range(2)])
    assert ours[0].item() == pytest.approx(expected)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "on-bin-edges"])
def test_calibration_bins_match_calibration_curve(ties):
    scores, y = _data(n=200, ties=ties)
    if ties:
        scores[:, :10] = torch.tensor([0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0, 0.4, 0.6], dtype=torch.float64).reshape(1, 10, 1)
    cal = thr.calibration(scores, y, bins=10)
    for m in range(scores.shape[0]):
        prob_true, prob_pred = calibration_curve(y.numpy().reshape(-1), scores[m].numpy().reshape(-1), n_bins=10, strategy="uniform")
        filled = cal["count"][m] > 0
        np.testing.assert_allclose(cal["fraction_positive"][m][filled].numpy(), prob_true, atol=1e-12)
        np.testing.assert_allclose(cal["mean_predicted"][m][filled].numpy(), prob_pred, atol=1e-12)
        counts = cal["count"][m][filled].numpy()
        ece = np.sum(counts / counts.sum() * np.abs(prob_true - prob_pred))
        assert cal["ece"][m].item() == pytest.approx(ece)
        assert cal["count"][m].sum().item() == scores.shape[1]


def test_a_perfectly_calibrated_model_has_zero_ece():
    scores = torch.tensor([[[0.25]] * 4 + [[0.75]] * 4], dtype=torch.float64)
    y = torch.tensor([[1.0], [0.0], [0.0], [0.0], [1.0], [1.0], [1.0], [0.0]])
    assert thr.calibration(scores, y, bins=4)["ece"].item() == pytest.approx(0.0)


def test_average_ranks_match_scipy_rankdata():
    from scipy.stats import rankdata

    x = (torch.rand(4, 3, 50, generator=torch.Generator().manual_seed(1)) * 6).round()  # many ties
    expected = rankdata(x.numpy(), method="average", axis=-1)
    np.testing.assert_array_equal(thr._average_ranks(x).numpy(), expected)


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param((1,), "Expected `points` to be a whole number at least 2, but got 1.", id="one-point"),
        pytest.param((5.0,), "Expected `points` to be a whole number at least 2, but got 5.0.", id="float-points"),
        pytest.param((True,), "Expected `points` to be a whole number at least 2, but got True.", id="bool-points"),
        pytest.param((5, float("nan"), 0.9), "Expected `low` and `high` to be finite with 0 <= low < high <= 1, but got low=nan, high=0.9.", id="nan-low"),
        pytest.param((5, 0.1, float("inf")), "Expected `low` and `high` to be finite with 0 <= low < high <= 1, but got low=0.1, high=inf.", id="inf-high"),
        pytest.param((5, 0.9, 0.1), "Expected `low` and `high` to be finite with 0 <= low < high <= 1, but got low=0.9, high=0.1.", id="low-above-high"),
        pytest.param((5, 0.5, 0.5), "Expected `low` and `high` to be finite with 0 <= low < high <= 1, but got low=0.5, high=0.5.", id="low-equals-high"),
        pytest.param((5, -0.1, 0.9), "Expected `low` and `high` to be finite with 0 <= low < high <= 1, but got low=-0.1, high=0.9.", id="below-0"),
    ],
)
def test_threshold_grid_refuses_bad_settings(args, message):
    with pytest.raises(ValueError) as info:
        thr.threshold_grid(*args)
    assert str(info.value) == message


def test_threshold_grid_accepts_numpy_integers_and_the_whole_unit_interval():
    grid = thr.threshold_grid(np.int64(3), 0, 1)
    assert grid.tolist() == [0.0, 0.5, 1.0]


def test_auc_refuses_an_unknown_average():
    scores, y = _data(k=2)
    with pytest.raises(ValueError) as info:
        thr.auc(scores, y, average="weird")
    assert str(info.value) == "Expected `average` to be one of 'macro', 'micro', but got 'weird'."


@pytest.mark.parametrize("bins", [0, -3, 2.5, True], ids=["zero", "negative", "float", "bool"])
def test_calibration_refuses_bins_that_are_not_a_whole_number_at_least_1(bins):
    scores, y = _data()
    with pytest.raises(ValueError) as info:
        thr.calibration(scores, y, bins=bins)
    assert str(info.value) == f"Expected `bins` to be a whole number at least 1, but got {bins!r}."


def test_calibration_with_one_bin_is_the_overall_gap():
    scores, y = _data()
    c = thr.calibration(scores, y, bins=np.int64(1))
    expected = (y.mean() - scores.mean(dim=(1, 2))).abs()
    torch.testing.assert_close(c["ece"], expected.to(torch.float64))


def test_a_model_with_a_nan_score_has_no_threshold_metrics_and_the_others_are_unchanged():
    scores, y = _data(k=2, n=30)
    broken = scores.clone()
    broken[1, 4, 1] = torch.nan  # one score of model 1
    grid = thr.threshold_grid(9)
    ours, clean = thr.sweep(broken, y, grid), thr.sweep(scores, y, grid)
    for name in thr.METRICS:
        assert torch.isnan(ours[name][1]).all(), name
        keep = torch.arange(scores.shape[0]) != 1
        torch.testing.assert_close(ours[name][keep], clean[name][keep], rtol=0, atol=0, equal_nan=True)


def test_a_model_with_a_nan_score_has_no_calibration_and_the_others_are_unchanged():
    scores, y = _data(n=50)
    broken = scores.clone()
    broken[0, :, :] = torch.nan  # every score of model 0, as after its weights went NaN
    broken[2, 7, 0] = torch.nan  # one score of model 2
    ours, clean = thr.calibration(broken, y), thr.calibration(scores, y)
    for m in (0, 2):
        assert torch.isnan(ours["ece"][m]) and (ours["count"][m] == 0).all()
        assert torch.isnan(ours["mean_predicted"][m]).all() and torch.isnan(ours["fraction_positive"][m]).all()
    for name in ("ece", "count", "mean_predicted", "fraction_positive"):
        torch.testing.assert_close(ours[name][1], clean[name][1], rtol=0, atol=0, equal_nan=True)


def test_calibration_bins_scores_on_numpys_bin_edges_as_calibration_curve_does():
    # float64 scores exactly on numpy's edges 0.6000000000000001 and 0.7000000000000001, which torch.linspace
    # would round to 0.6 and 0.7, and so put one bin higher than scikit-learn does
    edges = np.linspace(0, 1, 11)
    values = [edges[6], edges[7], edges[3], 0.05, 0.95, 0.62]
    scores = torch.tensor(values, dtype=torch.float64).reshape(1, -1, 1)
    y = torch.tensor([[1.0], [0.0], [1.0], [0.0], [1.0], [1.0]])
    cal = thr.calibration(scores, y, bins=10)
    prob_true, prob_pred = calibration_curve(y.numpy().reshape(-1), np.array(values), n_bins=10, strategy="uniform")
    filled = cal["count"][0] > 0
    np.testing.assert_allclose(cal["mean_predicted"][0][filled].numpy(), prob_pred, atol=1e-15)
    np.testing.assert_allclose(cal["fraction_positive"][0][filled].numpy(), prob_true, atol=1e-15)
    assert cal["count"][0].tolist() == [1, 0, 1, 0, 0, 1, 2, 0, 0, 1]  # each edge value in the bin below it


def test_f1_with_no_positive_to_find_and_none_predicted_is_undefined_not_zero():
    """F1 = 2 TP / (2 TP + FP + FN) is 0 / 0 when y has no positives and no score reaches the threshold."""
    m = thr.sweep(torch.tensor([[[0.2], [0.4]]]), torch.zeros(2, 1), torch.tensor([0.3, 0.5]))
    assert m["f1"][0, 0].item() == 0.0  # 0.4 >= 0.3: one false positive, F1 = 0 / 1
    assert np.isnan(m["f1"][0, 1].item())  # nothing to find, nothing predicted
