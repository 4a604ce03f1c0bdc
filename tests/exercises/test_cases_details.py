"""What the generated cases must hold for the checker's rules to bite: distributions as targets, p near 0 and 1 or on the threshold."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbench.exercises import evaluate
from lossbench.exercises import cases as cs
from tests.exercises.test_checker_details import by_group


def bce_probs_clamped(eps):
    def bce_probs(p, y):
        p = p.clamp(eps, 1 - eps)
        return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    return bce_probs


@pytest.mark.parametrize("seed", [0, 1])
def test_probability_targets_are_distributions_over_the_classes(seed):
    # an answer may rely on sum_c q_c = 1 (logsumexp(z) - sum_c q_c z_c): a target row that does not sum to 1
    # would fail a formula that is right for every real probability target
    floats = [c for c in cs.softmax_ce_cases(seed) if c.inputs[1].is_floating_point()]
    assert [c.group for c in floats] == ["probability targets", "probability targets", "stability"]
    for case in floats:
        q = case.inputs[1]
        assert (q >= 0).all() and torch.allclose(q.sum(dim=1), torch.ones(len(q), dtype=q.dtype)), case.group


def test_logsumexp_minus_the_expected_logit_passes_probability_targets():
    def ce_expected_logit(z, y):  # logsumexp(z) - sum_c q_c z_c: equal to -sum_c q_c log p_c when sum_c q_c = 1
        q = F.one_hot(y, z.shape[1]).to(z.dtype) if y.dtype == torch.int64 else y
        return (torch.logsumexp(z, dim=1) - (q * z).sum(dim=1)).mean()

    assert all(r.passed for r in evaluate("softmax_ce", ce_expected_logit))


def test_a_clamp_at_1e_5_fails_the_near_0_and_1_case():
    # the near case holds p = 2e-6 and 1 - 2e-6: an eps above that changes the value there
    near = by_group(evaluate("bce_probs", bce_probs_clamped(1e-5)))["near 0 and 1"]
    assert not near.passed and near.abs_err > 1e-3


def test_a_clamp_just_above_the_allowed_eps_fails_where_p_is_exactly_0_or_1():
    # eps = 1.5e-6 leaves the near case's values alone; its confident mistakes then cost -log(1.5e-6), below -log(1e-6)
    failed = [r.group for r in evaluate("bce_probs", bce_probs_clamped(1.5e-6)) if not r.passed]
    assert failed == ["p exactly 0 or 1"]


def test_a_clamp_at_the_largest_allowed_eps_passes_whichever_slope_autograd_gives_at_its_bound():
    # torch 2.13 passes the gradient at a clamp's bound and torch 2.14 stops it: with a case at p = 1e-6 a right
    # answer clamped at eps = 1e-6 failed its gradient in torch 2.14. No case holds a probability at that bound.
    def clamp_stopping_at_bounds(p, eps):  # torch 2.14's convention, in any torch
        inside = (p > eps) & (p < 1 - eps)
        return torch.where(inside, p, p.detach().clamp(eps, 1 - eps))

    def right(p, y):
        q = clamp_stopping_at_bounds(p, 1e-6)
        return -(y * torch.log(q) + (1 - y) * torch.log(1 - q)).mean()

    assert all(r.passed for r in evaluate("bce_probs", right))
    near = [c for c in cs.bce_probs_cases() if c.group == "near 0 and 1"]
    assert all(1e-6 not in c.inputs[0].tolist() and 1 - 1e-6 not in c.inputs[0].tolist() for c in near)


def test_p_greater_than_the_threshold_fails_both_cases_with_p_on_the_threshold():
    # each of the two cases must hold a probability equal to its own threshold (0.5 and 0.3)
    strict = evaluate("accuracy_multi", lambda p, y, t=0.5: ((p > t) == y.bool()).double().mean().item())
    on_threshold = [r for r in strict if r.group == "p equal to the threshold"]
    assert len(on_threshold) == 2 and not any(r.passed for r in on_threshold)
    assert all("use p >= threshold" in r.hint for r in on_threshold)


def test_p_greater_than_t_fails_the_best_threshold_case_with_p_on_the_candidates():
    def best_strict(p, y, thresholds):  # p > t decides; ties to the closest to 0.5, the smaller first
        accuracy = torch.stack([((p > t) == y.bool()).double().mean() for t in thresholds])
        tied = thresholds[accuracy == accuracy.max()]
        distance = (tied - 0.5).abs().round(decimals=9)
        return tied[distance == distance.min()].min().item()

    (on_grid,) = [r for r in evaluate("best_threshold", best_strict) if r.group == "p equal to a threshold"]
    assert not on_grid.passed and "use p >= t" in on_grid.hint
