r"""Softmax cross-entropy (family ``softmax_ce``): handwritten through log-sum-exp, the naive textbook form, torch's.

The head emits C logits per decision (dim 1, as in ``torch.nn.functional.cross_entropy``); softmax turns
them into probabilities and the loss is the negative log-probability of the target class:

.. math:: \ell = -\log \mathrm{softmax}(z)_y = -z_y + \log \sum_c e^{z_c}

For a binary decision lossbench gives this family a 2-logit head, class index target 0 or 1.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.losses.checks import (
    Reduction,
    check_class_indices,
    check_logits,
    check_reduction,
    check_unit_interval,
    format_shape,
    is_real,
    reduce,
    value_checks_enabled,
)
from lossbench.losses.stable import log_softmax


def _check_label_smoothing(label_smoothing: float) -> None:
    """Static check: ``label_smoothing`` is a number in [0, 1] (NaN and inf are not; a numpy scalar is)."""
    if not (is_real(label_smoothing) and 0.0 <= label_smoothing <= 1.0):
        raise ValueError(
            f"Expected `label_smoothing` to be a float in [0, 1] (0: no smoothing), but got {label_smoothing!r}."
        )


def _check_weight_values(weight: Tensor) -> None:
    """Check of the class weights' values: finite, >= 0 and not all zero (the weighted mean divides by them).

    It reads the tensor's values, so the losses run it only while value checks are on; :func:`check_options`
    runs it once, always, when :func:`lossbench.losses.get` binds a ``weight``.

    >>> _check_weight_values(torch.tensor([0.0, 0.0]))
    Traceback (most recent call last):
    ...
    ValueError: Expected `weight` to hold finite class weights >= 0, not all zero (the weighted mean divides by the weights of the target classes), but got [0.0, 0.0].
    """
    if not bool((torch.isfinite(weight).all() & (weight >= 0).all() & (weight > 0).any()).item()):
        raise ValueError(
            "Expected `weight` to hold finite class weights >= 0, not all zero (the weighted mean divides by the "
            f"weights of the target classes), but got {weight.tolist()}."
        )


def _check_options(output: Tensor, weight: Tensor | None, label_smoothing: float) -> None:
    """Checks of the options: ``weight`` is one float per class (its values: while value checks are on),
    ``label_smoothing`` in [0, 1]."""
    n_classes = output.shape[1]
    if weight is not None:
        if not isinstance(weight, Tensor) or weight.shape != (n_classes,) or not weight.is_floating_point():
            got = repr(weight)
            if isinstance(weight, Tensor):
                got = f"shape {format_shape(weight.shape)}, dtype {weight.dtype}"
            raise ValueError(
                f"Expected `weight` to be a floating-point tensor of shape ({n_classes},), one weight per class, "
                f"but got {got}."
            )
        if value_checks_enabled():
            _check_weight_values(weight)
    _check_label_smoothing(label_smoothing)


def check_options(weight: Tensor | None = None, label_smoothing: float = 0.0, reduction: Reduction = "mean") -> None:
    """The checks :func:`lossbench.losses.get` runs when it binds options, before any loss is computed.

    The number of classes is not known yet, so ``weight`` is checked for being a floating-point vector of
    finite weights >= 0, not all zero; its length is checked against the logits when the loss is called.

    >>> check_options(label_smoothing=1.5)
    Traceback (most recent call last):
    ...
    ValueError: Expected `label_smoothing` to be a float in [0, 1] (0: no smoothing), but got 1.5.
    """
    if weight is not None:
        if not isinstance(weight, Tensor) or weight.ndim != 1 or not weight.is_floating_point():
            got = f"shape {format_shape(weight.shape)}, dtype {weight.dtype}" if isinstance(weight, Tensor) else repr(weight)
            raise ValueError(
                f"Expected `weight` to be a floating-point tensor of shape (C,), one weight per class, but got {got}."
            )
        _check_weight_values(weight)
    _check_label_smoothing(label_smoothing)
    check_reduction(reduction)


def _is_probability_target(output: Tensor, target: Tensor) -> bool:
    """Torch's rule: a target with the output's shape holds class probabilities, any other holds indices."""
    index_shape = output.shape[:1] + output.shape[2:]
    if target.shape == output.shape:
        if not target.is_floating_point():
            raise ValueError(
                f"Expected `target` of the output's shape {format_shape(output.shape)} to hold class probabilities "
                f"(floating point), but got dtype {target.dtype}; class indices have shape {format_shape(index_shape)}."
            )
        return True
    if target.shape != index_shape:
        raise ValueError(
            f"Expected `target` to be class indices of shape {format_shape(index_shape)} or class probabilities of "
            f"shape {format_shape(output.shape)} (the output's), but got shape {format_shape(target.shape)}."
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(
            f"Expected `target` of shape {format_shape(index_shape)} to hold integer class indices, but got dtype "
            f"{target.dtype}; convert it with `target.long()`, or give probabilities of shape "
            f"{format_shape(output.shape)}."
        )
    return False


def cross_entropy(
    output: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Softmax cross-entropy from first principles, stable for logits of any finite size (log-sum-exp).

    Finite in value and gradient as long as one decision's logits differ by less than the largest float
    (3.4e38 in float32), and its loss, times a class weight above 1 or summed over label smoothing's classes,
    stays under it too (as any number must; torch's overflows the same way). Past the first bound, a class's log-probability is ``-inf``: a class with no weight in the
    target adds exactly 0, and one with weight (through the target or label smoothing) makes the loss ``inf``.

    ``output`` is ``(N, C)`` or ``(N, C, d1, ...)`` logits (or ``(C,)`` for one example); ``target`` is class
    indices ``(N,)`` / ``(N, d1, ...)`` or class probabilities of the output's shape. Same semantics as
    ``torch.nn.functional.cross_entropy`` (without ``ignore_index``). With the log-softmax
    :math:`\log p_c = z_c - \mathrm{LSE}(z)` and :math:`\varepsilon` = ``label_smoothing``:

    - class indices: :math:`\ell_n = (1-\varepsilon)\, w_{y_n} (-\log p_{n,y_n})
      + \frac{\varepsilon}{C} \sum_c w_c (-\log p_{n,c})`; the mean is :math:`\sum_n \ell_n / \sum_n w_{y_n}`
      (a weighted mean: it divides by the weights of the picked classes, 1 each without ``weight``);
    - probabilities: :math:`\ell_n = -\sum_c w_c\, t'_{n,c} \log p_{n,c}` with
      :math:`t' = (1-\varepsilon)\, t + \varepsilon / C`; the mean divides by the number of decisions
      :math:`N \cdot d_1 \cdots`, whatever the weights.

    >>> z = torch.tensor([[2.0, 0.0], [-1000.0, 1000.0]])   # the second row is a confident mistake
    >>> cross_entropy(z, torch.tensor([0, 0]), reduction="none")
    tensor([1.2693e-01, 2.0000e+03])
    >>> cross_entropy(z, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))   # the same targets as probabilities
    tensor(1000.0635)
    """
    check_logits(output)
    check_reduction(reduction)
    if output.ndim == 0:
        raise ValueError(
            "Expected `output` to be logits of shape (N, C), (N, C, d1, ...) or (C,), but got a 0-dim tensor."
        )
    if not isinstance(target, Tensor):
        raise ValueError(f"Expected `target` to be a torch.Tensor, but got {type(target).__name__}.")
    if output.ndim == 1:  # one example, (C,): a batch of one, as torch allows
        if target.shape == (1,) and not target.is_floating_point():
            target = target.reshape(())  # one class index given as a 1-element tensor
        if target.ndim > 1 or (target.ndim == 1 and target.shape != output.shape) or (target.ndim == 0 and target.is_floating_point()):
            raise ValueError(
                f"Expected `target` for the logits of one example, shape {format_shape(output.shape)}, to be one class "
                f"index (an integer tensor of shape () or (1,)) or class probabilities of shape {format_shape(output.shape)}, "
                f"but got dtype {str(target.dtype).removeprefix('torch.')} and shape {format_shape(target.shape)}."
            )
        loss = cross_entropy(output.unsqueeze(0), target.unsqueeze(0), weight, label_smoothing, reduction)
        return loss.squeeze(0) if reduction == "none" else loss
    n_classes = output.shape[1]
    _check_options(output, weight, label_smoothing)
    eps = float(label_smoothing)
    if weight is not None:
        weight = weight.to(output.dtype)
    w = None if weight is None else weight.view((1, n_classes) + (1,) * (output.ndim - 2))  # broadcasts on dim 1

    # 1. log-softmax through log-sum-exp: log p_c = (z_c - m) - log sum_k e^(z_k - m), m = max_k z_k.
    log_p = log_softmax(output, dim=1)  # (N, C, d1, ...), finite while the logits differ by less than the largest float

    if _is_probability_target(output, target):
        check_unit_interval(target)
        # 2. smooth the target, weight it per class, and take -sum_c t'_c log p_c.
        t = (1.0 - eps) * target + eps / n_classes if eps > 0 else target  # (N, C, d1, ...)
        if w is not None:
            t = t * w
        # a class with no weight adds exactly 0, as in the index form, even where log p = -inf (logits ~1e38 apart)
        loss = -torch.where(t == 0, 0.0, t * log_p).sum(dim=1)  # (N, d1, ...)
        return reduce(loss, reduction)  # the mean divides by N * d1 * ..., not by the weights

    check_class_indices(target, n_classes)
    # 2. pick -log p of the target class, weighted by that class's weight.
    index = target.long()  # (N, d1, ...)
    loss = -log_p.gather(1, index.unsqueeze(1)).squeeze(1)  # (N, d1, ...)
    picked_weight = None
    if weight is not None:
        picked_weight = weight[index]  # (N, d1, ...): w_{y_n}
        loss = picked_weight * loss
    # 3. label smoothing mixes in the (weighted) mean of -log p over all classes.
    if eps > 0:
        smooth = -(log_p if w is None else log_p * w).sum(dim=1)  # (N, d1, ...)
        loss = (1.0 - eps) * loss + (eps / n_classes) * smooth
    if reduction == "mean" and picked_weight is not None:
        return loss.sum() / picked_weight.sum()  # torch's weighted mean
    return reduce(loss, reduction)


