"""The test cases of each exercise: seeded inputs, the expected answer, and how close is close enough.

Every case is built from a `torch.Generator` seeded with the exercise seed, so a
report is reproducible. Inputs of the value-and-gradient cases are float64, so the
tolerances can be tight (relative 1e-6) and still fair to any correct formula; one
float32 case per loss checks that the answer keeps the input's dtype. Stability
cases put logits of +-1e3 and +-1e4 (mixed signs) into the loss, where a textbook
formula overflows.
"""
from __future__ import annotations

import math
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from lossbench.exercises import references as ref

# Tolerances: a case passes when |actual - expected| <= atol + rtol * |expected| (worst element).
RTOL64, ATOL64 = 1e-6, 1e-9
RTOL32, ATOL32 = 1e-4, 1e-6
GRAD_RTOL, GRAD_ATOL = 1e-6, 1e-12
NUMBER_ATOL = 1e-6  # accuracies and thresholds: float32 arithmetic (a .float().mean()) is fine

# bce_probs at p exactly 0 or 1: the confident mistake's true loss is infinite. Clamping p to
# [eps, 1 - eps] gives -log(eps) per element; PyTorch clamps log at -100. Both are accepted for
# eps <= 1e-6, i.e. a per-element loss between -log(1e-6) = 13.8 and 100.
CLAMP_EPS_MAX = 1e-6
# ...and at least about 1e-15: the cases at p = 0 and 1 are float64, where 1 - eps rounds to 1.0 (and log(1 - p)
# to -inf) for eps below about 6e-17. In float32 the bound would be about 1e-7 (1 - eps is 1.0 below 3e-8).
CLAMP_EPS_MIN = 1e-15
CONFIDENT_MISTAKE_RANGE = (-math.log(CLAMP_EPS_MAX) * (1 - 1e-9), 100.0)  # eps = 1e-6 itself: 1 - (1 - 1e-6) rounds above 1e-6
CONFIDENT_RIGHT_ATOL = 1e-5  # p = y exactly: the loss is 0, or -log(1 - eps) ~ eps with a clamp
SEED_MAX = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit integer


def check_seed(seed: int) -> None:
    """A ValueError unless `seed` is a whole number from 0 to SEED_MAX, the seeds a case generator takes.

    >>> check_seed(2**64)
    Traceback (most recent call last):
    ...
    ValueError: Expected `seed` to be a whole number from 0 to 9223372036854775807 (2**63 - 1), but got 18446744073709551616.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"Expected `seed` to be a whole number from 0 to {SEED_MAX} (2**63 - 1), but got {seed!r}.")


def fresh_seed() -> int:
    """A seed for grading, drawn from the operating system's randomness: 1 to 2**63 - 1, never 0.

    Students self-check with seed 0, and their reports print its expected values; grading draws its
    generated cases from another seed (:func:`lossbench.exercises.grading.grade`, the hidden checks of an
    nbgrader or otter export).

    >>> 0 < fresh_seed() <= SEED_MAX
    True
    """
    return 1 + secrets.randbelow(SEED_MAX)


@dataclass(frozen=True)
class Case:
    """One input to a student's function and the answer it should give."""

    group: str  # what the case probes: "basic", "stability", "probability targets", ...
    inputs: tuple[Any, ...]  # positional arguments, in torch.nn.functional order
    expected: Any  # Tensor for losses and gradients, float for accuracies and thresholds
    summary: str  # one line describing the inputs, for the report
    rtol: float = RTOL64
    atol: float = ATOL64
    grad_of: int | None = None  # index of the input whose gradient is compared, or None
    expected_grad: Tensor | None = None
    accept: tuple[float, float] | None = None  # accept any finite value in [lo, hi] instead of `expected`
    notes: tuple[str, ...] = field(default=())  # extra lines the report shows under the case


def describe(name: str, x: Any) -> str:
    """A short description of one input: shape, dtype and the range or set of its values.

    >>> describe("target", torch.tensor([0, 2, 1]))
    'target (3,) int64 in {0, 1, 2}'
    >>> describe("logits", torch.tensor([[-1e4, 2.5, 0.1, 3.0]], dtype=torch.float64))
    'logits (1, 4) float64 in [-1e+04, 3]'
    >>> describe("threshold", 0.3)
    'threshold 0.3'
    """
    if not isinstance(x, Tensor):
        return f"{name} {x!r}"
    dtype = str(x.dtype).replace("torch.", "")
    shape = "(" + ", ".join(str(s) for s in x.shape) + ("," if x.dim() == 1 else "") + ")"
    values = x.detach().flatten()
    distinct = torch.unique(values)
    if distinct.numel() <= 3:
        body = "{" + ", ".join(f"{v:g}" for v in distinct.tolist()) + "}"
    else:
        body = f"[{values.min().item():.3g}, {values.max().item():.3g}]"
    return f"{name} {shape} {dtype} in {body}"


