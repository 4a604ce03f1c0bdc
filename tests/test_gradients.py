"""Gradient allocation: every measurement against a computation by hand or by autograd."""
from __future__ import annotations

import pytest
import torch

from lossbench import gradients
from lossbench.losses import get
from lossbench.models import Head


def _probe(head: Head, loss: str, z: torch.Tensor, y: torch.Tensor, w: torch.Tensor):
    """One model: h -> z = h @ w, the mean loss, its gradients on z and h, and the scores."""
    h = torch.randn(z.shape[0], 1, w.shape[0], dtype=torch.float64, requires_grad=True)
    out = head.output((h @ w).unsqueeze(0))
    value = get(loss)(out[0], head.target(y))
    d_out, d_h = torch.autograd.grad(value, [out, h])
    return d_out, d_h.unsqueeze(0), head.scores(out.detach()), h, out


def test_bce_allocation_by_hand():
    torch.manual_seed(0)
    head = Head("one_logit", "binary", 1)
    w = torch.randn(6, 1, dtype=torch.float64)
    y = (torch.rand(20, 1) < 0.4).double()
    d_out, d_h, scores, h, _ = _probe(head, "bce", torch.zeros(20), y, w)
    a = gradients.allocation(head, d_out, d_h, scores, y)
    g = (scores[0, :, 0] - y[:, 0]).abs()  # |p - y| per example
    assert a["positive_share"].item() == pytest.approx((g * y[:, 0]).sum().item() / g.sum().item())
    assert a["body"].item() == pytest.approx((g * w.norm()).mean().item())
    assert a["label_share"].tolist() == [[pytest.approx(1.0)]]
    assert torch.isnan(a["negative_unit_share"]).all()
    # confidence bins: count and mean |p - y| of the correct and of the wrong predictions in each bin
    p = scores[0, :, 0]
    conf = torch.maximum(p, 1 - p)
    wrong = (p >= 0.5) != y[:, 0].bool()
    edges = gradients.CONFIDENCE_EDGES
    for name, group in (("correct", ~wrong), ("wrong", wrong)):
        for b in range(len(edges) - 1):
            upper = conf <= edges[b + 1] if b == len(edges) - 2 else conf < edges[b + 1]
            chosen = group & (conf >= edges[b]) & upper
            assert a[f"confidence_{name}_count"][0, b].item() == chosen.sum().item()
            expected = g[chosen].mean().item() if chosen.any() else float("nan")
            assert a[f"confidence_{name}"][0, b].item() == pytest.approx(expected, nan_ok=True)
    assert 0 < a["confidence_wrong_count"].sum().item() < 20  # both groups are present
    assert (a["confidence_correct_count"].sum() + a["confidence_wrong_count"].sum()).item() == 20


def test_two_logit_head_splits_the_logit_gradient_evenly_but_sends_the_body_what_a_sigmoid_head_sends():
    torch.manual_seed(1)
    y = (torch.rand(30, 1) < 0.3).double()
    w = torch.randn(5, 1, dtype=torch.float64)
    one, two = Head("one_logit", "binary", 1), Head("two_logit", "binary", 1)
    w2 = two.from_one_logit({"w": w})["w"]  # (5, 2): -w/2, w/2
    torch.manual_seed(2)
    d1, h1, s1, _, _ = _probe(one, "bce", torch.zeros(30), y, w)
    torch.manual_seed(2)
    d2, h2, s2, _, _ = _probe(two, "softmax_ce", torch.zeros(30), y, w2)
    a1 = gradients.allocation(one, d1, h1, s1, y)
    a2 = gradients.allocation(two, d2, h2, s2, y)
    assert a2["negative_unit_share"].item() == pytest.approx(0.5)
    torch.testing.assert_close(d2[0, :, 0], -d2[0, :, 1])  # equal and opposite
    for key in ("body", "positive_share", "confidence_correct", "confidence_wrong"):
        torch.testing.assert_close(a1[key], a2[key], equal_nan=True)


