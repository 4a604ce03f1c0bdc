"""Details of the gradient allocation that the broader tests leave open: stacked losses whose means divide by different counts."""
from __future__ import annotations

import pytest
import torch

from lossbench import gradients
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
