"""The exercises: what each asks for, its cases, what it may not call, and the mistakes it recognises.

A hint is only as good as its diagnosis, so each known mistake is written down as the
answer it would produce (the same formula, done wrong the known way). When a student's
answer matches one of them, the report names the mistake: "branches of torch.where
swapped?", "softmax over the wrong axis?", "looks like you passed probabilities where
logits were expected (double sigmoid?)". Mistakes that show as a constant factor
("about 8 times the expected value: sum instead of mean?") are found by the checker for
every exercise, so they are not listed here.

What each exercise forbids is the library's version of the thing it asks for (see
`forbidden.py`); the building blocks stay allowed:

| exercise | forbidden | allowed (examples) |
|---|---|---|
| softmax_ce | cross_entropy, nll_loss, log_softmax in every spelling, torch.distributions.Categorical | logsumexp, softmax, exp, log, gather, one_hot |
| bce, bce_probs | binary_cross_entropy(_with_logits), soft_margin_loss, multilabel_soft_margin_loss | logsigmoid, softplus, sigmoid, log1p, clamp |
| mse | mse_loss, and huber_loss, smooth_l1_loss, l1_loss, gaussian_nll_loss (each the MSE, scaled or of squares) | sigmoid |
| dlogits | cross_entropy, nll_loss, log_softmax, autograd (grad, backward, torch.func) | softmax, one_hot |
| accuracy_multi, best_threshold | lossbench's own threshold code | everything in torch |

The loss exercises also forbid lossbench's own `lossbench.losses` (its hand-written
losses are this lesson's answers), and every exercise forbids the checker's own answers
(`lossbench.exercises.references`, `cases` and this module).

`torch.logsumexp` is allowed for softmax_ce: it is the max-subtraction trick the exercise
teaches, packaged; the notebook writes the trick out and then names the function.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from lossbench.exercises import cases as cs
from lossbench.exercises import forbidden as fb
from lossbench.exercises import references as ref

@dataclass(frozen=True)
class Mistake:
    """A known wrong answer and the hint that names it; `matches(case, actual)` recognises it."""

    hint: str
    matches: Callable[[cs.Case, Any], bool]


def close(actual: Any, expected: Any, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    """True when two answers (tensors or numbers) agree within `atol + rtol * |expected|`, everywhere.

    >>> close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0 + 1e-8]))
    True
    >>> close(0.5, 0.6)
    False
    """
    a = torch.as_tensor(actual, dtype=torch.float64).detach()
    e = torch.as_tensor(expected, dtype=torch.float64).detach()
    if a.shape != e.shape:
        return False
    if not (torch.isfinite(a).all() and torch.isfinite(e).all()):
        return False
    return bool(((a - e).abs() <= atol + rtol * e.abs()).all())


def reproduces(wrong: Callable[..., Any]) -> Callable[[cs.Case, Any], bool]:
    """A matcher: the actual answer equals what `wrong` gives on the case's inputs (and differs from the right one).

    >>> case = cs.Case("basic", (torch.tensor([2.0]), torch.tensor([1.0])), ref.bce(torch.tensor([2.0]),
    ...                torch.tensor([1.0])), "one logit")
    >>> swapped = reproduces(lambda z, y: ref.bce(z, 1 - y))
    >>> swapped(case, ref.bce(torch.tensor([2.0]), torch.tensor([0.0]))), swapped(case, case.expected)
    (True, False)
    """

    def matches(case: cs.Case, actual: Any) -> bool:
        try:
            with torch.no_grad():
                produced = wrong(*case.inputs)
        except Exception:  # a mistake that does not apply to these inputs explains nothing
            return False
        if close(produced, case.expected):  # indistinguishable here: not a diagnosis
            return False
        return close(actual, produced)

    matches.from_inputs = True  # type: ignore[attr-defined]  # a formula of the inputs: see checker.evaluate
    return matches


def in_group(group: str, test: Callable[[cs.Case, Any], bool]) -> Callable[[cs.Case, Any], bool]:
    """A matcher that only fires on cases of one group.

    >>> always = in_group("stability", lambda case, actual: True)
    >>> always(cs.Case("stability", (), 0.0, ""), 1.0), always(cs.Case("basic", (), 0.0, ""), 1.0)
    (True, False)
    """
    return lambda case, actual: case.group == group and test(case, actual)


@dataclass(frozen=True)
class Exercise:
    """One exercise: the function a student writes and everything needed to check it."""

    name: str
    title: str  # one line: what the student writes
    signature: str  # the student's function, in torch.nn.functional argument order
    topic: Literal["losses", "thresholds"]  # which notebook holds it
    output: Literal["scalar", "tensor", "number"]  # a 0-dim tensor, a tensor like the logits, or a float
    make_cases: Callable[[int], list[cs.Case]]
    forbidden: fb.Forbidden
    allowed: str  # the building blocks that stay allowed, for the hint
    mistakes: tuple[Mistake, ...] = ()
    nan_hint: str = ""  # the usual cause of NaN or inf in the answer
    nan_grad_hint: str = ""  # the usual cause of NaN in the gradient when the value is finite
    nan_at_large_inputs: bool = True  # the NaN hints blame an overflow at large inputs (False: they hold anywhere)
    error_hints: tuple[tuple[Callable[[cs.Case, BaseException], bool], str], ...] = ()  # (applies(case, error), hint)
    grad_hint: str = ("the value is right but the gradient is not: something detaches or clamps the logits "
                      "(.detach(), .data, clamp on z?)")  # the usual cause of a right value with a wrong gradient
    group_grad_hints: tuple[tuple[str, str], ...] = ()  # (case group, hint): grad_hint for that group
    ratio_hints: bool = True  # whether "about k times the expected value" makes sense for this answer
    sign_hint: str = "the sign is flipped: a loss is -log p (a positive number), not log p"
    many_numbers_hint: str = "return one number"  # for a number exercise whose answer has several elements
    points: int = 1  # for the nbgrader and otter exports
    notes: tuple[str, ...] = field(default=())  # rules the docs and the report state (ties, thresholds)


# --- the known mistakes, written as the answers they produce ---------------------------------

def _arguments_swapped(reference: Callable[..., Any], call: str) -> Mistake:
    """The mistake of taking the first two arguments in the wrong order: the reference, called with them swapped.

    >>> swapped = _arguments_swapped(ref.bce, "bce(logits, target)")
    >>> case = cs.bce_cases()[0]
    >>> z, y = case.inputs
    >>> swapped.matches(case, ref.bce(y, z)), swapped.hint
    (True, 'arguments swapped? the signature is bce(logits, target)')
    """
    return Mistake(f"arguments swapped? the signature is {call}",
                   reproduces(lambda first, second, *rest: reference(second, first, *rest)))


def _ce_from_log_probs(log_p: Tensor, target: Tensor) -> Tensor:
    """Mean cross-entropy given log-probabilities (N, C) and index (N,) or probability (N, C) targets."""
    if target.dtype in (torch.int64, torch.int32):
        return -log_p.gather(1, target.view(-1, 1)).mean()
    return -(target * log_p).sum(dim=1).mean()


_CLAMP_EPS = (*(10.0 ** -k for k in range(2, 21)), 1e-30, 1e-50, 1e-100, 1e-300, math.exp(-100),
              torch.finfo(torch.float32).eps, torch.finfo(torch.float64).eps,
              torch.finfo(torch.float32).tiny, torch.finfo(torch.float64).tiny)
"""The eps a student clamps a probability with: 1e-2 to 1e-20 and a few smaller powers of ten, e^-100 (PyTorch's
log clamp at -100), and the float types' machine epsilon and smallest normal number."""


