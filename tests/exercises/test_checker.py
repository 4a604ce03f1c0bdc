"""Mutation tests: every checker accepts a right answer and rejects known-wrong ones, with the right hint."""
from __future__ import annotations

import io
import math
import types

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.functional import binary_cross_entropy_with_logits as aliased_bce_with_logits
from torch.nn.functional import cross_entropy as aliased_cross_entropy

from lossbench import thresholds as _lossbench_thresholds
from lossbench.exercises import ExerciseFailed, check, evaluate, format_report, report, score
from lossbench.losses import bce as _lossbench_bce

# --- right answers, written as a student would ----------------------------------------------------


def ce_right(z, y):
    m = z.max(dim=1, keepdim=True).values
    log_p = z - m - torch.log(torch.exp(z - m).sum(dim=1, keepdim=True))
    if y.dtype == torch.int64:
        return -log_p.gather(1, y.view(-1, 1)).mean()
    return -(y * log_p).sum(dim=1).mean()


def ce_logsumexp(z, y):
    log_p = z - torch.logsumexp(z, dim=1, keepdim=True)
    q = F.one_hot(y, z.shape[1]).to(z.dtype) if y.dtype == torch.int64 else y
    return -(q * log_p).sum(dim=1).mean()


def bce_right(z, y):
    return -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean()


def bce_softplus(z, y):
    return (F.softplus(z) - y * z).mean()


def bce_probs_right(p, y):
    p = p.clamp(1e-7, 1 - 1e-7)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def bce_probs_log_clamp(p, y):  # PyTorch's way: clamp each log at -100
    return -(y * torch.log(p).clamp(min=-100) + (1 - y) * torch.log(1 - p).clamp(min=-100)).mean()


def mse_right(z, y):
    return ((torch.sigmoid(z) - y) ** 2).mean()


def dlogits_right(z, y):
    e = torch.exp(z - z.max(dim=1, keepdim=True).values)
    return (e / e.sum(dim=1, keepdim=True) - F.one_hot(y, z.shape[1]).to(z.dtype)) / z.shape[0]


