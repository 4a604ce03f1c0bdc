"""Aggregation over seeds: means with 95% confidence intervals, and paired differences to a baseline loss.

Seeds are the unit of replication: each seed gives one model per loss, all trained from the same start
on the same batches, so the difference between two losses *on the same seed* is a paired measurement.
The interval is Student's t: mean +- t(0.975, n - 1) * sd / sqrt(n), with the sample standard deviation.
For a metric with a range (an accuracy, an AUC: 0 to 1; a chosen threshold: the sweep's 0.01 to 0.99), an
interval that reaches past the range is cut at its end, as no value can lie there; a cut interval says
that few seeds or values near the edge leave the t-interval's normal approximation poor. A paired
difference of such a metric is cut the same way (to -1 to 1 for a metric of 0 to 1).
"""
from __future__ import annotations

import numbers
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy.special import stdtrit  # Student's t quantile; half the import time of scipy.stats

from lossbench.thresholds import GRID_RANGE

CONFIDENCE = 0.95


UNIT_RANGE_WORDS = ("accuracy", "auc", "f1", "sensitivity", "specificity", "exact_match", "ece", "diverged")
"""Metrics whose name holds one of these words lie between 0 and 1 (``diverged``: the fraction of seeds)."""


def metric_range(metric: str) -> tuple[float, float] | None:
    """The values ``metric`` can take, ``(low, high)``, or None when it has no fixed range (a loss).

    A chosen threshold (``best_threshold``) lies on the sweep's grid, ``thresholds.GRID_RANGE``.

    >>> metric_range("test_accuracy_best"), metric_range("best_threshold"), metric_range("final_train_loss")
    ((0.0, 1.0), (0.01, 0.99), None)
    """
    if "threshold" in metric:
        return GRID_RANGE
    return (0.0, 1.0) if any(word in metric for word in UNIT_RANGE_WORDS) else None


def _check_confidence(confidence: float) -> None:
    """A confidence level is a probability strictly between 0 and 1 (0.95, not 95)."""
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ValueError(f"Expected `confidence` to be a number between 0 and 1 (0.95 for 95%), but got {confidence!r}.")


def mean_ci(
    values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE, within: tuple[float, float] | None = None
) -> tuple[float, float, float, int]:
    """Mean and t-interval of the finite values: ``(mean, low, high, n)``; the interval is NaN when n < 2.

    ``within``: the values' range; the interval is cut at its ends.

    >>> mean, low, high, n = mean_ci([1.0, 2.0, 3.0])
    >>> mean, round(low, 4), round(high, 4), n   # 2 -+ 4.3027 * 1 / sqrt(3)
    (2.0, -0.4841, 4.4841, 3)
    >>> mean_ci([0.7, 0.95], within=(0.0, 1.0))[1:3]   # 0.825 -+ 12.706 * 0.1768 / sqrt(2): past both ends
    (0.0, 1.0)
    >>> mean_ci([1.0, 2.0], confidence=95)
    Traceback (most recent call last):
    ...
    ValueError: Expected `confidence` to be a number between 0 and 1 (0.95 for 95%), but got 95.
    """
    _check_confidence(confidence)
    if within is not None and not (len(within) == 2 and within[0] <= within[1]):
        raise ValueError(f"Expected `within` to be a range (low, high) with low <= high, or None, but got {within!r}.")
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(x.mean())
    if n < 2:
        return mean, float("nan"), float("nan"), n
    half = float(stdtrit(n - 1, 0.5 + confidence / 2) * x.std(ddof=1) / np.sqrt(n))
    low, high = mean - half, mean + half
    if within is not None:
        low, high = max(low, within[0]), min(high, within[1])
    return mean, low, high, n


def summarize(
    runs: pd.DataFrame, metrics: str | Iterable[str], baseline: str | None, confidence: float = CONFIDENCE
) -> pd.DataFrame:
    """One row per (loss, metric): mean and interval over seeds, and the paired difference to ``baseline``.

    ``runs`` has one row per model with columns ``loss``, ``seed`` and the metrics (``metrics``: a list
    of column names, or one name). ``baseline`` is one of the losses, or None for no differences. The difference is
    loss minus baseline, seed by seed (seeds where either value is missing are left out). Intervals are cut
    to the metric's range (:func:`metric_range`).

    >>> runs = pd.DataFrame({"loss": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "acc": [0.8, 0.9, 0.7, 0.7]})
    >>> s = summarize(runs, ["acc"], baseline="b")
    >>> s[["loss", "metric", "mean", "diff_mean"]]
      loss metric  mean  diff_mean
    0    a    acc  0.85       0.15
    1    b    acc  0.70       0.00
    """
    _check_confidence(confidence)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)  # "acc" is one metric, not 'a', 'c', 'c'
    rows = []
    losses = list(dict.fromkeys(runs["loss"]))
    if baseline is not None and baseline not in losses:
        raise ValueError(
            f"Expected `baseline` to be one of the losses {', '.join(map(repr, losses))}, or None, but got {baseline!r}."
        )
    for loss in losses:
        mine = runs[runs["loss"] == loss].set_index("seed")
        base = runs[runs["loss"] == baseline].set_index("seed") if baseline is not None else None
        for metric in metrics:
            span = metric_range(metric)
            mean, low, high, n = mean_ci(mine[metric].to_numpy(dtype=float), confidence, span)
            row = {"loss": loss, "metric": metric, "n": n, "mean": mean, "ci_low": low, "ci_high": high}
            if base is not None:
                paired = mine[metric].astype(float) - base[metric].astype(float).reindex(mine.index)
                d_span = None if span is None else (span[0] - span[1], span[1] - span[0])
                d_mean, d_low, d_high, d_n = mean_ci(paired.to_numpy(), confidence, d_span)
                row.update(baseline=baseline, diff_mean=d_mean, diff_low=d_low, diff_high=d_high, diff_n=d_n)
            rows.append(row)
    return pd.DataFrame(rows)


def band(frame: pd.DataFrame, value: str, by: Sequence[str], confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Mean and interval of ``value`` over seeds for each group of ``by`` (e.g. loss and epoch), for plot bands.

    >>> f = pd.DataFrame({"loss": ["a"] * 4, "epoch": [0, 0, 1, 1], "seed": [0, 1, 0, 1], "v": [1.0, 3.0, 2.0, 2.0]})
    >>> band(f, "v", ["loss", "epoch"])[["loss", "epoch", "mean", "n"]]
      loss  epoch  mean  n
    0    a      0   2.0  2
    1    a      1   2.0  2
    """
    _check_confidence(confidence)
    values = frame[value].astype(float).where(np.isfinite(frame[value].astype(float)))  # inf counts as missing
    grouped = values.groupby([frame[c] for c in by], sort=False).agg(["mean", "std", "count"])
    n = grouped["count"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stdtrit(np.where(n > 1, n - 1, 1), 0.5 + confidence / 2)  # one call for every group
        half = np.where(n > 1, t * grouped["std"].to_numpy() / np.sqrt(n), np.nan)
    out = grouped.index.to_frame(index=False)
    out["mean"] = grouped["mean"].to_numpy()
    out["ci_low"] = out["mean"] - half
    out["ci_high"] = out["mean"] + half
    out["n"] = n.astype(int)
    return out
