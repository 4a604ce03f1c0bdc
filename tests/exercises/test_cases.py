"""The generated cases: seeded, float64 where gradients are compared, large logits where stability is."""
from __future__ import annotations

import math

import pytest
import torch

from lossbench.exercises import EXERCISES
from lossbench.exercises import cases as cs
from lossbench.exercises.cases import describe

NAMES = list(EXERCISES)


@pytest.mark.parametrize("name", NAMES)
def test_cases_are_reproducible_from_the_seed(name):
    make = EXERCISES[name].make_cases
    first, again, other = make(0), make(0), make(1)
    assert [c.summary for c in first] == [c.summary for c in again]
    for a, b in zip(first, again):
        for x, y in zip(a.inputs, b.inputs):
            assert torch.equal(x, y) if isinstance(x, torch.Tensor) else x == y
    assert [c.summary for c in first] != [c.summary for c in other]


@pytest.mark.parametrize("name", NAMES)
def test_expected_answers_are_finite_and_gradient_cases_are_float64(name):
    for case in EXERCISES[name].make_cases(0):
        expected = torch.as_tensor(case.expected, dtype=torch.float64)
        assert torch.isfinite(expected).all()
        if case.grad_of is not None:
            assert case.inputs[case.grad_of].dtype == torch.float64
            assert case.expected_grad.shape == case.inputs[case.grad_of].shape
            assert torch.isfinite(case.expected_grad).all()


@pytest.mark.parametrize("name", ["softmax_ce", "bce", "mse", "dlogits"])
def test_stability_cases_hold_logits_of_1e3_and_1e4_with_both_signs(name):
    stability = [c for c in EXERCISES[name].make_cases(0) if c.group == "stability"]
    assert stability
    values = torch.cat([c.inputs[0].flatten() for c in stability])
    assert (values >= 1e4).any() and (values <= -1e4).any()
    assert ((values.abs() >= 1e3) & (values.abs() < 1e4)).any()
    assert all(c.inputs[0].dtype == torch.float64 for c in stability)


@pytest.mark.parametrize("name", ["softmax_ce", "bce", "bce_probs", "mse", "dlogits"])
def test_every_loss_has_a_float32_case_with_a_float32_answer(name):
    (case,) = [c for c in EXERCISES[name].make_cases(0) if c.group == "float32"]
    assert case.inputs[0].dtype == torch.float32 and case.expected.dtype == torch.float32
    assert (case.rtol, case.atol) == (cs.RTOL32, cs.ATOL32)


def test_bce_probs_accepts_a_documented_range_at_p_exactly_0_or_1():
    edge = [c for c in cs.bce_probs_cases(0) if c.group == "p exactly 0 or 1"]
    agree, disagree = edge
    assert agree.expected.item() == 0.0 and agree.atol == cs.CONFIDENT_RIGHT_ATOL
    assert disagree.accept == (pytest.approx(-math.log(1e-6)), 100.0)
    assert disagree.expected_grad is None and agree.expected_grad is None


def test_the_threshold_cases_cover_ties_and_probabilities_on_a_threshold():
    groups = [c.group for c in cs.best_threshold_cases(0)]
    assert "ties" in groups and "p equal to a threshold" in groups
    for case in cs.best_threshold_cases(0):
        assert case.expected != 0.5 or case.group == "short list"  # answering 0.5 always must fail


def test_describe_summarises_shape_dtype_and_values():
    assert describe("target", torch.tensor([1.0, 0.0])) == "target (2,) float32 in {0, 1}"
    assert describe("probs", torch.tensor([[0.25, 0.5], [0.125, 0.75]])) == "probs (2, 2) float32 in [0.125, 0.75]"


@pytest.mark.parametrize("seed", [cs.SEED_MAX, 0])
def test_every_seed_check_seed_accepts_makes_cases(seed):
    cs.check_seed(seed)
    assert EXERCISES["bce"].make_cases(seed)


@pytest.mark.parametrize("seed", [-1, cs.SEED_MAX + 1, 10**20, 1.5, True, "7"])
def test_check_seed_rejects_what_a_generator_cannot_take(seed):
    with pytest.raises(ValueError, match=r"^Expected `seed` to be a whole number from 0 to 9223372036854775807 "):
        cs.check_seed(seed)


def test_the_threshold_cases_hold_a_tie_of_two_thresholds_equally_close_to_one_half():
    """A solution that breaks an even tie towards the larger threshold must fail a case."""
    grid = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    even = []
    for case in cs.best_threshold_cases(0):
        probs, target, thresholds = case.inputs
        counts = torch.stack([((probs >= t) == target.bool()).sum() for t in thresholds])
        tied = thresholds[counts == counts.max()].tolist()
        nearest = min(round(abs(t - 0.5), 9) for t in tied)
        if sum(round(abs(t - 0.5), 9) == nearest for t in tied) == 2:
            even.append(case)
    assert len(even) == 1 and torch.equal(even[0].inputs[2], grid)
    assert even[0].expected == grid[44].item()  # 0.45, not 0.55


@pytest.mark.parametrize("seed", range(20))
def test_the_first_bce_stability_case_holds_confident_mistakes_and_confident_right_answers(seed):
    """A confident mistake is where a clamped loss shows (capped) and an overflowing one gives inf; a confident
    right answer is where 0 * log(0) gives NaN."""
    z, y = next(c for c in cs.bce_cases(seed) if c.group == "stability").inputs
    confident, wrong = z.abs() >= 1e3, (z > 0).to(y.dtype) != y
    assert (confident & wrong).sum() >= 4 and (confident & ~wrong).sum() >= 2, seed
    assert (confident & (z > 0)).any() and (confident & (z < 0)).any(), seed