def _summary(names: tuple[str, ...], inputs: tuple[Any, ...]) -> str:
    return ", ".join(describe(n, x) for n, x in zip(names, inputs))


def _loss_case(
    group: str,
    reference: Callable[..., Tensor],
    names: tuple[str, ...],
    inputs: tuple[Tensor, ...],
    grad: bool = True,
    **extra: Any,
) -> Case:
    """A loss case: expected value and (float64 inputs) expected gradient w.r.t. the first input."""
    first = inputs[0].detach().clone().requires_grad_(grad)
    value = reference(first, *inputs[1:])
    expected_grad = torch.autograd.grad(value, first)[0] if grad else None
    float32 = inputs[0].dtype == torch.float32
    return Case(
        group=group,
        inputs=inputs,
        expected=value.detach(),
        summary=_summary(names, inputs),
        rtol=RTOL32 if float32 else RTOL64,
        atol=ATOL32 if float32 else ATOL64,
        grad_of=0 if grad else None,
        expected_grad=expected_grad,
        **extra,
    )


def _binary(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randint(0, 2, shape, generator=g).double()


def _large(g: torch.Generator, *shape: int) -> Tensor:
    """Logits of size 1e3 and 1e4 with random signs, plus small ones: where naive formulas overflow."""
    magnitudes = torch.tensor([1e4, 1e3, 1e3 + 0.5, 30.0, 0.7], dtype=torch.float64)
    pick = torch.randint(0, len(magnitudes), shape, generator=g)
    signs = torch.randint(0, 2, shape, generator=g).double() * 2 - 1
    return magnitudes[pick] * signs


UNUSED_CLASSES_NOTE = ("the last classes appear in no target: the number of classes is logits.shape[1], "
                       "not target.max() + 1")


def softmax_ce_cases(seed: int = 0) -> list[Case]:
    """Cases for `softmax_ce(logits (N, C), target)`: index targets (some classes unused), probability targets, large logits.

    >>> [c.group for c in softmax_ce_cases()]  # doctest: +NORMALIZE_WHITESPACE
    ['basic', 'basic', 'binary', 'unused classes', 'probability targets', 'probability targets', 'float32',
     'stability', 'stability']
    """
    g = torch.Generator().manual_seed(seed)
    names = ("logits", "target")
    rows = torch.tensor([[1e4, -1e4, 0.5], [-1e3, 1e3 + 1.0, 1e3], [1e4, 1e4, -1e4], [0.3, -1e3, 2.0]])
    cases = [
        _loss_case("basic", ref.softmax_ce, names, (2 * torch.randn(8, 5, generator=g, dtype=torch.float64),
                                                    torch.randint(0, 5, (8,), generator=g))),
        _loss_case("basic", ref.softmax_ce, names, (2 * torch.randn(3, 3, generator=g, dtype=torch.float64),
                                                    torch.tensor([2, 0, 1]))),
        _loss_case("binary", ref.softmax_ce, names, (torch.randn(10, 2, generator=g, dtype=torch.float64),
                                                     torch.randint(0, 2, (10,), generator=g))),
        _loss_case("unused classes", ref.softmax_ce, names, (  # no target is class 3 or 4 (C - 1)
            2 * torch.randn(4, 5, generator=g, dtype=torch.float64), torch.tensor([0, 2, 1, 2])),
            notes=(UNUSED_CLASSES_NOTE,)),
        _loss_case("probability targets", ref.softmax_ce, names, (
            2 * torch.randn(6, 4, generator=g, dtype=torch.float64),
            torch.softmax(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1))),
        _loss_case("probability targets", ref.softmax_ce, names, (  # smoothed labels: 0.9 on one class
            torch.randn(5, 3, generator=g, dtype=torch.float64),
            torch.full((5, 3), 0.05, dtype=torch.float64).scatter_(1, torch.tensor([[0], [2], [1], [1], [0]]), 0.9))),
        _loss_case("float32", ref.softmax_ce, names, (2 * torch.randn(8, 5, generator=g),
                                                      torch.randint(0, 5, (8,), generator=g)), grad=False),
        _loss_case("stability", ref.softmax_ce, names, (rows.double(), torch.tensor([1, 0, 2, 2]))),
        _loss_case("stability", ref.softmax_ce, names, (
            rows.double(), torch.softmax(torch.randn(4, 3, generator=g, dtype=torch.float64), dim=1))),
    ]
    return cases


def bce_cases(seed: int = 0) -> list[Case]:
    """Cases for `bce(logits, target)`: vectors, multi-label matrices, soft targets, large logits, z = 0.

    >>> [c.group for c in bce_cases()]
    ['basic', 'multi-label', 'soft targets', 'float32', 'stability', 'stability', 'logit exactly 0']
    """
    g = torch.Generator().manual_seed(seed)
    names = ("logits", "target")
    confident = torch.tensor([1e4, -1e4, 1e3, -(1e3 + 0.5), 1e4, -1e3], dtype=torch.float64)  # both signs
    right = torch.tensor([0, 0, 0, 0, 1, 1], dtype=torch.bool)  # four confident mistakes, two confident right answers
    order = torch.randperm(10, generator=g)
    z = torch.cat([confident, _large(g, 4)])[order]
    y = torch.cat([((confident > 0) == right).double(), _binary(g, 4)])[order]
    return [
        _loss_case("basic", ref.bce, names, (2 * torch.randn(12, generator=g, dtype=torch.float64), _binary(g, 12))),
        _loss_case("multi-label", ref.bce, names, (2 * torch.randn(6, 4, generator=g, dtype=torch.float64),
                                                   _binary(g, 6, 4))),
        _loss_case("soft targets", ref.bce, names, (torch.randn(8, generator=g, dtype=torch.float64),
                                                    torch.rand(8, generator=g, dtype=torch.float64))),
        _loss_case("float32", ref.bce, names, (2 * torch.randn(10, generator=g), _binary(g, 10).float()), grad=False),
        _loss_case("stability", ref.bce, names, (z, y)),  # where naive forms give inf and NaN
        _loss_case("stability", ref.bce, names, (_large(g, 3, 4), _binary(g, 3, 4))),
        _loss_case("logit exactly 0", ref.bce, names, (torch.tensor([0.0, 0.0, 0.0, 1.5, -2.0], dtype=torch.float64),
                                                      torch.tensor([1.0, 0.0, 0.25, 1.0, 0.0], dtype=torch.float64)),
                   notes=("at z = 0 the gradient is (1/2 - y) / N, sigmoid(0) - y over the N elements",)),
    ]


def bce_probs_cases(seed: int = 0) -> list[Case]:
    """Cases for `bce_probs(probs, target)`: ordinary probabilities, near 0 and 1, exactly 0 and 1.

    >>> [c.accept for c in bce_probs_cases() if c.group == "p exactly 0 or 1"]   # -log(1e-6), less a hair for rounding
    [None, (13.815510544148763, 100.0)]
    """
    g = torch.Generator().manual_seed(seed)
    names = ("probs", "target")
    near = torch.tensor([2e-6, 1e-4, 0.01, 0.99, 1 - 1e-4, 1 - 2e-6], dtype=torch.float64)
    # 8 elements: where every label disagrees, a sum instead of the mean is at least 8 x 13.8 = 110, above the range
    edge = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0], dtype=torch.float64)
    lo, hi = CONFIDENT_MISTAKE_RANGE
    right = _loss_case("p exactly 0 or 1", ref.bce_probs, names, (edge, edge.clone()), grad=False)
    wrong = _loss_case("p exactly 0 or 1", ref.bce_probs, names, (edge, 1 - edge), grad=False)
    return [
        _loss_case("basic", ref.bce_probs, names, (torch.sigmoid(2 * torch.randn(12, generator=g, dtype=torch.float64)),
                                                   _binary(g, 12))),
        _loss_case("multi-label", ref.bce_probs, names, (torch.rand(5, 4, generator=g, dtype=torch.float64) * 0.98 + 0.01,
                                                         _binary(g, 5, 4))),
        _loss_case("soft targets", ref.bce_probs, names, (torch.rand(8, generator=g, dtype=torch.float64) * 0.9 + 0.05,
                                                          torch.rand(8, generator=g, dtype=torch.float64))),
        _loss_case("near 0 and 1", ref.bce_probs, names, (near, torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
                                                                              dtype=torch.float64))),
        _loss_case("float32", ref.bce_probs, names, (torch.rand(10, generator=g) * 0.9 + 0.05, _binary(g, 10).float()),
                   grad=False),
        Case(right.group, right.inputs, right.expected, right.summary + " (every label agrees)",
             atol=CONFIDENT_RIGHT_ATOL,
             notes=(f"p equals the label: the loss is 0 (a clamp to [eps, 1 - eps] adds ~eps; accepted to "
                    f"{CONFIDENT_RIGHT_ATOL:g})",)),
        Case(wrong.group, wrong.inputs, wrong.expected, wrong.summary + " (every label disagrees)",
             accept=(lo, hi),
             notes=(f"the true loss is infinite; accepted: finite, between -log({CLAMP_EPS_MAX:g}) = {lo:.1f} "
                    f"(clamp {CLAMP_EPS_MIN:g} <= eps <= {CLAMP_EPS_MAX:g}; a smaller eps is lost in 1 - eps) and "
                    f"{hi:g} (PyTorch clamps log at -100)",)),
    ]