def bce_probs_clamp_1e6(p, y):  # eps = 1e-6, the largest the exercise allows
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def bce_probs_clamp_1e6_log1p(p, y):
    p = p.clamp(1e-6, 1 - 1e-6)
    return -(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean()


def accuracy_right(p, y, threshold=0.5):
    return ((p >= threshold) == y.bool()).float().mean().item()  # float32 arithmetic is accepted


def accuracy_tensor(p, y, threshold=0.5):
    return ((p >= threshold) == (y == 1)).double().mean()  # a 0-dim tensor is accepted


def best_right(p, y, thresholds):
    best_t, best_acc = None, -1.0
    # closest to 0.5 first, and of two equally close the smaller; rounded, as 0.55 - 0.5 < 0.5 - 0.45 in floats
    for t in sorted(thresholds.tolist(), key=lambda t: (round(abs(t - 0.5), 9), t)):
        acc = ((p >= t) == y.bool()).double().mean().item()
        if acc > best_acc:
            best_t, best_acc = t, acc
    return best_t


RIGHT = [
    pytest.param("softmax_ce", ce_right, id="softmax_ce-max-subtraction"),
    pytest.param("softmax_ce", ce_logsumexp, id="softmax_ce-logsumexp-allowed"),
    pytest.param("bce", bce_right, id="bce-logsigmoid"),
    pytest.param("bce", bce_softplus, id="bce-softplus-allowed"),
    pytest.param("bce_probs", bce_probs_right, id="bce_probs-clamp-1e-7"),
    pytest.param("bce_probs", bce_probs_log_clamp, id="bce_probs-log-clamp-100"),
    pytest.param("bce_probs", bce_probs_clamp_1e6, id="bce_probs-clamp-1e-6"),
    pytest.param("bce_probs", bce_probs_clamp_1e6_log1p, id="bce_probs-clamp-1e-6-log1p"),
    pytest.param("mse", mse_right, id="mse"),
    pytest.param("dlogits", dlogits_right, id="dlogits"),
    pytest.param("accuracy_multi", accuracy_right, id="accuracy-float32"),
    pytest.param("accuracy_multi", accuracy_tensor, id="accuracy-0dim-tensor"),
    pytest.param("best_threshold", best_right, id="best_threshold"),
]


@pytest.mark.parametrize("name, fn", RIGHT)
def test_a_right_answer_passes_every_case(name, fn):
    assert check(name, fn) is None
    assert score(name, fn) == 1.0


# --- known-wrong answers and the hint each must produce ------------------------------------------


def naive_softmax_ce(z, y):  # no max-subtraction
    log_p = torch.log(torch.exp(z) / torch.exp(z).sum(dim=1, keepdim=True))
    q = F.one_hot(y, z.shape[1]).to(z.dtype) if y.dtype == torch.int64 else y
    return -(q * log_p).sum(dim=1).mean()


def naive_bce(z, y):
    p = torch.sigmoid(z)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def where_swapped_bce(z, y):  # stable, but the branches are the wrong way round
    return -torch.where(y == 1, F.logsigmoid(-z), F.logsigmoid(z)).mean()


def where_bce(z, y):  # right branches, but soft targets are not 0 or 1
    return -torch.where(y == 1, F.logsigmoid(z), F.logsigmoid(-z)).mean()


def clamped_probability_bce(z, y):
    p = torch.sigmoid(z).clamp(1e-7, 1 - 1e-7)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def own_sigmoid_mse(z, y):
    return ((1 / (1 + torch.exp(-z)) - y) ** 2).mean()


def bce_probs_no_clamp(p, y):
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


def bce_probs_add_eps(p, y):
    return -(y * torch.log(p + 1e-7) + (1 - y) * torch.log(1 - p + 1e-7)).mean()


def bce_max_abs(z, y):  # the right value everywhere; at z = 0, clamp's and abs's subgradients give 1 - y or -y
    return (z.clamp(min=0) - y * z + torch.log1p(torch.exp(-z.abs()))).mean()


def bce_probs_big_eps(p, y):
    return bce_probs_right(p.clamp(1e-3, 1 - 1e-3), y)


def bce_probs_log_clamped_low(p, y):
    return -(y * torch.log(p).clamp(min=-200) + (1 - y) * torch.log(1 - p).clamp(min=-200)).mean()


def bce_probs_where_swapped(p, y):
    p = p.clamp(1e-7, 1 - 1e-7)
    return -torch.where(y == 1, torch.log(1 - p), torch.log(p)).mean()


def bce_probs_hard_targets(is_positive):  # right branches, but soft targets read as 0 or 1
    def bce_probs(p, y):
        p = p.clamp(1e-7, 1 - 1e-7)
        return -torch.where(is_positive(y), torch.log(p), torch.log(1 - p)).mean()
    return bce_probs


def naive_dlogits(z, y):
    e = torch.exp(z)
    return (e / e.sum(dim=1, keepdim=True) - F.one_hot(y, z.shape[1]).to(z.dtype)) / z.shape[0]


def exact_match(p, y, threshold=0.5):
    return ((p >= threshold) == y.bool()).all(dim=1).double().mean().item()


def best_first_or_last_of_ties(last):
    def best(p, y, thresholds):
        best_t, best_acc = None, -1.0
        for t in thresholds:
            acc = ((p >= t) == y.bool()).double().mean().item()
            if acc > best_acc or (last and acc == best_acc):  # the first (or the last) of tied thresholds
                best_t, best_acc = t.item(), acc
        return best_t
    return best


def best_by_order(order):
    """A best_threshold that tries the thresholds in `order` (a sort key) and keeps the first best one."""
    def best(p, y, thresholds):
        best_t, best_acc = None, -1.0
        for t in sorted(thresholds.tolist(), key=order):
            acc = ((p >= t) == y.bool()).double().mean().item()
            if acc > best_acc:
                best_t, best_acc = t, acc
        return best_t
    return best


best_even_tie_to_larger = best_by_order(lambda t: (round(abs(t - 0.5), 9), -t))  # equally close: the larger
best_even_tie_unrounded = best_by_order(lambda t: (abs(t - 0.5), t))  # float rounding decides an even tie


def best_strict(p, y, thresholds):
    return best_right(p - 1e-12, y, thresholds)  # p > t where p >= t was asked


def best_index(p, y, thresholds):
    return thresholds.tolist().index(best_right(p, y, thresholds))


def best_accuracy_value(p, y, thresholds):
    return max(((p >= t) == y.bool()).double().mean().item() for t in thresholds)


WRONG = [
    # softmax_ce
    pytest.param("softmax_ce", lambda z, y: ce_right(z, y) * len(z), "sum instead of mean?", id="ce-sum"),
    pytest.param("softmax_ce", naive_softmax_ce, "subtract the max", id="ce-no-max-subtraction"),
    pytest.param("softmax_ce", lambda z, y: ce_right(torch.softmax(z, dim=1), y), "softmax applied twice?",
                 id="ce-probabilities-for-logits"),
    pytest.param("softmax_ce", lambda z, y: ce_right(z.T, y) if z.shape[0] == z.shape[1] else
                 _wrong_axis_ce(z, y), "softmax over the wrong axis?", id="ce-wrong-axis"),
    pytest.param("softmax_ce", lambda z, y: -ce_right(z, y), "the sign is flipped", id="ce-sign"),
    pytest.param("softmax_ce", lambda z, y: -z.gather(1, y.view(-1, 1)).mean() if y.dtype == torch.int64
                 else -(y * z).sum(1).mean(), "forgot to normalise", id="ce-no-normalisation"),
    pytest.param("softmax_ce", lambda z, y: ce_right(z, y if y.dtype == torch.int64 else y.argmax(dim=1)),
                 "treated as hard labels", id="ce-argmax-of-soft-targets"),
    pytest.param("softmax_ce", lambda z, y: -torch.log(torch.softmax(z, 1)).gather(1, y.view(-1, 1)).mean(),
                 "class probabilities", id="ce-index-targets-only"),
    # bce
    pytest.param("bce", lambda z, y: bce_right(z, y) * z.numel(), "sum instead of mean?", id="bce-sum"),
    pytest.param("bce", naive_bce, "use log-sigmoid", id="bce-naive-overflows"),
    pytest.param("bce", where_swapped_bce, "branches of torch.where swapped?", id="bce-where-swapped"),
    pytest.param("bce", lambda z, y: bce_right(torch.sigmoid(z), y), "(double sigmoid?)", id="bce-double-sigmoid"),
    pytest.param("bce", where_bce, "soft labels", id="bce-where-fails-soft-targets"),
    pytest.param("bce", lambda z, y: -torch.where(y >= 0.5, F.logsigmoid(z), F.logsigmoid(-z)).mean(), "soft labels",
                 id="bce-rounds-soft-targets"),
    pytest.param("bce", clamped_probability_bce, "caps each loss at -log(eps)", id="bce-clamped-probability"),
    pytest.param("bce", lambda z, y: -bce_right(z, y), "the sign is flipped", id="bce-sign"),
    pytest.param("bce", bce_max_abs, "wrong gradient at z = 0", id="bce-max-abs-gradient-at-0"),
    pytest.param("bce", lambda z, y: bce_right(z, y) / math.log(10), "log10", id="bce-log10"),
    # bce_probs
    pytest.param("bce_probs", bce_probs_no_clamp, "clamp p to [eps, 1 - eps]", id="bce_probs-log-of-zero"),
    pytest.param("bce_probs", bce_probs_add_eps, "log(p + eps) shifts every value", id="bce_probs-added-eps"),
    pytest.param("bce_probs", bce_probs_big_eps, "eps too large", id="bce_probs-eps-too-large"),
    pytest.param("bce_probs", bce_probs_log_clamped_low, "the log is clamped below -100",  # not "sum instead of mean?"
                 id="bce_probs-log-clamped-below-minus-100"),
    pytest.param("bce_probs", bce_probs_where_swapped, "branches of torch.where swapped?", id="bce_probs-where"),
    pytest.param("bce_probs", bce_probs_hard_targets(lambda y: y == 1), "soft labels", id="bce_probs-where-fails-soft-targets"),
    pytest.param("bce_probs", bce_probs_hard_targets(lambda y: y >= 0.5), "soft labels", id="bce_probs-rounds-soft-targets"),
    pytest.param("bce_probs", lambda p, y: bce_right(p, y), "applied sigmoid to probabilities?",
                 id="bce_probs-sigmoid-of-probabilities"),
    pytest.param("bce_probs", lambda p, y: bce_probs_right(p, y) * p.numel(), "sum instead of mean?",
                 id="bce_probs-sum"),
    # mse
    pytest.param("mse", lambda z, y: ((z - y) ** 2).mean(), "forgot the sigmoid?", id="mse-no-sigmoid"),
    pytest.param("mse", lambda z, y: mse_right(torch.sigmoid(z), y), "(double sigmoid?)", id="mse-double-sigmoid"),
    pytest.param("mse", lambda z, y: mse_right(z, y) * z.numel(), "sum instead of mean?", id="mse-sum"),
    pytest.param("mse", lambda z, y: mse_right(z, y).sqrt(), "(RMSE)", id="mse-root"),
    pytest.param("mse", lambda z, y: (torch.sigmoid(z) - y).abs().mean(), "absolute instead of squared error?",
                 id="mse-absolute-error"),
    pytest.param("mse", lambda z, y: 0.5 * mse_right(z, y), "about 1/2 of the expected value", id="mse-half"),
    pytest.param("mse", own_sigmoid_mse, "use torch.sigmoid", id="mse-own-sigmoid-nan-gradient"),
    # dlogits
    pytest.param("dlogits", lambda z, y: dlogits_right(z, y) * len(z), "sum instead of mean?", id="dlogits-no-1/N"),
    pytest.param("dlogits", lambda z, y: -dlogits_right(z, y), "not onehot(y) - softmax(z)", id="dlogits-sign"),
    pytest.param("dlogits", lambda z, y: (torch.softmax(z, 0) - F.one_hot(y, z.shape[1]).to(z.dtype)) / len(z),
                 "softmax over the wrong axis?", id="dlogits-wrong-axis"),
    pytest.param("dlogits", naive_dlogits, "subtract the row max", id="dlogits-no-max-subtraction"),
    pytest.param("dlogits", lambda z, y: dlogits_right(torch.softmax(z, 1), y), "softmax applied twice?",
                 id="dlogits-probabilities-for-logits"),
    pytest.param("dlogits", lambda z, y: (torch.sigmoid(z) - F.one_hot(y, z.shape[1]).to(z.dtype)) / len(z),
                 "sigmoid instead of softmax?", id="dlogits-sigmoid"),
    # accuracy_multi
    pytest.param("accuracy_multi", exact_match, "exact-match accuracy", id="accuracy-exact-match"),
    pytest.param("accuracy_multi", lambda p, y, t=0.5: ((p > t) == y.bool()).double().mean().item(),
                 "use p >= threshold", id="accuracy-strict-threshold"),
    pytest.param("accuracy_multi", lambda p, y, t=0.5: ((p < t) == y.bool()).double().mean().item(),
                 "branches of torch.where swapped?", id="accuracy-inverted"),
    pytest.param("accuracy_multi", lambda p, y, t=0.5: ((p >= 0.5) == y.bool()).double().mean().item(),
                 "threshold argument seems ignored", id="accuracy-ignores-threshold"),
    pytest.param("accuracy_multi", lambda p, y, t=0.5: 100 * ((p >= t) == y.bool()).double().mean().item(),
                 "a percentage?", id="accuracy-percent"),
    pytest.param("accuracy_multi", lambda p, y, t=0.5: ((p >= t) == y.bool()).double().sum().item(),
                 "sum instead of mean?", id="accuracy-count"),
    pytest.param("accuracy_multi", lambda p, y, t=0.5: ((p >= t) == y.bool()).double().mean(dim=1),
                 "average over every element", id="accuracy-per-row"),
    # best_threshold
    pytest.param("best_threshold", best_first_or_last_of_ties(last=False), "ties go to the one closest to 0.5",
                 id="best-first-of-ties"),
    pytest.param("best_threshold", best_first_or_last_of_ties(last=True), "ties go to the one closest to 0.5",
                 id="best-last-of-ties"),
    pytest.param("best_threshold", best_even_tie_to_larger, "equally close to 0.5, the smaller wins",
                 id="best-even-tie-to-larger"),
    pytest.param("best_threshold", best_even_tie_unrounded, "equally close to 0.5, the smaller wins",
                 id="best-even-tie-unrounded"),
    pytest.param("best_threshold", best_strict, "use p >= t", id="best-strict-threshold"),
    pytest.param("best_threshold", best_index, "returned the index", id="best-index"),
    pytest.param("best_threshold", best_accuracy_value, "returned the best accuracy", id="best-accuracy"),
    pytest.param("best_threshold", lambda p, y, ts: 0.5, "returned 0.5, the default", id="best-constant"),
    pytest.param("best_threshold", lambda p, y, ts: best_right(p, 1 - y, ts), "predictions inverted",
                 id="best-inverted"),
]


def _wrong_axis_ce(z, y):
    log_p = z - torch.logsumexp(z, dim=0, keepdim=True)  # normalised over the batch, not the classes
    q = F.one_hot(y, z.shape[1]).to(z.dtype) if y.dtype == torch.int64 else y
    return -(q * log_p).sum(dim=1).mean()


def hints_of(results):
    return [r.hint or "" for r in results if not r.passed]


def test_each_case_gets_the_hint_of_its_own_mistake():
    # a flipped sign is a flipped sign at large logits too, not a capped loss
    flipped = evaluate("bce", lambda z, y: -(F.softplus(z) - y * z).mean())
    assert {r.hint for r in flipped} == {"the sign is flipped: a loss is -log p (a positive number), not log p"}
    # an answer for class indices only: every case with probability targets says so, whatever its group
    index_only = evaluate("softmax_ce", lambda z, y: -(z - torch.logsumexp(z, 1, keepdim=True)).gather(1, y[:, None]).mean())
    failed = [r for r in index_only if not r.passed]
    assert {r.group for r in failed} == {"probability targets", "stability"}
    assert all(r.hint.startswith("the target may also hold class probabilities") for r in failed)
    # soft targets read as hard ones have the right value at z = 0 with y = 0.25: the hint names that cause too
    hard = evaluate("bce", lambda z, y: torch.where(y == 1, -F.logsigmoid(z), -F.logsigmoid(-z)).mean())
    (at_zero,) = [r for r in hard if r.group == "logit exactly 0"]
    assert "max(z, 0) and |z|" in at_zero.hint and "soft target 0.25 is taken as a 0" in at_zero.hint


@pytest.mark.parametrize("name, fn, hint", WRONG)
def test_a_known_wrong_answer_fails_with_its_hint(name, fn, hint):
    results = evaluate(name, fn)
    assert not all(r.passed for r in results)
    assert any(hint in h for h in hints_of(results)), hints_of(results)


def test_only_the_z_0_case_catches_the_max_abs_form_of_bce():
    failed = [r.group for r in evaluate("bce", bce_max_abs) if not r.passed]
    assert failed == ["logit exactly 0"]


def test_log_of_p_plus_eps_is_named_in_every_case_it_fails():
    """Its values pass where p is ordinary; the gradient 1/(p + eps) does not, and the hint says why (no logits here)."""
    hints = hints_of(evaluate("bce_probs", bce_probs_add_eps))
    assert len(hints) >= 3
    assert all("log(p + eps)" in h for h in hints), hints


def test_the_sum_hint_names_the_factor():
    results = evaluate("bce", lambda z, y: bce_right(z, y) * z.numel())
    assert results[0].hint == "about 12 times the expected value: sum instead of mean?"  # 12 logits
    assert results[1].hint == "about 24 times the expected value: sum instead of mean?"  # 6 x 4 logits


def test_a_huge_ratio_is_not_named_as_a_whole_factor():
    """Any huge ratio is within rounding of a whole number; only small factors (at most 1000) are named."""
    for factor in (1e-27, 1e27, 1 / 5000, 5000):
        for r in evaluate("mse", lambda z, y: mse_right(z, y) * factor):
            assert "times the expected value: sum" not in (r.hint or "") and "about 1/" not in (r.hint or ""), r.hint
    assert "about 1/1000 of the expected value" in evaluate("mse", lambda z, y: mse_right(z, y) / 1000)[0].hint
    assert "about 1000 times" in evaluate("mse", lambda z, y: mse_right(z, y) * 1000)[0].hint


def _bce_probs_clamped(eps):
    def bce_probs(p, y):
        p = p.clamp(eps, 1 - eps)
        return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
    return bce_probs


def test_the_smallest_eps_the_hints_allow_passes_and_a_smaller_one_is_told_why_it_fails():
    from lossbench.exercises.cases import CLAMP_EPS_MIN

    assert check("bce_probs", _bce_probs_clamped(CLAMP_EPS_MIN)) is None
    failed = [r for r in evaluate("bce_probs", _bce_probs_clamped(1e-20)) if not r.passed]
    assert {r.group for r in failed} == {"p exactly 0 or 1"} and all(r.nonfinite for r in failed)
    for r in failed:
        assert f"with {CLAMP_EPS_MIN:g} <= eps <= 1e-06" in r.hint and "1 - eps rounds to 1.0" in r.hint


def test_where_every_label_agrees_the_largest_allowed_eps_passes_and_a_larger_one_fails():
    """p = y: the loss is 0, and a clamp adds -log(1 - eps) ~ eps; eps = 1e-6 is allowed, 1e-4 is not."""
    def agreeing(eps):
        (result,) = [r for r in evaluate("bce_probs", _bce_probs_clamped(eps)) if "every label agrees" in r.summary]
        return result

    assert agreeing(1e-6).passed
    assert not agreeing(1e-4).passed


def test_a_tensor_of_tied_thresholds_is_asked_for_one_threshold():
    def every_tied(p, y, thresholds):
        accuracy = torch.stack([((p >= t) == y.bool()).double().mean() for t in thresholds])
        return thresholds[accuracy == accuracy.max()]

    hints = {r.hint for r in evaluate("best_threshold", every_tied) if not r.passed}
    assert hints == {"return one threshold: of those tied at the best accuracy, the closest to 0.5 (of two equally "
                     "close, the smaller), as a float"}


def _bce_max_form(maximum):
    return lambda z, y: (maximum(z) - y * z + torch.log1p(torch.exp(-z.abs()))).mean()


def test_the_z_0_hint_says_what_autograd_gives_for_each_spelling_of_max():
    """The hint's numbers are this torch's autograd's at z = 0: |z| 0, relu 0, and clamp 1 in torch 2.13 but 0 in torch
    2.14 (a clamp at its bound); torch.maximum splits the tie and passes."""
    zero = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    slope = {name: torch.autograd.grad(f(zero).sum(), zero)[0].item() for name, f in
             {"abs": torch.abs, "clamp": lambda z: z.clamp(min=0), "relu": torch.relu}.items()}
    assert slope["abs"] == slope["relu"] == 0.0 and slope["clamp"] in (0.0, 1.0)
    for maximum in (lambda z: z.clamp(min=0), torch.relu):
        failed = [r for r in evaluate("bce", _bce_max_form(maximum)) if not r.passed]
        assert [r.group for r in failed] == ["logit exactly 0"]
        assert f"(|z|: 0; z.clamp(min=0): {slope['clamp']:g}, torch.relu: 0)" in failed[0].hint
        assert "1 - y or -y instead of 1/2 - y" in failed[0].hint
    assert check("bce", _bce_max_form(lambda z: torch.maximum(z, torch.zeros_like(z)))) is None


def test_the_wrong_axis_is_caught_on_a_square_batch_too():
    ce_dim0 = evaluate("softmax_ce", _wrong_axis_ce)
    square = ce_dim0[1]  # logits (3, 3): a wrong axis gives a plausible shape
    assert "(3, 3)" in square.summary and not square.passed
    assert square.hint.startswith("softmax over the wrong axis?")


def test_a_naive_loss_passes_ordinary_cases_and_fails_only_the_large_logits():
    results = evaluate("bce", naive_bce)
    assert [r.group for r in results if not r.passed] == ["stability", "stability"]
    assert all(r.nonfinite and "NaN in the answer" in r.problems for r in results if not r.passed)


def test_a_nan_gradient_with_a_finite_value_is_caught():
    results = evaluate("mse", own_sigmoid_mse)
    failed = [r for r in results if not r.passed]
    assert [r.group for r in failed] == ["stability"]
    assert math.isnan(failed[0].grad_err) and failed[0].abs_err == 0.0  # the value is exact, the gradient NaN
    assert "NaN/inf in the gradient" in failed[0].problems


# --- calling the library, under any alias ---------------------------------------------------------

def _fake_lossbench_loss():
    """A function defined in a module named like lossbench's own losses."""
    module = types.ModuleType("lossbench.losses.fake")
    exec("import torch.nn.functional as F\n"
         "def bce(z, y):\n"
         "    return -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)).mean()\n", module.__dict__)
    return module.bce


def _autograd_dlogits(z, y):
    z = z.detach().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(z, y), z)[0]


