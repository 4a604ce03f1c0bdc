"""Focal loss: handwritten equals torchvision's formulation, is exact at extreme logits, and reduces to BCE at gamma 0."""
from __future__ import annotations

import itertools

import pytest
import torch

from lossbench.losses.bce import binary_cross_entropy_with_logits
from lossbench.losses.focal import focal_loss, focal_loss_naive, focal_loss_reference, grad_wrt_logit, loss_of_probability

from .helpers import value_and_grad

F64 = torch.float64


def _inputs(shape: tuple[int, ...], soft: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    output = 3 * torch.randn(shape, generator=g, dtype=F64)
    target = torch.rand(shape, generator=g, dtype=F64) if soft else torch.randint(0, 2, shape, generator=g).to(F64)
    return output, target


SHAPES = {"N": (7,), "N,K": (6, 4), "N,K,d": (3, 4, 2)}
CASES = [
    pytest.param(shape, soft, alpha, gamma, reduction, id=f"{name}-{'soft' if soft else 'hard'}-a{alpha}-g{gamma}-{reduction}")
    for (name, shape), soft, alpha, gamma, reduction in itertools.product(
        SHAPES.items(), (False, True), (0.25, 0.9, None, -1.0), (0.0, 0.5, 1.0, 2.0, 5.0), ("mean", "sum", "none")
    )
]


@pytest.mark.parametrize("shape, soft, alpha, gamma, reduction", CASES)
def test_handwritten_equals_reference_on_value_and_gradient(shape, soft, alpha, gamma, reduction):
    output, target = _inputs(shape, soft)
    options = dict(alpha=alpha, gamma=gamma, reduction=reduction)
    got, got_grad = value_and_grad(focal_loss, output, target, **options)
    want, want_grad = value_and_grad(focal_loss_reference, output, target, **options)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-10, rtol=0)


def test_reference_is_torchvisions_formula_on_a_hand_computed_example():
    # z = 0: p = 1/2, CE = log 2, (1 - p_t)^2 = 1/4; alpha_t = 0.25 for y = 1, 0.75 for y = 0
    z = torch.zeros(2, dtype=F64)
    y = torch.tensor([1.0, 0.0], dtype=F64)
    log2 = torch.log(torch.tensor(2.0, dtype=F64))
    expected = torch.stack([0.25 * 0.25 * log2, 0.75 * 0.25 * log2])
    torch.testing.assert_close(focal_loss_reference(z, y, reduction="none"), expected)
    torch.testing.assert_close(focal_loss(z, y, reduction="none"), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_gamma_zero_without_alpha_is_exactly_bce(dtype, soft):
    output, target = _inputs((6, 3), soft)
    output = torch.cat([output.to(dtype), torch.tensor([[1e4, -1e4, 0.0]], dtype=dtype)])
    target = torch.cat([target.to(dtype), torch.tensor([[0.0, 0.0, 1.0]], dtype=dtype)])
    got, got_grad = value_and_grad(focal_loss, output, target, alpha=None, gamma=0.0)
    want, want_grad = value_and_grad(binary_cross_entropy_with_logits, output, target)
    assert torch.equal(got, want) and torch.equal(got_grad, want_grad)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_gradcheck(gamma, soft):
    output, target = _inputs((5, 3), soft)
    z = output.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: focal_loss(z, target, gamma=gamma), (z,))


# The handwritten loss alone at extreme logits, against the same formula in 60-digit arithmetic.

LOGITS = [-1e4, -1e3, -60.0, -37.0, -20.0, -3.0, -0.5, 0.0, 0.5, 3.0, 20.0, 37.0, 60.0, 1e3, 1e4]


