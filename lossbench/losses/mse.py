r"""Mean squared error (family ``mse``): handwritten, the naive textbook form, torch's.

For classification the head emits one logit ``z``; the loss squares the distance between the
predicted probability and the label:

.. math:: \ell = (\sigma(z) - y)^2, \qquad \frac{\partial \ell}{\partial z} = 2\,(p - y)\, p\, (1 - p)

It is finite everywhere, but the factor ``p (1 - p)`` makes the gradient vanish when the model is
confidently *wrong* (``p -> 1`` with ``y = 0``): the examples that most need correcting barely move it.
With ``on="raw"`` it is the regression loss ``(output - target)^2`` on the raw output.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.losses.checks import (
    Reduction,
    check_logits,
    check_reduction,
    check_same_shape,
    check_unit_interval,
    reduce,
)

On = Literal["probability", "raw"]
ON_CHOICES: tuple[str, ...] = ("probability", "raw")


def _check_on(on: str) -> None:
    if on not in ON_CHOICES:
        raise ValueError(
            f"Expected `on` to be 'probability' (square sigmoid(output) - target, classification) or 'raw' "
            f"(square output - target, regression), but got {on!r}."
        )


def check_options(on: On = "probability", reduction: Reduction = "mean") -> None:
    """The checks :func:`lossbench.losses.get` runs when it binds options, before any loss is computed.

    >>> check_options(on="logit")
    Traceback (most recent call last):
    ...
    ValueError: Expected `on` to be 'probability' (square sigmoid(output) - target, classification) or 'raw' (square output - target, regression), but got 'logit'.
    """
    _check_on(on)
    check_reduction(reduction)


def mse(output: Tensor, target: Tensor, on: On = "probability", reduction: Reduction = "mean") -> Tensor:
    r"""Mean squared error from first principles, on the predicted probability (default) or the raw output.

    .. math:: \ell = (\sigma(z) - y)^2 \;\; (\texttt{on="probability"}), \qquad
              \ell = (z - y)^2 \;\; (\texttt{on="raw"})

    >>> z = torch.tensor([0.0, 1e4])
    >>> y = torch.tensor([1.0, 0.0])            # the second one: a confident mistake
    >>> mse(z, y, reduction="none")
    tensor([0.2500, 1.0000])
    >>> mse(z, y, on="raw")
    tensor(50000000.)
    """
    check_logits(output)
    check_reduction(reduction)
    _check_on(on)
    what = "labels or probabilities in [0, 1]" if on == "probability" else "regression targets"
    check_same_shape(output, target, what=what)
    if on == "probability":
        check_unit_interval(target)
        d = torch.sigmoid(output) - target  # p - y
    else:
        d = output - target
    return reduce(d * d, reduction)


def mse_naive(output: Tensor, target: Tensor) -> Tensor:
    r"""``((sigmoid(output) - target) ** 2).mean()``: the textbook form, stable, with a vanishing gradient.

    Nothing overflows here; the lesson is the gradient ``2 (p - y) p (1 - p)``, which goes to 0 on a
    confident mistake: ``z = 20`` with ``y = 0`` has loss ~1 and gradient ~4e-9 (exactly 0 in float32,
    where ``sigmoid(20)`` rounds to 1).

    >>> z = torch.tensor([20.0], requires_grad=True)
    >>> loss = mse_naive(z, torch.tensor([0.0]))
    >>> loss.backward()
    >>> loss.item(), z.grad.item()
    (1.0, 0.0)
    """
    return ((torch.sigmoid(output) - target) ** 2).mean()


def mse_reference(output: Tensor, target: Tensor, on: On = "probability", reduction: Reduction = "mean") -> Tensor:
    """``torch.nn.functional.mse_loss`` on ``sigmoid(output)`` (or on the raw output for ``on="raw"``).

    >>> mse_reference(torch.tensor([0.0, 1e4]), torch.tensor([1.0, 0.0]))
    tensor(0.6250)
    """
    _check_on(on)
    prediction = torch.sigmoid(output) if on == "probability" else output
    return F.mse_loss(prediction, target, reduction=reduction)


def loss_of_probability(p: Tensor, y: Tensor | float) -> Tensor:
    r"""Loss of one binary decision as a function of the predicted probability ``p = sigmoid(z)``: ``(p - y)^2``.

    >>> loss_of_probability(torch.tensor([0.5, 0.9]), 1.0)
    tensor([0.2500, 0.0100])
    """
    return (p - y) ** 2


def grad_wrt_logit(p: Tensor, y: Tensor | float) -> Tensor:
    r"""Analytic dL/dz as a function of ``p = sigmoid(z)``: ``2 (p - y) p (1 - p)``.

    .. math:: \frac{\partial \ell}{\partial z} = \frac{\partial \ell}{\partial p}\,\frac{dp}{dz}
              = 2\,(p - y) \cdot p\,(1 - p)

    Compare with cross-entropy's ``p - y``: a confident mistake (``p = 0.999``, ``y = 0``) gets a gradient
    of 0.002 instead of 0.999.

    >>> grad_wrt_logit(torch.tensor([0.5, 0.999]), 0.0)
    tensor([0.2500, 0.0020])
    """
    return 2 * (p - y) * p * (1 - p)