def _backward_dlogits(z, y):
    z = z.detach().requires_grad_(True)
    ce_right(z, y).backward()
    return z.grad


def _func_grad_dlogits(z, y):
    return torch.func.grad(lambda t: ce_right(t, y))(z.detach())


LIBRARY = [
    pytest.param("bce", lambda z, y: F.binary_cross_entropy_with_logits(z, y),
                 "torch.nn.functional.binary_cross_entropy_with_logits", id="bce-F"),
    pytest.param("bce", lambda z, y: aliased_bce_with_logits(z, y),
                 "torch.nn.functional.binary_cross_entropy_with_logits", id="bce-from-import-as"),
    pytest.param("bce", lambda z, y: nn.BCEWithLogitsLoss()(z, y),
                 "torch.nn.functional.binary_cross_entropy_with_logits", id="bce-module"),
    pytest.param("bce", lambda z, y: torch.binary_cross_entropy_with_logits(z, y, None, None, 1),
                 "torch.binary_cross_entropy_with_logits", id="bce-torch-namespace"),
    pytest.param("bce", lambda z, y: torch.ops.aten.binary_cross_entropy_with_logits(z, y),
                 "aten::binary_cross_entropy_with_logits", id="bce-aten-op"),
    pytest.param("bce", lambda z, y: F.binary_cross_entropy(torch.sigmoid(z), y),
                 "torch.nn.functional.binary_cross_entropy", id="bce-from-probabilities"),
    pytest.param("bce", lambda z, y: -torch.distributions.Bernoulli(logits=z).log_prob(y).mean(),
                 "torch.nn.functional.binary_cross_entropy_with_logits", id="bce-bernoulli"),
    pytest.param("bce", lambda z, y: F.soft_margin_loss(z, 2 * y - 1),
                 "torch.nn.functional.soft_margin_loss", id="bce-soft-margin"),
    pytest.param("bce", lambda z, y: F.multilabel_soft_margin_loss(z, y),
                 "torch.nn.functional.multilabel_soft_margin_loss", id="bce-multilabel-soft-margin"),
    pytest.param("bce", lambda z, y: nn.MultiLabelSoftMarginLoss()(z, y),
                 "torch.nn.functional.multilabel_soft_margin_loss", id="bce-MultiLabelSoftMarginLoss-module"),
    pytest.param("bce_probs", lambda p, y: F.multilabel_soft_margin_loss(torch.logit(p, eps=1e-7), y),
                 "torch.nn.functional.multilabel_soft_margin_loss", id="bce_probs-multilabel-soft-margin"),
    pytest.param("bce", _fake_lossbench_loss(), "lossbench.losses.fake.bce", id="bce-lossbench-losses"),
    pytest.param("softmax_ce", lambda z, y: F.cross_entropy(z, y), "torch.nn.functional.cross_entropy", id="ce-F"),
    pytest.param("softmax_ce", lambda z, y: aliased_cross_entropy(z, y), "torch.nn.functional.cross_entropy",
                 id="ce-from-import-as"),
    pytest.param("softmax_ce", lambda z, y: nn.CrossEntropyLoss()(z, y), "torch.nn.functional.cross_entropy",
                 id="ce-module"),
    pytest.param("softmax_ce", lambda z, y: ce_logsumexp_from(torch.log_softmax(z, 1), y), "torch.log_softmax",
                 id="ce-torch-log_softmax"),
    pytest.param("softmax_ce", lambda z, y: ce_logsumexp_from(z.log_softmax(1), y), "torch.Tensor.log_softmax",
                 id="ce-tensor-method"),
    pytest.param("softmax_ce", lambda z, y: ce_logsumexp_from(F.log_softmax(z, dim=1), y),
                 "torch.nn.functional.log_softmax", id="ce-F-log_softmax"),
    pytest.param("softmax_ce", lambda z, y: ce_logsumexp_from(torch.special.log_softmax(z, 1), y),
                 "torch.special.log_softmax", id="ce-special"),
    pytest.param("softmax_ce", lambda z, y: ce_logsumexp_from(nn.LogSoftmax(dim=1)(z), y),
                 "torch.nn.functional.log_softmax", id="ce-LogSoftmax-module"),
    pytest.param("softmax_ce", lambda z, y: ce_logsumexp_from(torch.ops.aten._log_softmax(z, 1, False), y),
                 "aten::_log_softmax", id="ce-aten-op"),
    pytest.param("softmax_ce", lambda z, y: F.nll_loss(torch.log(torch.softmax(z, 1)), y),
                 "torch.nn.functional.nll_loss", id="ce-nll_loss"),
    pytest.param("softmax_ce", lambda z, y: -torch.distributions.Categorical(logits=z).log_prob(y).mean(),
                 "torch.distributions.categorical.Categorical", id="ce-categorical"),
    pytest.param("softmax_ce", lambda z, y: ce_logsumexp_from(torch.distributions.Categorical(logits=z).logits, y),
                 "torch.distributions.categorical.Categorical", id="ce-categorical-logits"),
    pytest.param("softmax_ce", lambda z, y: ce_logsumexp_from(
        torch.distributions.OneHotCategorical(logits=z).logits, y),
                 "torch.distributions.categorical.Categorical", id="ce-one-hot-categorical"),
    pytest.param("bce_probs", lambda p, y: F.binary_cross_entropy(p, y),
                 "torch.nn.functional.binary_cross_entropy", id="bce_probs-F"),
    pytest.param("bce_probs", lambda p, y: nn.BCELoss()(p, y), "torch.nn.functional.binary_cross_entropy",
                 id="bce_probs-module"),
    pytest.param("bce_probs", lambda p, y: F.binary_cross_entropy_with_logits(torch.logit(p, eps=1e-7), y),
                 "torch.nn.functional.binary_cross_entropy_with_logits", id="bce_probs-via-logit"),
    pytest.param("mse", lambda z, y: F.mse_loss(torch.sigmoid(z), y), "torch.nn.functional.mse_loss", id="mse-F"),
    pytest.param("mse", lambda z, y: nn.MSELoss()(torch.sigmoid(z), y), "torch.nn.functional.mse_loss",
                 id="mse-module"),
    pytest.param("dlogits", _autograd_dlogits, "torch.nn.functional.cross_entropy", id="dlogits-autograd-of-F"),
    pytest.param("dlogits", _backward_dlogits, "torch.Tensor.backward", id="dlogits-backward"),
    pytest.param("dlogits", _func_grad_dlogits, "torch.autograd.grad", id="dlogits-torch-func"),
    pytest.param("mse", lambda z, y: torch.ops.aten.mse_loss(torch.sigmoid(z), y), "aten::mse_loss", id="mse-aten-op"),
    pytest.param("bce", lambda z, y: torch.ops.aten.soft_margin_loss(z, 2 * y - 1, 1), "aten::soft_margin_loss",
                 id="bce-soft-margin-aten-op"),
    pytest.param("bce_probs", lambda p, y: _lossbench_bce.loss_of_probability(p, y).mean(),
                 "lossbench.losses.bce.loss_of_probability", id="bce_probs-lossbench-losses"),
    pytest.param("accuracy_multi", lambda p, y, threshold=0.5: _lossbench_thresholds.sweep(
        p.reshape(1, len(p), -1), y.reshape(len(y), -1), torch.tensor([threshold]))["accuracy"].item(),
                 "lossbench.thresholds.sweep", id="accuracy_multi-lossbench-thresholds"),
    pytest.param("best_threshold", lambda p, y, t: float(t[_lossbench_thresholds.best_threshold_index(_lossbench_thresholds.sweep(
        p.reshape(1, len(p), -1), y.reshape(len(y), -1), t)["accuracy"], t)]),
                 "lossbench.thresholds.sweep", id="best_threshold-lossbench-thresholds"),
]


