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