def mse_cases(seed: int = 0) -> list[Case]:
    """Cases for `mse(logits, target)`: vectors, multi-label matrices, soft targets, large logits.

    >>> [c.grad_of for c in mse_cases()]  # the gradient w.r.t. the logits, except for the float32 case
    [0, 0, 0, None, 0]
    """
    g = torch.Generator().manual_seed(seed)
    names = ("logits", "target")
    return [
        _loss_case("basic", ref.mse, names, (2 * torch.randn(12, generator=g, dtype=torch.float64), _binary(g, 12))),
        _loss_case("multi-label", ref.mse, names, (2 * torch.randn(5, 4, generator=g, dtype=torch.float64),
                                                   _binary(g, 5, 4))),
        _loss_case("soft targets", ref.mse, names, (torch.randn(8, generator=g, dtype=torch.float64),
                                                    torch.rand(8, generator=g, dtype=torch.float64))),
        _loss_case("float32", ref.mse, names, (2 * torch.randn(10, generator=g), _binary(g, 10).float()), grad=False),
        _loss_case("stability", ref.mse, names, (_large(g, 10), _binary(g, 10))),
    ]


def _gradient_case(group: str, logits: Tensor, target: Tensor, *notes: str) -> Case:
    float32 = logits.dtype == torch.float32
    return Case(group=group, inputs=(logits, target), expected=ref.dlogits(logits, target),
                summary=_summary(("logits", "target"), (logits, target)),
                rtol=RTOL32 if float32 else RTOL64, atol=ATOL32 if float32 else ATOL64, notes=notes)


