"""Threshold sweeps and the metrics of a yes/no decision: accuracy, F1, sensitivity, specificity, AUC, calibration.

Every function takes the scores of M models at once: ``scores`` is ``(models, examples, K)``, the
predicted probability that each of the K outputs is positive, and ``y`` is the multi-hot ``(examples, K)``
target shared by all models. An output is predicted positive when ``score >= threshold``.
"""
from __future__ import annotations

import math
import numbers
from typing import Literal, get_args

import numpy as np
import torch

from lossbench.tasks.base import TaskKind

METRICS = ("accuracy", "f1", "sensitivity", "specificity", "exact_match")

GRID_RANGE = (0.01, 0.99)
"""The lowest and highest threshold the sweep tries (:func:`threshold_grid`), so the range of a chosen threshold."""



def unscored(scores: torch.Tensor) -> torch.Tensor:
    """Which models, ``(models,)`` bool, have a NaN score: their weights blew up, and every metric of theirs is NaN.

    The one rule the sweep, the AUC, the accuracy at 0.5, the chosen threshold and the confidence bins of the
    gradient allocation follow: a NaN is neither above nor below a threshold, so without it such a model
    would be counted as predicting the negative class.

    >>> unscored(torch.tensor([[[0.9], [0.2]], [[0.9], [torch.nan]]]))
    tensor([False,  True])
    """
    return scores.isnan().flatten(1).any(dim=1)


def _is_whole(value: object) -> bool:
    """A whole number: a Python or numpy int, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_finite(value: object) -> bool:
    """A finite real number: a Python or numpy int or float, not a bool, NaN or inf."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def threshold_grid(points: int = 99, low: float = GRID_RANGE[0], high: float = GRID_RANGE[1]) -> torch.Tensor:
    """The thresholds to sweep: ``points`` evenly spaced values from ``low`` to ``high``, rounded to 12 decimals.

    The rounding makes each threshold the float nearest its decimal: 0.35 is 0.35, where ``linspace``
    alone gives 0.35000000000000003, above a score of exactly 0.35 (predicted positive, ``score >= 0.35``).

    >>> threshold_grid(5)
    tensor([0.0100, 0.2550, 0.5000, 0.7450, 0.9900], dtype=torch.float64)
    >>> threshold_grid()[34].item(), threshold_grid()[54].item()
    (0.35, 0.55)
    >>> threshold_grid(5, low=0.9, high=0.1)
    Traceback (most recent call last):
    ...
    ValueError: Expected `low` and `high` to be finite with 0 <= low < high <= 1, but got low=0.9, high=0.1.
    """
    if not _is_whole(points) or points < 2:
        raise ValueError(f"Expected `points` to be a whole number at least 2, but got {points!r}.")
    if not (_is_finite(low) and _is_finite(high) and 0 <= low < high <= 1):
        raise ValueError(f"Expected `low` and `high` to be finite with 0 <= low < high <= 1, but got low={low!r}, high={high!r}.")
    return torch.linspace(low, high, points, dtype=torch.float64).round(decimals=12)


