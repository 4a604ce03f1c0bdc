"""Gradient allocation: where each loss sends its gradient, measured on a fixed probe set.

All measurements start from two gradients of the probe loss (the mean over the probe set), taken for M
models at once:

- ``d_output``: dL/dz at the head's output (what the loss itself sends back);
- ``d_h``: dL/dh at the body's features (the signal the shared body actually learns from). Only its
  norm per example is used; the runner gets it from dL/dz and the head's weights
  (:func:`body_gradient_norms`) without building dL/dh.

Both are multiplied by the number of terms the mean averages over, so that every entry is the gradient of
*one decision's* loss, on the scale of the analytic curves dL/dz(p): for BCE exactly ``p - y``, for
softmax across labels ``p - t``. That number is N examples times the head's
:attr:`~lossbench.models.Head.terms_per_example`: torch's binary cross-entropy and MSE average over every
label or area of every example, cross-entropy on a grid over every area, and softmax across labels over
the examples only. Scaling by N alone would leave a 1-logit head's gradient on K labels divided by K, and
softmax's across the same labels not: a factor of K between two losses that comes from the reduction,
not from the loss. Cross-entropy with class weights (``softmax_ce.weight``) on class indices divides
its mean by the summed weight of the examples' classes instead, so that is its number: a weighted
decision's gradient is then w_y (p - y), on the scale of its analytic curve.

What is reported per model:

1. ``negative_unit_share``: for a 2-logit head, the share of sum |dL/dz| on the negative units. Softmax
   makes the two logit gradients equal and opposite, so this is always one half, and it is *not* wasted:
   the gradient into the body is w1 g - w0 g = (w1 - w0) g, that of a sigmoid head with w = w1 - w0.
2. ``label_share``: the share of sum |g| that each of the K scored outputs receives (per label, per area).
3. ``body``: the mean over examples of ||dl_i/dh_i||, the size of the signal into the body, where l_i is
   the sum of example i's decision losses (one per label or area for a 1-logit head).
4. ``positive_share``: the share of sum |g| coming from positive targets (y = 1) rather than negative ones.
5. ``confidence``: mean |g| of the predictions in each confidence bin (confidence = max(p, 1 - p)),
   separately for correct and for wrong predictions at threshold 0.5. MSE's gradient vanishes on
   confident mistakes; cross-entropy's does not.

Here g is the *decision gradient*: per example and scored output, the gradient on that output's logit
(for a 2-logit head, the positive unit, which equals the gradient with respect to z1 - z0).
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch

from lossbench.models import Head
from lossbench.thresholds import unscored

CONFIDENCE_EDGES = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Confidence bins [0.5, 0.6), ..., [0.9, 1.0]."""

CONFIDENCE_BINS = tuple(f"{lo:.1f}-{hi:.1f}" for lo, hi in zip(CONFIDENCE_EDGES[:-1], CONFIDENCE_EDGES[1:]))
"""The confidence bins' names, as history.csv's columns carry them: ``grad_confidence_wrong[0.9-1.0]``."""


