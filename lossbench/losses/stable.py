r"""Numerically stable building blocks, written out: log-sum-exp, log-softmax and log-sigmoid.

All three rest on one trick. ``exp`` overflows for arguments above about 88 (float32) or 709 (float64),
but ``log(sum(exp(x)))`` does not change when the same number ``m`` is taken out of every term:

.. math::

    \log \sum_i e^{x_i} = m + \log \sum_i e^{x_i - m}, \qquad m = \max_i x_i .

With ``m`` the largest term, every ``exp`` gets an argument <= 0 (so it is at most 1, never inf) and
one term is exactly ``exp(0) = 1`` (so the sum is at least 1 and its log is never -inf).
The log-sigmoid is a log-sum-exp of two terms, ``log sigmoid(z) = -log(1 + e^{-z}) = -LSE(0, -z)``,
written with ``log1p`` so that it also keeps its digits when the result is close to 0.
"""
from __future__ import annotations

import torch
from torch import Tensor


def logsumexp(x: Tensor, dim: int) -> Tensor:
    r"""``log(sum(exp(x)))`` along ``dim``, with the largest term subtracted first so nothing overflows.

    .. math:: \mathrm{LSE}(x) = m + \log \sum_i e^{x_i - m}, \quad m = \max_i x_i

    ``m`` is detached: the value does not depend on it (it cancels), so neither does the gradient,
    which is the softmax of ``x``.

    >>> x = torch.tensor([1000.0, 1000.0], dtype=torch.float64)
    >>> logsumexp(x, dim=0)                # 1000 + log 2
    tensor(1000.6931, dtype=torch.float64)
    >>> torch.log(torch.exp(x).sum())      # the textbook order: exp(1000) is inf
    tensor(inf, dtype=torch.float64)
    """
    m = x.amax(dim=dim, keepdim=True).detach()  # the largest term, so that every exp(x - m) <= 1
    return (m + torch.log(torch.exp(x - m).sum(dim=dim, keepdim=True))).squeeze(dim)


def log_softmax(x: Tensor, dim: int) -> Tensor:
    r"""``log(softmax(x))`` along ``dim``: the logits shifted by their max, minus the log of the shifted sum.

    .. math:: \log p_c = (x_c - m) - \log \sum_k e^{x_k - m}, \quad m = \max_k x_k

    This is ``x - LSE(x)``, with ``m`` taken out *before* the subtraction: for logits near 1000 in
    float32, ``LSE(x)`` is only known to about 1e-4, while ``x - m`` is exact.

    >>> log_softmax(torch.tensor([1000.0, 1000.0, -1000.0]), dim=0)   # log 1/2, log 1/2, -2000 - log 2
    tensor([-6.9315e-01, -6.9315e-01, -2.0007e+03])
    """
    shifted = x - x.amax(dim=dim, keepdim=True).detach()  # <= 0, with one 0 along dim
    return shifted - torch.log(torch.exp(shifted).sum(dim=dim, keepdim=True))


def log_sigmoid(z: Tensor) -> Tensor:
    r"""``log(sigmoid(z))`` for any finite ``z``, finite in value and gradient: ``-LSE(0, -z)``.

    .. math:: \log \sigma(z) = -\log(e^0 + e^{-z}) = -\mathrm{LSE}(0, -z),
              \qquad \frac{d}{dz} \log \sigma(z) = 1 - \sigma(z) = \sigma(-z)

    The log of the two-term sum goes through ``log1p`` so that ``log sigmoid(20) = -2.06e-9`` keeps its
    digits (``log(1 + 2.06e-9)`` is 0 in float32).

    >>> log_sigmoid(torch.tensor([-1e4, 0.0, 20.0]))
    tensor([-1.0000e+04, -6.9315e-01, -2.0612e-09])
    >>> torch.log(torch.sigmoid(torch.tensor([-1e4, 0.0, 20.0])))   # sigmoid: 0 (underflow) and 1 (rounded)
    tensor([   -inf, -0.6931,  0.0000])
    """
    # 1. m = max(0, -z): the larger exponent of e^0 + e^{-z}, detached as in logsumexp.
    m = torch.clamp(-z, min=0).detach()
    # 2. log(e^{-m} + e^{-z-m}) = log1p((e^{-m} - 1) + e^{-z-m}); expm1 gives e^{-m} - 1 exactly (0 when m = 0).
    return -(m + torch.log1p(torch.expm1(-m) + torch.exp(-z - m)))