def _capped_at_log_eps(case: cs.Case, actual: Any) -> bool:
    """True when a bce answer is the mean of the per-element losses each capped at -log(eps), for an eps of _CLAMP_EPS.

    That is what clamping sigmoid(z) to [eps, 1 - eps] (or log p at log eps) returns: a confident mistake, whose
    loss is |z|, costs -log(eps) instead. The variants (clamp p and 1 - p, add eps inside the log, log1p) differ
    from the capped mean by about eps per element, within the 1e-3 allowed here; half the right loss, or another
    wrong formula, matches no eps.

    >>> case = cs.bce_cases()[4]  # stability
    >>> z, y = case.inputs
    >>> p = torch.sigmoid(z).clamp(1e-7, 1 - 1e-7)
    >>> _capped_at_log_eps(case, -(y * p.log() + (1 - y) * (1 - p).log()).mean())
    True
    >>> _capped_at_log_eps(case, case.expected / 2)
    False
    """
    a = _finite_number(actual)
    if a is None or a < 0:  # a negative loss is a flipped sign, not a cap
        return False
    z, y = case.inputs[:2]
    losses = (F.softplus(z) - y * z).detach().double()  # each element's loss
    for eps in _CLAMP_EPS:
        capped = losses.clamp(max=-math.log(eps)).mean().item()
        if abs(a - capped) <= 1e-3 * capped and not close(capped, case.expected):
            return True
    return False


