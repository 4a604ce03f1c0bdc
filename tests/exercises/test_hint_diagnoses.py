"""Hints that name a cause only where the answer shows it: wrong answers that once got another mistake's hint."""
import pytest
import torch
import torch.nn.functional as F

from lossbench.exercises import evaluate

CLAMPING = "clamping the probability caps each loss at -log(eps)"


def _stability(results):
    return [r for r in results if r.group == "stability"]


def _clamped(eps, style):
    def bce(z, y):
        p = torch.sigmoid(z)
        if style == "clamp p":
            p = p.clamp(eps, 1 - eps)
            return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()
        if style == "clamp each side":
            return -(y * p.clamp(min=eps).log() + (1 - y) * (1 - p).clamp(min=eps).log()).mean()
        if style == "log1p":
            p = p.clamp(eps, 1 - eps)
            return -(y * torch.log(p) + (1 - y) * torch.log1p(-p)).mean()
        return -(y * torch.log(p + eps) + (1 - y) * torch.log(1 - p + eps)).mean()  # "add eps"
    return bce


@pytest.mark.parametrize("eps", [1e-3, 1e-7, 1e-12, 1e-15, torch.finfo(torch.float32).eps])
@pytest.mark.parametrize("style", ["clamp p", "clamp each side", "log1p", "add eps"])
def test_a_clamped_probability_gets_the_clamping_hint_on_both_stability_cases(eps, style):
    results = _stability(evaluate("bce", _clamped(eps, style)))
    assert len(results) == 2 and all(CLAMPING in (r.hint or "") for r in results), [r.hint for r in results]


def test_the_log_clamped_at_minus_100_gets_the_clamping_hint():
    def bce(z, y):
        p = torch.sigmoid(z)
        return -(y * p.log().clamp(min=-100) + (1 - y) * (1 - p).log().clamp(min=-100)).mean()

    assert all(CLAMPING in (r.hint or "") for r in _stability(evaluate("bce", bce)))


def test_half_the_loss_is_divided_by_2_on_the_stability_cases_too():
    results = evaluate("bce", lambda z, y: (F.softplus(z) - y * z).mean() / 2)
    assert {r.hint for r in results} == {"about 1/2 of the expected value: divided by 2 once too often?"}


@pytest.mark.parametrize("fn", [
    pytest.param(lambda z, y: -(y * F.logsigmoid(z)).mean(), id="no-negative-term"),
    pytest.param(lambda z, y: (F.softplus(y) - z * y).mean(), id="arguments-swapped"),
])
def test_a_wrong_formula_below_the_expected_value_is_not_called_a_clamp(fn):
    assert not any(CLAMPING in (r.hint or "") for r in evaluate("bce", fn))


UNUSED_CLASSES = "pass num_classes=logits.shape[1]"


def _ce_gather_without_unsqueeze(z, y):
    log_p = z - torch.logsumexp(z, 1, keepdim=True)
    return -log_p.gather(1, y).mean() if y.dim() == 1 else -(y * log_p).sum(1).mean()


@pytest.mark.parametrize("name, fn", [
    pytest.param("softmax_ce", _ce_gather_without_unsqueeze, id="ce-gather-without-unsqueeze"),
    pytest.param("dlogits", lambda z, y: (torch.softmax(z, 1) - torch.zeros_like(z).scatter(1, y, 1.0)) / len(z),
                 id="dlogits-scatter-without-unsqueeze"),
    pytest.param("softmax_ce", lambda y, z: -(z - torch.logsumexp(z, 1, keepdim=True)).mean(), id="ce-arguments-swapped"),
])
def test_an_index_or_dimension_error_is_not_blamed_on_unused_classes(name, fn):
    errors = [r for r in evaluate(name, fn) if r.status == "error"]
    assert any(r.group == "unused classes" for r in errors)
    assert not any(UNUSED_CLASSES in (r.hint or "") for r in errors), [r.hint for r in errors]