def ce_logsumexp_from(log_p, y):
    q = F.one_hot(y, log_p.shape[1]).to(log_p.dtype) if y.dtype == torch.int64 else y
    return -(q * log_p).sum(dim=1).mean()


@pytest.mark.parametrize("name, fn, called", LIBRARY)
def test_calling_the_library_is_flagged_under_any_alias(name, fn, called):
    results = evaluate(name, fn)
    # Bernoulli refuses soft targets before it reaches the loss: that case is an error, not a library call
    assert {r.status for r in results} <= {"library", "error"}, [r.status for r in results]
    first = results[0]
    assert first.status == "library"
    assert any(called in p and "the library's version" in p for p in first.problems), first.problems
    assert first.hint.startswith("write it from building blocks (")


def test_a_library_call_fails_even_when_every_value_is_right():
    results = evaluate("bce", lambda z, y: F.binary_cross_entropy_with_logits(z, y))
    assert all(r.abs_err is not None and r.abs_err <= 1e-12 for r in results)
    assert not any(r.passed for r in results)
    assert format_report("bce", results).splitlines()[-1] == f"bce: 0 of {len(results)} cases pass"


def test_a_library_call_before_an_error_is_still_a_library_call():
    def then_fails(z, y):
        F.binary_cross_entropy_with_logits(z, y)
        raise RuntimeError("a later line of the student's function fails")

    results = evaluate("bce", then_fails)
    assert {r.status for r in results} == {"library"}


