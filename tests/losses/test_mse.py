"""MSE: handwritten equals torch's mse_loss, stays finite, and its gradient vanishes on confident mistakes."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from lossbench.losses.bce import binary_cross_entropy_with_logits
from lossbench.losses.mse import grad_wrt_logit, loss_of_probability, mse, mse_naive, mse_reference

from .helpers import value_and_grad

F64 = torch.float64


def _inputs(shape: tuple[int, ...], soft: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    output = 3 * torch.randn(shape, generator=g, dtype=F64)
    target = torch.rand(shape, generator=g, dtype=F64) if soft else torch.randint(0, 2, shape, generator=g).to(F64)
    return output, target


SHAPES = {"N": (7,), "N,K": (6, 4), "N,K,d": (3, 4, 2)}
CASES = [
    pytest.param(shape, soft, on, reduction, id=f"{name}-{'soft' if soft else 'hard'}-{on}-{reduction}")
    for (name, shape), soft, on, reduction in itertools.product(
        SHAPES.items(), (False, True), ("probability", "raw"), ("mean", "sum", "none")
    )
]


@pytest.mark.parametrize("shape, soft, on, reduction", CASES)
def test_handwritten_equals_torch_on_value_and_gradient(shape, soft, on, reduction):
    output, target = _inputs(shape, soft)
    got, got_grad = value_and_grad(mse, output, target, on=on, reduction=reduction)

    def torch_mse(z, y):
        return F.mse_loss(torch.sigmoid(z) if on == "probability" else z, y, reduction=reduction)

    want, want_grad = value_and_grad(torch_mse, output, target)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-10, rtol=0)
    ref, ref_grad = value_and_grad(mse_reference, output, target, on=on, reduction=reduction)
    torch.testing.assert_close(ref, want, atol=0, rtol=0)
    torch.testing.assert_close(ref_grad, want_grad, atol=0, rtol=0)


@pytest.mark.parametrize("on", ["probability", "raw"])
def test_gradcheck(on):
    output, target = _inputs((5, 3), soft=True)
    z = output.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: mse(z, target, on=on), (z,))


def test_raw_mode_accepts_regression_targets_outside_0_1():
    output = torch.tensor([1.0, -2.0], dtype=F64)
    target = torch.tensor([3.0, -5.0], dtype=F64)
    assert mse(output, target, on="raw").item() == pytest.approx((4.0 + 9.0) / 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_extreme_logits_all_three_are_finite_and_equal(dtype, scale):
    output = torch.tensor([scale, scale, -scale, -scale, 0.0], dtype=dtype)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=dtype)
    want, want_grad = value_and_grad(mse_reference, output, target)
    for fn in (mse, mse_naive):
        got, got_grad = value_and_grad(fn, output, target)
        assert torch.isfinite(got) and torch.isfinite(got_grad).all()
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(got_grad, want_grad)
    # two confident mistakes cost 1 each, the tie costs 1/4: mean = 2.25 / 5
    assert want.item() == pytest.approx(2.25 / 5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_naive_mse_is_finite_but_its_gradient_vanishes_on_confident_mistakes(dtype):
    # MSE does not overflow; its lesson is the factor p (1 - p) in 2 (p - y) p (1 - p): the worse the
    # confident mistake, the less it is corrected. Cross-entropy's gradient p - y stays near 1 there.
    z = torch.tensor([2.0, 10.0, 30.0, 1e3], dtype=dtype)
    y = torch.zeros(4, dtype=dtype)
    loss, grad = value_and_grad(mse_naive, z, y)
    assert torch.isfinite(loss) and torch.isfinite(grad).all()
    assert grad[0] > grad[1] > grad[2] >= grad[3] == 0  # the more confident the mistake, the smaller the push
    assert grad[0] > 0.01
    _, ce_grad = value_and_grad(lambda o, t: binary_cross_entropy_with_logits(o, t, reduction="sum"), z, y)
    assert (ce_grad > 0.85).all()  # cross-entropy's gradient p - y on the same mistakes stays near 1


@pytest.mark.parametrize("y", [0.0, 1.0])
def test_analytic_curves_equal_autograd(y):
    p = torch.linspace(0.001, 0.999, 41, dtype=F64)
    z = (torch.log(p) - torch.log1p(-p)).requires_grad_(True)
    loss = mse(z, torch.full_like(p, y), reduction="none")
    (grad,) = torch.autograd.grad(loss.sum(), z)
    torch.testing.assert_close(loss_of_probability(p, y), loss.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_wrt_logit(p, y), grad, atol=1e-12, rtol=0)


BAD = [
    pytest.param(torch.zeros(4, dtype=torch.int32), torch.zeros(4), {},
                 "Expected `output` to be a floating-point tensor of logits, but got dtype torch.int32", id="integer-logits"),
    pytest.param(torch.zeros(0), torch.zeros(0), {}, "Expected `output` to be a non-empty batch, but got shape (0,)", id="empty-batch"),
    pytest.param(torch.zeros(4, 2), torch.zeros(2, 4), {},
                 "Expected `target` to have the shape of `output`, (4, 2), but got (2, 4); one target per logit.", id="shape-mismatch"),
    pytest.param(torch.zeros(3), torch.tensor([0.0, 1.0, 1.5]), {},
                 "Expected `target` to hold values in [0, 1] (labels or probabilities), but got values from 0.0 to 1.5.", id="target-range"),
    pytest.param(torch.zeros(3), torch.zeros(3, dtype=torch.bool), {},
                 "Expected `target` to be a floating-point tensor of labels or probabilities in [0, 1], but got dtype torch.bool", id="bool-target"),
    pytest.param(torch.zeros(3), torch.zeros(3, dtype=torch.long), {"on": "raw"},
                 "Expected `target` to be a floating-point tensor of regression targets, but got dtype torch.int64", id="raw-integer-target"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"on": "logit"},
                 "Expected `on` to be 'probability' (square sigmoid(output) - target, classification) or 'raw' (square output - target, regression), but got 'logit'.",
                 id="unknown-on"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"reduction": None},
                 "Expected `reduction` to be one of 'mean', 'sum', 'none', but got None.", id="unknown-reduction"),
]


@pytest.mark.parametrize("output, target, options, message", BAD)
def test_bad_inputs_raise_a_clear_value_error(output, target, options, message):
    with pytest.raises(ValueError) as info:
        mse(output, target, **options)
    assert str(info.value).startswith(message)
