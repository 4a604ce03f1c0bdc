"""Run a student's function on an exercise's cases and say, case by case, what is right and what is not.

For each case the checker:

1. calls the function on fresh copies of the inputs (float64 logits that require grad),
   while `forbidden.CallRecorder` listens for the library's version of the answer;
2. compares the inputs with the case's own copies (a function that changes its caller's
   tensors in place fails the case), checks the answer's type, shape and dtype, and flags NaN or inf;
3. compares the value with the reference: passes when
   |actual - expected| <= atol + rtol * |expected| at the worst element;
4. for losses, takes `torch.autograd.grad` of the student's loss and compares it with the
   reference's gradient the same way (the gradient is what training uses);
5. picks one hint from the symptom: a known mistake the answer reproduces, a constant
   factor (sum instead of mean), NaN at large logits, a detached gradient, ...; where a
   wrong value fits several, the one that most of the failing cases fit.

`report` prints the table and never raises for anything the function does; `check`
raises `ExerciseFailed` (an AssertionError) carrying the table; `score` is the fraction
of cases passed.
"""
from __future__ import annotations

import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, TextIO

import torch
from torch import Tensor

from lossbench.exercises.cases import ATOL32, ATOL64, GRAD_ATOL, GRAD_RTOL, NUMBER_ATOL, RTOL32, RTOL64, Case, check_seed
from lossbench.exercises.catalog import Exercise, close, get_exercise, is_in_place_error
from lossbench.exercises.forbidden import CallRecorder

Status = Literal["pass", "fail", "error", "not attempted", "library"]

_LABELS = {"pass": "pass", "fail": "FAIL", "error": "ERROR", "not attempted": "not attempted", "library": "LIBRARY"}


@dataclass
class CaseResult:
    """What happened on one case: the numbers, the problems found and the hint."""

    number: int
    group: str
    summary: str  # the inputs, one line
    status: Status
    expected: str  # formatted for the table
    actual: str
    abs_err: float | None = None
    rel_err: float | None = None
    grad_err: float | None = None  # relative error of the gradient, for loss exercises
    problems: list[str] = field(default_factory=list)
    hint: str | None = None
    nonfinite: bool = False  # NaN or inf in the answer or its gradient
    notes: tuple[str, ...] = ()
    explanations: list[str] = field(default_factory=list)  # every hint the wrong value fits, best first

    @property
    def passed(self) -> bool:
        """True when the case passed."""
        return self.status == "pass"


class ExerciseFailed(AssertionError):
    """Raised by `check` when a case fails; `str(err)` is the full report."""

    def __init__(self, name: str, results: list[CaseResult], text: str) -> None:
        super().__init__(text)
        self.name, self.results, self.report = name, results, text


# --- 1. running one case -------------------------------------------------------------------------

def _fresh_inputs(case: Case) -> tuple[Any, ...]:
    """Copies of the case's inputs (so in-place edits cannot corrupt the case), grad enabled where compared."""
    inputs = [x.detach().clone() if isinstance(x, Tensor) else x for x in case.inputs]
    if case.grad_of is not None:
        inputs[case.grad_of].requires_grad_(True)
    return tuple(inputs)


IN_PLACE_HINT = ("in-place operation on an input or on a tensor autograd needs: write x = x - m, not x -= m "
                 "(nor x.clamp_(...), x[...] = ...)")


CHANGED_INPUT_HINT = ("leave the inputs as they are: x = x - m makes a new tensor, x -= m (or x.sub_(...), "
                      "x[...] = ...) overwrites the caller's")


def argument_names(ex: Exercise) -> list[str]:
    """The names of the student's arguments, from the exercise's signature.

    >>> argument_names(get_exercise("accuracy_multi"))
    ['probs', 'target', 'threshold']
    """
    inside = ex.signature.split("(", 1)[1].split(")", 1)[0]
    return [part.split("=")[0].strip() for part in inside.split(",")]