def cross_entropy_naive(output: Tensor, target: Tensor) -> Tensor:
    r"""Softmax, then log, then pick: the textbook form, which overflows for large logits.

    .. math:: p_c = \frac{e^{z_c}}{\sum_k e^{z_k}}, \qquad \ell_n = -\log p_{n, y_n}
              \quad \text{(or } -\sum_c t_{n,c} \log p_{n,c} \text{ for probability targets)}

    ``exp(1000)`` is inf, and ``inf / inf`` is nan: that is why :func:`cross_entropy` subtracts the
    largest logit first (log-sum-exp). Class indices or probabilities, mean over decisions, no options.

    >>> cross_entropy_naive(torch.tensor([[2.0, 0.0]]), torch.tensor([0]))
    tensor(0.1269)
    >>> cross_entropy_naive(torch.tensor([[1000.0, -1000.0]]), torch.tensor([0]))
    tensor(nan)
    """
    e = torch.exp(output)  # inf once a logit passes ~88.7 (float32) or ~709.8 (float64)
    p = e / e.sum(dim=1, keepdim=True)  # (N, C, ...): softmax
    if target.shape == output.shape:  # class probabilities
        return -(target * torch.log(p)).sum(dim=1).mean()
    return -torch.log(p.gather(1, target.unsqueeze(1))).mean()  # pick p of the target class


