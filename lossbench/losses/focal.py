r"""Focal loss (family ``focal``), Lin et al. 2017: handwritten in log space, torchvision's formulation, the naive form.

Binary cross-entropy, scaled down on the examples the model already gets right:

.. math:: \mathrm{FL} = -\alpha_t\, (1 - p_t)^\gamma \log p_t, \qquad
          p_t = p\,y + (1 - p)(1 - y), \quad \alpha_t = \alpha\, y + (1 - \alpha)(1 - y)

with ``p = sigmoid(z)``. ``gamma = 0`` and no alpha is exactly binary cross-entropy; ``gamma = 2``,
``alpha = 0.25`` are the paper's defaults ("Focal Loss for Dense Object Detection", ICCV 2017).
For soft targets (``0 < y < 1``) ``-log p_t`` is read as the binary cross-entropy, as torchvision does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.losses.checks import (
    Reduction,
    check_logits,
    check_reduction,
    check_same_shape,
    check_unit_interval,
    is_finite_real,
    reduce,
)
from lossbench.losses.stable import log_sigmoid, logsumexp


def _check_options(alpha: float | None, gamma: float) -> tuple[float | None, float]:
    """Static checks: ``alpha`` in [0, 1] (None or negative: no alpha weighting), ``gamma`` >= 0, both finite.

    Returns them as Python floats (a numpy scalar such as ``np.float32(2)`` is accepted, a bool is not).

    >>> _check_options(0.25, float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: Expected `gamma` to be a finite float >= 0 (0: plain cross-entropy), but got inf.
    """
    if alpha is not None and not (is_finite_real(alpha) and alpha <= 1):
        raise ValueError(
            f"Expected `alpha` to be a float in [0, 1] (the weight of the positive class), or None or a negative "
            f"number for no alpha weighting, but got {alpha!r}."
        )
    if not (is_finite_real(gamma) and gamma >= 0):
        raise ValueError(f"Expected `gamma` to be a finite float >= 0 (0: plain cross-entropy), but got {gamma!r}.")
    return (None if alpha is None else float(alpha)), float(gamma)


def check_options(alpha: float | None = 0.25, gamma: float = 2.0, reduction: Reduction = "mean") -> None:
    """The checks :func:`lossbench.losses.get` runs when it binds options, before any loss is computed.

    >>> check_options(alpha=float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: Expected `alpha` to be a float in [0, 1] (the weight of the positive class), or None or a negative number for no alpha weighting, but got nan.
    """
    _check_options(alpha, gamma)
    check_reduction(reduction)


def _alpha_t(alpha: float | None, target: Tensor | float) -> Tensor | float:
    """alpha_t = alpha y + (1 - alpha)(1 - y); 1 when ``alpha`` is None or negative (torchvision's switch)."""
    if alpha is None or alpha < 0:
        return 1.0
    return alpha * target + (1 - alpha) * (1 - target)


def focal_loss(
    output: Tensor,
    target: Tensor,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Focal loss from logits, finite in value and gradient for every finite logit and every ``gamma >= 0``
    (up to ``|z|`` near the largest float, about ``3.4e38 / gamma`` in float32, where ``gamma`` times the
    loss overflows in the backward pass).

    .. math:: \mathrm{FL} = \alpha_t\, e^{\gamma \log(1 - p_t)}\, \mathrm{CE}, \qquad
              \mathrm{CE} = -[\,y \log\sigma(z) + (1 - y) \log\sigma(-z)\,]

    1. ``CE`` goes through log-sigmoid, as in :func:`lossbench.losses.bce.binary_cross_entropy_with_logits`.
    2. ``(1 - p_t)^gamma`` is computed as ``exp(gamma * log(1 - p_t))`` with
       ``log(1 - p_t) = LSE(log y + log sigma(-z), log(1 - y) + log sigma(z))``, which for hard targets is
       ``log sigma(-z_t)`` (``z_t = z`` for y = 1, ``-z`` for y = 0). It never rounds ``1 - p_t`` to 0.

    Why step 2 matters for ``0 < gamma < 1``: as a function of ``p``, ``(1 - p_t)^gamma`` has the
    derivative ``-gamma (1 - p_t)^(gamma - 1)``, infinite at ``p_t = 1``. Times ``dp/dz = p (1 - p)`` the
    gradient with respect to the logit is finite (it goes to 0), and in log space autograd computes it
    that way. Written as ``(1 - p_t) ** gamma`` (the reference), ``1 - p_t`` rounds to 0 once the
    prediction is confidently right (``z_t`` from about 37 in float64, 17 in float32; one more for y = 0) and autograd
    forms ``inf * 0 = nan``. ``gamma = 0`` gives ``exp(0) = 1``
    exactly: the loss is then exactly ``alpha_t`` times binary cross-entropy.

    >>> z = torch.tensor([3.0, -3.0, -1e4])
    >>> y = torch.tensor([1.0, 1.0, 1.0])                         # right, wrong, confidently wrong
    >>> focal_loss(z, y, alpha=None, gamma=2.0, reduction="none")
    tensor([1.0928e-04, 2.7663e+00, 1.0000e+04])
    >>> focal_loss(z, y, alpha=None, gamma=0.0, reduction="none")  # binary cross-entropy
    tensor([4.8587e-02, 3.0486e+00, 1.0000e+04])
    """
    check_logits(output)
    check_reduction(reduction)
    alpha, gamma = _check_options(alpha, gamma)
    check_same_shape(output, target)
    check_unit_interval(target)

    # 1. cross-entropy through log-sigmoid: log p = log sigma(z), log(1 - p) = log sigma(-z).
    log_p, log_1mp = log_sigmoid(output), log_sigmoid(-output)
    ce = -(target * log_p + (1 - target) * log_1mp)
    loss = _alpha_t(alpha, target) * ce
    if gamma == 0:
        return reduce(loss, reduction)  # exactly alpha_t * CE
    # 2. log(1 - p_t) = log(y (1 - p) + (1 - y) p), a log-sum-exp of two terms (log 0 = -inf drops one).
    terms = torch.stack([torch.log(target) + log_1mp, torch.log1p(-target) + log_p], dim=-1)  # (..., 2)
    log_1mpt = logsumexp(terms, dim=-1)
    # 3. the modulating factor (1 - p_t)^gamma, computed in log space.
    return reduce(torch.exp(gamma * log_1mpt) * loss, reduction)


def focal_loss_reference(
    output: Tensor,
    target: Tensor,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """A second, independent formulation: ``torchvision.ops.sigmoid_focal_loss``, written out.

    torch has no focal loss and torchvision is not a dependency, so the reference is torchvision's code:
    ``ce = binary_cross_entropy_with_logits(z, y)`` (torch's), ``p_t = p y + (1 - p)(1 - y)``,
    ``loss = alpha_t * ce * (1 - p_t) ** gamma``. It agrees with :func:`focal_loss` for ordinary logits;
    for ``gamma < 1`` its gradient is nan once ``1 - p_t`` rounds to 0 (see :func:`focal_loss`).

    >>> focal_loss_reference(torch.tensor([3.0, -3.0]), torch.tensor([1.0, 1.0]), alpha=None)
    tensor(1.3832)
    """
    alpha, gamma = _check_options(alpha, gamma)
    p = torch.sigmoid(output)
    ce = F.binary_cross_entropy_with_logits(output, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * ((1 - p_t) ** gamma)
    return reduce(_alpha_t(alpha, target) * loss, reduction)


def focal_loss_naive(output: Tensor, target: Tensor) -> Tensor:
    r"""Sigmoid, then log: the formula as first written (alpha = 0.25, gamma = 2), inf at large logits.

    .. math:: p = \sigma(z), \quad \mathrm{FL} = -\alpha_t (1 - p_t)^2 \log p_t

    ``sigmoid(-1e4)`` is 0, so a confident mistake gives ``log(0) = -inf``.

    >>> focal_loss_naive(torch.tensor([3.0, -3.0]), torch.tensor([1.0, 1.0]))
    tensor(0.3458)
    >>> focal_loss_naive(torch.tensor([-1e4]), torch.tensor([1.0]))
    tensor(inf)
    """
    p = torch.sigmoid(output)
    p_t = p * target + (1 - p) * (1 - target)
    alpha_t = 0.25 * target + 0.75 * (1 - target)
    return (-alpha_t * (1 - p_t) ** 2 * torch.log(p_t)).mean()


def loss_of_probability(p: Tensor, y: Tensor | float, alpha: float | None = 0.25, gamma: float = 2.0) -> Tensor:
    r"""Loss of one binary decision as a function of the predicted probability ``p = sigmoid(z)``.

    .. math:: \mathrm{FL} = \alpha_t\, q^\gamma\, \mathrm{CE}, \quad q = 1 - p_t = p + y - 2 y p, \quad
              \mathrm{CE} = -[\,y \log p + (1 - y) \log(1 - p)\,]

    >>> loss_of_probability(torch.tensor([0.5, 0.9]), 1.0, alpha=None)
    tensor([0.1733, 0.0011])
    """
    alpha, gamma = _check_options(alpha, gamma)
    q = p + y - 2 * y * p  # 1 - p_t
    ce = -(y * torch.log(p) + (1 - y) * torch.log1p(-p))
    return _alpha_t(alpha, y) * q**gamma * ce


def grad_wrt_logit(p: Tensor, y: Tensor | float, alpha: float | None = 0.25, gamma: float = 2.0) -> Tensor:
    r"""Analytic dL/dz of the focal loss as a function of ``p = sigmoid(z)``.

    With ``q = 1 - p_t``, ``dq/dz = (1 - 2y) p (1 - p)`` and ``dCE/dz = p - y``:

    .. math:: \frac{\partial\,\mathrm{FL}}{\partial z}
              = \alpha_t \left[\, \gamma\, q^{\gamma - 1} (1 - 2y)\, p (1 - p)\, \mathrm{CE} + q^\gamma (p - y) \,\right]

    For y = 1 this is :math:`\alpha (1-p)^\gamma\, [\gamma\, p \log p - (1 - p)]`.

    >>> grad_wrt_logit(torch.tensor([0.5, 0.9]), 1.0, alpha=None)
    tensor([-0.2983, -0.0029])
    """
    alpha, gamma = _check_options(alpha, gamma)
    q = p + y - 2 * y * p  # 1 - p_t
    ce = -(y * torch.log(p) + (1 - y) * torch.log1p(-p))
    grad = q**gamma * (p - y)
    if gamma != 0:
        grad = grad + gamma * q ** (gamma - 1) * (1 - 2 * y) * p * (1 - p) * ce
    return _alpha_t(alpha, y) * grad