def changed_inputs(ex: Exercise, case: Case, inputs: tuple[Any, ...]) -> list[str]:
    """The names of the tensor inputs whose values, shape or dtype differ from the case's own (untouched) ones.

    >>> ex = get_exercise("accuracy_multi")
    >>> case = ex.make_cases(0)[1]
    >>> inputs = _fresh_inputs(case)
    >>> _ = inputs[0].sub_(0.3)  # probs.sub_(threshold): the caller's probabilities are gone
    >>> changed_inputs(ex, case, inputs)
    ['probs']
    """
    names = argument_names(ex)
    changed = []
    for number, (before, after) in enumerate(zip(case.inputs, inputs)):
        if not isinstance(before, Tensor):
            continue
        after = after.detach()
        same = (before.shape == after.shape and before.dtype == after.dtype
                and bool(((before == after) | (before.isnan() & after.isnan())).all()))
        if not same:
            changed.append(names[number] if number < len(names) else f"argument {number + 1}")
    return changed


def _error_hint(ex: Exercise, case: Case, err: BaseException) -> str | None:
    """The hint for an exception: the usual causes of the usual messages."""
    message = str(err)
    if is_in_place_error(err):
        return IN_PLACE_HINT
    for applies, hint in ex.error_hints:
        if applies(case, err):
            return hint
    if "numpy" in message and "requires grad" in message:
        return "stay in torch (no .numpy()): the checker needs the gradient"
    if isinstance(err, TypeError) and ("argument" in message or "positional" in message):
        return f"check the signature: {ex.signature}"
    if "dtype" in message or ("Float" in message and "Double" in message):
        return "mixed dtypes: build new tensors with the input's dtype (torch.zeros_like, x.new_tensor, dtype=x.dtype)"
    return None


def _library_problem(recorder: CallRecorder) -> str:
    return "calls " + ", ".join(recorder.readable) + ": the library's version of what this exercise asks you to write"