def _finite_number(actual: Any) -> float | None:
    """The answer as a finite float, or None when it is not one number or not finite."""
    try:
        a = float(actual)
    except (TypeError, ValueError, RuntimeError):
        return None
    return a if math.isfinite(a) else None


def _finite_below(actual: Any, bound: float) -> bool:
    """True when the answer is a finite number below `bound`."""
    a = _finite_number(actual)
    return a is not None and a < bound


def _finite_above(actual: Any, bound: float) -> bool:
    """True when the answer is a finite number above `bound`."""
    a = _finite_number(actual)
    return a is not None and a > bound


def _near_but_not_exact(case: cs.Case, actual: Any) -> bool:
    """True when the answer is within 1% of the expected one but outside the tolerance."""
    try:
        a, e = float(actual), float(case.expected)
    except (TypeError, ValueError, RuntimeError):
        return False
    return math.isfinite(a) and abs(a - e) <= 1e-2 * abs(e) and not close(a, e)


def _slopes_at_zero() -> str:
    """The slopes this torch's autograd gives |z|, z.clamp(min=0) and torch.relu at z = 0, where none has a derivative.

    They are conventions, and one changed: a clamp at its bound passes the gradient in torch 2.13 and
    earlier, and stops it in torch 2.14.

    >>> _slopes_at_zero() in ("|z|: 0; z.clamp(min=0): 1, torch.relu: 0", "|z|: 0; z.clamp(min=0): 0, torch.relu: 0")
    True
    """
    z = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    spellings = {"|z|": torch.abs, "z.clamp(min=0)": lambda t: t.clamp(min=0), "torch.relu": torch.relu}
    slope = {name: torch.autograd.grad(f(z).sum(), z)[0].item() for name, f in spellings.items()}
    return f"|z|: {slope['|z|']:g}; z.clamp(min=0): {slope['z.clamp(min=0)']:g}, torch.relu: {slope['torch.relu']:g}"


def _tied(p: Tensor, y: Tensor, thresholds: Tensor, p_ge: bool) -> Tensor:
    """Every threshold reaching the best accuracy, with p >= t (p_ge) or p > t deciding positives."""
    counts = torch.stack([(((p >= t) if p_ge else (p > t)) == (y != 0)).sum() for t in thresholds])
    return thresholds[counts == counts.max()]


_FIRST_OR_LAST_OF_TIES = (lambda p, y, ts: _tied(p, y, ts, p_ge=True).min().item(),
                          lambda p, y, ts: _tied(p, y, ts, p_ge=True).max().item())
"""Two wrong ways to break a tie: the first tied threshold of the sweep, or the last."""


def _closest_to_half_larger(p: Tensor, y: Tensor, thresholds: Tensor) -> float:
    """The wrong way to break an even tie: of two tied thresholds equally close to 0.5, the larger."""
    tied = _tied(p, y, thresholds, p_ge=True)
    distance = (tied.double() - 0.5).abs().round(decimals=9)
    return float(tied[distance == distance.min()].max())


_INDEX_OR_SHAPE_COMPLAINT = re.compile(r"ind(ex|ices|exing)|LongTensor|int64|size|shape", re.IGNORECASE)
_SIZES_DIFFER = re.compile(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\)")


