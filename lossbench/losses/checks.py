"""Input checks shared by the handwritten losses, and the switch that turns the value checks off under vmap.

Two kinds of check live here:

- *static* checks look only at shapes and dtypes (a mismatched target shape, integer logits, an
  empty batch, an unknown reduction). They are always on: they cost nothing and are safe under
  ``torch.func.vmap``.
- *value* checks look at what the tensors hold (a BCE target of 1.5, a class index of -1). Python
  cannot branch on a tensor's values inside ``torch.func.vmap``, so the runner, which evaluates
  many models at once, turns them off with ``with value_checks(False): ...``.

Every failure is a ``ValueError`` worded "Expected `x` to be ..., but got ...", followed by the fix.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
import numbers
from typing import Iterator, Literal

import torch
from torch import Tensor

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")

_VALUE_CHECKS: contextvars.ContextVar[bool] = contextvars.ContextVar("lossbench_value_checks", default=True)


def value_checks_enabled() -> bool:
    """Whether the losses check tensor *values* (target ranges, class indices); on unless switched off.

    >>> value_checks_enabled()
    True
    >>> with value_checks(False):
    ...     value_checks_enabled()
    False
    """
    return _VALUE_CHECKS.get()


@contextlib.contextmanager
def value_checks(enabled: bool) -> Iterator[None]:
    """Turn the value checks on or off inside a ``with`` block (off for ``torch.func.vmap``).

    Shape and dtype checks stay on either way. The setting is a ``contextvars.ContextVar``, so it is
    restored on leaving the block, even after an exception, and each thread sees its own.

    >>> import torch
    >>> from lossbench.losses.bce import binary_cross_entropy_with_logits as bce
    >>> outputs = torch.zeros(3, 4)                  # (models, batch)
    >>> targets = torch.ones(3, 4)
    >>> with value_checks(False):
    ...     torch.func.vmap(bce)(outputs, targets)   # log 2 for every model
    tensor([0.6931, 0.6931, 0.6931])
    """
    if not isinstance(enabled, bool):
        raise ValueError(f"Expected `enabled` to be True or False, but got {enabled!r}.")
    token = _VALUE_CHECKS.set(enabled)
    try:
        yield
    finally:
        _VALUE_CHECKS.reset(token)


def format_shape(shape: torch.Size | tuple[int, ...]) -> str:
    """A shape as Python writes a tuple, for error messages.

    >>> format_shape(torch.Size([4])), format_shape((4, 2)), format_shape(())
    ('(4,)', '(4, 2)', '()')
    """
    return "(" + ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"


def is_real(value: object) -> bool:
    """Whether ``value`` is a real number: a Python or numpy int or float (NaN and inf included), not a bool.

    >>> is_real(2), is_real(0.5), is_real(float("nan")), is_real(True), is_real("2")
    (True, True, True, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_real(value: object) -> bool:
    """Whether ``value`` is a finite real number (:func:`is_real`, neither NaN nor inf).

    >>> is_finite_real(2), is_finite_real(float("inf")), is_finite_real(float("nan"))
    (True, False, False)
    """
    return is_real(value) and math.isfinite(value)


def check_logits(output: Tensor) -> None:
    """Static checks on a head's output: a non-empty floating-point tensor of logits.

    >>> check_logits(torch.tensor([1, 2]))
    Traceback (most recent call last):
    ...
    ValueError: Expected `output` to be a floating-point tensor of logits, but got dtype torch.int64; convert it with `output.float()`.
    """
    if not isinstance(output, Tensor):
        raise ValueError(f"Expected `output` to be a torch.Tensor of logits, but got {type(output).__name__}.")
    if not output.is_floating_point():
        raise ValueError(
            f"Expected `output` to be a floating-point tensor of logits, but got dtype {output.dtype}; "
            "convert it with `output.float()`."
        )
    if output.numel() == 0:
        raise ValueError(
            f"Expected `output` to be a non-empty batch, but got shape {format_shape(output.shape)}; "
            "a mean over zero elements is undefined."
        )


def check_reduction(reduction: str) -> None:
    """Static check: ``reduction`` is one of "mean", "sum", "none".

    >>> check_reduction("avg")
    Traceback (most recent call last):
    ...
    ValueError: Expected `reduction` to be one of 'mean', 'sum', 'none', but got 'avg'.
    """
    if reduction not in REDUCTIONS:
        options = ", ".join(repr(r) for r in REDUCTIONS)
        raise ValueError(f"Expected `reduction` to be one of {options}, but got {reduction!r}.")


def reduce(loss: Tensor, reduction: str) -> Tensor:
    """Apply a reduction to per-element losses: their mean, their sum, or the losses themselves.

    >>> reduce(torch.tensor([1.0, 2.0, 6.0]), "mean")
    tensor(3.)
    """
    check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def check_same_shape(output: Tensor, target: Tensor, what: str = "labels or probabilities in [0, 1]") -> None:
    """Static check: the target is a floating-point tensor of the output's shape (one target per logit).

    >>> check_same_shape(torch.zeros(4, 2), torch.zeros(4))
    Traceback (most recent call last):
    ...
    ValueError: Expected `target` to have the shape of `output`, (4, 2), but got (4,); one target per logit.
    """
    if not isinstance(target, Tensor):
        raise ValueError(f"Expected `target` to be a torch.Tensor, but got {type(target).__name__}.")
    if target.shape != output.shape:
        raise ValueError(
            f"Expected `target` to have the shape of `output`, {format_shape(output.shape)}, "
            f"but got {format_shape(target.shape)}; "
            "one target per logit."
        )
    if not target.is_floating_point():
        raise ValueError(
            f"Expected `target` to be a floating-point tensor of {what}, but got dtype {target.dtype}; "
            "convert it with `target.float()`."
        )


def check_unit_interval(target: Tensor, name: str = "target") -> None:
    """Value check (skipped when value checks are off): every entry lies in [0, 1].

    >>> check_unit_interval(torch.tensor([0.0, 1.0, 2.0]))
    Traceback (most recent call last):
    ...
    ValueError: Expected `target` to hold values in [0, 1] (labels or probabilities), but got values from 0.0 to 2.0.
    """
    if not value_checks_enabled():
        return
    if not target.numel():
        return
    if bool(torch.isnan(target).any()):
        missing = int(torch.isnan(target).sum())
        raise ValueError(f"Expected `{name}` to hold values in [0, 1] (labels or probabilities), but got {missing} NaN of {target.numel()}.")
    if bool(((target < 0) | (target > 1)).any()):
        raise ValueError(
            f"Expected `{name}` to hold values in [0, 1] (labels or probabilities), but got values from "
            f"{target.min().item()} to {target.max().item()}."
        )


def check_class_indices(target: Tensor, n_classes: int) -> None:
    """Value check (skipped when value checks are off): every class index lies in 0 .. n_classes - 1.

    >>> check_class_indices(torch.tensor([0, 2]), n_classes=2)
    Traceback (most recent call last):
    ...
    ValueError: Expected `target` to hold class indices in 0..1 (2 classes), but got values from 0 to 2.
    """
    if not value_checks_enabled():
        return
    if target.numel() and bool(((target < 0) | (target >= n_classes)).any()):
        raise ValueError(
            f"Expected `target` to hold class indices in 0..{n_classes - 1} ({n_classes} classes), but got "
            f"values from {target.min().item()} to {target.max().item()}."
        )


def check_broadcasts_to(value: Tensor | float | None, target: Tensor, name: str, expected: str) -> None:
    """Static check: an optional weight broadcasts to the target's shape without changing it.

    >>> check_broadcasts_to(torch.ones(3), torch.zeros(4, 2), "pos_weight", "one value per column")
    Traceback (most recent call last):
    ...
    ValueError: Expected `pos_weight` to be one value per column and to broadcast to the target's shape (4, 2), but got shape (3,).
    """
    if value is None or is_real(value):
        return
    if not isinstance(value, Tensor):
        raise ValueError(f"Expected `{name}` to be a float or a torch.Tensor, but got {type(value).__name__}.")
    try:
        ok = torch.broadcast_shapes(value.shape, target.shape) == target.shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"Expected `{name}` to be {expected} and to broadcast to the target's shape {format_shape(target.shape)}, "
            f"but got shape {format_shape(value.shape)}."
        )