def dlogits_cases(seed: int = 0) -> list[Case]:
    """Cases for `dlogits(logits (N, C), target (N,)) -> (N, C)`: ordinary, square, binary, unused classes, large logits.

    >>> [tuple(c.expected.shape) for c in dlogits_cases()]
    [(8, 5), (3, 3), (6, 2), (4, 5), (8, 5), (4, 3)]
    """
    g = torch.Generator().manual_seed(seed)
    return [
        _gradient_case("basic", 2 * torch.randn(8, 5, generator=g, dtype=torch.float64),
                       torch.randint(0, 5, (8,), generator=g)),
        _gradient_case("basic", 2 * torch.randn(3, 3, generator=g, dtype=torch.float64), torch.tensor([1, 2, 0])),
        _gradient_case("binary", torch.randn(6, 2, generator=g, dtype=torch.float64),
                       torch.randint(0, 2, (6,), generator=g)),
        _gradient_case("unused classes", 2 * torch.randn(4, 5, generator=g, dtype=torch.float64),
                       torch.tensor([0, 2, 1, 2]), UNUSED_CLASSES_NOTE),  # no target is class 3 or 4 (C - 1)
        _gradient_case("float32", 2 * torch.randn(8, 5, generator=g), torch.randint(0, 5, (8,), generator=g)),
        _gradient_case("stability", torch.tensor([[1e4, -1e4, 0.5], [-1e3, 1e3 + 1.0, 1e3], [1e4, 1e4, -1e4],
                                                  [0.3, -1e3, 2.0]], dtype=torch.float64), torch.tensor([1, 0, 2, 2])),
    ]


def _number_case(group: str, names: tuple[str, ...], inputs: tuple[Any, ...], expected: float, **extra: Any) -> Case:
    return Case(group=group, inputs=inputs, expected=float(expected), summary=_summary(names, inputs),
                rtol=0.0, atol=NUMBER_ATOL, **extra)