def _probability_target_refused(case: cs.Case, err: BaseException) -> bool:
    """True when a float (N, C) target meets an error about indices, dtypes or shapes: code for index targets only.

    "Dimension out of range" is not such an error: no code written for index targets was found to raise it on
    (N, C) probability targets (gather and scatter complain about the index's dtype or number of dimensions).

    >>> case = cs.softmax_ce_cases()[4]  # probability targets
    >>> _probability_target_refused(case, RuntimeError("gather(): Expected dtype int32/int64 for index"))
    True
    >>> _probability_target_refused(case, IndexError("Dimension out of range (expected to be in range of [-1, 0], but got 1)"))
    False
    >>> _probability_target_refused(case, RuntimeError("a leaf Variable that requires grad is being used in an "
    ...                                                "in-place operation."))
    False
    """
    target = case.inputs[1]
    return (torch.is_tensor(target) and target.is_floating_point()
            and _INDEX_OR_SHAPE_COMPLAINT.search(str(err)) is not None and not is_in_place_error(err))


def _unused_classes_refused(case: cs.Case, err: BaseException) -> bool:
    """True when index targets that leave the last classes unused meet the error F.one_hot(y) without num_classes
    leads to: its (N, y.max() + 1) result and the (N, C) logits do not broadcast.

    >>> case = [c for c in cs.softmax_ce_cases() if c.group == "unused classes"][0]  # C = 5, y.max() = 2
    >>> _unused_classes_refused(case, RuntimeError("The size of tensor a (5) must match the size of tensor b (3) "
    ...                                            "at non-singleton dimension 1"))
    True
    >>> _unused_classes_refused(case, RuntimeError("Index tensor must have the same number of dimensions as input tensor"))
    False
    """
    logits, target = case.inputs[:2]
    if not (torch.is_tensor(target) and not target.is_floating_point() and target.numel()):
        return False
    sizes = _SIZES_DIFFER.search(str(err))
    return sizes is not None and {int(sizes[1]), int(sizes[2])} == {int(target.max()) + 1, logits.shape[-1]}


def is_in_place_error(err: BaseException) -> bool:
    """True for autograd's complaint about an in-place operation."""
    return "in-place operation" in str(err) or "inplace operation" in str(err)


UNUSED_CLASSES = ("this batch has no example of the last classes: their number is logits.shape[1], not target.max() + 1 "
                  "(F.one_hot(target) guesses the latter; pass num_classes=logits.shape[1])")
DOUBLE_SIGMOID = "looks like you passed probabilities where logits were expected (double sigmoid?)"
WHERE_SWAPPED = "branches of torch.where swapped? y = 1 must give -log p and y = 0 -log(1 - p)"
SOFT_TARGETS = ("targets may lie between 0 and 1 (soft labels): use y * log p + (1 - y) * log(1 - p), "
                "not torch.where(y == 1, ...)")