def test_the_right_value_hint_is_given_only_when_the_value_is_right():
    results = evaluate("mse", lambda z, y: ((torch.sigmoid(z) - y) ** 2).mean() ** 1.5)  # a wrong value, and so a wrong gradient
    assert not any(r.passed for r in results if r.group != "logit exactly 0")
    assert not any("the value is right" in (r.hint or "") for r in results), hints_of(results)


def test_a_softmax_with_an_eps_in_its_denominator_is_not_close_enough():
    """An answer off by a relative 1e-5 fails: the float64 cases hold values to 1e-6."""
    def dlogits(z, y):
        e = torch.exp(z - z.max(dim=1, keepdim=True).values)
        return (e / (e.sum(dim=1, keepdim=True) + 1e-5) - F.one_hot(y, z.shape[1]).to(z.dtype)) / len(z)

    results = evaluate("dlogits", dlogits)
    assert sum(not r.passed for r in results) >= 4, [(r.group, r.rel_err) for r in results]


# --- what any function can do wrong ---------------------------------------------------------------

def not_written(z, y):
    raise NotImplementedError


def test_not_implemented_is_reported_as_not_attempted():
    results = evaluate("bce", not_written)
    assert {r.status for r in results} == {"not attempted"}
    text = format_report("bce", results)
    assert text.endswith("bce: not attempted (the function raises NotImplementedError): write it and run again")
    assert score("bce", not_written) == 0.0