def sweep(scores: torch.Tensor, y: torch.Tensor, thresholds: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every metric of :data:`METRICS` at every threshold: a dict of ``(models, thresholds)`` tensors.

    1. count true/false positives/negatives over all examples and outputs (Hamming counting);
    2. accuracy = (TP + TN) / all, sensitivity = TP / (TP + FN), specificity = TN / (TN + FP),
       F1 = 2 TP / (2 TP + FP + FN) (NaN where a denominator is zero);
    3. exact match: the fraction of examples whose K outputs are all right (equals accuracy when K = 1).

    A model with a NaN score (one whose weights went NaN) gets NaN for every metric, as in :func:`auc`:
    a NaN is neither above nor below a threshold, so its decisions are not defined.

    >>> s = torch.tensor([[[0.2], [0.6], [0.9]]])  # one model, three examples
    >>> m = sweep(s, torch.tensor([[0.0], [1.0], [0.0]]), torch.tensor([0.5, 0.95]))
    >>> m["accuracy"], m["sensitivity"]
    (tensor([[0.6667, 0.6667]], dtype=torch.float64), tensor([[1., 0.]], dtype=torch.float64))
    """
    scores = scores.detach().to(torch.float64)
    undefined = unscored(scores).unsqueeze(1)  # (models, 1)
    y = y.to(scores.device, torch.float64).bool()  # (examples, K)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in METRICS}
    pos = y.sum().double()
    neg = (~y).sum().double()
    for t in thresholds.tolist():
        pred = scores >= t  # (models, examples, K)
        tp = (pred & y).sum(dim=(1, 2)).double()
        fp = (pred & ~y).sum(dim=(1, 2)).double()
        tn = neg - fp
        fn = pos - tp
        out["accuracy"].append((tp + tn) / (pos + neg))
        out["sensitivity"].append(tp / pos if pos > 0 else torch.full_like(tp, float("nan")))
        out["specificity"].append(tn / neg if neg > 0 else torch.full_like(tn, float("nan")))
        denom = 2 * tp + fp + fn
        out["f1"].append(torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.nan))
        out["exact_match"].append((pred == y).all(dim=2).double().mean(dim=1))
    return {name: torch.stack(values, dim=1).masked_fill(undefined, torch.nan) for name, values in out.items()}


SelectionMetric = Literal["accuracy", "balanced_accuracy", "f1", "exact_match"]
SELECTION_METRICS: tuple[str, ...] = get_args(SelectionMetric)
"""What the best threshold can maximise on the validation split: accuracy (the default), balanced accuracy
(the mean of sensitivity and specificity, which a rare positive class cannot dominate), F1, or, with
several outputs, exact match."""


def selection_metric(sweep_metrics: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """The ``(models, thresholds)`` values of :data:`SELECTION_METRICS` ``name`` from a :func:`sweep`.

    >>> m = sweep(torch.tensor([[[0.2], [0.6], [0.9]]]), torch.tensor([[0.0], [1.0], [0.0]]), torch.tensor([0.5, 0.95]))
    >>> selection_metric(m, "balanced_accuracy")  # (sensitivity + specificity) / 2: (1 + 1/2) / 2, then (0 + 1) / 2
    tensor([[0.7500, 0.5000]], dtype=torch.float64)
    """
    if name == "balanced_accuracy":
        return (sweep_metrics["sensitivity"] + sweep_metrics["specificity"]) / 2
    return sweep_metrics[name]


def best_threshold_index(metric: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """For each model, the index of the threshold that maximises ``metric`` (models, thresholds).

    Ties go to the threshold closest to 0.5, so a flat curve keeps the usual threshold; of two maxima
    equally far from 0.5, to the lower threshold (distances are compared to 9 decimals, so that float
    rounding does not decide it).

    >>> best_threshold_index(torch.tensor([[0.7, 0.8, 0.8, 0.6]]), torch.tensor([0.2, 0.4, 0.6, 0.8]))
    tensor([1])
    >>> grid = torch.linspace(0.01, 0.99, 99)
    >>> flat = torch.zeros(2, 99)
    >>> flat[0, [45, 53]] = flat[1, [44, 54]] = 1.0  # maxima at 0.46 and 0.54; at 0.45 and 0.55
    >>> grid[best_threshold_index(flat, grid)]
    tensor([0.4600, 0.4500])
    >>> best_threshold_index(torch.tensor([[1.0, 1.0]]), torch.tensor([0.7, 0.3]))  # any order: the lower one
    tensor([1])
    """
    metric = torch.nan_to_num(metric.to(torch.float64), nan=-1.0)
    best = metric.max(dim=1, keepdim=True).values
    thresholds = thresholds.to(metric.device, torch.float64)
    distance = (thresholds - 0.5).abs().round(decimals=9)  # (thresholds,)
    penalty = torch.where(metric >= best - 1e-12, distance, torch.inf)  # only the maxima compete
    closest = penalty == penalty.min(dim=1, keepdim=True).values  # one, or two equally far from 0.5
    return torch.where(closest, thresholds, torch.inf).argmin(dim=1)


AVERAGES = ("macro", "micro")


def auc_average(task_kind: TaskKind) -> Literal["macro", "micro"]:
    """How a task's AUC averages its outputs: the areas of a grid pooled (``"micro"``), labels one by one (``"macro"``).

    The areas of a grid ask one question (an abnormality here?) at each place of a patch, so their
    scores are ranked together, and an area with few abnormalities in a split does not get a noisy AUC
    of its own. The labels of a multi-label task are different questions: each has its own ranking,
    and the AUC is the mean over the labels with both classes in the split. One output: the same.

    >>> auc_average("grid"), auc_average("multilabel")
    ('micro', 'macro')
    """
    return "micro" if task_kind == "grid" else "macro"


def auc(scores: torch.Tensor, y: torch.Tensor, average: Literal["macro", "micro"] = "macro") -> torch.Tensor:
    """Area under the ROC curve per model, (models,), by the rank-sum (Mann-Whitney) formula.

    AUC = (sum of the ranks of the positives - P (P + 1) / 2) / (P N), with tied scores sharing their
    average rank, which is what scikit-learn's ``roc_auc_score`` computes. ``average="macro"`` takes the
    mean over the K outputs that have both classes; ``"micro"`` pools all outputs first. A model with a NaN
    score (a model whose weights went NaN) gets a NaN AUC, as there is no order to rank (scikit-learn
    refuses such input).

    >>> auc(torch.tensor([[[0.1], [0.4], [0.35], [0.8]]]), torch.tensor([[0.], [0.], [1.], [1.]]))
    tensor([0.7500], dtype=torch.float64)
    """
    if average not in AVERAGES:
        raise ValueError(f"Expected `average` to be one of {', '.join(map(repr, AVERAGES))}, but got {average!r}.")
    scores = scores.detach().to(torch.float64)
    y = y.to(scores.device, torch.float64)
    if average == "micro":
        scores = scores.reshape(scores.shape[0], -1, 1)
        y = y.reshape(-1, 1)
    # 1. ranks along the examples, ties averaged: (models, K, examples)
    ranks = _average_ranks(scores.transpose(1, 2))
    # 2. the rank-sum statistic per output
    yt = y.T  # (K, examples)
    p = yt.sum(dim=1)
    n = yt.shape[1] - p
    rank_sum = (ranks * yt).sum(dim=2)  # (models, K)
    per_output = (rank_sum - p * (p + 1) / 2) / (p * n)
    per_output = torch.where((p > 0) & (n > 0), per_output, torch.nan)
    return torch.where(unscored(scores), torch.nan, per_output.nanmean(dim=1))


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """1-based ranks along the last dimension, tied values sharing the mean of their ranks.

    >>> _average_ranks(torch.tensor([[0.3, 0.1, 0.3, 0.2]]))
    tensor([[3.5000, 1.0000, 3.5000, 2.0000]], dtype=torch.float64)
    """
    ordered, order = x.sort(dim=-1)
    n = x.shape[-1]
    position = torch.arange(n, device=x.device).expand_as(ordered)
    starts = torch.ones_like(ordered, dtype=torch.bool)
    starts[..., 1:] = ordered[..., 1:] != ordered[..., :-1]  # where a run of equal values begins
    ends = torch.ones_like(starts)
    ends[..., :-1] = starts[..., 1:]  # where it ends
    first = torch.where(starts, position, 0).cummax(dim=-1).values  # the run's first position
    last = torch.where(ends, position, n).flip(-1).cummin(dim=-1).values.flip(-1)  # and its last
    mean_rank = (first + last).double() / 2 + 1
    return torch.empty_like(mean_rank).scatter_(-1, order, mean_rank)


def calibration(scores: torch.Tensor, y: torch.Tensor, bins: int = 10) -> dict[str, torch.Tensor]:
    """Reliability bins and expected calibration error, pooling all outputs of each model.

    The bins split [0, 1] into ``bins`` equal intervals, a probability on an edge going to the lower
    bin, exactly as scikit-learn's ``calibration_curve(strategy="uniform")`` bins them. Per bin: the mean predicted probability, the fraction of
    positives and the count, each ``(models, bins)`` (NaN for an empty bin).
    ECE = sum over bins of count / total * |fraction positive - mean predicted|, ``(models,)``.
    A model with a NaN score (one whose weights went NaN) has no bins: NaN means and ECE, counts 0.

    >>> c = calibration(torch.tensor([[[0.1], [0.2], [0.8], [0.9]]]), torch.tensor([[0.], [1.], [1.], [1.]]), bins=2)
    >>> c["fraction_positive"], c["ece"]
    (tensor([[0.5000, 1.0000]], dtype=torch.float64), tensor([0.2500], dtype=torch.float64))
    """
    if not _is_whole(bins) or bins < 1:
        raise ValueError(f"Expected `bins` to be a whole number at least 1, but got {bins!r}.")
    scores = scores.detach().to(torch.float64).reshape(scores.shape[0], -1)  # (models, examples * K)
    y = y.to(scores.device, torch.float64).reshape(1, -1).expand_as(scores)
    undefined = scores.isnan().any(dim=1, keepdim=True)  # (models, 1)
    inner = torch.from_numpy(np.linspace(0, 1, bins + 1)[1:-1]).to(scores.device)  # numpy's edges, as scikit-learn's
    index = torch.bucketize(scores.contiguous(), inner)  # bin i holds (edge i, edge i+1], the first one also 0
    count = torch.zeros(scores.shape[0], bins, dtype=torch.float64, device=scores.device)
    count.scatter_add_(1, index, torch.ones_like(scores))
    count.masked_fill_(undefined, 0)
    sum_p = torch.zeros_like(count).scatter_add_(1, index, scores)
    sum_y = torch.zeros_like(count).scatter_add_(1, index, y)
    mean_p = (sum_p / count).masked_fill_(undefined, torch.nan)
    frac = (sum_y / count).masked_fill_(undefined, torch.nan)
    ece = (count / scores.shape[1] * (frac - mean_p).abs()).nansum(dim=1).masked_fill(undefined.squeeze(1), torch.nan)
    return {"mean_predicted": mean_p, "fraction_positive": frac, "count": count, "ece": ece}