SOFTMAX_CE = Exercise(
    name="softmax_ce",
    title="mean softmax cross-entropy; target = class indices (int64 (N,)) or class probabilities (float (N, C))",
    signature="softmax_ce(logits, target) -> scalar tensor",
    topic="losses",
    output="scalar",
    make_cases=cs.softmax_ce_cases,
    forbidden=fb.Forbidden(fb.SOFTMAX_CE_FUNCTIONS, fb.SOFTMAX_CE_KERNELS,
                           fb.SOFTMAX_CE_MODULES + fb.LOSSBENCH_LOSSES + fb.LOSSBENCH_ANSWERS),
    allowed="torch.logsumexp, torch.softmax, exp, log, max, gather, F.one_hot",
    mistakes=(
        _arguments_swapped(ref.softmax_ce, "softmax_ce(logits, target)"),
        Mistake("softmax over the wrong axis? normalise over the classes (dim=1): one distribution per row",
                reproduces(lambda z, y: _ce_from_log_probs(z - torch.logsumexp(z, dim=0, keepdim=True), y))),
        Mistake("looks like you passed probabilities where logits were expected (softmax applied twice?)",
                reproduces(lambda z, y: ref.softmax_ce(torch.softmax(z, dim=1), y))),
        Mistake("forgot to normalise: log softmax(z)_c = z_c - logsumexp(z), not z_c",
                reproduces(lambda z, y: _ce_from_log_probs(z, y))),
        Mistake("probability targets treated as hard labels (argmax)? use -sum_c q_c log p_c",
                reproduces(lambda z, q: ref.softmax_ce(z, q.argmax(dim=1)) if q.is_floating_point() else None)),
        Mistake("sum over the classes missing? with probability targets the loss is -sum_c q_c log p_c per row",
                reproduces(lambda z, q: (-(q * torch.log_softmax(z, 1))).mean() if q.is_floating_point() else None)),
    ),
    nan_hint="inf/NaN at large logits: subtract the max before exp (log-sum-exp trick), "
             "log softmax(z) = z - max - log(sum(exp(z - max)))",
    nan_grad_hint="NaN in the gradient at large logits: subtract the row max before exp",
    error_hints=((_probability_target_refused,
                  "the target may also hold class probabilities (float (N, C)): then loss = -mean_n sum_c q_nc log p_nc"),
                 (_unused_classes_refused, UNUSED_CLASSES)),
)

BCE = Exercise(
    name="bce",
    title="mean binary cross-entropy from logits over all elements, stable at any finite logit; "
          "targets in [0, 1] (soft labels allowed)",
    signature="bce(logits, target) -> scalar tensor",
    topic="losses",
    output="scalar",
    make_cases=cs.bce_cases,
    forbidden=fb.Forbidden(fb.BCE_FUNCTIONS, fb.BCE_KERNELS, fb.LOSSBENCH_LOSSES + fb.LOSSBENCH_ANSWERS),
    allowed="F.logsigmoid, F.softplus, torch.sigmoid, log1p, exp, abs, clamp, torch.where",
    mistakes=(
        _arguments_swapped(ref.bce, "bce(logits, target)"),
        Mistake(WHERE_SWAPPED, reproduces(lambda z, y: ref.bce(z, 1 - y))),
        Mistake(DOUBLE_SIGMOID, reproduces(lambda z, y: ref.bce(torch.sigmoid(z), y))),
        Mistake(SOFT_TARGETS, in_group("soft targets", reproduces(
            lambda z, y: ref.bce(z, (y >= 0.5).to(z.dtype))))),
        Mistake(SOFT_TARGETS, in_group("soft targets", reproduces(
            lambda z, y: ref.bce(z, (y == 1).to(z.dtype))))),
        Mistake("too small at large logits: clamping the probability caps each loss at -log(eps); "
                "compute from the logits with log-sigmoid or softplus",
                in_group("stability", _capped_at_log_eps)),
    ),
    nan_hint="NaN/inf at large logits: use log-sigmoid (F.logsigmoid), or compute F.softplus(z) - y z",
    nan_grad_hint="NaN in the gradient at large logits: usually a step with an infinite gradient there (the log of a "
                  "sigmoid that rounds to exactly 0 or 1, or an exp that overflows to inf) whose gradient is then "
                  "multiplied by 0, as torch.where does in the branch it does not take: 0 * inf is NaN, however "
                  "right the value; use F.logsigmoid or F.softplus, whose gradients stay finite",
    group_grad_hints=(("logit exactly 0", "right value, wrong gradient at z = 0: max(z, 0) and |z| have no derivative "
                                          f"there and autograd picks one ({_slopes_at_zero()}), "
                                          "so the gradient is 1 - y or -y instead of 1/2 - y (use F.softplus(z) - y z "
                                          "or F.logsigmoid); or the soft target 0.25 is taken as a 0 by "
                                          "torch.where(y == 1, ...), which gives the same value at z = 0"),),
)