def test_another_exception_is_reported_with_its_type_and_message():
    def broken(z, y):
        raise KeyError("no such label")

    results = evaluate("bce", broken)
    assert {r.status for r in results} == {"error"}
    assert results[0].problems == ["raised KeyError: 'no such label'"]


def test_system_exit_inside_the_function_does_not_stop_the_report():
    def leaves(z, y):
        raise SystemExit(3)

    out = io.StringIO()
    report("mse", leaves, file=out)
    assert "raised SystemExit: 3" in out.getvalue()


def test_an_in_place_edit_of_the_input_is_explained_and_cannot_corrupt_the_cases():
    def in_place(z, y):
        z -= z.max()
        return bce_right(z, y)

    results = evaluate("bce", in_place)
    grad_cases = [r for r in results if r.group != "float32"]
    assert all(r.status == "error" for r in grad_cases)
    assert grad_cases[0].hint.startswith("in-place operation on an input")
    assert check("bce", bce_right) is None  # the cases themselves are untouched


def _ce_one_hot_without_num_classes(z, y):
    q = F.one_hot(y).to(z.dtype) if y.dtype == torch.int64 else y  # (N, y.max() + 1): too narrow if C - 1 is absent
    return -(q * (z - torch.logsumexp(z, dim=1, keepdim=True))).sum(dim=1).mean()


