"""The stable building blocks equal torch's own, in value and gradient, from tiny to huge arguments."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbench.losses.stable import log_sigmoid, log_softmax, logsumexp

Z = [-1e4, -1e3, -750.0, -100.0, -37.0, -20.0, -3.0, -1e-3, 0.0, 1e-3, 3.0, 20.0, 37.0, 100.0, 750.0, 1e3, 1e4]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_log_sigmoid_equals_torch_in_value_and_gradient_with_full_relative_precision(dtype):
    z = torch.tensor(Z, dtype=dtype, requires_grad=True)
    got = log_sigmoid(z)
    (got_grad,) = torch.autograd.grad(got.sum(), z)
    want = F.logsigmoid(z)
    (want_grad,) = torch.autograd.grad(want.sum(), z)
    # relative, not only absolute: log sigmoid(20) = -2.06e-9 keeps its digits (it is not rounded to 0)
    torch.testing.assert_close(got, want, rtol=4 * torch.finfo(dtype).eps, atol=0)
    torch.testing.assert_close(got_grad, want_grad, rtol=4 * torch.finfo(dtype).eps, atol=torch.finfo(dtype).tiny)


def test_log_sigmoid_gradient_at_zero_is_one_half():
    # no kink at 0, where the max taken out, max(0, -z), has one: the value does not depend on it, so
    # neither does the gradient (detaching it only saves autograd the work)
    z = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    log_sigmoid(z).backward()
    assert z.grad.item() == 0.5


def test_log_sigmoid_gradcheck():
    z = torch.linspace(-40, 40, 81, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(log_sigmoid, (z,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scale", [1.0, 1e3, 1e4])
def test_logsumexp_and_log_softmax_equal_torch(dtype, scale):
    g = torch.Generator().manual_seed(0)
    x = (scale * torch.randn(5, 4, 3, generator=g)).to(dtype)
    x[0, :, 0] = scale  # a four-way tie for the max
    x.requires_grad_(True)
    weights = torch.linspace(0.5, 1.5, 15, dtype=dtype).reshape(5, 1, 3)  # one per (row, column)

    lse = logsumexp(x, dim=1)
    assert torch.isfinite(lse).all()
    torch.testing.assert_close(lse, torch.logsumexp(x, dim=1))
    (grad,) = torch.autograd.grad((lse * weights.squeeze(1)).sum(), x)
    # the gradient of log-sum-exp is the softmax (torch's own logsumexp backward is less exact at 1e4 in
    # float32: it forms exp(x - LSE(x)) with LSE rounded to 1e-3)
    torch.testing.assert_close(grad, weights * torch.softmax(x, dim=1))

    got = log_softmax(x, dim=1)
    want = torch.log_softmax(x, dim=1)
    torch.testing.assert_close(got, want)
    (got_grad,) = torch.autograd.grad((got * weights).sum(), x)
    (want_grad,) = torch.autograd.grad((want * weights).sum(), x)
    torch.testing.assert_close(got_grad, want_grad)


def test_the_textbook_order_overflows_which_is_why_the_max_comes_out_first():
    x = torch.tensor([1000.0, 999.0], dtype=torch.float64)
    assert torch.isinf(torch.log(torch.exp(x).sum()))
    assert logsumexp(x, dim=0).item() == pytest.approx(1000 + torch.log1p(torch.exp(torch.tensor(-1.0))).item())


def test_logsumexp_gradcheck():
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: logsumexp(x, dim=1), (x,))
    assert torch.autograd.gradcheck(lambda x: log_softmax(x, dim=1), (x,))
