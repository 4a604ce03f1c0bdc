"""The reference answers against independent formulas: numpy, autograd, scikit-learn, brute force."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import hamming_loss

from lossbench.exercises import references as ref
from lossbench.thresholds import best_threshold_index

g = torch.Generator().manual_seed(7)
Z = 3 * torch.randn(9, 4, generator=g, dtype=torch.float64)
Y = torch.randint(0, 4, (9,), generator=g)
Q = torch.softmax(torch.randn(9, 4, generator=g, dtype=torch.float64), dim=1)
B = torch.randint(0, 2, (9, 4), generator=g).double()


def np_log_softmax(z: np.ndarray) -> np.ndarray:
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


def test_softmax_ce_matches_numpy_for_index_and_probability_targets():
    log_p = np_log_softmax(Z.numpy())
    assert ref.softmax_ce(Z, Y).item() == pytest.approx(-log_p[np.arange(9), Y.numpy()].mean(), rel=1e-12)
    assert ref.softmax_ce(Z, Q).item() == pytest.approx(-(Q.numpy() * log_p).sum(axis=1).mean(), rel=1e-12)


def test_bce_matches_numpy_and_stays_exact_at_huge_logits():
    p = 1 / (1 + np.exp(-Z.numpy()))
    expected = -(B.numpy() * np.log(p) + (1 - B.numpy()) * np.log(1 - p)).mean()
    assert ref.bce(Z, B).item() == pytest.approx(expected, rel=1e-12)
    huge = torch.tensor([1e4, -1e4, 1e4, -1e4], dtype=torch.float64)
    assert ref.bce(huge, torch.tensor([0.0, 1.0, 1.0, 0.0], dtype=torch.float64)).item() == pytest.approx(5000.0)


def test_bce_probs_is_the_formula_with_logs_clamped_at_minus_100():
    p = torch.sigmoid(Z)
    expected = -(B * torch.log(p) + (1 - B) * torch.log(1 - p)).mean()
    assert ref.bce_probs(p, B).item() == pytest.approx(expected.item(), rel=1e-12)
    edges = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert ref.bce_probs(edges, 1 - edges).item() == 100.0
    assert ref.bce_probs(edges, edges).item() == 0.0


def test_mse_is_on_the_probability():
    expected = ((1 / (1 + np.exp(-Z.numpy())) - B.numpy()) ** 2).mean()
    assert ref.mse(Z, B).item() == pytest.approx(expected, rel=1e-12)


def test_dlogits_by_hand_equals_autograd_of_the_mean_cross_entropy():
    z = Z.clone().requires_grad_(True)
    (autograd,) = torch.autograd.grad(F.cross_entropy(z, Y), z)
    torch.testing.assert_close(ref.dlogits(Z, Y), autograd, rtol=1e-12, atol=1e-15)
    assert ref.dlogits(Z, Y).sum(dim=1).abs().max() < 1e-15  # each row sums to zero
    huge = torch.tensor([[1e4, -1e4, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(ref.dlogits(huge, torch.tensor([1])), torch.tensor([[1.0, -1.0, 0.0]],
                                                                                  dtype=torch.float64))


def test_accuracy_multi_is_one_minus_the_hamming_loss():
    probs = torch.rand(20, 5, generator=g, dtype=torch.float64)
    target = torch.randint(0, 2, (20, 5), generator=g)
    for t in (0.2, 0.5, 0.7):
        predicted = (probs >= t).int().numpy()
        assert ref.accuracy_multi(probs, target, t) == pytest.approx(1 - hamming_loss(target.numpy(), predicted))


def test_accuracy_multi_counts_a_probability_at_the_threshold_as_positive():
    assert ref.accuracy_multi(torch.tensor([[0.5]]), torch.tensor([[1]])) == 1.0
    assert ref.accuracy_multi(torch.tensor([[0.5]]), torch.tensor([[0]])) == 0.0


def test_best_threshold_is_the_maximum_closest_to_one_half_of_a_brute_force_sweep():
    for seed in range(5):
        gen = torch.Generator().manual_seed(seed)
        target = torch.randint(0, 2, (30,), generator=gen)
        probs = (0.3 + 0.3 * target + 0.2 * torch.randn(30, generator=gen, dtype=torch.float64)).clamp(0, 1)
        thresholds = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
        accuracy = np.array([((probs.numpy() >= t) == target.numpy()).mean() for t in thresholds.numpy()])
        tied = thresholds.numpy()[accuracy == accuracy.max()]
        assert ref.best_threshold(probs, target, thresholds) == min(tied, key=lambda t: (abs(t - 0.5), t))


def test_best_threshold_is_the_threshold_lossbench_chooses():
    """A student's right answer reproduces the `best thr (val)` column: the runner's own rule."""
    thresholds = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    for seed in range(20):
        gen = torch.Generator().manual_seed(seed)
        target = torch.randint(0, 2, (25,), generator=gen)
        probs = torch.rand(25, generator=gen, dtype=torch.float64) * 0.5 + 0.3 * target  # ties are common
        accuracy = torch.stack([((probs >= t) == target.bool()).double().mean() for t in thresholds])
        chosen = thresholds[best_threshold_index(accuracy[None], thresholds)].item()
        assert ref.best_threshold(probs, target, thresholds) == chosen


def test_best_threshold_breaks_ties_towards_one_half_whatever_the_order():
    probs, target = torch.tensor([0.1, 0.9], dtype=torch.float64), torch.tensor([0, 1])
    assert ref.best_threshold(probs, target, torch.tensor([0.8, 0.3, 0.5], dtype=torch.float64)) == 0.5
    assert ref.best_threshold(probs, target, torch.tensor([0.8, 0.3, 0.65], dtype=torch.float64)) == 0.65
    assert ref.best_threshold(probs, target, torch.tensor([0.75, 0.25], dtype=torch.float64)) == 0.25  # equally close


def test_best_threshold_breaks_an_even_tie_on_the_grid_towards_the_smaller_as_lossbench_does():
    """On the grid 0.01..0.99, 0.55 - 0.5 is a hair below 0.5 - 0.45 in floats; the rule still says 0.45."""
    grid = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    for low, high in ((44, 54), (29, 69)):  # 0.45 and 0.55; 0.3 and 0.7
        accuracy = torch.zeros(99, dtype=torch.float64)
        accuracy[[low, high]] = 1.0
        assert ref.closest_to_half(grid[[low, high]]) == grid[low].item()
        assert grid[best_threshold_index(accuracy[None], grid)].item() == grid[low].item()
    probs = torch.tensor([0.1, 0.2, 0.455, 0.545, 0.8, 0.9], dtype=torch.float64)  # best: 0.21-0.45 and 0.55-0.80
    assert ref.best_threshold(probs, torch.tensor([0, 0, 1, 0, 1, 1]), grid) == grid[44].item()