def test_mse_gradient_vanishes_on_confident_mistakes():
    head = Head("one_logit", "binary", 1)
    z = torch.tensor([-8.0, -0.2, 0.2, 8.0], dtype=torch.float64)  # confident wrong, unsure, unsure, confident right
    y = torch.ones(4, 1, dtype=torch.float64)
    out = z.unsqueeze(0).clone().requires_grad_()
    d_out = {}
    for loss in ("bce", "mse"):
        (d_out[loss],) = torch.autograd.grad(get(loss)(out[0], y[:, 0]), [out])
    scores = torch.sigmoid(z).reshape(1, 4, 1)
    bins = {loss: gradients.allocation(head, d_out[loss], torch.zeros(1, 4, 1, 2), scores, y) for loss in d_out}
    # the confident mistake sits in the top wrong bin: BCE pushes it with |p - y| ~ 1, MSE with ~ 2 p (1 - p) ~ 0
    assert bins["bce"]["confidence_wrong"][0, -1].item() == pytest.approx(1 - torch.sigmoid(torch.tensor(-8.0)).item(), rel=1e-6)
    assert bins["mse"]["confidence_wrong"][0, -1].item() < 1e-3
    assert bins["mse"]["confidence_wrong"][0, 0].item() > 0.2  # the unsure mistake still gets a gradient


def test_label_shares_for_softmax_across_labels_and_for_sigmoids():
    torch.manual_seed(3)
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]], dtype=torch.float64)
    w = torch.randn(4, 3, dtype=torch.float64)
    for style, loss in (("two_logit", "softmax_ce"), ("one_logit", "bce")):
        head = Head(style, "multilabel", 3)
        d_out, d_h, scores, _, _ = _probe(head, loss, torch.zeros(3), y, w)
        a = gradients.allocation(head, d_out, d_h, scores, y)
        g = d_out[0].abs()
        torch.testing.assert_close(a["label_share"][0], g.sum(0) / g.sum())
        assert a["label_share"].sum().item() == pytest.approx(1.0)
        assert a["positive_share"].item() == pytest.approx((g * y).sum().item() / g.sum().item())


def test_stacked_allocation_of_several_heads_equals_one_allocation_per_head():
    torch.manual_seed(3)
    y = (torch.rand(25, 1) < 0.5).double()
    w = torch.randn(4, 1, dtype=torch.float64)
    one, two = Head("one_logit", "binary", 1), Head("two_logit", "binary", 1)
    probes = {
        "softmax_ce": (two, _probe(two, "softmax_ce", torch.zeros(25), y, two.from_one_logit({"w": w})["w"])),
        "bce": (one, _probe(one, "bce", torch.zeros(25), y, w)),
        "mse": (one, _probe(one, "mse", torch.zeros(25), y, w * 3)),
    }
    heads = [head for head, _ in probes.values()]
    d_outs = [p[0] for _, p in probes.values()]
    body_norms = torch.cat([p[1].flatten(2).norm(dim=2) for _, p in probes.values()])  # ||dL/dh|| per example
    scores = torch.cat([p[2] for _, p in probes.values()])
    stacked = gradients.stacked_allocation(heads, d_outs, body_norms, scores, y)
    one_by_one = [gradients.allocation(head, p[0], p[1], p[2], y) for head, p in probes.values()]
    for key, value in stacked.items():
        torch.testing.assert_close(value, torch.cat([a[key] for a in one_by_one]), equal_nan=True)
    assert stacked["negative_unit_share"][0].item() == pytest.approx(0.5)  # softmax_ce's two units
    assert torch.isnan(stacked["negative_unit_share"][1:]).all()  # one-logit heads have no negative unit


@pytest.mark.parametrize("positions, units", [(1, 1), (1, 2), (4, 2), (3, 5)])
def test_body_gradient_norms_equal_the_norms_of_autograds_gradient_into_the_body(positions, units):
    torch.manual_seed(4)
    h = torch.randn(3, 7, positions, 6, dtype=torch.float64, requires_grad=True)  # 3 models, 7 examples
    w = torch.randn(3, 6, units, dtype=torch.float64)
    z = torch.einsum("mnpf,mfu->mnpu", h, w)
    loss = (torch.randn_like(z) * z).sum() + (z**2).sum()  # any loss of z
    d_z, d_h = torch.autograd.grad(loss, [z, h])
    expected = d_h.flatten(2).norm(dim=2)  # (models, N): over positions and features
    torch.testing.assert_close(gradients.body_gradient_norms(d_z, w), expected)