def _dlogits_one_hot_without_num_classes(z, y):
    return (torch.softmax(z, dim=1) - F.one_hot(y).to(z.dtype)) / len(z)


@pytest.mark.parametrize("name, fn", [
    pytest.param("softmax_ce", _ce_one_hot_without_num_classes, id="softmax_ce"),
    pytest.param("dlogits", _dlogits_one_hot_without_num_classes, id="dlogits"),
])
def test_one_hot_without_num_classes_fails_where_the_last_class_is_absent(name, fn):
    results = evaluate(name, fn)
    (unused,) = [r for r in results if r.group == "unused classes"]
    assert unused.status == "error" and "must match the size" in unused.problems[0]
    assert "pass num_classes=logits.shape[1]" in unused.hint
    assert all(r.passed for r in results if "stability" == r.group or r.group == "probability targets")


def _dlogits_shifting_the_callers_logits(z, y):
    z -= z.max(dim=1, keepdim=True).values  # in place on the caller's tensor: no gradient is taken, so no error
    return dlogits_right(z, y)


def _accuracy_shifting_the_callers_probs(p, y, threshold=0.5):
    return ((p.sub_(threshold) >= 0) == y.bool()).double().mean().item()


def _accuracy_touching_the_callers_probs(p, y, threshold=0.5):
    p.mul_(1.0)  # in place, but every value stays as it was
    return accuracy_right(p, y, threshold)


@pytest.mark.parametrize("name, fn, argument", [
    pytest.param("dlogits", _dlogits_shifting_the_callers_logits, "logits", id="dlogits-logits-minus-max"),
    pytest.param("accuracy_multi", _accuracy_shifting_the_callers_probs, "probs", id="accuracy-probs-sub_"),
])
def test_a_function_that_changes_its_callers_inputs_fails_every_case_naming_the_argument(name, fn, argument):
    results = evaluate(name, fn)
    for r in results:
        assert r.status == "fail" and r.abs_err is not None and r.abs_err <= 1e-6  # the values are right
        assert f"changed its input `{argument}` in place" in r.problems[0]
        assert r.hint.startswith("leave the inputs as they are")


def test_an_in_place_operation_that_changes_no_value_is_not_a_changed_input():
    assert check("accuracy_multi", _accuracy_touching_the_callers_probs) is None


def test_an_in_place_error_gets_the_in_place_hint_on_probability_targets_too():
    def shifted(z, y):
        z -= z.max(dim=1, keepdim=True).values
        return ce_right(z, y)

    results = evaluate("softmax_ce", shifted)
    errors = [r for r in results if r.status == "error"]
    assert {r.group for r in errors} >= {"probability targets", "basic"}
    assert all(r.hint.startswith("in-place operation on an input") for r in errors), [r.hint for r in errors]


def test_an_in_place_change_that_breaks_backward_gets_the_in_place_hint():
    def clamps_in_place(z, y):
        p = torch.sigmoid(z)
        p.clamp_(1e-12, 1 - 1e-12)  # sigmoid's backward needs its output: autograd refuses
        return -(y * p.log() + (1 - y) * (1 - p).log()).mean()

    (basic, *_) = evaluate("bce", clamps_in_place)
    assert basic.problems[0].startswith("backward raised RuntimeError: one of the variables needed")
    assert basic.hint.startswith("in-place operation on an input or on a tensor autograd needs")


def test_returning_none_asks_for_return():
    results = evaluate("mse", lambda z, y: None)
    assert results[0].problems == ["returned None"]
    assert results[0].hint == "returned None: forgot `return`?"


def test_a_python_float_fails_because_the_gradient_cannot_flow():
    results = evaluate("mse", lambda z, y: mse_right(z, y).item())
    assert results[0].abs_err == 0.0 and not results[0].passed
    assert results[0].problems[0] == "returned a Python float, expected a scalar tensor"
    assert "no .item()" in results[0].hint


def test_a_detached_loss_is_told_the_gradient_is_cut_off():
    results = evaluate("mse", lambda z, y: mse_right(z.detach(), y))
    assert results[0].abs_err == 0.0 and not results[0].passed
    assert results[0].problems == ["no gradient reaches the input"]
    assert results[0].hint.startswith("the loss is cut off from the logits")


def test_per_element_losses_are_told_to_take_the_mean():
    results = evaluate("bce", lambda z, y: -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z)))
    assert results[0].problems[0] == "expected a scalar tensor (shape ()), got shape (12,)"
    assert results[0].hint.startswith("each element's loss looks right")


def test_a_float32_answer_to_float64_inputs_is_a_dtype_problem():
    results = evaluate("mse", lambda z, y: mse_right(z.float(), y.float()))
    assert not results[0].passed
    assert "dtype float32, expected float64 (the input's)" in results[0].problems
    float32_case = next(r for r in results if r.group == "float32")
    assert float32_case.passed


def test_a_wrong_signature_points_to_the_expected_one():
    results = evaluate("bce", lambda z: z.mean())
    assert results[0].status == "error"
    assert results[0].hint == "check the signature: bce(logits, target) -> scalar tensor"


