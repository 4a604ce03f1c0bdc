"""Helpers shared by the loss tests: a loss's value and its gradient with respect to the logits."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def value_and_grad(fn: Callable, output: Tensor, target: Tensor, **options) -> tuple[Tensor, Tensor]:
    """``fn(output, target, **options)`` and its gradient with respect to ``output``.

    A non-scalar loss (``reduction="none"``) is summed with distinct weights per element first, so the
    gradient of every element is checked, not only that of their plain sum.
    """
    z = output.detach().clone().requires_grad_(True)
    value = fn(z, target, **options)
    upstream = torch.linspace(0.5, 1.5, value.numel(), dtype=value.dtype).reshape(value.shape) if value.ndim else 1.0
    (grad,) = torch.autograd.grad((value * upstream).sum(), z)
    return value.detach(), grad