@pytest.mark.parametrize("name, fn", [
    pytest.param("softmax_ce", lambda z, y: -((F.one_hot(y).to(z.dtype) if y.dim() == 1 else y)
                                              * (z - torch.logsumexp(z, 1, keepdim=True))).sum(1).mean(), id="softmax_ce"),
    pytest.param("dlogits", lambda z, y: (torch.softmax(z, 1) - F.one_hot(y).to(z.dtype)) / len(z), id="dlogits"),
])
def test_one_hot_without_num_classes_is_named_where_the_last_class_is_absent(name, fn):
    from lossbench.exercises.catalog import get_exercise

    absent = [c.inputs[1].dim() == 1 and int(c.inputs[1].max()) + 1 < c.inputs[0].shape[1]
              for c in get_exercise(name).make_cases(0)]
    named = [UNUSED_CLASSES in (r.hint or "") for r in evaluate(name, fn)]
    assert named == absent and any(named)


def _where_with_overflow(z, y):  # the exact value; exp overflows in the branch not taken, and its NaN flows back
    return (torch.where(z >= 0, z + torch.log1p(torch.exp(-z)), torch.log1p(torch.exp(z))) - y * z).mean()


@pytest.mark.parametrize("fn, cause", [
    pytest.param(_where_with_overflow, "an exp that overflows", id="exp-in-the-branch-not-taken"),
    pytest.param(_where_with_overflow, "torch.where does in the branch it does not take", id="where-passes-it-back"),
])
def test_the_nan_gradient_hint_of_bce_names_the_cause_of_a_right_value(fn, cause):
    nan_grad = [r for r in evaluate("bce", fn) if r.problems == ["NaN/inf in the gradient"]]
    assert nan_grad and all(cause in r.hint for r in nan_grad), [r.hint for r in nan_grad]


@pytest.mark.parametrize("name, fn", [
    pytest.param("bce", lambda y, z: (F.softplus(z) - y * z).mean(), id="bce"),
    pytest.param("mse", lambda y, z: ((torch.sigmoid(z) - y) ** 2).mean(), id="mse"),
    pytest.param("accuracy_multi", lambda y, p, t=0.5: ((p >= t) == y.bool()).double().mean().item(),
                 id="accuracy_multi"),
    pytest.param("best_threshold", lambda y, p, ts: max(ts.tolist(), key=lambda t: (((p >= t) == y.bool()).sum().item(),
                                                                               -abs(round(t - 0.5, 9)), -t)),
                 id="best_threshold"),
])
def test_arguments_in_the_wrong_order_are_named(name, fn):
    # (not for bce_probs: with the 0/1 targets taken for probabilities the value is the student's clamp's)
    failed = [r for r in evaluate(name, fn) if not r.passed and r.status != "error"]
    assert failed and sum("arguments swapped?" in (r.hint or "") for r in failed) >= len(failed) / 2, \
        [r.hint for r in failed]


def test_an_ignored_threshold_is_named_where_p_above_t_gives_the_same_number():
    results = evaluate("accuracy_multi", lambda p, y, t=0.5: ((p >= 0.5) == y.bool()).double().mean().item())
    hints = {r.hint for r in results if not r.passed}
    assert hints == {"the threshold argument seems ignored (this is the accuracy at 0.5)"}


def test_a_best_accuracy_returned_is_named_on_every_case_it_fails():
    results = evaluate("best_threshold",
                       lambda p, y, ts: max(((p >= t) == y.bool()).double().mean().item() for t in ts))
    hints = {r.hint for r in results if not r.passed}
    assert hints == {"returned the best accuracy, not the threshold that reaches it"}


def test_a_loss_below_the_accepted_range_is_not_asserted_to_be_a_large_eps():
    def log10(p, y):
        p = p.clamp(1e-7, 1 - 1e-7)
        return -(y * torch.log10(p) + (1 - y) * torch.log10(1 - p)).mean()

    (edge,) = [r for r in evaluate("bce_probs", log10) if r.expected.startswith("in [")]
    assert edge.hint.startswith("below the smallest accepted loss, 13.8: eps too large?")


def _bce_probs_clamped(eps, reduce):
    def bce_probs(p, y):
        p = p.clamp(eps, 1 - eps)
        return reduce(-(y * torch.log(p) + (1 - y) * torch.log(1 - p)))
    return bce_probs


@pytest.mark.parametrize("eps", [1e-15, 1e-7, 1e-6])
def test_a_sum_fails_where_every_label_disagrees_and_a_mean_passes(eps):
    def disagrees(fn):
        (result,) = [r for r in evaluate("bce_probs", fn) if r.summary.endswith("(every label disagrees)")]
        return result

    assert disagrees(_bce_probs_clamped(eps, torch.mean)).passed
    summed = disagrees(_bce_probs_clamped(eps, torch.sum))
    assert not summed.passed and "a sum instead of a mean" in summed.hint


