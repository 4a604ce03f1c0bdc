"""Reference answers to the exercises: what the checker compares a student's function against.

The losses are `torch.nn.functional` (stable at any finite logit), the rest are short
formulas in plain torch. They are deliberately independent of `lossbench.losses`, whose
hand-written versions are the lesson's own answers and are checked separately.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def softmax_ce(logits: Tensor, target: Tensor) -> Tensor:
    r"""Mean softmax cross-entropy; `target` holds class indices (N,) or class probabilities (N, C).

    .. math:: L = -\frac{1}{N} \sum_n \sum_c q_{nc} \log \mathrm{softmax}(z_n)_c,
              \quad q_n = \mathrm{onehot}(y_n) \text{ for index targets}

    >>> softmax_ce(torch.zeros(2, 4), torch.tensor([0, 3]))  # uniform over 4 classes: log 4
    tensor(1.3863)
    """
    return F.cross_entropy(logits, target)


def bce(logits: Tensor, target: Tensor) -> Tensor:
    r"""Mean binary cross-entropy from logits over all elements, stable at any finite logit.

    .. math:: L = \mathrm{mean}\big(-y \log \sigma(z) - (1 - y) \log(1 - \sigma(z))\big)
              = \mathrm{mean}\big(\max(z, 0) - y z + \log(1 + e^{-|z|})\big)

    >>> bce(torch.tensor([0.0, 1e4]), torch.tensor([1.0, 0.0]))  # (log 2 + 1e4) / 2
    tensor(5000.3467)
    """
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype))


def bce_probs(probs: Tensor, target: Tensor) -> Tensor:
    r"""Mean binary cross-entropy from probabilities; like PyTorch, each log is clamped at -100.

    .. math:: L = \mathrm{mean}\big(-y \max(\log p, -100) - (1 - y) \max(\log(1 - p), -100)\big)

    >>> bce_probs(torch.tensor([0.5, 0.0]), torch.tensor([1.0, 1.0]))  # (log 2 + 100) / 2
    tensor(50.3466)
    """
    return F.binary_cross_entropy(probs, target.to(probs.dtype))


def mse(logits: Tensor, target: Tensor) -> Tensor:
    r"""Mean squared error between sigmoid(logits) and the target (lossbench's MSE is on probabilities).

    .. math:: L = \mathrm{mean}\big((\sigma(z) - y)^2\big)

    >>> mse(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0]))  # (0.25 + 0.25) / 2
    tensor(0.2500)
    """
    return F.mse_loss(torch.sigmoid(logits), target.to(logits.dtype))


def dlogits(logits: Tensor, target: Tensor) -> Tensor:
    r"""Gradient of the mean softmax cross-entropy with respect to the logits, by the formula.

    .. math:: \frac{\partial L}{\partial z_{nc}} = \frac{\mathrm{softmax}(z_n)_c - [c = y_n]}{N}

    >>> dlogits(torch.zeros(2, 2), torch.tensor([0, 1]))
    tensor([[-0.2500,  0.2500],
            [ 0.2500, -0.2500]])
    """
    n, classes = logits.shape  # (N, C)
    onehot = F.one_hot(target, classes).to(logits.dtype)  # (N, C)
    return (torch.softmax(logits, dim=1) - onehot) / n


def accuracy_multi(probs: Tensor, target: Tensor, threshold: float = 0.5) -> float:
    r"""Hamming (per-label) accuracy: the fraction of all N x K labels predicted right at `threshold`.

    A probability equal to the threshold counts as a positive prediction.

    .. math:: \mathrm{acc} = \frac{1}{NK} \sum_{n,k} [\,(p_{nk} \ge t) = (y_{nk} = 1)\,]

    >>> accuracy_multi(torch.tensor([[0.9, 0.2], [0.5, 0.7]]), torch.tensor([[1, 1], [0, 1]]))
    0.5
    """
    predicted = probs >= threshold  # (N, K) bool
    correct = predicted == (target != 0)  # (N, K) bool
    return correct.sum().item() / correct.numel()


def best_threshold(probs: Tensor, target: Tensor, thresholds: Tensor) -> float:
    r"""The threshold with the highest accuracy of `probs >= t` against `target`; ties go to the one closest to 0.5.

    That is lossbench's own rule (:func:`lossbench.thresholds.best_threshold_index`): a flat stretch of
    the accuracy curve keeps the usual threshold, or comes as close to it as the best accuracy allows.
    Of two tied thresholds equally close to 0.5, the smaller wins.

    .. math:: t^* = \arg\min_{t \in T^*} |t - 0.5|, \quad
              T^* = \arg\max_t \frac{1}{N} \sum_n [\,(p_n \ge t) = (y_n = 1)\,]

    >>> best_threshold(torch.tensor([0.1, 0.35, 0.4, 0.9]), torch.tensor([0, 0, 1, 1]),
    ...                torch.tensor([0.25, 0.375, 0.5, 0.75]))
    0.375
    >>> best_threshold(torch.tensor([0.1, 0.9]), torch.tensor([0, 1]), torch.tensor([0.2, 0.4, 0.55, 0.8], dtype=torch.float64))
    0.55
    """
    truth = target != 0  # (N,)
    correct = torch.stack([((probs >= t) == truth).sum() for t in thresholds])  # (T,) counts
    return closest_to_half(thresholds[correct == correct.max()])  # of every threshold that reaches the best count


def closest_to_half(tied: Tensor) -> float:
    """The threshold of `tied` closest to 0.5; of two equally close, the smaller.

    Distances are compared rounded to 9 decimals, as :func:`lossbench.thresholds.best_threshold_index`
    does, so that float rounding does not decide a tie: on the grid 0.01, 0.02, ..., 0.99, 0.7 - 0.5
    comes out a hair below 0.5 - 0.3, yet 0.3 and 0.7 are equally close.

    >>> closest_to_half(torch.tensor([0.3, 0.4375, 0.625]))
    0.4375
    >>> closest_to_half(torch.tensor([0.25, 0.75]))  # equally close
    0.25
    >>> grid = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    >>> closest_to_half(grid[[29, 69]]), closest_to_half(grid[[44, 54]])  # 0.3 and 0.7; 0.45 and 0.55
    (0.3, 0.45)
    """
    distance = (tied.double() - 0.5).abs().round(decimals=9)
    return float(tied[distance == distance.min()].min())