def _high_precision(z: float, y: float, alpha: float | None, gamma: float) -> tuple[float, float]:
    """FL and dFL/dz at one logit, with mpmath at 60 significant digits."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(60):

        def fl(t):
            # mpmath's exponent range is unbounded: exp(-1e4) is a tiny number, not 0, so 1 - p never rounds to 0
            log_p, log_1mp = -mpmath.log1p(mpmath.exp(-t)), -mpmath.log1p(mpmath.exp(t))
            p, one_minus_p = mpmath.exp(log_p), mpmath.exp(log_1mp)
            ce = -(y * log_p + (1 - y) * log_1mp)
            alpha_t = 1 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
            return alpha_t * (y * one_minus_p + (1 - y) * p) ** gamma * ce

        z = mpmath.mpf(z)
        return float(fl(z)), float(mpmath.diff(fl, z))


@pytest.mark.parametrize("dtype, rtol", [(torch.float64, 1e-13), (torch.float32, 2e-6)], ids=["f64", "f32"])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("y", [0.0, 1.0, 0.3])
def test_extreme_logits_handwritten_is_finite_and_matches_high_precision(dtype, rtol, gamma, y):
    output = torch.tensor(LOGITS, dtype=dtype)
    target = torch.full_like(output, y)
    got = focal_loss(output, target, gamma=gamma, reduction="none")
    _, got_grad = value_and_grad(focal_loss, output, target, gamma=gamma, reduction="sum")
    assert torch.isfinite(got).all() and torch.isfinite(got_grad).all()
    expected = [_high_precision(z, y, 0.25, gamma) for z in LOGITS]
    want = torch.tensor([v for v, _ in expected], dtype=F64)
    want_grad = torch.tensor([d for _, d in expected], dtype=F64)
    # relative accuracy down to the dtype's smallest normal number (below it, values underflow to 0)
    tiny = torch.finfo(dtype).tiny
    torch.testing.assert_close(got.double(), want, rtol=rtol, atol=tiny)
    torch.testing.assert_close(got_grad.double(), want_grad, rtol=rtol, atol=tiny)


@pytest.mark.parametrize("dtype, z", [(torch.float64, 40.0), (torch.float32, 20.0)], ids=["f64", "f32"])
def test_reference_gradient_is_nan_for_gamma_below_one_once_one_minus_pt_rounds_to_zero(dtype, z):
    # (1 - p_t) ** 0.5 has an infinite slope at 1 - p_t = 0, and autograd forms inf * 0 = nan there,
    # although the true gradient (in logit space) is finite and tiny. The handwritten form works in log space.
    output = torch.tensor([z, -z], dtype=dtype)
    target = torch.tensor([1.0, 0.0], dtype=dtype)  # both confidently right
    _, ref_grad = value_and_grad(focal_loss_reference, output, target, gamma=0.5)
    assert torch.isnan(ref_grad).all()
    _, grad = value_and_grad(focal_loss, output, target, gamma=0.5)
    assert torch.isfinite(grad).all() and (grad.abs() < 1e-8).all()
    assert grad[0] < 0 < grad[1]  # still pushing the right way: z up for y = 1, down for y = 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_naive_focal_is_inf_at_large_logits_which_is_why_we_use_logsigmoid(dtype, scale):
    output = torch.tensor([scale, -scale, scale, -scale], dtype=dtype)
    target = torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=dtype)
    # sigmoid(-1e3) is exactly 0, so a confident mistake's log p_t is log 0 = -inf
    assert torch.isinf(focal_loss_naive(output, target))
    assert torch.isfinite(focal_loss(output, target))


def test_naive_equals_handwritten_with_the_default_options_on_ordinary_logits():
    output, target = _inputs((6, 3), soft=False)
    got, got_grad = value_and_grad(focal_loss_naive, output, target)
    want, want_grad = value_and_grad(focal_loss, output, target, alpha=0.25, gamma=2.0)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-12, rtol=0)


@pytest.mark.parametrize("y", [0.0, 1.0])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (None, 0.0), (None, 0.5), (0.6, 1.0), (0.25, 5.0)])
def test_analytic_curves_equal_autograd(y, alpha, gamma):
    p = torch.linspace(0.001, 0.999, 41, dtype=F64)
    z = (torch.log(p) - torch.log1p(-p)).requires_grad_(True)
    loss = focal_loss(z, torch.full_like(p, y), alpha=alpha, gamma=gamma, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), z)
    torch.testing.assert_close(loss_of_probability(p, y, alpha=alpha, gamma=gamma), loss.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_wrt_logit(p, y, alpha=alpha, gamma=gamma), grad, atol=1e-12, rtol=0)


@pytest.mark.parametrize("y", [0.0, 1.0])
@pytest.mark.parametrize("alpha, gamma", [(0.25, 2.0), (None, 0.5)])
def test_analytic_curves_equal_autograd_on_confident_mistakes_and_confident_right_answers(y, alpha, gamma):
    """The curves hold for p to within 1e-9 of 0 and 1 too, where a mistake's cross-entropy reaches about 20."""
    p = torch.cat([torch.logspace(-9, -3, 13, dtype=F64), 1 - torch.logspace(-3, -9, 13, dtype=F64)])
    z = (torch.log(p) - torch.log1p(-p)).requires_grad_(True)
    loss = focal_loss(z, torch.full_like(p, y), alpha=alpha, gamma=gamma, reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), z)
    torch.testing.assert_close(loss_of_probability(p, y, alpha=alpha, gamma=gamma), loss.detach(), atol=1e-9, rtol=1e-7)
    torch.testing.assert_close(grad_wrt_logit(p, y, alpha=alpha, gamma=gamma), grad, atol=1e-9, rtol=1e-7)


def test_analytic_gradient_for_y1_is_the_papers_closed_form():
    p = torch.linspace(0.01, 0.99, 21, dtype=F64)
    alpha, gamma = 0.25, 2.0
    closed_form = alpha * (1 - p) ** gamma * (gamma * p * torch.log(p) - (1 - p))
    torch.testing.assert_close(grad_wrt_logit(p, 1.0, alpha=alpha, gamma=gamma), closed_form)


