"""Details of the gradient allocation and the seed statistics that the broader tests leave open."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats as scipy_stats

from lossbench import gradients, stats
from lossbench.models import Head

N, K = 4, 3
Y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _mixed_multilabel_probe():
    """Softmax across labels (one term per example) stacked before sigmoids (K terms per example), by hand."""
    softmax_head, bce_head = Head("two_logit", "multilabel", K), Head("one_logit", "multilabel", K)
    p_s = torch.softmax(torch.tensor([[2.0, -1.0, 0.5], [0.1, 0.3, -2.0], [1.0, 1.5, 0.0], [-0.5, 0.2, 3.0]], dtype=torch.float64), dim=1)
    p_b = torch.tensor([[0.9, 0.3, 0.55], [0.2, 0.65, 0.05], [0.7, 0.4, 0.85], [0.1, 0.95, 0.6]], dtype=torch.float64)
    g_s = p_s - Y / Y.sum(dim=1, keepdim=True)  # one decision's gradient: p - target, target y / (labels of the example)
    g_b = p_b - Y  # BCE: p - y per label
    d_s = (g_s / N).unsqueeze(0)  # cross-entropy's mean over the N examples
    d_b = (g_b / (N * K)).unsqueeze(0)  # BCE's mean over the N x K cells
    body = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)  # ||dL/dh|| per example
    scores = torch.stack([p_s, p_b])
    return (softmax_head, bce_head), (d_s, d_b), body, scores, (g_s.abs(), g_b.abs())


def test_stacking_losses_whose_means_divide_by_different_counts_scales_each_by_its_own():
    # rule: each stacked model is scaled by its own head's N x terms_per_example (softmax across labels: N; sigmoids: N x K)
    heads, d_outs, body, scores, gs = _mixed_multilabel_probe()
    stacked = gradients.stacked_allocation(list(heads), list(d_outs), body, scores, Y)
    for i, (head, d_out, g) in enumerate(zip(heads, d_outs, gs)):
        alone = gradients.stacked_allocation([head], [d_out], body[i : i + 1], scores[i : i + 1], Y)
        for key, value in stacked.items():
            torch.testing.assert_close(value[i : i + 1], alone[key], equal_nan=True, msg=f"{key} of model {i}")
        # by hand: the body's signal is ||dL/dh|| times what the mean divided by; all bins together average |g|
        terms = N * head.terms_per_example
        assert stacked["body"][i].item() == pytest.approx(body[i].mean().item() * terms)
        summed = sum(torch.nansum(stacked[f"confidence_{w}"][i] * stacked[f"confidence_{w}_count"][i]) for w in ("correct", "wrong"))
        count = stacked["confidence_correct_count"][i].sum() + stacked["confidence_wrong_count"][i].sum()
        assert (summed / count).item() == pytest.approx(g.mean().item())
        assert stacked["positive_share"][i].item() == pytest.approx(((g * Y).sum() / g.sum()).item())


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