def test_body_gradient_norm_of_a_two_logit_head_with_nearly_equal_columns_is_finite():
    """||dL/dh|| is a norm: finite and >= 0 even when rounding puts the quadratic form just below 0.

    Softmax sends dz = (g, -g); with the head's columns w0 ~ w1 the true norm |g| ||w1 - w0|| is tiny,
    and dz (w^T w) dz^T, a difference of nearly equal float32 numbers, rounds to either side of it.
    """
    w0 = torch.tensor([1.5410, -0.2934, -2.1788, 0.5684, -1.0845, -1.3986, 0.4033, 0.8380])
    w = torch.stack([w0, w0 + 1e-4 * torch.linspace(-1.0, 1.0, 8)], dim=1).unsqueeze(0)  # (1 model, 8 features, 2 units)
    g = torch.linspace(-3.0, 3.0, 64)
    d_z = torch.stack([g, -g], dim=1).reshape(1, 64, 1, 2)  # (models, N, positions, units)
    norms = gradients.body_gradient_norms(d_z, w)
    expected = (d_z.double().reshape(64, 2) @ w[0].double().T).norm(dim=1)  # dL/dh = dz w^T, in float64
    assert torch.isfinite(norms).all() and (norms >= 0).all()
    torch.testing.assert_close(norms[0].double(), expected, atol=5e-3, rtol=0)  # float32 rounding of a ~1e-7 square


@pytest.mark.parametrize(
    "style, kind, loss",
    [("one_logit", "multilabel", "bce"), ("one_logit", "multilabel", "mse"), ("two_logit", "multilabel", "softmax_ce"),
     ("one_logit", "grid", "bce"), ("two_logit", "grid", "softmax_ce")],
)  # fmt: skip
def test_every_entry_is_one_decisions_gradient_whatever_the_reduction_divides_by(style, kind, loss):
    """BCE's mean over N x K cells and softmax's mean over N examples both give each decision its own p - y.

    Scaling dL/dz by N alone left a 1-logit head's gradient on K outputs divided by K (and softmax's across
    labels not), a factor between losses that comes from the reduction, not from the loss.
    """
    torch.manual_seed(5)
    k, n = 4, 12
    y = (torch.rand(n, k) < 0.4).double()
    y[:, 0] = 1.0  # every example has a label (softmax across labels shares its target among them)
    head = Head(style, kind, k)
    w = torch.randn(3, 1 if kind == "grid" and style == "one_logit" else (2 if kind == "grid" else k), dtype=torch.float64)
    h = torch.randn(n, k if kind == "grid" else 1, 3, dtype=torch.float64, requires_grad=True)  # grid: areas are positions
    out = head.output((h @ w).unsqueeze(0))
    value = get(loss)(out[0], head.target(y))
    d_out, d_h = torch.autograd.grad(value, [out, h], retain_graph=True)
    scores = head.scores(out.detach())
    a = gradients.allocation(head, d_out, d_h.unsqueeze(0), scores, y)
    p = scores[0]
    if loss == "mse":
        per_decision = 2 * (p - y) * p * (1 - p)  # d/dz of (sigmoid(z) - y)^2
    elif kind == "multilabel" and style == "two_logit":
        per_decision = p - y / y.sum(dim=1, keepdim=True)  # one cross-entropy per example, target y / k
    else:
        per_decision = p - y  # one binary decision per label or area
    g = per_decision.abs()
    assert a["positive_share"].item() == pytest.approx((g * y).sum().item() / g.sum().item())
    right = (p >= 0.5) == y.bool()
    bins = torch.bucketize(torch.maximum(p, 1 - p), torch.tensor(gradients.CONFIDENCE_EDGES[1:-1], dtype=p.dtype), right=True)
    for name, group in (("correct", right), ("wrong", ~right)):
        for b in range(len(gradients.CONFIDENCE_EDGES) - 1):
            chosen = group & (bins == b)
            expected = g[chosen].mean().item() if chosen.any() else float("nan")
            assert a[f"confidence_{name}"][0, b].item() == pytest.approx(expected, nan_ok=True)
    # into the body: per example, the norm of the gradient of its decision losses summed (the loss's sum over all)
    (summed_h,) = torch.autograd.grad(value * n * head.terms_per_example, [h])
    assert a["body"].item() == pytest.approx(summed_h.flatten(1).norm(dim=1).mean().item())


