"""The checker's finer rules: its tolerances and the wording of its problems, hints and report."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lossbench.exercises import evaluate, format_report, score
from lossbench.exercises import EXERCISES, references
from lossbench.exercises import cases as cs
from lossbench.exercises.checker import _errors
from lossbench.losses import mse as _lossbench_mse
from lossbench.losses import softmax_ce as _lossbench_softmax_ce
from lossbench.losses import stable as _lossbench_stable


def bce_right(z, y):
    return (F.softplus(z) - y * z).mean()


def mse_right(z, y):
    return ((torch.sigmoid(z) - y) ** 2).mean()


def ce_right(z, y):
    log_p = z - torch.logsumexp(z, dim=1, keepdim=True)
    q = F.one_hot(y, z.shape[1]).to(z.dtype) if y.dtype == torch.int64 else y
    return -(q * log_p).sum(dim=1).mean()


def dlogits_right(z, y):
    return (torch.softmax(z, dim=1) - F.one_hot(y, z.shape[1]).to(z.dtype)) / len(z)


def accuracy_right(p, y, threshold=0.5):
    return ((p >= threshold) == y.bool()).double().mean().item()


def by_group(results):
    return {r.group: r for r in results}


# --- tolerances -----------------------------------------------------------------------------------

def test_numbers_are_compared_to_1e_6_absolute_not_relative():
    # an accuracy 1e-4 off is one label in 10 000: wrong, whatever the size of the accuracy
    assert score("accuracy_multi", lambda p, y, t=0.5: accuracy_right(p, y, t) + 1e-4) == 0.0
    assert score("accuracy_multi", lambda p, y, t=0.5: accuracy_right(p, y, t) + 5e-7) == 1.0


def test_a_float64_loss_off_by_a_relative_1e_5_fails_and_a_float32_one_passes():
    def off(z, y):  # the value off by a relative 1e-5; the gradient exact
        loss = mse_right(z, y)
        return loss + 1e-5 * loss.detach()

    results = evaluate("mse", off)
    assert [r.group for r in results if r.passed] == ["float32"]
    assert all(r.problems == [] and r.rel_err == pytest.approx(1e-5) for r in results if r.group != "float32")


def test_a_float32_loss_off_by_a_relative_1e_3_fails():
    results = by_group(evaluate("mse", lambda z, y: mse_right(z, y) * (1 + 1e-3)))
    assert not results["float32"].passed and results["float32"].rel_err == pytest.approx(1e-3, rel=1e-3)


def test_a_gradient_off_by_a_relative_1e_5_fails_though_the_value_is_exact():
    def steeper(z, y):  # value exact; gradient (1 + 1e-5) times the reference's
        loss = bce_right(z, y)
        return loss + 1e-5 * (loss - loss.detach())

    basic = evaluate("bce", steeper)[0]
    assert basic.abs_err == 0.0 and not basic.passed
    assert basic.problems == ["the gradient differs from the reference's"]
    assert basic.grad_err == pytest.approx(1e-5, rel=1e-3)


def test_errors_are_the_worst_absolute_one_and_that_over_the_largest_expected_magnitude():
    def t(*values):
        return torch.tensor(values, dtype=torch.float64)

    assert _errors(t(1.0, 3.5), t(1.0, -2.0)) == (5.5, 2.75)
    assert _errors(t(0.0, 0.0), t(0.0, 0.0)) == (0.0, 0.0)
    assert _errors(t(0.0, 1e-3), t(0.0, 0.0)) == (1e-3, math.inf)  # any error on an expected 0 is infinitely relative


def test_the_report_fills_rel_err_and_grad_err_as_relative_errors():
    (basic, *_) = evaluate("mse", lambda z, y: 3 * mse_right(z, y))
    assert basic.rel_err == pytest.approx(2.0) and basic.grad_err == pytest.approx(2.0)
    assert basic.abs_err == pytest.approx(2 * mse_right(*cs.mse_cases(0)[0].inputs).item())


def test_above_the_accepted_range_at_p_exactly_0_or_1_fails():
    # the range's top is PyTorch's log clamp at -100; clamping the log at -200 gives 200 per element
    def log_clamp_200(p, y):
        return -(y * torch.log(p).clamp(min=-200) + (1 - y) * torch.log(1 - p).clamp(min=-200)).mean()

    failed = [r for r in evaluate("bce_probs", log_clamp_200) if not r.passed]
    assert [r.summary.endswith("(every label disagrees)") for r in failed] == [True]
    assert failed[0].actual == "200" and failed[0].expected == "in [13.8, 100]"


# --- what the answer looks like -------------------------------------------------------------------

def test_a_loss_of_shape_1_is_compared_and_its_gradient_taken():
    basic = evaluate("mse", lambda z, y: mse_right(z, y).reshape(1))[0]
    assert basic.problems == ["expected a scalar tensor (shape ()), got shape (1,)"]
    assert basic.abs_err == 0.0 and basic.grad_err is not None and basic.grad_err < 1e-12


def test_a_transposed_gradient_is_a_shape_problem():
    basic = evaluate("dlogits", lambda z, y: dlogits_right(z, y).T)[0]
    assert basic.problems == ["expected shape (8, 5), got (5, 8)"] and basic.abs_err is None
    assert basic.hint == "one gradient per logit: the answer has the logits' shape (N, C)"


def test_an_empty_tensor_is_not_a_number():
    results = evaluate("accuracy_multi", lambda p, y, t=0.5: p.new_zeros(0))
    assert all(r.problems == ["expected a single number, got a tensor of shape (0,)"] for r in results)


def test_a_string_is_told_what_to_return():
    assert evaluate("mse", lambda z, y: "0.5")[0].hint == "return scalar tensor"
    (first, *_) = evaluate("accuracy_multi", lambda p, y, t=0.5: "0.5")
    assert first.problems == ["returned a str, not a number or tensor"] and first.hint == "return float"


def test_an_in_place_unsqueeze_or_dtype_change_of_an_input_is_a_changed_input():
    # the values still compare equal (broadcast, or 0 and 1 in float32): the shape and the dtype must be checked
    def unsqueezes(p, y, threshold=0.5):
        p.unsqueeze_(0)
        return accuracy_right(p[0], y, threshold)

    def recasts(z, y):
        y.data = y.data.float()
        return mse_right(z, y.double())

    assert all("changed its input `probs` in place" in r.problems[0] for r in evaluate("accuracy_multi", unsqueezes))
    mse = [r for r in evaluate("mse", recasts) if r.group != "float32"]
    assert all("changed its input `target` in place" in r.problems[0] and not r.passed for r in mse)


def test_an_infinite_answer_is_reported_as_inf():
    def where_no_clamp(p, y):  # -log(0) where every label disagrees: inf, not NaN
        return -torch.where(y == 1, torch.log(p), torch.log(1 - p)).mean()

    (disagrees,) = [r for r in evaluate("bce_probs", where_no_clamp) if r.summary.endswith("disagrees)")]
    assert disagrees.problems == ["inf in the answer"] and disagrees.nonfinite
    assert disagrees.hint.startswith("log(0) at p = 0 or 1")


def test_nan_outranks_a_dtype_problem_in_the_hint():
    def naive_float32(z, y):  # NaN at large logits, and float32 for float64 inputs
        p = torch.sigmoid(z.float())
        return -(y.float() * torch.log(p) + (1 - y.float()) * torch.log(1 - p)).mean()

    stability = [r for r in evaluate("bce", naive_float32) if r.group == "stability"]
    assert all("dtype float32, expected float64 (the input's)" in r.problems for r in stability)
    assert all(r.hint.startswith("NaN/inf at large logits: use log-sigmoid") for r in stability)


def test_the_nan_hints_of_the_sigmoid_name_the_forms_that_give_the_nan():
    """exp(z) / (1 + exp(z)) is NaN at large z; 1 / (1 + exp(-z)) is finite, only its gradient is NaN."""
    over_inf = [r for r in evaluate("mse", lambda z, y: ((torch.exp(z) / (1 + torch.exp(z)) - y) ** 2).mean()) if "NaN in the answer" in r.problems]
    assert over_inf and all(r.hint.startswith("NaN/inf at large logits: exp(z) / (1 + exp(z)) is inf / inf") for r in over_inf)
    finite = [r for r in evaluate("mse", lambda z, y: ((1 / (1 + torch.exp(-z)) - y) ** 2).mean()) if r.status == "fail"]
    assert finite and all(r.problems == ["NaN/inf in the gradient"] and "in the backward pass" in r.hint for r in finite)
    z = torch.tensor([-1000.0, 1000.0], dtype=torch.float64, requires_grad=True)
    assert torch.isnan(torch.exp(z) / (1 + torch.exp(z)))[1] and torch.isfinite(1 / (1 + torch.exp(-z))).all()
    def patched_log(z, y):  # the right value (the stable form where the naive one is not finite), not its gradient
        p = torch.sigmoid(z)
        naive = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
        return torch.where(torch.isfinite(naive), naive, F.softplus(z) - y * z).mean()

    logged = [r for r in evaluate("bce", patched_log) if "NaN/inf in the gradient" in r.problems and "NaN in the answer" not in r.problems]
    assert logged and all(r.hint.startswith("NaN in the gradient at large logits:") and "sigmoid that rounds to exactly 0 or 1" in r.hint for r in logged)
    assert torch.sigmoid(torch.tensor(-800.0, dtype=torch.float64)) == 0 and torch.sigmoid(torch.tensor(40.0, dtype=torch.float64)) == 1


# --- hints ----------------------------------------------------------------------------------------

def test_log2_is_named():
    assert evaluate("bce", lambda z, y: bce_right(z, y) / math.log(2))[0].hint == \
        "log2 instead of the natural log? use torch.log"


def test_a_scalar_off_by_an_odd_factor_gets_no_factor_hint():
    # any ratio "fits" one number: only a tensor answer gets "off by a constant factor"
    (basic, *_) = evaluate("bce", lambda z, y: bce_right(z, y) * 12.05)
    assert basic.hint is None and not basic.passed


def test_a_threshold_twice_the_expected_one_is_no_sum_instead_of_mean():
    # best_threshold turns ratio hints off: 0.9 for 0.45 says nothing about sums
    hints = [r.hint for r in evaluate("best_threshold", lambda p, y, t: 0.9) if not r.passed]
    assert hints and not any("times the expected value" in (h or "") for h in hints), hints


def test_a_long_error_message_is_cut_at_200_characters():
    def raises(z, y):
        raise ValueError("x" * 300 + "\nsecond line")

    assert evaluate("mse", raises)[0].problems == ["raised ValueError: " + "x" * 200]


def test_a_numpy_round_trip_is_told_to_stay_in_torch():
    results = evaluate("mse", lambda z, y: mse_right(torch.from_numpy(z.numpy()), y))
    assert results[0].status == "error"
    assert results[0].hint == "stay in torch (no .numpy()): the checker needs the gradient"


def test_mixed_float_and_double_is_named_even_without_the_word_dtype():
    def einsum_float32(z, y):  # torch.ones makes float32: "expected scalar type Double but found Float"
        return torch.einsum("n,n->", (torch.sigmoid(z) - y) ** 2, torch.ones(len(z))) / len(z)

    basic = evaluate("mse", einsum_float32)[0]
    assert "Double" in basic.problems[0] and "dtype" not in basic.problems[0]
    assert basic.hint.startswith("mixed dtypes: build new tensors with the input's dtype")


def test_only_a_type_error_points_to_the_signature():
    def raises(z, y):
        raise ValueError("bad argument: logits")

    assert evaluate("bce", raises)[0].hint is None


def test_a_loss_built_on_a_new_tensor_is_told_it_does_not_depend_on_the_logits():
    result = evaluate("mse", lambda z, y: torch.zeros((), dtype=z.dtype, requires_grad=True) + mse_right(z.detach(), y))[0]
    assert result.abs_err == 0.0 and result.problems == ["no gradient reaches the input"]
    assert result.hint == "the loss does not depend on the logits through autograd (.detach() or a new tensor?)"


def test_half_a_bce_is_a_factor_not_a_capped_loss():
    # "too small at large logits" is for the stability cases only; elsewhere a half is a half
    results = by_group(evaluate("bce", lambda z, y: 0.5 * bce_right(z, y)))
    assert results["basic"].hint == "about 1/2 of the expected value: divided by 2 once too often?"


def test_a_missing_sum_over_the_classes_is_named():
    def mean_over_classes(z, y):
        q = F.one_hot(y, z.shape[1]).to(z.dtype) if y.dtype == torch.int64 else y
        return -(q * (z - torch.logsumexp(z, dim=1, keepdim=True))).mean()

    failed = [r for r in evaluate("softmax_ce", mean_over_classes) if not r.passed and r.group != "stability"]
    assert any(r.hint.startswith("sum over the classes missing?") for r in failed), [r.hint for r in failed]


def test_softmax_without_the_one_hot_is_named():
    basic = evaluate("dlogits", lambda z, y: torch.softmax(z, dim=1) / len(z))[0]
    assert basic.hint == "that is softmax(z) without the one-hot: subtract onehot(y)"


def test_a_negative_squared_error_gets_the_mse_sign_hint():
    assert evaluate("mse", lambda z, y: -mse_right(z, y))[0].hint == \
        "the sign is flipped: a squared error is never negative"


def test_a_size_error_where_every_class_is_used_does_not_blame_unused_classes():
    def too_narrow(z, y):
        return (z[:, :-1] - z).mean()  # a size mismatch on every case

    square = evaluate("softmax_ce", too_narrow)[1]  # (3, 3) logits, targets 2, 0, 1: every class used
    assert square.status == "error" and "must match the size" in square.problems[0]
    assert square.hint is None or "num_classes" not in square.hint


def test_every_case_names_a_missing_normalisation_with_index_or_probability_targets():
    def unnormalised(z, y):  # z_c where log softmax(z)_c was meant
        q = F.one_hot(y, z.shape[1]).to(z.dtype) if y.dtype == torch.int64 else y
        return -(q * z).sum(dim=1).mean()

    hints = [r.hint for r in evaluate("softmax_ce", unnormalised)]
    assert len(hints) == 9 and all(h.startswith("forgot to normalise") for h in hints), hints


def test_every_case_of_more_than_one_label_names_exact_match_accuracy():
    def exact_match(p, y, threshold=0.5):
        return ((p >= threshold) == y.bool()).all(dim=1).double().mean().item()

    failed = [r for r in evaluate("accuracy_multi", exact_match) if not r.passed]
    assert len(failed) == 7 and all(r.hint.startswith("that is exact-match accuracy") for r in failed)


@pytest.mark.parametrize("name, fn", [
    pytest.param("accuracy_multi", lambda p, y, threshold=0.5: 0.0, id="accuracy_multi"),
    pytest.param("best_threshold", lambda p, y, thresholds: 0.0, id="best_threshold"),
])
def test_an_answer_that_never_changes_is_told_so_rather_than_a_formula_it_matches_by_chance(name, fn):
    # exact-match accuracy is 0 on most accuracy_multi cases: `return 0.0` was told "that is exact-match accuracy"
    results = evaluate(name, fn)
    assert {r.hint for r in results if not r.passed} == {
        "the same answer, 0, for every case whatever the inputs: is it computed from them?"}


def test_a_constant_answer_keeps_a_hint_about_that_constant():
    results = evaluate("best_threshold", lambda p, y, thresholds: 0.5)
    assert {r.hint for r in results if not r.passed} == {
        "returned 0.5, the default: sweep the candidates and keep the one with the best accuracy"}


def test_close_refuses_an_infinite_expected_value():
    # |1 - inf| <= atol + rtol * inf holds: without the finiteness check any number would be "close" to inf
    from lossbench.exercises.catalog import close

    assert not close(1.0, math.inf) and not close(torch.tensor([1.0, 2.0]), torch.tensor([1.0, -math.inf]))


@pytest.mark.parametrize("name, fn", [
    pytest.param("dlogits", lambda z, y: (_lossbench_stable.log_softmax(z, 1).exp() - F.one_hot(y, z.shape[1]).to(z.dtype))
                 / len(z), id="dlogits"),
    pytest.param("softmax_ce", lambda z, y: _lossbench_softmax_ce.cross_entropy(z, y), id="softmax_ce"),
    pytest.param("mse", lambda z, y: _lossbench_mse.mse(z, y), id="mse"),
])
def test_lossbench_s_own_losses_are_the_library_for_every_loss(name, fn):
    # lossbench.losses holds the lesson's own answers: every loss exercise forbids it, not only bce
    first = evaluate(name, fn)[0]
    assert first.status == "library" and any("lossbench.losses" in p for p in first.problems), first.problems


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_the_checker_s_own_reference_answer_is_the_library_for_every_exercise(name):
    # lossbench.exercises.references ships with the package, its docstring says "reference answers to the
    # exercises": calling it must not pass, whichever exercise it is
    answer = getattr(references, name)
    results = evaluate(name, lambda *args: answer(*args))
    assert {r.status for r in results} == {"library"}, [(r.status, r.problems) for r in results]
    assert all(any(f"lossbench.exercises.references.{name}" in p for p in r.problems) for r in results)


def test_the_checker_s_cases_are_the_library_too():
    def expected_from_the_cases(z, y):  # the expected value of the case whose inputs these are
        for case in cs.bce_cases():
            if torch.equal(case.inputs[0], z) and torch.equal(case.inputs[1], y):
                return case.expected.clone()
        return torch.zeros(())

    first = evaluate("bce", expected_from_the_cases)[0]
    assert first.status == "library" and any("lossbench.exercises.cases.bce_cases" in p for p in first.problems), first.problems


# --- the report -----------------------------------------------------------------------------------

def test_the_pass_line_says_which_tolerance_applies():
    def pass_line(name, fn):
        return next(line for line in format_report(name, evaluate(name, fn)).splitlines() if line.startswith("  pass:"))

    assert pass_line("accuracy_multi", accuracy_right) == "  pass: |actual - expected| <= 1e-06"
    assert pass_line("dlogits", dlogits_right) == ("  pass: |actual - expected| <= 1e-09 + 1e-06 |expected| "
                                                   "(float32 cases: 1e-06 + 0.0001 |expected|)")
    assert pass_line("mse", mse_right).endswith("; gradient: |g - g_ref| <= 1e-12 + 1e-06 max|g_ref|")


def test_the_report_states_the_exercise_rules_and_the_notes_of_failed_cases_only():
    text = format_report("best_threshold", evaluate("best_threshold", lambda p, y, t: 0.5))
    assert "  rule: a probability equal to the threshold counts as positive (p >= t)" in text.splitlines()
    note = "      note: the last classes appear in no target"
    assert not any(line.startswith(note) for line in format_report("softmax_ce", evaluate("softmax_ce", ce_right)).splitlines())
    wrong = format_report("softmax_ce", evaluate("softmax_ce", lambda z, y: 2 * ce_right(z, y)))
    assert sum(line.startswith(note) for line in wrong.splitlines()) == 1


def test_a_row_shows_ten_significant_digits_and_errors_to_two():
    (basic, *_) = evaluate("mse", lambda z, y: 3 * mse_right(z, y))
    value = mse_right(*cs.mse_cases(0)[0].inputs).item()
    assert basic.expected == f"{value:.10g}" == "0.4566602305"
    row = format_report("mse", [basic]).splitlines()[5]
    assert row.split()[4:8] == [f"{2 * value:.1e}", "2.0e+00", "2.0e+00", "FAIL"]


def test_a_partly_written_function_is_scored_not_called_not_attempted():
    def index_targets_only(z, y):
        if y.is_floating_point():
            raise NotImplementedError
        return ce_right(z, y)

    results = evaluate("softmax_ce", index_targets_only)
    last = format_report("softmax_ce", results).splitlines()[-1]
    assert last == f"softmax_ce: {sum(r.passed for r in results)} of 9 cases pass"
    assert {r.status for r in results} == {"pass", "not attempted"}