def allocation(
    head: Head, d_output: torch.Tensor, d_h: torch.Tensor, scores: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Gradient-allocation measurements of M models on one probe set.

    ``d_output`` and ``d_h`` are dL/dz and dL/dh of the *mean* probe loss, shaped like the head's output
    ``(models, N, ...)`` and the features ``(models, N, positions, features)``; ``scores`` is
    ``(models, N, K)`` and ``y`` is ``(N, K)``. Returns ``(models,)`` tensors, except ``label_share``
    ``(models, K)`` and ``confidence_correct`` / ``confidence_wrong`` / their ``_count`` ``(models, bins)``.

    >>> head = Head("one_logit", "binary", 1)
    >>> p = torch.tensor([[[0.9], [0.2], [0.6]]])  # one model, three examples
    >>> y = torch.tensor([[1.0], [1.0], [0.0]])
    >>> d_out = (p - y).reshape(1, 3) / 3  # BCE: dL/dz = (p - y) / N
    >>> a = allocation(head, d_out, torch.zeros(1, 3, 1, 4), p, y)
    >>> round(a["positive_share"].item(), 4)  # (0.1 + 0.8) / (0.1 + 0.8 + 0.6)
    0.6
    """
    return stacked_allocation([head], [d_output], d_h.flatten(2).norm(dim=2), scores, y)


def stacked_allocation(
    heads: Sequence[Head], d_outputs: Sequence[torch.Tensor], body_norms: torch.Tensor, scores: torch.Tensor, y: torch.Tensor,
    divisors: Sequence[torch.Tensor | float] | None = None,
) -> dict[str, torch.Tensor]:
    """:func:`allocation` of several losses' models at once, stacked in order along the models dimension.

    ``d_outputs[i]`` is dL/dz of loss i's models, in the layout of ``heads[i]``; ``body_norms`` (the
    norm of dL/dh per example, ``(models, N)``, see :func:`body_gradient_norms`) and ``scores`` hold
    every model, loss after loss. All models are measured with the operations that one loss would
    need (the probe's tensors are small, so the cost is per operation, not per number).
    ``negative_unit_share`` is NaN for the models of a head without a negative unit. ``divisors[i]`` is
    what loss i's mean divides by, N x :attr:`~lossbench.models.Head.terms_per_example` unless given
    (cross-entropy with class weights divides by the summed weight of the targets' classes).
    """
    n = d_outputs[0].shape[1]
    y = y.to(body_norms.dtype)
    terms = list(divisors) if divisors is not None else [n * head.terms_per_example for head in heads]
    g = torch.cat([head.decision_gradient(d) * t for head, d, t in zip(heads, d_outputs, terms)]).abs()  # (models, N, K) per decision
    total = g.sum(dim=(1, 2))  # (models,)
    out: dict[str, torch.Tensor] = {}

    # 1. the negative unit of a 2-logit head
    if any(head.negative_unit for head in heads):
        negative = [
            head.negative_unit_gradient(d) * t if head.negative_unit else torch.full_like(head.decision_gradient(d), torch.nan)
            for head, d, t in zip(heads, d_outputs, terms)
        ]
        neg = torch.cat(negative).abs().sum(dim=(1, 2))
        out["negative_unit_share"] = neg / (neg + total)
    else:
        out["negative_unit_share"] = torch.full_like(total, torch.nan)

    # 2. per scored output (label or area)
    out["label_share"] = g.sum(dim=1) / total.unsqueeze(1)  # (models, K)

    # 3. into the body: per-example norm over positions and features
    scale = torch.cat([body_norms.new_ones(d.shape[0], 1) * t for d, t in zip(d_outputs, terms)])  # (models, 1)
    out["body"] = (body_norms * scale).mean(dim=1)  # (models,)

    # 4. positive vs negative examples
    out["positive_share"] = (g * y).sum(dim=(1, 2)) / total

    # 5. by confidence bin, for correct and for wrong predictions
    confidence = torch.maximum(scores, 1 - scores)  # (models, N, K) in [0.5, 1]
    correct = (scores >= 0.5) == y.bool()
    edges = _inner_edges(confidence.dtype, confidence.device)
    bin_of = torch.bucketize(confidence.contiguous(), edges, right=True)  # 0 .. bins-1
    bins = len(CONFIDENCE_EDGES) - 1
    cell = bin_of + bins * (~correct)  # bins of the correct predictions first, then of the wrong ones
    one_hot = g.new_zeros(*cell.shape, 2 * bins).scatter_(-1, cell.unsqueeze(-1), 1.0)  # (models, N, K, 2 bins)
    # a model with a NaN score has no confidence to bin: NaN counts (as all its metrics), not its last bin's
    count = one_hot.sum(dim=(1, 2)).masked_fill(unscored(scores).unsqueeze(1), torch.nan)  # (models, 2 bins)
    summed = (one_hot * g.unsqueeze(-1)).sum(dim=(1, 2))
    for name, half in (("correct", slice(0, bins)), ("wrong", slice(bins, 2 * bins))):
        out[f"confidence_{name}"] = summed[:, half] / count[:, half]  # NaN where a bin is empty
        out[f"confidence_{name}_count"] = count[:, half]
    return out


def body_gradient_norms(d_z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """The norm of dL/dh per example, ``(models, N)``, from dL/dz at the head and the head's weights.

    The head is the same linear map at every position, z_p = h_p w + b, so dL/dh_p = dz_p w^T and

        ||dL/dh||^2 = sum over positions p of dz_p (w^T w) dz_p^T.

    ``w^T w`` is units x units (1 x 1 or 2 x 2 for a yes/no head), so this never builds dL/dh, which is
    as large as the body's features. ``d_z`` is ``(models, N, positions, units)`` and ``w``
    ``(models, features, units)``.

    >>> w = torch.tensor([[[3.0], [4.0]]])          # one model, 2 features, 1 unit: ||w|| = 5
    >>> body_gradient_norms(torch.tensor([[[[0.5]], [[-2.0]]]]), w)  # dL/dh = dz w^T, norm 5 |dz|
    tensor([[ 2.5000, 10.0000]])
    """
    m, n, p, u = d_z.shape
    gram = w.transpose(1, 2) @ w  # (models, units, units)
    flat = d_z.reshape(m, n * p, u)
    squared = ((flat @ gram) * flat).sum(dim=2).reshape(m, n, p).sum(dim=2)
    return squared.clamp_min(0).sqrt()  # >= 0 up to rounding


@functools.lru_cache(maxsize=None)
def _inner_edges(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The confidence bins' inner edges, made once per dtype and device: a copy from the host at every probe
    would keep the probe from being recorded as a CUDA graph (:mod:`lossbench.graphs`)."""
    return torch.tensor(CONFIDENCE_EDGES[1:-1], dtype=dtype, device=device)