def _exercise_text(name: str) -> str:
    import json
    from pathlib import Path

    notebook = Path(__file__).parents[2] / "notebooks" / "exercises" / name
    return "".join("".join(cell["source"]) for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"])


def test_the_notebook_says_which_added_eps_the_checker_catches():
    text = " ".join(_exercise_text("losses_solutions.ipynb").split())
    assert "catches an added $\\varepsilon$ of $3 \\times 10^{-12}$ or more; one of $2 \\times 10^{-12}$ or less" in text

    def added(eps):
        return lambda p, y: -(y * torch.log(p + eps) + (1 - y) * torch.log(1 - p + eps)).mean()

    for eps in (3e-12, 5e-12, 1e-11, 1e-9):  # caught, from 3e-12 on
        assert not all(r.passed for r in evaluate("bce_probs", added(eps))), eps
    for eps in (2e-12, 1e-12, 1e-13):  # passes, wrong as it is
        assert all(r.passed for r in evaluate("bce_probs", added(eps))), eps


def test_the_notebook_says_which_slope_this_torch_gives_a_clamp_at_its_bound():
    text = " ".join(_exercise_text("losses_solutions.ipynb").split())
    assert "for `z.clamp(min=0)`, 1 in torch 2.13 and earlier, 0 in torch 2.14." in text
    zero = torch.zeros(1, requires_grad=True)
    (slope,) = torch.autograd.grad(zero.clamp(min=0).sum(), zero)
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    assert slope.item() == (1.0 if (major, minor) <= (2, 13) else 0.0), torch.__version__


def test_the_notebook_says_below_which_clamp_eps_one_minus_eps_rounds_to_one():
    text = " ".join(_exercise_text("losses_solutions.ipynb").split())
    assert "An $\\varepsilon$ below about $6 \\times 10^{-17}$ is lost" in text
    assert "(in float32 the bound is about $3 \\times 10^{-8}$)" in text
    for dtype, kept, lost in ((torch.float64, 6e-17, 5e-17), (torch.float32, 3e-8, 2.9e-8)):
        one = torch.tensor(1.0, dtype=dtype)
        assert one - torch.tensor(kept, dtype=dtype) < 1 and one - torch.tensor(lost, dtype=dtype) == 1, dtype
    # so a clamp at 1e-16, below the suggested range, still passes, and one at 1e-17 fails
    assert all(r.passed for r in evaluate("bce_probs", _bce_probs_clamped(1e-16, torch.mean)))
    assert not all(r.passed for r in evaluate("bce_probs", _bce_probs_clamped(1e-17, torch.mean)))


@pytest.mark.parametrize("fn", [
    pytest.param(lambda z, y: 2 * F.gaussian_nll_loss(torch.sigmoid(z), y, torch.ones_like(z)), id="gaussian_nll_loss"),
    pytest.param(lambda z, y: 2 * F.huber_loss(torch.sigmoid(z), y, delta=1e6), id="huber_loss"),
    pytest.param(lambda z, y: 2e6 * F.smooth_l1_loss(torch.sigmoid(z), y, beta=1e6), id="smooth_l1_loss"),
    pytest.param(lambda z, y: F.l1_loss((torch.sigmoid(z) - y) ** 2, torch.zeros_like(y)), id="l1_loss-of-squares"),
    pytest.param(lambda z, y: 2 * torch.nn.HuberLoss(delta=1e6)(torch.sigmoid(z), y), id="HuberLoss-module"),
    pytest.param(lambda z, y: 2 * torch.nn.GaussianNLLLoss()(torch.sigmoid(z), y, torch.ones_like(z)),
                 id="GaussianNLLLoss-module"),
])
def test_a_library_loss_that_equals_the_mse_is_a_library_call(fn):
    assert {r.status for r in evaluate("mse", fn)} == {"library"}


def test_the_export_module_does_not_claim_the_package_holds_no_answers():
    from lossbench.exercises import notebooks

    doc = " ".join(notebooks.__doc__.split())
    assert "get the checker, not the answers" not in doc
    assert "lossbench.exercises.references" in doc and "lossbench.losses" in doc