BAD = [
    pytest.param(torch.zeros(3, dtype=torch.long), torch.zeros(3), {},
                 "Expected `output` to be a floating-point tensor of logits, but got dtype torch.int64", id="integer-logits"),
    pytest.param(torch.zeros(0, 2), torch.zeros(0, 2), {}, "Expected `output` to be a non-empty batch, but got shape (0, 2)", id="empty-batch"),
    pytest.param(torch.zeros(3, 1), torch.zeros(3), {},
                 "Expected `target` to have the shape of `output`, (3, 1), but got (3,); one target per logit.", id="shape-mismatch"),
    pytest.param(torch.zeros(3), torch.tensor([0.0, 1.0, 3.0]), {},
                 "Expected `target` to hold values in [0, 1] (labels or probabilities), but got values from 0.0 to 3.0.", id="target-range"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"alpha": 1.5},
                 "Expected `alpha` to be a float in [0, 1] (the weight of the positive class), or None or a negative number for no alpha weighting, but got 1.5.",
                 id="alpha-above-1"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"gamma": -1.0},
                 "Expected `gamma` to be a finite float >= 0 (0: plain cross-entropy), but got -1.0.", id="negative-gamma"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"gamma": float("nan")},
                 "Expected `gamma` to be a finite float >= 0 (0: plain cross-entropy), but got nan.", id="nan-gamma"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"gamma": float("inf")},
                 "Expected `gamma` to be a finite float >= 0 (0: plain cross-entropy), but got inf.", id="inf-gamma"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"gamma": True},
                 "Expected `gamma` to be a finite float >= 0 (0: plain cross-entropy), but got True.", id="bool-gamma"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"alpha": float("nan")},
                 "Expected `alpha` to be a float in [0, 1] (the weight of the positive class), or None or a negative number for no alpha weighting, but got nan.",
                 id="nan-alpha"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"alpha": float("-inf")},
                 "Expected `alpha` to be a float in [0, 1] (the weight of the positive class), or None or a negative number for no alpha weighting, but got -inf.",
                 id="minus-inf-alpha"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"reduction": "batchmean"},
                 "Expected `reduction` to be one of 'mean', 'sum', 'none', but got 'batchmean'.", id="unknown-reduction"),
]


@pytest.mark.parametrize("output, target, options, message", BAD)
def test_bad_inputs_raise_a_clear_value_error(output, target, options, message):
    with pytest.raises(ValueError) as info:
        focal_loss(output, target, **options)
    assert str(info.value).startswith(message)


def test_numpy_scalar_options_are_numbers():
    np = pytest.importorskip("numpy")
    output, target = _inputs((5,), soft=False)
    got = focal_loss(output, target, alpha=np.float32(0.5), gamma=np.int64(2))
    torch.testing.assert_close(got, focal_loss(output, target, alpha=0.5, gamma=2.0))


@pytest.mark.parametrize("options, message", [
    pytest.param({"alpha": 2.0}, "Expected `alpha` to be a float in [0, 1]", id="alpha-above-1"),
    pytest.param({"gamma": -1.0}, "Expected `gamma` to be a finite float >= 0", id="negative-gamma"),
])
@pytest.mark.parametrize("fn", [focal_loss, focal_loss_reference], ids=["handwritten", "reference"])
def test_options_that_would_give_a_negative_loss_are_refused_by_both_forms(fn, options, message):
    # alpha = 2 gives alpha_t = -1 for a negative example: a loss below zero that rewards its mistakes
    with pytest.raises(ValueError) as info:
        fn(torch.zeros(3), torch.tensor([0.0, 1.0, 0.0]), **options)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("dtype, big", [(torch.float32, 1.6e38), (torch.float64, 8.5e307)], ids=["float32", "float64"])
@pytest.mark.parametrize("y", [0.0, 1.0])
def test_gradient_is_finite_up_to_the_documented_limit_near_the_largest_float(dtype, big, y):
    # below about float max / gamma (1.7e38 and 9e307 for gamma 2): a confident mistake has gradient +-1,
    # a confident right answer 0
    z = torch.tensor([big, -big], dtype=dtype, requires_grad=True)
    loss = focal_loss(z, torch.full((2,), y, dtype=dtype), alpha=None, gamma=2.0, reduction="sum")
    (grad,) = torch.autograd.grad(loss, z)
    expected = [1.0, 0.0] if y == 0.0 else [0.0, -1.0]
    assert loss.item() == pytest.approx(big, rel=1e-6) and grad.tolist() == expected


def test_past_the_documented_limit_the_backward_pass_overflows():
    # gamma times the loss passes the float32 maximum just above 3.4e38 / gamma: 1.78e38 for gamma 2
    z = torch.tensor([1.78e38], requires_grad=True)
    (grad,) = torch.autograd.grad(focal_loss(z, torch.zeros(1), alpha=None, gamma=2.0), z)
    assert grad.isnan().all()