def test_a_model_with_a_nan_score_has_no_confidence_bins():
    """A NaN score is no confident prediction: its model's counts and bin means are NaN, not its last bin's."""
    head = Head("one_logit", "binary", 1)
    scores = torch.tensor([[[0.95], [0.2], [0.7], [0.4]], [[torch.nan], [0.2], [0.7], [0.4]]], dtype=torch.float64)
    y = torch.tensor([[1.0], [0.0], [0.0], [1.0]], dtype=torch.float64)
    d_out = (scores - y).reshape(2, 4) / 4
    a = gradients.stacked_allocation([head], [d_out], torch.zeros(2, 4, dtype=torch.float64), scores, y)
    for name in ("confidence_correct", "confidence_wrong", "confidence_correct_count", "confidence_wrong_count"):
        assert torch.isnan(a[name][1]).all(), name
    assert a["confidence_correct_count"][0].tolist() == [0, 0, 0, 1, 1]  # confidences 0.8 (p 0.2, y 0) and 0.95
    assert a["confidence_wrong_count"][0].tolist() == [0, 1, 1, 0, 0]  # 0.6 (p 0.4, y 1) and 0.7 (p 0.7, y 0)


def test_a_score_of_exactly_one_half_counts_as_a_yes_as_at_every_threshold():
    """The sweep's rule, score >= t is a yes, at t = 0.5: a zero logit with y = 1 is a correct prediction."""
    head = Head("one_logit", "binary", 1)
    p, y = torch.full((1, 2, 1), 0.5, dtype=torch.float64), torch.ones(2, 1, dtype=torch.float64)
    a = gradients.allocation(head, (p - y).reshape(1, 2) / 2, torch.zeros(1, 2, 1, 3, dtype=torch.float64), p, y)
    assert a["confidence_correct_count"][0, 0].item() == 2 and a["confidence_wrong_count"].sum().item() == 0


@pytest.mark.parametrize("task, config", [("titanic", {}), ("mammography", {"target": "grid", "n_train": 64, "n_val": 48, "n_test": 32})])
def test_class_weighted_softmax_ce_records_each_decisions_gradient_as_bce_with_the_same_weights(task, config):
    """At the matched start softmax_ce with weight [1, 4] and BCE with pos_weight 4 are the same loss per decision.

    torch's weighted cross-entropy divides its mean by the summed weight of the targets' classes, not by
    their number; scaling by the number recorded softmax_ce's gradients smaller by the mean weight.
    """
    from lossbench import compare

    result = compare(task, ("softmax_ce", "bce"), seeds=2, epochs=1, quick=True, config=config, dtype="float64", device="cpu",
                     overrides={"softmax_ce": {"weight": [1.0, 4.0]}, "bce": {"pos_weight": 4.0}})
    start = result.history[result.history.epoch == 0].set_index(["seed", "loss"]).sort_index()
    measured = [c for c in start.columns if c.startswith("grad_") and not c.startswith("grad_negative") and "count" not in c]
    assert "grad_body" in measured and any(c.startswith("grad_confidence_wrong") for c in measured)
    for seed in (0, 1):
        weighted, bce = start.loc[(seed, "softmax_ce"), measured], start.loc[(seed, "bce"), measured]
        assert weighted.to_numpy() == pytest.approx(bce.to_numpy(), rel=1e-9, nan_ok=True)