def accuracy_multi_cases(seed: int = 0) -> list[Case]:
    """Cases for `accuracy_multi(probs (N, K), target (N, K), threshold=0.5) -> float`.

    >>> [len(c.inputs) for c in accuracy_multi_cases()]  # the first case relies on the default threshold
    [2, 3, 3, 3, 3, 3, 3, 3]
    """
    g = torch.Generator().manual_seed(seed)
    names = ("probs", "target", "threshold")

    def case(group: str, probs: Tensor, target: Tensor, *threshold: float) -> Case:
        inputs = (probs, target, *threshold)
        return _number_case(group, names, inputs, ref.accuracy_multi(*inputs))

    probs = torch.rand(8, 4, generator=g, dtype=torch.float64)
    target = (torch.rand(8, 4, generator=g, dtype=torch.float64) < 0.3 + 0.5 * probs).double()
    at_threshold = torch.tensor([[0.5, 0.3, 0.9], [0.3, 0.5, 0.1], [0.5, 0.2, 0.3], [0.7, 0.3, 0.5]],
                                dtype=torch.float64)
    edge_target = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]], dtype=torch.float64)
    return [
        case("default threshold", probs, target),
        case("threshold", probs, target, 0.3),
        case("threshold", probs, target, 0.8),
        case("p equal to the threshold", at_threshold, edge_target, 0.5),
        case("p equal to the threshold", at_threshold, edge_target, 0.3),
        case("integer targets", torch.rand(6, 3, generator=g, dtype=torch.float64),
             torch.randint(0, 2, (6, 3), generator=g), 0.5),
        case("one label", torch.rand(9, 1, generator=g, dtype=torch.float64),
             torch.randint(0, 2, (9, 1), generator=g).double(), 0.5),
        case("float32", torch.rand(7, 5, generator=g), torch.randint(0, 2, (7, 5), generator=g).float(), 0.5),
    ]


def best_threshold_cases(seed: int = 0) -> list[Case]:
    """Cases for `best_threshold(probs (N,), target (N,), thresholds (T,)) -> float`.

    >>> [(c.group, c.expected) for c in best_threshold_cases()]  # doctest: +NORMALIZE_WHITESPACE
    [('basic', 0.45), ('ties', 0.62), ('ties', 0.45), ('far from 0.5', 0.11), ('p equal to a threshold', 0.4),
     ('short list', 0.6)]
    """
    g = torch.Generator().manual_seed(seed)
    names = ("probs", "target", "thresholds")
    grid = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)

    def case(group: str, probs: Tensor, target: Tensor, thresholds: Tensor, *notes: str) -> Case:
        inputs = (probs, target, thresholds)
        return _number_case(group, names, inputs, ref.best_threshold(*inputs), notes=notes)

    # 1. a noisy but informative score: positives score higher on average
    target = torch.randint(0, 2, (40,), generator=g)
    probs = (0.2 + 0.4 * target + 0.25 * torch.randn(40, generator=g, dtype=torch.float64)).clamp(0.0, 1.0)
    # 2. two stretches of thresholds reach the best accuracy, 0.26 to 0.31 and 0.62 to 0.67: 0.62 is the
    #    closest to 0.5 (neither the first nor the last of them)
    tie_target = torch.tensor([0, 0, 1, 0, 1, 1, 0, 1])
    tie_probs = torch.tensor([0.1, 0.2, 0.31, 0.61, 0.67, 0.9, 0.25, 0.8], dtype=torch.float64)
    # 2b. two stretches, 0.21 to 0.45 and 0.55 to 0.80: 0.45 and 0.55 are equally close to 0.5, the smaller wins
    even_target = torch.tensor([0, 0, 1, 0, 1, 1])
    even_probs = torch.tensor([0.1, 0.2, 0.455, 0.545, 0.8, 0.9], dtype=torch.float64)
    # 3. a score squeezed near 0: the best threshold is far from 0.5
    low_target = torch.randint(0, 2, (30,), generator=g)
    low_probs = (0.04 + 0.1 * low_target + 0.02 * torch.randn(30, generator=g, dtype=torch.float64)).clamp(0.0, 1.0)
    # 4. probabilities that sit exactly on candidate thresholds: p >= t decides
    on_grid_target = torch.tensor([1, 0, 1, 1, 0, 0, 1])
    on_grid = grid[torch.tensor([39, 29, 39, 59, 19, 39, 69])]
    # 5. a short list of candidates, not containing 0.5
    short = torch.tensor([0.2, 0.35, 0.6, 0.8], dtype=torch.float64)
    return [
        case("basic", probs, target, grid),
        case("ties", tie_probs, tie_target, grid, "several thresholds reach the best accuracy: the one closest to 0.5 wins"),
        case("ties", even_probs, even_target, grid, "0.45 and 0.55 both reach the best accuracy and are equally close "
             "to 0.5: the smaller wins"),
        case("far from 0.5", low_probs, low_target, grid),
        case("p equal to a threshold", on_grid, on_grid_target, grid, "a probability equal to t counts as positive"),
        case("short list", probs, target, short),
    ]