BCE_PROBS = Exercise(
    name="bce_probs",
    title="mean binary cross-entropy from probabilities over all elements; finite at p = 0 and p = 1",
    signature="bce_probs(probs, target) -> scalar tensor",
    topic="losses",
    output="scalar",
    make_cases=cs.bce_probs_cases,
    forbidden=fb.Forbidden(fb.BCE_FUNCTIONS, fb.BCE_KERNELS, fb.LOSSBENCH_LOSSES + fb.LOSSBENCH_ANSWERS),
    allowed="torch.log, log1p, clamp, torch.where",
    mistakes=(
        Mistake(WHERE_SWAPPED, reproduces(lambda p, y: ref.bce_probs(p, 1 - y))),
        Mistake("applied sigmoid to probabilities? here the input is already a probability",
                reproduces(lambda p, y: ref.bce(p, y))),
        Mistake(SOFT_TARGETS, in_group("soft targets", reproduces(
            lambda p, y: ref.bce_probs(p, (y >= 0.5).to(p.dtype))))),
        Mistake(SOFT_TARGETS, in_group("soft targets", reproduces(
            lambda p, y: ref.bce_probs(p, (y == 1).to(p.dtype))))),
        Mistake("close but not exact near p = 0 or 1: log(p + eps) shifts every value; "
                f"clamp p to [eps, 1 - eps] with eps <= {cs.CLAMP_EPS_MAX:g} instead (or clamp the log at -100)",
                in_group("near 0 and 1", _near_but_not_exact)),
        Mistake(f"below the smallest accepted loss, {cs.CONFIDENT_MISTAKE_RANGE[0]:.1f}: eps too large? clamping p "
                f"to [eps, 1 - eps] caps each loss at -log(eps); use eps <= {cs.CLAMP_EPS_MAX:g}",
                lambda case, actual: case.accept is not None and _finite_below(actual, case.accept[0])),
        Mistake(f"above the largest accepted loss, {cs.CONFIDENT_MISTAKE_RANGE[1]:g}: a sum instead of a mean (this is "
                "the number of elements times a loss in the range)? or the log is clamped below -100 (or p and 1 - p "
                "to an eps below e^-100); clamp the log at -100, as PyTorch does",
                lambda case, actual: case.accept is not None and _finite_above(actual, case.accept[1])
                and _finite_number(actual) / case.inputs[0].numel() >= case.accept[0]),
        Mistake(f"above the largest accepted loss, {cs.CONFIDENT_MISTAKE_RANGE[1]:g}: the log is clamped below -100 "
                "(or p and 1 - p to an eps below e^-100); clamp the log at -100, as PyTorch does",
                lambda case, actual: case.accept is not None and _finite_above(actual, case.accept[1])),
    ),
    nan_hint=f"log(0) at p = 0 or 1: clamp p to [eps, 1 - eps] with {cs.CLAMP_EPS_MIN:g} <= eps <= "
             f"{cs.CLAMP_EPS_MAX:g} (or clamp the log at -100, as PyTorch does); with a smaller eps, 1 - eps "
             "rounds to 1.0 in these float64 inputs (in float32, eps must be at least about 1e-7)",
    nan_grad_hint="NaN in the gradient: the log's gradient 1/p is infinite at p = 0; clamp p first",
    nan_at_large_inputs=False,  # log(0) at p = 0 or 1: probabilities are never large
    grad_hint="the value is right but the gradient is not: log(p + eps) has the gradient 1/(p + eps), not 1/p, "
              f"at every p; clamp p to [eps, 1 - eps] with eps <= {cs.CLAMP_EPS_MAX:g} instead (exact in between)",
)