def cross_entropy_reference(
    output: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    reduction: Reduction = "mean",
) -> Tensor:
    """``torch.nn.functional.cross_entropy`` with the same options: the reference the handwritten form must equal.

    One limit (torch 2.x): with class indices, ``weight`` and ``label_smoothing`` together, torch's
    function cannot run under ``torch.func.vmap`` (it calls ``masked_select``); :func:`cross_entropy` can.
    Class weights are checked as the handwritten form checks them (torch would take a negative weight
    and return a negative loss).

    >>> cross_entropy_reference(torch.tensor([[2.0, 0.0], [-1000.0, 1000.0]]), torch.tensor([0, 0]))
    tensor(1000.0635)
    """
    if weight is not None and value_checks_enabled():
        _check_weight_values(weight)
    return F.cross_entropy(output, target, weight=weight, label_smoothing=label_smoothing, reduction=reduction)


def _two_class_targets(y: Tensor | float, weight: Tensor | None, label_smoothing: float) -> tuple:
    """Smoothed, weighted targets of the negative and positive unit of a 2-logit head: (w0 t0, w1 t1)."""
    _check_label_smoothing(label_smoothing)
    eps = float(label_smoothing)
    t1 = (1.0 - eps) * y + eps / 2
    t0 = (1.0 - eps) * (1 - y) + eps / 2
    if weight is not None:
        if not isinstance(weight, Tensor) or weight.shape != (2,):
            raise ValueError(
                f"Expected `weight` to be a tensor of shape (2,) for a 2-logit head, but got {weight!r}."
            )
        return weight[0] * t0, weight[1] * t1
    return t0, t1


def loss_of_probability(
    p: Tensor, y: Tensor | float, weight: Tensor | None = None, label_smoothing: float = 0.0
) -> Tensor:
    r"""Loss of one binary decision made by a 2-logit head, as a function of ``p = softmax(z)[1]``.

    .. math:: \ell = -w_1 t_1 \log p - w_0 t_0 \log(1 - p), \qquad
              t_1 = (1-\varepsilon) y + \varepsilon/2, \quad t_0 = (1-\varepsilon)(1 - y) + \varepsilon/2

    This is :func:`cross_entropy` with ``reduction="none"`` (without weights: the binary cross-entropy).

    >>> loss_of_probability(torch.tensor([0.5, 0.9]), 1.0)
    tensor([0.6931, 0.1054])
    """
    a0, a1 = _two_class_targets(y, weight, label_smoothing)
    return -(a1 * torch.log(p) + a0 * torch.log1p(-p))


def grad_wrt_logit(
    p: Tensor, y: Tensor | float, weight: Tensor | None = None, label_smoothing: float = 0.0
) -> Tensor:
    r"""Analytic dL/dz1 on the positive unit of a 2-logit head, as a function of ``p = softmax(z)[1]``.

    .. math:: \frac{\partial \ell}{\partial z_1} = -w_1 t_1 (1 - p) + w_0 t_0\, p
              \;\overset{\text{no weights}}{=}\; p - t_1

    The loss depends on the logits only through ``z1 - z0``, so this is also dL/d(z1 - z0), and the
    negative unit gets exactly the opposite, ``dL/dz0 = -dL/dz1``: each unit gets the whole signal of a
    1-logit sigmoid head (binary cross-entropy's ``p - y``), one with the opposite sign, not half of it.

    >>> grad_wrt_logit(torch.tensor([0.2, 0.9]), 1.0)
    tensor([-0.8000, -0.1000])
    """
    a0, a1 = _two_class_targets(y, weight, label_smoothing)
    return -a1 * (1 - p) + a0 * p
