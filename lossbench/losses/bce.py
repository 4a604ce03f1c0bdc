r"""Binary cross-entropy on logits (family ``bce``): handwritten through log-sigmoid, the naive textbook form, torch's.

The head emits one logit ``z`` per decision; ``p = sigmoid(z)`` is the predicted probability of "yes":

.. math:: \ell = -\left[\, y \log \sigma(z) + (1 - y) \log \sigma(-z) \,\right], \qquad
          \frac{\partial \ell}{\partial z} = \sigma(z) - y = p - y

(using :math:`1 - \sigma(z) = \sigma(-z)`). Written with log-sigmoid it never takes the log of 0.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.losses.checks import (
    Reduction,
    check_broadcasts_to,
    check_logits,
    check_reduction,
    check_same_shape,
    check_unit_interval,
    is_real,
    reduce,
    value_checks_enabled,
)
from lossbench.losses.stable import log_sigmoid

_POS_WEIGHT_FORMS = "a float, a 0-dim tensor or one value per output column, shape (K,)"
_WEIGHT_FORMS = "a float or a tensor of per-element weights"


def check_options(
    pos_weight: Tensor | float | None = None, weight: Tensor | float | None = None, reduction: Reduction = "mean"
) -> None:
    """The checks :func:`lossbench.losses.get` runs when it binds options; shapes wait for the target.

    >>> check_options(pos_weight="4")
    Traceback (most recent call last):
    ...
    ValueError: Expected `pos_weight` to be a float or a torch.Tensor, but got '4'.
    """
    for name, value in (("pos_weight", pos_weight), ("weight", weight)):
        if value is not None and not (is_real(value) or isinstance(value, Tensor)):
            raise ValueError(f"Expected `{name}` to be a float or a torch.Tensor, but got {value!r}.")
    check_weight_values(pos_weight, weight)
    check_reduction(reduction)


def check_weight_values(pos_weight: Tensor | float | None, weight: Tensor | float | None) -> None:
    """Value check (skipped when value checks are off): ``pos_weight`` finite and positive, ``weight``
    finite and non-negative. A pos_weight of 0 or below would stop the positives' loss or reward
    mistakes on them; a negative weight would reward the mistakes on its elements.

    >>> check_weight_values(-4.0, None)
    Traceback (most recent call last):
    ...
    ValueError: Expected `pos_weight` to be finite and positive, but got -4.0.
    >>> check_weight_values(None, torch.tensor([1.0, float("nan")]))
    Traceback (most recent call last):
    ...
    ValueError: Expected `weight` to be finite and non-negative, but got tensor([1., nan]).
    """
    if not value_checks_enabled():
        return
    for name, value, allowed, what in (("pos_weight", pos_weight, torch.gt, "positive"), ("weight", weight, torch.ge, "non-negative")):
        if value is None:
            continue
        # a number as it was given (float64): float32 would make 1e-300 a 0 and 1e39 an inf, which it is not
        values = value.detach() if isinstance(value, Tensor) else torch.as_tensor(value, dtype=torch.float64)
        if not bool((torch.isfinite(values) & allowed(values, 0)).all()):
            raise ValueError(f"Expected `{name}` to be finite and {what}, but got {value!r}.")


def binary_cross_entropy_with_logits(
    output: Tensor,
    target: Tensor,
    pos_weight: Tensor | float | None = None,
    weight: Tensor | float | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Binary cross-entropy from logits, finite in value and gradient for every finite logit.

    (Each example's loss, that is: a mean or sum of losses near the largest float, from logits about
    1e38 in float32, overflows to ``inf`` as any such sum does; torch's does too.)

    An infinite logit gives NaN in value and gradient (from ``0 * inf``). So does torch's value, except at
    ``z = +inf`` with ``y < 1`` (``inf``), while its gradient stays finite. A logit that large has already
    overflowed upstream.

    .. math:: \ell = -w \left[\, p_w\, y \log \sigma(z) + (1 - y) \log \sigma(-z) \,\right]

    ``target`` has the output's shape and holds labels or probabilities in [0, 1]. ``pos_weight``
    (:math:`p_w`) multiplies the loss of the positive class, one value per output column (broadcast
    along the last dim, as in torch); ``weight`` (:math:`w`) multiplies each element's loss. Equals
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    >>> z = torch.tensor([0.0, 3.0, -1e4])
    >>> y = torch.tensor([1.0, 1.0, 1.0])
    >>> binary_cross_entropy_with_logits(z, y, reduction="none")   # the last one: a confident mistake
    tensor([6.9315e-01, 4.8587e-02, 1.0000e+04])
    >>> binary_cross_entropy_with_logits(z, y, pos_weight=2.0, reduction="none")
    tensor([1.3863e+00, 9.7175e-02, 2.0000e+04])
    """
    check_logits(output)
    check_reduction(reduction)
    check_same_shape(output, target)
    check_unit_interval(target)
    check_broadcasts_to(pos_weight, target, "pos_weight", _POS_WEIGHT_FORMS)
    check_broadcasts_to(weight, target, "weight", _WEIGHT_FORMS)
    check_weight_values(pos_weight, weight)

    if isinstance(pos_weight, Tensor):
        pos_weight = pos_weight.to(output.dtype)  # a float64 pos_weight must not turn float32 losses into float64
    if isinstance(weight, Tensor):
        weight = weight.to(output.dtype)
    positive = target * log_sigmoid(output)  # y log sigma(z)
    if pos_weight is not None:
        positive = pos_weight * positive
    loss = -(positive + (1 - target) * log_sigmoid(-output))  # same shape as output
    if weight is not None:
        loss = weight * loss
    return reduce(loss, reduction)