def test_check_raises_an_assertion_error_carrying_the_report():
    with pytest.raises(AssertionError) as info:
        check("bce", naive_bce)
    err = info.value
    assert isinstance(err, ExerciseFailed)
    assert err.report == str(err) == format_report("bce", err.results)
    assert err.report.splitlines()[-1] == "bce: 5 of 7 cases pass"


def test_score_is_the_fraction_of_cases_passed():
    assert score("bce", naive_bce) == pytest.approx(5 / 7)


def test_report_prints_a_row_per_case_with_its_input_and_errors():
    out = io.StringIO()
    report("bce", naive_bce, file=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("bce: mean binary cross-entropy from logits")
    header = next(line for line in lines if line.lstrip().startswith("case"))
    for column in ("group", "expected", "actual", "abs err", "rel err", "grad err", "result"):
        assert column in header
    stability = [line for line in lines if "stability" in line]
    assert all(line.rstrip().endswith("FAIL") and "nan" in line for line in stability)
    assert "      input: logits (12,) float64 in [-4.38, 5.69], target (12,) float64 in {0, 1}" in lines
    assert sum(line.startswith("      input: logits (10,) float32") for line in lines) == 1
    assert any(line.strip().startswith("hint: NaN/inf at large logits") for line in lines)


def test_unknown_exercises_and_non_functions_are_value_errors():
    with pytest.raises(ValueError, match=r"^Expected `name` to be one of 'softmax_ce', .* but got 'bcee'\."):
        report("bcee", bce_right)
    with pytest.raises(ValueError, match=r"^Expected `fn` to be a function bce\(logits, target\) -> scalar tensor, "
                                         r"but got int\."):
        check("bce", 3)
    with pytest.raises(ValueError, match=r"^Expected `seed` to be a whole number from 0 to 9223372036854775807"):
        evaluate("bce", bce_right, seed=2**64)  # torch's own message: "Overflow when unpacking long long"


def test_cases_follow_the_seed():
    other = evaluate("bce", bce_right, seed=1)
    assert all(r.passed for r in other)
    assert [r.summary for r in other] != [r.summary for r in evaluate("bce", bce_right)]


def test_a_factor_near_a_whole_number_is_not_named_as_one():
    """12.05 times the answer is no sum over 12 elements; a tensor answer gets the exact factor instead."""
    for r in evaluate("bce", lambda z, y: bce_right(z, y) * 12.05):
        assert "about 12 times" not in (r.hint or ""), r.hint
    hints = hints_of(evaluate("dlogits", lambda z, y: dlogits_right(z, y) * 12.05))
    assert hints and all(h == "off by a constant factor: 12.05 times the expected value" for h in hints), hints


def test_a_fraction_near_a_whole_reciprocal_is_not_named_as_one():
    """1/12.05 of the answer is not "divided by 12 once too often"; a tensor answer gets the exact factor instead."""
    for r in evaluate("bce", lambda z, y: bce_right(z, y) / 12.05):
        assert "about 1/12" not in (r.hint or ""), r.hint
    hints = hints_of(evaluate("dlogits", lambda z, y: dlogits_right(z, y) / 12.05))
    assert hints and all(h.startswith("off by a constant factor: 0.08298") for h in hints), hints  # 1 / 12.05 = 0.0829876


def test_the_gradient_tolerance_is_relative_to_the_largest_reference_element():
    """As the pass line says (|g - g_ref| <= atol + rtol max|g_ref|): an error of 1e-7 max|g_ref| on every element passes,
    also where the reference gradient is near 0 (confident right answers at large logits)."""
    def nudged(z, y):  # the value exactly, the gradient (sigmoid(z) - y) / N plus 1e-7 of its largest element everywhere
        g = (torch.sigmoid(z.detach()) - y) / z.numel()
        return bce_right(z, y) + (1e-7 * g.abs().max() * (z - z.detach())).sum()

    results = evaluate("bce", nudged)
    assert all(r.passed for r in results), [(r.group, r.problems) for r in results if not r.passed]
    assert max(r.grad_err for r in results if r.grad_err is not None) > 5e-8  # the nudge is there


def test_a_constant_answer_that_passes_a_case_gets_no_hint_there():
    """0.45 is the expected threshold of the fixed tie case: that case passes, hint-free; the others are told the answer never changes."""
    results = evaluate("best_threshold", lambda probs, target, thresholds: 0.45)
    passed = [r for r in results if r.passed]
    assert passed and all(r.hint is None for r in passed)
    assert all(r.hint == "the same answer, 0.45, for every case whatever the inputs: is it computed from them?"
               for r in results if not r.passed)


def test_nan_on_moderate_logits_is_not_blamed_on_large_logits():
    # a NaN made on purpose: on the basic case (logits within +-6) nothing overflows, so the hint looks elsewhere;
    # on the stability cases (logits of +-1e4 and more) the exercise's own hint about large logits stands
    from lossbench.exercises.checker import MODERATE, evaluate

    def nan_bce(logits, target):
        return (logits * float("nan")).mean()

    results = {r.group: r for r in evaluate("bce", nan_bce)}
    assert results["basic"].hint.startswith(f"NaN/inf in the answer on moderate inputs (all within +-{MODERATE:g}): not an overflow")
    assert results["logit exactly 0"].hint.startswith("NaN/inf in the answer on moderate inputs")
    assert results["stability"].hint.startswith("NaN/inf at large logits: use log-sigmoid")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nothing_the_naive_formulas_compute_overflows_or_saturates_within_the_moderate_bound(dtype):
    # the claim behind the moderate-input hint: within +-MODERATE, exp, sigmoid and the logs of the naive
    # losses stay finite and sigmoid never rounds to 0 or 1, even in float32
    from lossbench.exercises.checker import MODERATE

    z = torch.linspace(-MODERATE, MODERATE, 3001, dtype=dtype)
    p = 1 / (1 + torch.exp(-z))
    assert torch.isfinite(torch.exp(z)).all() and ((p > 0) & (p < 1)).all()
    assert torch.isfinite(torch.log(p)).all() and torch.isfinite(torch.log(1 - p)).all()
    rows = torch.stack([z, -z], dim=1)
    assert torch.isfinite(torch.log(torch.exp(rows) / torch.exp(rows).sum(dim=1, keepdim=True))).all()