MSE = Exercise(
    name="mse",
    title="mean squared error between sigmoid(logits) and the target, over all elements "
          "(lossbench's MSE is on probabilities)",
    signature="mse(logits, target) -> scalar tensor",
    topic="losses",
    output="scalar",
    make_cases=cs.mse_cases,
    forbidden=fb.Forbidden(fb.MSE_FUNCTIONS, fb.MSE_KERNELS, fb.LOSSBENCH_LOSSES + fb.LOSSBENCH_ANSWERS),
    allowed="torch.sigmoid, pow, mean",
    mistakes=(
        _arguments_swapped(ref.mse, "mse(logits, target)"),
        Mistake("forgot the sigmoid? lossbench's MSE compares sigmoid(logits) with the target",
                reproduces(lambda z, y: ((z - y) ** 2).mean())),
        Mistake(DOUBLE_SIGMOID, reproduces(lambda z, y: ref.mse(torch.sigmoid(z), y))),
        Mistake("that is the root of the mean squared error (RMSE): drop the sqrt",
                reproduces(lambda z, y: ref.mse(z, y).sqrt())),
        Mistake("absolute instead of squared error?",
                reproduces(lambda z, y: (torch.sigmoid(z) - y).abs().mean())),
    ),
    nan_hint="NaN/inf at large logits: exp(z) / (1 + exp(z)) is inf / inf there; use torch.sigmoid",
    sign_hint="the sign is flipped: a squared error is never negative",
    nan_grad_hint="NaN in the gradient at large logits: 1 / (1 + exp(-z)) overflows in the backward pass; "
                  "use torch.sigmoid",
)

DLOGITS = Exercise(
    name="dlogits",
    title="the gradient of the MEAN softmax cross-entropy w.r.t. the logits, by hand: (softmax(z) - onehot(y)) / N",
    signature="dlogits(logits, target) -> tensor (N, C)",
    topic="losses",
    output="tensor",
    make_cases=cs.dlogits_cases,
    forbidden=fb.Forbidden(fb.SOFTMAX_CE_FUNCTIONS + fb.AUTOGRAD_FUNCTIONS,
                           fb.SOFTMAX_CE_KERNELS + fb.AUTOGRAD_KERNELS, fb.LOSSBENCH_LOSSES + fb.LOSSBENCH_ANSWERS),
    allowed="torch.softmax, exp, max, F.one_hot, scatter",
    mistakes=(
        Mistake("softmax over the wrong axis? normalise over the classes (dim=1)",
                reproduces(lambda z, y: (torch.softmax(z, dim=0) - F.one_hot(y, z.shape[1]).to(z.dtype)) / len(z))),
        Mistake("sigmoid instead of softmax? the classes compete: softmax over each row",
                reproduces(lambda z, y: (torch.sigmoid(z) - F.one_hot(y, z.shape[1]).to(z.dtype)) / len(z))),
        Mistake("looks like you passed probabilities where logits were expected (softmax applied twice?)",
                reproduces(lambda z, y: ref.dlogits(torch.softmax(z, dim=1), y))),
        Mistake("that is softmax(z) without the one-hot: subtract onehot(y)",
                reproduces(lambda z, y: torch.softmax(z, dim=1) / len(z))),
    ),
    nan_hint="NaN at large logits: subtract the row max before exp (softmax(z) = softmax(z - max z))",
    error_hints=((_unused_classes_refused, UNUSED_CLASSES),),
    sign_hint="the sign is flipped: the gradient is softmax(z) - onehot(y), not onehot(y) - softmax(z)",
)

ACCURACY_MULTI = Exercise(
    name="accuracy_multi",
    title="Hamming (per-label) accuracy of probs >= threshold against a multi-hot target, as a float",
    signature="accuracy_multi(probs, target, threshold=0.5) -> float",
    topic="thresholds",
    output="number",
    make_cases=cs.accuracy_multi_cases,
    forbidden=fb.Forbidden(modules=fb.LOSSBENCH_THRESHOLDS + fb.LOSSBENCH_ANSWERS),
    allowed="everything in torch",
    mistakes=(
        _arguments_swapped(ref.accuracy_multi, "accuracy_multi(probs, target, threshold=0.5)"),
        Mistake("that is exact-match accuracy (every label of a row right); the exercise asks for "
                "per-label (Hamming) accuracy: average over all N x K labels",
                reproduces(lambda p, y, t=0.5: ((p >= t) == (y != 0)).all(dim=1).double().mean().item())),
        Mistake("probabilities equal to the threshold count as positive: use p >= threshold, not p > threshold",
                reproduces(lambda p, y, t=0.5: ((p > t) == (y != 0)).double().mean().item())),
        Mistake("predictions inverted: branches of torch.where swapped? (p >= threshold means positive)",
                reproduces(lambda p, y, t=0.5: ((p < t) == (y != 0)).double().mean().item())),
        Mistake("the threshold argument seems ignored (this is the accuracy at 0.5)",
                reproduces(lambda p, y, t=0.5: ref.accuracy_multi(p, y, 0.5))),
        Mistake("a percentage? return a fraction between 0 and 1",
                reproduces(lambda p, y, t=0.5: 100 * ref.accuracy_multi(p, y, t))),
    ),
    many_numbers_hint="average over every element (all rows and all labels) to get one number",
    notes=("a probability equal to the threshold counts as positive (p >= threshold)",),
)