def binary_cross_entropy_naive(output: Tensor, target: Tensor) -> Tensor:
    r"""Sigmoid, pick ``p`` or ``1 - p`` by the label, then log: the textbook form, inf at large logits.

    .. math:: p = \sigma(z), \qquad \ell = -\log\big(p \text{ if } y = 1 \text{ else } 1 - p\big)

    Two lessons: ``sigmoid(z)`` rounds to exactly 1.0 from about z = 37 in float64 (z = 17 in float32),
    so a confident mistake costs ``-log(0) = inf``; and the ``y == 1`` test treats a soft target such as 0.7
    as a 0, so it is only right for hard 0/1 targets.

    >>> binary_cross_entropy_naive(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0]))
    tensor(0.3709)
    >>> binary_cross_entropy_naive(torch.tensor([-1e4]), torch.tensor([1.0]))   # p = 0: -log(0)
    tensor(inf)
    """
    p = torch.sigmoid(output)
    return -torch.log(torch.where(target == 1, p, 1 - p)).mean()


def _as_tensor(value: Tensor | float | None, like: Tensor, name: str) -> Tensor | None:
    """A float option as a tensor on the output's dtype and device (torch's function wants tensors).

    >>> _as_tensor([1.0, 2.0], torch.zeros(2), "pos_weight")
    Traceback (most recent call last):
    ...
    ValueError: Expected `pos_weight` to be a float or a tensor, but got list; write torch.tensor([1.0, 2.0]) for one per output.
    """
    if value is None or isinstance(value, Tensor):
        return value
    if not is_real(value):
        raise ValueError(
            f"Expected `{name}` to be a float or a tensor, but got {type(value).__name__}; "
            f"write torch.tensor({value!r}) for one per output."
        )
    return torch.tensor(float(value), dtype=like.dtype, device=like.device)


def binary_cross_entropy_reference(
    output: Tensor,
    target: Tensor,
    pos_weight: Tensor | float | None = None,
    weight: Tensor | float | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """``torch.nn.functional.binary_cross_entropy_with_logits``: the reference the handwritten form must equal.

    A float ``pos_weight`` or ``weight`` is turned into a tensor first (torch accepts tensors only).

    >>> binary_cross_entropy_reference(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0]), pos_weight=2.0)
    tensor(0.7417)
    """
    weights, pos_weights = _as_tensor(weight, output, "weight"), _as_tensor(pos_weight, output, "pos_weight")
    check_weight_values(pos_weight, weight)
    return F.binary_cross_entropy_with_logits(
        output,
        target,
        weight=weights,
        pos_weight=pos_weights,
        reduction=reduction,
    )


def loss_of_probability(
    p: Tensor, y: Tensor | float, pos_weight: Tensor | float = 1.0, weight: Tensor | float = 1.0
) -> Tensor:
    r"""Loss of one binary decision as a function of the predicted probability ``p = sigmoid(z)``.

    .. math:: \ell = -w \left[\, p_w\, y \log p + (1 - y) \log(1 - p) \,\right]

    >>> loss_of_probability(torch.tensor([0.5, 0.9]), 1.0)
    tensor([0.6931, 0.1054])
    """
    return -weight * (pos_weight * y * torch.log(p) + (1 - y) * torch.log1p(-p))


def grad_wrt_logit(
    p: Tensor, y: Tensor | float, pos_weight: Tensor | float = 1.0, weight: Tensor | float = 1.0
) -> Tensor:
    r"""Analytic dL/dz as a function of ``p = sigmoid(z)``: ``p - y``, times ``pos_weight`` for ``y = 1``.

    .. math:: \frac{\partial \ell}{\partial z} = w \left[\, (1 + (p_w - 1)\, y)\, p - p_w\, y \,\right]
              \;\overset{p_w = w = 1}{=}\; p - y

    Largest for confident mistakes (``p -> 0`` with ``y = 1``: -1 per example): the loss keeps pushing.

    >>> grad_wrt_logit(torch.tensor([0.001, 0.5, 0.999]), 1.0)
    tensor([-0.9990, -0.5000, -0.0010])
    """
    return weight * ((1 + (pos_weight - 1) * y) * p - pos_weight * y)