def _as_float_tensor(value: Any) -> Tensor | None:
    """The answer as a float64 tensor for comparison, or None when it is not numeric."""
    try:
        return torch.as_tensor(value.detach() if isinstance(value, Tensor) else value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def _errors(actual: Tensor, expected: Tensor) -> tuple[float, float]:
    """Worst absolute error and the same relative to the largest expected magnitude."""
    abs_err = (actual - expected).abs().max().item()
    scale = expected.abs().max().item()
    if scale > 0:
        return abs_err, abs_err / scale
    return abs_err, (0.0 if abs_err == 0 else math.inf)


def _within(actual: Tensor, expected: Tensor, rtol: float, atol: float) -> bool:
    return bool(torch.isfinite(actual).all()) and bool(((actual - expected).abs() <= atol + rtol * expected.abs()).all())


MAX_FACTOR = 1000  # the largest whole factor a hint names ("about k times", "about 1/k")


def ratio_hint(ex: Exercise, actual: Tensor, expected: Tensor) -> str | None:
    """A hint when the answer is the expected one times a constant: sum for mean, a sign, a log base.

    A factor is named only when it is a small whole number (at most MAX_FACTOR, the sizes of the
    cases): any huge ratio is within rounding of some whole number, and says nothing.

    >>> from lossbench.exercises.catalog import get_exercise
    >>> ratio_hint(get_exercise("bce"), torch.tensor(8 * 0.7), torch.tensor(0.7))
    'about 8 times the expected value: sum instead of mean?'
    >>> print(ratio_hint(get_exercise("bce"), torch.tensor(0.7e-27), torch.tensor(0.7)))
    None
    """
    a, e = actual.flatten(), expected.flatten()
    if a.shape != e.shape or not torch.isfinite(a).all() or not e.abs().max() > 0:
        return None
    r = (a @ e / (e @ e)).item()  # least-squares factor: actual ~ r * expected
    if not close(a, r * e) or abs(r - 1) <= 1e-6:
        return None
    k = round(r) if abs(r) <= MAX_FACTOR + 1 else 0
    if 2 <= k <= MAX_FACTOR and abs(r - k) <= 1e-6 * k:
        return f"about {k} times the expected value: sum instead of mean?"
    if abs(r + 1) <= 1e-6:
        return ex.sign_hint
    if r > 1 / (MAX_FACTOR + 1):
        k = round(1 / r)
        if 2 <= k <= MAX_FACTOR and abs(1 / r - k) <= 1e-6 * k:
            return f"about 1/{k} of the expected value: divided by {k} once too often?"
    for base, name in ((10.0, "log10"), (2.0, "log2")):
        if abs(r * math.log(base) - 1) <= 1e-6:
            return f"{name} instead of the natural log? use torch.log"
    if a.numel() > 1:  # for one number any ratio "fits"; for a tensor a common factor is a finding
        return f"off by a constant factor: {r:.6g} times the expected value"
    return None


def _format_value(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, Tensor):
        if value.dim() == 0:
            return f"{value.item():.10g}"
        return "tensor (" + ", ".join(str(s) for s in value.shape) + ("," if value.dim() == 1 else "") + ")"
    if isinstance(value, (int, float)):
        return f"{value:.10g}"
    return type(value).__name__


def run_case(ex: Exercise, case: Case, fn: Callable[..., Any], number: int = 1) -> CaseResult:
    """Run `fn` on one case and judge the answer; never raises for anything `fn` does.

    >>> ex = get_exercise("mse")
    >>> stability = ex.make_cases(0)[-1]
    >>> result = run_case(ex, stability, lambda z, y: ((1 / (1 + torch.exp(-z)) - y) ** 2).mean())
    >>> result.status, result.abs_err, result.problems
    ('fail', 0.0, ['NaN/inf in the gradient'])
    >>> result.hint
    'NaN in the gradient at large logits: 1 / (1 + exp(-z)) overflows in the backward pass; use torch.sigmoid'
    """
    expected_text = (f"in [{case.accept[0]:.3g}, {case.accept[1]:.3g}]" if case.accept
                     else _format_value(case.expected))
    result = CaseResult(number, case.group, case.summary, "fail", expected_text, "-", notes=case.notes)
    inputs = _fresh_inputs(case)
    recorder = CallRecorder(ex.forbidden)
    try:
        with recorder:
            out = fn(*inputs)
    except NotImplementedError:
        result.status = "not attempted"
        return result
    except (Exception, SystemExit) as err:
        first_line = (str(err).strip().splitlines() or [""])[0][:200]
        if recorder.calls:  # the library was called before the error: that is the finding
            result.status = "library"
            result.problems.append(_library_problem(recorder))
            result.hint = f"write it from building blocks ({ex.allowed})"
        else:
            result.status = "error"
            result.hint = _error_hint(ex, case, err)
        result.problems.append(f"raised {type(err).__name__}: {first_line}")
        return result
    result.actual = _format_value(out)

    # 2. the inputs untouched; type, shape, dtype
    hints: list[str] = []
    value_ok = grad_ok = True
    changed = changed_inputs(ex, case, inputs)
    for name in changed:
        result.problems.append(f"changed its input `{name}` in place: the caller's tensor no longer holds what "
                               "it passed")
    if changed:
        hints.append(CHANGED_INPUT_HINT)
    if recorder.calls:
        result.status = "library"
        result.problems.append(_library_problem(recorder))
    if out is None:
        result.problems.append("returned None")
        result.hint = "returned None: forgot `return`?"
        return result
    actual = _as_float_tensor(out)
    expected = _as_float_tensor(case.expected)
    if actual is None:
        result.problems.append(f"returned a {type(out).__name__}, not a number or tensor")
        result.hint = f"return {ex.signature.split('-> ')[1]}"
        return result
    if ex.output == "scalar":
        if not isinstance(out, Tensor):
            value_ok = False
            result.problems.append(f"returned a Python {type(out).__name__}, expected a scalar tensor")
            hints.append("return the tensor itself (no .item() or float()): the gradient must flow through it")
        elif out.shape != ():
            value_ok = False
            result.problems.append(f"expected a scalar tensor (shape ()), got shape {tuple(out.shape)}")
            if out.numel() > 1 and close(actual.mean(), expected):
                hints.append("each element's loss looks right: take the mean over all elements with .mean()")
            else:
                hints.append("reduce to one number with .mean() over all elements")
            actual = actual.reshape(-1)[:1].reshape(()) if out.numel() == 1 else None
    elif ex.output == "tensor":
        if not isinstance(out, Tensor) or out.shape != case.expected.shape:
            value_ok = False
            shape = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            result.problems.append(f"expected shape {tuple(case.expected.shape)}, got {shape}")
            hints.append("one gradient per logit: the answer has the logits' shape (N, C)")
            actual = None
    else:  # a number
        if actual.numel() != 1:
            value_ok = False
            result.problems.append(f"expected a single number, got a tensor of shape {tuple(actual.shape)}")
            hints.append(ex.many_numbers_hint)
            actual = None
        else:
            actual = actual.reshape(())
    if isinstance(out, Tensor) and isinstance(case.expected, Tensor) and out.dtype != case.expected.dtype:
        value_ok = False
        result.problems.append(f"dtype {str(out.dtype).replace('torch.', '')}, expected "
                               f"{str(case.expected.dtype).replace('torch.', '')} (the input's)")
        hints.append("keep the input's dtype: torch.tensor(...) and torch.zeros(...) make float32 unless you pass "
                     "dtype=; use zeros_like, x.new_tensor or dtype=x.dtype")

    # 3. the value
    if actual is not None:
        finite = bool(torch.isfinite(actual).all())
        if not finite:
            value_ok = False
            result.nonfinite = True
            kinds = [k for k, bad in (("NaN", torch.isnan(actual).any()), ("inf", torch.isinf(actual).any())) if bad]
            result.problems.append(" and ".join(kinds) + " in the answer")
            hints.insert(0, _nan_hint(ex, ex.nan_hint, case, "in the answer"))
        if case.accept is not None:
            if not (finite and case.accept[0] <= actual.item() <= case.accept[1]):
                value_ok = False
                if finite:
                    result.explanations = _value_hints(ex, case, out, actual, expected)
        else:
            result.abs_err, result.rel_err = _errors(actual, expected)
            if not _within(actual, expected, case.rtol, case.atol):
                value_ok = False
                if finite:
                    result.explanations = _value_hints(ex, case, out, actual, expected)
        hints += result.explanations[:1]

    # 4. the gradient
    if case.expected_grad is not None and isinstance(out, Tensor) and out.numel() == 1:
        grad_ok, grad_hint = _check_gradient(ex, case, inputs, out, result)
        if grad_hint and value_ok:
            hints.append(grad_hint)
    elif case.expected_grad is not None:
        grad_ok = False

    # 5. the verdict; the hint is the first found, except that a library call outranks everything
    if result.status == "library":  # the value may well be right: the library is the reason
        result.hint = f"write it from building blocks ({ex.allowed})"
        return result
    result.status = "pass" if value_ok and grad_ok and not result.problems else "fail"
    hints = [h for h in hints if h]
    result.hint = hints[0] if hints else None
    return result


def _value_hints(ex: Exercise, case: Case, out: Any, actual: Tensor, expected: Tensor) -> list[str]:
    """Every hint a finite but wrong value fits: the known mistakes it reproduces, in the catalog's order, then a
    constant factor. One case can fit a mistake by coincidence (an accuracy takes few values);
    `_prefer_explanations_shared_by_cases` picks among them."""
    answer = out.detach() if isinstance(out, Tensor) else out
    fits = []
    for mistake in ex.mistakes:
        try:
            if mistake.matches(case, answer) and mistake.hint not in fits:
                fits.append(mistake.hint)
        except Exception:  # a matcher must never break the report
            continue
    if ex.ratio_hints and case.accept is None:  # against one end of an accepted range a ratio means nothing
        factor = ratio_hint(ex, actual, expected)
        if factor is not None and factor not in fits:
            fits.append(factor)
    return fits


def _check_gradient(ex: Exercise, case: Case, inputs: tuple[Any, ...], out: Tensor,
                    result: CaseResult) -> tuple[bool, str | None]:
    """Compare autograd of the student's loss with the reference gradient; returns (ok, hint)."""
    x = inputs[case.grad_of]
    if not out.requires_grad:
        result.problems.append("no gradient reaches the input")
        return False, "the loss is cut off from the logits: .detach(), .item(), .numpy(), .data or torch.no_grad inside?"
    try:
        (grad,) = torch.autograd.grad(out.reshape(()), x, allow_unused=True)
    except Exception as err:  # the student's graph may fail in backward
        message = str(err)
        result.problems.append(f"backward raised {type(err).__name__}: {message.splitlines()[0][:200]}")
        return False, IN_PLACE_HINT if is_in_place_error(err) else None
    if grad is None:
        result.problems.append("no gradient reaches the input")
        return False, "the loss does not depend on the logits through autograd (.detach() or a new tensor?)"
    grad = grad.detach().to(torch.float64)
    reference = case.expected_grad.to(torch.float64)
    if not torch.isfinite(grad).all():
        result.nonfinite = True
        result.grad_err = math.nan
        result.problems.append("NaN/inf in the gradient")
        return False, _nan_hint(ex, ex.nan_grad_hint, case, "in the gradient")
    abs_err, rel_err = _errors(grad, reference)
    result.grad_err = rel_err
    if bool(((grad - reference).abs() <= GRAD_ATOL + GRAD_RTOL * reference.abs().max()).all()):
        return True, None
    result.problems.append("the gradient differs from the reference's")
    return False, dict(ex.group_grad_hints).get(case.group, ex.grad_hint)


MODERATE = 15.0  # inputs within +-15: no exp, sigmoid or log of a sigmoid overflows or rounds to 0 or 1, even in float32


def _nan_hint(ex: Exercise, specific: str, case: Case, where: str) -> str:
    """The hint for NaN/inf output. The exercise's own, where it blames an overflow at large inputs
    (``ex.nan_at_large_inputs``), only where an input is large; on moderate inputs nothing overflows,
    and the hint says to look elsewhere.

    >>> from lossbench.exercises.catalog import get_exercise
    >>> small = Case("basic", (torch.tensor([-4.4, 5.7]), torch.tensor([0.0, 1.0])), torch.tensor(0.1), "")
    >>> _nan_hint(get_exercise("bce"), "NaN/inf at large logits: use log-sigmoid", small, "in the answer")
    'NaN/inf in the answer on moderate inputs (all within +-15): not an overflow; look for a 0 / 0, a log of 0 or of a negative number, or a NaN written in'
    """
    if specific and not ex.nan_at_large_inputs:  # a hint about another cause (log(0) at p = 0) holds anywhere
        return specific
    sizes = [x.detach().abs().max().item() for x in case.inputs if isinstance(x, Tensor) and x.is_floating_point() and x.numel()]
    if max(sizes, default=0.0) < MODERATE:
        return (f"NaN/inf {where} on moderate inputs (all within +-{MODERATE:g}): not an overflow; look for a 0 / 0, a "
                "log of 0 or of a negative number, or a NaN written in")
    return specific or f"NaN/inf {where}"


def evaluate(name: str, fn: Callable[..., Any], seed: int = 0) -> list[CaseResult]:
    """Run `fn` on every case of exercise `name`; one `CaseResult` per case, never raises for `fn`'s faults.

    >>> import torch
    >>> results = evaluate("mse", lambda z, y: ((torch.sigmoid(z) - y) ** 2).mean())
    >>> [r.status for r in results]
    ['pass', 'pass', 'pass', 'pass', 'pass']
    """
    ex = get_exercise(name)
    if not callable(fn):
        raise ValueError(f"Expected `fn` to be a function {ex.signature}, but got {type(fn).__name__}. "
                         f"Pass the function itself, e.g. report({name!r}, {name}).")
    check_seed(seed)
    results = []
    for number, case in enumerate(ex.make_cases(seed), start=1):
        results.append(run_case(ex, case, fn, number))
    _prefer_explanations_shared_by_cases(results)
    _same_answer_for_every_case(ex, results)
    return results


def _prefer_explanations_shared_by_cases(results: list[CaseResult]) -> None:
    """Where a wrong value fits several hints, give the one that the most failing cases fit (of equals, the first).

    A function that ignores the threshold gives, on a case where p > t happens to count the same labels,
    the number that "p > t instead of p >= t" would give: the cases together say which mistake it is.
    """
    failing = [r for r in results if not r.passed]
    support = Counter(hint for r in failing for hint in r.explanations)
    for r in failing:
        if r.explanations and r.hint == r.explanations[0]:  # the value's hint, not one about a dtype or an input
            r.hint = max(r.explanations, key=lambda hint: support[hint])


CONSTANT_HINT = "the same answer, {actual}, for every case whatever the inputs: is it computed from them?"


def _same_answer_for_every_case(ex: Exercise, results: list[CaseResult]) -> None:
    """A function that gives one answer whatever its inputs (``return 0.0``) matches a known wrong formula only
    where that formula happens to give the same number (exact-match accuracy is often 0): its failing cases
    are told that the answer never changes, instead of a mistake it did not make."""
    if len(results) < 3 or len({r.actual for r in results}) != 1 or any(r.status not in ("pass", "fail") for r in results):
        return  # an error, a library call or a stub is told so, case by case
    formulas = {m.hint for m in ex.mistakes if getattr(m.matches, "from_inputs", False)}
    for r in results:
        if r.status == "fail" and (r.hint is None or r.hint in formulas):
            r.hint = CONSTANT_HINT.format(actual=r.actual)


# --- 2. the table --------------------------------------------------------------------------------

def _num(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.1e}" if math.isfinite(x) else str(x)


def format_report(name: str, results: list[CaseResult]) -> str:
    """The report as text: a header, one row per case with its input, problems and hint, and a total.

    >>> text = format_report("mse", evaluate("mse", lambda z, y: ((torch.sigmoid(z) - y) ** 2).mean()))
    >>> print(text.splitlines()[-1])
    mse: 5 of 5 cases pass
    """
    ex = get_exercise(name)
    if ex.output == "number":
        tolerance = f"|actual - expected| <= {NUMBER_ATOL:g}"
    else:
        tolerance = (f"|actual - expected| <= {ATOL64:g} + {RTOL64:g} |expected| (float32 cases: {ATOL32:g} + "
                     f"{RTOL32:g} |expected|)")
    if ex.output == "scalar":
        tolerance += f"; gradient: |g - g_ref| <= {GRAD_ATOL:g} + {GRAD_RTOL:g} max|g_ref|"
    lines = [f"{ex.name}: {ex.title}", f"  write: {ex.signature}", f"  pass: {tolerance}"]
    lines += [f"  rule: {note}" for note in ex.notes]
    width = max([len("group")] + [len(r.group) for r in results])
    header = f"{'case':>4}  {'group':<{width}} {'expected':>16} {'actual':>16} {'abs err':>8} {'rel err':>8} " \
             f"{'grad err':>8}  result"
    lines += ["", header]
    for r in results:
        lines.append(f"{r.number:>4}  {r.group:<{width}} {r.expected:>16} {r.actual:>16} {_num(r.abs_err):>8} "
                     f"{_num(r.rel_err):>8} {_num(r.grad_err):>8}  {_LABELS[r.status]}")
        lines.append(f"{'':6}input: {r.summary}")
        lines += [f"{'':6}note: {note}" for note in r.notes if not r.passed]
        lines += [f"{'':6}problem: {p}" for p in r.problems]
        if r.hint:
            lines.append(f"{'':6}hint: {r.hint}")
    passed = sum(r.passed for r in results)
    lines.append("")
    if results and all(r.status == "not attempted" for r in results):
        lines.append(f"{name}: not attempted (the function raises NotImplementedError): write it and run again")
    else:
        lines.append(f"{name}: {passed} of {len(results)} cases pass")
    return "\n".join(lines)


def report(name: str, fn: Callable[..., Any], seed: int = 0, file: TextIO | None = None) -> None:
    """Print the table of cases for `fn` on exercise `name`; raises only for an unknown name or a non-function.

    >>> def bce(logits, target):
    ...     raise NotImplementedError
    >>> report("bce", bce)  # doctest: +ELLIPSIS
    bce: mean binary cross-entropy from logits ...
    ...
       1  basic ...  not attempted
    ...
    bce: not attempted (the function raises NotImplementedError): write it and run again
    """
    text = format_report(name, evaluate(name, fn, seed))
    print(text, file=file if file is not None else sys.stdout)


def check(name: str, fn: Callable[..., Any], seed: int = 0) -> None:
    """Return None when `fn` passes every case of exercise `name`; else raise `ExerciseFailed` with the report.

    >>> import torch
    >>> check("mse", lambda z, y: ((torch.sigmoid(z) - y) ** 2).mean())
    >>> check("mse", lambda z, y: ((torch.sigmoid(z) - y) ** 2).sum())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    lossbench.exercises.checker.ExerciseFailed: mse: ...
    ...
          hint: about 12 times the expected value: sum instead of mean?
    ...
    mse: 0 of 5 cases pass
    """
    results = evaluate(name, fn, seed)
    if not all(r.passed for r in results):
        raise ExerciseFailed(name, results, format_report(name, results))


def score(name: str, fn: Callable[..., Any], seed: int = 0) -> float:
    """The fraction of the cases of exercise `name` that `fn` passes, between 0 and 1.

    >>> score("mse", lambda z, y: ((torch.sigmoid(z) - y) ** 2).mean())
    1.0
    """
    results = evaluate(name, fn, seed)
    return sum(r.passed for r in results) / len(results)