BEST_THRESHOLD = Exercise(
    name="best_threshold",
    title="the threshold (from the candidates given) that maximises accuracy of probs >= t; ties go to the one closest to 0.5",
    signature="best_threshold(probs, target, thresholds) -> float",
    topic="thresholds",
    output="number",
    make_cases=cs.best_threshold_cases,
    forbidden=fb.Forbidden(modules=fb.LOSSBENCH_THRESHOLDS + fb.LOSSBENCH_ANSWERS),
    allowed="everything in torch",
    mistakes=(
        _arguments_swapped(ref.best_threshold, "best_threshold(probs, target, thresholds)"),
        Mistake("several thresholds reach the best accuracy: ties go to the one closest to 0.5, not the first or the last",
                lambda case, actual: any(reproduces(first_or_last)(case, actual) for first_or_last in _FIRST_OR_LAST_OF_TIES)),
        Mistake("of two thresholds equally close to 0.5, the smaller wins; compare the "
                "distances |t - 0.5| rounded (e.g. to 9 decimals), since float rounding makes one a hair shorter",
                reproduces(_closest_to_half_larger)),
        Mistake("probabilities equal to the threshold count as positive: use p >= t, not p > t",
                reproduces(lambda p, y, ts: ref.closest_to_half(_tied(p, y, ts, p_ge=False)))),
        Mistake("predictions inverted (branches of torch.where swapped?): p >= t means positive",
                reproduces(lambda p, y, ts: ref.best_threshold(p, 1 - y, ts))),
        Mistake("returned the best accuracy, not the threshold that reaches it",
                reproduces(lambda p, y, ts: max(((p >= t) == (y != 0)).double().mean().item() for t in ts))),
        Mistake("returned the index of the best threshold: return thresholds[index]",
                reproduces(lambda p, y, ts: float(torch.nonzero(ts == ref.best_threshold(p, y, ts))[0, 0]))),
        Mistake("returned 0.5, the default: sweep the candidates and keep the one with the best accuracy",
                lambda case, actual: close(actual, 0.5) and not close(case.expected, 0.5)),
    ),
    ratio_hints=False,
    many_numbers_hint="return one threshold: of those tied at the best accuracy, the closest to 0.5 (of two equally "
                      "close, the smaller), as a float",
    notes=("a probability equal to the threshold counts as positive (p >= t)",
           "ties: of the thresholds that reach the best accuracy, the one closest to 0.5 (as lossbench "
           "chooses); of two equally close, the smaller"),
)


EXERCISES: dict[str, Exercise] = {
    ex.name: ex for ex in (SOFTMAX_CE, BCE, BCE_PROBS, MSE, DLOGITS, ACCURACY_MULTI, BEST_THRESHOLD)
}


def get_exercise(name: str) -> Exercise:
    """The exercise called `name`, or a ValueError listing the valid names.

    >>> get_exercise("bce").signature
    'bce(logits, target) -> scalar tensor'
    >>> get_exercise("bcee")
    Traceback (most recent call last):
    ...
    ValueError: Expected `name` to be one of 'softmax_ce', 'bce', 'bce_probs', 'mse', 'dlogits', 'accuracy_multi', 'best_threshold', but got 'bcee'. List them with `lossbench exercises list`.
    """
    if name not in EXERCISES:
        valid = ", ".join(repr(n) for n in EXERCISES)
        raise ValueError(f"Expected `name` to be one of {valid}, but got {name!r}. "
                         "List them with `lossbench exercises list`.")
    return EXERCISES[name]
