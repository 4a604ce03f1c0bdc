"""Binary cross-entropy on logits: handwritten equals torch's, stays finite at any logit; the naive form breaks."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from lossbench.losses.bce import (
    binary_cross_entropy_naive,
    binary_cross_entropy_reference,
    binary_cross_entropy_with_logits,
    grad_wrt_logit,
    loss_of_probability,
)

from .helpers import value_and_grad

F64 = torch.float64


def _inputs(shape: tuple[int, ...], soft: bool, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    output = 3 * torch.randn(shape, generator=g, dtype=F64)
    target = torch.rand(shape, generator=g, dtype=F64) if soft else torch.randint(0, 2, shape, generator=g).to(F64)
    return output, target


def _pos_weight(kind: str, shape: tuple[int, ...]):
    """pos_weight as torch takes it: none, a float, a 0-dim tensor, or one value per output column."""
    return {
        "none": None,
        "float": 3.0,
        "0dim": torch.tensor(0.4, dtype=F64),
        "column": torch.linspace(0.5, 4.0, shape[-1], dtype=F64),
    }[kind]


SHAPES = {"N": (7,), "N,K": (6, 4), "N,K,d": (3, 4, 2)}
CASES = [
    pytest.param(shape, soft, pw, weighted, reduction, id=f"{name}-{'soft' if soft else 'hard'}-pw_{pw}-{'w' if weighted else 'nw'}-{reduction}")
    for (name, shape), soft, pw, weighted, reduction in itertools.product(
        SHAPES.items(), (False, True), ("none", "float", "0dim", "column"), (False, True), ("mean", "sum", "none")
    )
]


@pytest.mark.parametrize("shape, soft, pw, weighted, reduction", CASES)
def test_handwritten_equals_torch_on_value_and_gradient(shape, soft, pw, weighted, reduction):
    output, target = _inputs(shape, soft)
    pos_weight = _pos_weight(pw, shape)
    weight = torch.linspace(0.1, 2.0, shape[-1], dtype=F64) if weighted else None
    got, got_grad = value_and_grad(
        binary_cross_entropy_with_logits, output, target, pos_weight=pos_weight, weight=weight, reduction=reduction
    )
    torch_pos_weight = torch.tensor(pos_weight, dtype=F64) if isinstance(pos_weight, float) else pos_weight
    want, want_grad = value_and_grad(
        F.binary_cross_entropy_with_logits, output, target, pos_weight=torch_pos_weight, weight=weight, reduction=reduction
    )
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-10, rtol=0)


def test_reference_accepts_a_float_pos_weight_and_weight():
    output, target = _inputs((5, 3), soft=False)
    got = binary_cross_entropy_reference(output, target, pos_weight=2.0, weight=0.5)
    want = F.binary_cross_entropy_with_logits(
        output, target, pos_weight=torch.tensor(2.0, dtype=F64), weight=torch.tensor(0.5, dtype=F64)
    )
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("pw", ["none", "column"])
def test_gradcheck(soft, pw):
    output, target = _inputs((5, 3), soft)
    pos_weight = _pos_weight(pw, (5, 3))
    z = output.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: binary_cross_entropy_with_logits(z, target, pos_weight=pos_weight), (z,))


def test_gradcheck_at_exactly_zero_logit():
    # log-sigmoid has no kink at 0: the gradient there is sigmoid(0) - y = 0.5 - y
    z = torch.zeros(4, dtype=F64, requires_grad=True)
    target = torch.tensor([0.0, 1.0, 0.3, 1.0], dtype=F64)
    assert torch.autograd.gradcheck(lambda z: binary_cross_entropy_with_logits(z, target), (z,))
    _, grad = value_and_grad(binary_cross_entropy_with_logits, z, target, reduction="sum")
    torch.testing.assert_close(grad, 0.5 - target)


def _extreme(dtype: torch.dtype, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Huge logits of both signs, each with both labels: confident right answers and confident mistakes."""
    output = torch.tensor([scale, scale, -scale, -scale, 0.0], dtype=dtype)
    return output, torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scale", [1e3, 1e4, 1e30])
@pytest.mark.parametrize("pw", ["none", "float"])
def test_extreme_logits_handwritten_is_finite_and_equals_torch(dtype, scale, pw):
    output, target = _extreme(dtype, scale)
    pos_weight = _pos_weight(pw, (5,))
    got, got_grad = value_and_grad(binary_cross_entropy_with_logits, output, target, pos_weight=pos_weight, reduction="none")
    torch_pw = None if pos_weight is None else torch.tensor(pos_weight, dtype=dtype)
    want, want_grad = value_and_grad(F.binary_cross_entropy_with_logits, output, target, pos_weight=torch_pw, reduction="none")
    assert torch.isfinite(got).all() and torch.isfinite(got_grad).all()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scale", [1e4, -1e4])
def test_gradient_at_1e4_is_exactly_sigmoid_minus_y(dtype, scale):
    output = torch.full((4,), scale, dtype=dtype)
    target = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=dtype)
    value, grad = value_and_grad(binary_cross_entropy_with_logits, output, target)  # mean over 4
    expected_p = 1.0 if scale > 0 else 0.0
    torch.testing.assert_close(grad, (expected_p - target) / 4, atol=0, rtol=0)
    # the two confident mistakes cost |z| each, the right answers 0: mean = 2 * 1e4 / 4
    assert value.item() == pytest.approx(abs(scale) / 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_naive_bce_is_inf_at_large_logits_which_is_why_we_use_logsigmoid(dtype, scale):
    output, target = _extreme(dtype, scale)
    # sigmoid(1e3) is exactly 1.0 and sigmoid(-1e3) exactly 0.0, so a confident mistake is -log(0) = inf;
    # log-sigmoid gets the same numbers without ever forming p.
    assert torch.isinf(binary_cross_entropy_naive(output, target))
    z = output.clone().requires_grad_(True)
    binary_cross_entropy_naive(z, target).backward()
    assert not torch.isfinite(z.grad).all()
    assert torch.isfinite(binary_cross_entropy_with_logits(output, target))


def test_naive_bce_already_breaks_at_logit_17_in_float32():
    # float32 rounds sigmoid(17) = 1 - 4e-8 to 1.0, so the confident mistake's loss is inf, not 17
    z, y = torch.tensor([17.0]), torch.tensor([0.0])
    assert torch.isinf(binary_cross_entropy_naive(z, y))
    assert binary_cross_entropy_with_logits(z, y).item() == pytest.approx(17.0, rel=1e-6)


def test_naive_equals_handwritten_for_hard_targets_on_ordinary_logits():
    output, target = _inputs((6, 3), soft=False)
    got, got_grad = value_and_grad(binary_cross_entropy_naive, output, target)
    want, want_grad = value_and_grad(binary_cross_entropy_with_logits, output, target)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-12, rtol=0)


def test_naive_bce_reads_a_soft_target_as_zero_which_is_wrong():
    output = torch.tensor([0.0, 2.0], dtype=F64)
    soft = torch.tensor([0.7, 0.7], dtype=F64)
    # `torch.where(target == 1, p, 1 - p)` treats 0.7 as a 0:
    torch.testing.assert_close(
        binary_cross_entropy_naive(output, soft), binary_cross_entropy_with_logits(output, torch.zeros(2, dtype=F64))
    )
    assert not torch.isclose(binary_cross_entropy_naive(output, soft), binary_cross_entropy_with_logits(output, soft))


# Analytic curves as functions of p = sigmoid(z).

P_GRID = torch.linspace(0.001, 0.999, 41, dtype=F64)


@pytest.mark.parametrize("y", [0.0, 1.0])
@pytest.mark.parametrize("options", [{}, {"pos_weight": 3.0}, {"pos_weight": 0.5, "weight": 2.0}], ids=["plain", "pw", "pw+w"])
def test_analytic_curves_equal_autograd(y, options):
    z = (torch.log(P_GRID) - torch.log1p(-P_GRID)).requires_grad_(True)  # logit(p)
    target = torch.full_like(P_GRID, y)
    loss = binary_cross_entropy_with_logits(z, target, reduction="none", **options)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    torch.testing.assert_close(loss_of_probability(P_GRID, y, **options), loss.detach(), atol=1e-12, rtol=0)
    torch.testing.assert_close(grad_wrt_logit(P_GRID, y, **options), grad, atol=1e-12, rtol=0)


def test_gradient_is_p_minus_y_and_pos_weight_scales_the_positive_class():
    torch.testing.assert_close(grad_wrt_logit(P_GRID, 0.0), P_GRID)
    torch.testing.assert_close(grad_wrt_logit(P_GRID, 1.0, pos_weight=4.0), 4.0 * (P_GRID - 1))
    torch.testing.assert_close(grad_wrt_logit(P_GRID, 0.0, pos_weight=4.0), P_GRID)


# Bad inputs: one clear ValueError each.

BAD = [
    pytest.param(torch.zeros(4, dtype=torch.long), torch.zeros(4), {},
                 "Expected `output` to be a floating-point tensor of logits, but got dtype torch.int64; convert it with `output.float()`.",
                 id="integer-logits"),
    pytest.param(torch.zeros(0, 3), torch.zeros(0, 3), {}, "Expected `output` to be a non-empty batch, but got shape (0, 3)", id="empty-batch"),
    pytest.param(torch.zeros(4, 1), torch.zeros(4), {},
                 "Expected `target` to have the shape of `output`, (4, 1), but got (4,); one target per logit.", id="shape-mismatch"),
    pytest.param(torch.zeros(4), torch.zeros(4, dtype=torch.long), {},
                 "Expected `target` to be a floating-point tensor of labels or probabilities in [0, 1], but got dtype torch.int64; convert it with `target.float()`.",
                 id="integer-target"),
    pytest.param(torch.zeros(3), torch.tensor([0.0, 1.0, 2.0]), {},
                 "Expected `target` to hold values in [0, 1] (labels or probabilities), but got values from 0.0 to 2.0.", id="target-above-1"),
    pytest.param(torch.zeros(3), torch.tensor([0.0, -1.0, 1.0]), {},
                 "Expected `target` to hold values in [0, 1] (labels or probabilities), but got values from -1.0 to 1.0.", id="target-below-0"),
    pytest.param(torch.zeros(3), torch.zeros(3), {"reduction": "mean "},
                 "Expected `reduction` to be one of 'mean', 'sum', 'none', but got 'mean '.", id="unknown-reduction"),
    pytest.param(torch.zeros(5, 3), torch.zeros(5, 3), {"pos_weight": torch.ones(5)},
                 "Expected `pos_weight` to be a float, a 0-dim tensor or one value per output column, shape (K,) and to broadcast to the target's shape (5, 3), but got shape (5,).",
                 id="pos-weight-per-row"),
    pytest.param(torch.zeros(5, 3), torch.zeros(5, 3), {"pos_weight": torch.ones(3, 1, 1)},
                 "Expected `pos_weight` to be a float, a 0-dim tensor or one value per output column", id="pos-weight-too-many-dims"),
    pytest.param(torch.zeros(5, 3), torch.zeros(5, 3), {"pos_weight": [1.0, 2.0, 3.0]},
                 "Expected `pos_weight` to be a float or a torch.Tensor, but got list.", id="pos-weight-list"),
    pytest.param(torch.zeros(5, 3), torch.zeros(5, 3), {"weight": torch.ones(2)},
                 "Expected `weight` to be a float or a tensor of per-element weights and to broadcast to the target's shape (5, 3), but got shape (2,).",
                 id="weight-shape"),
]


@pytest.mark.parametrize("output, target, options, message", BAD)
def test_bad_inputs_raise_a_clear_value_error(output, target, options, message):
    with pytest.raises(ValueError) as info:
        binary_cross_entropy_with_logits(output, target, **options)
    assert str(info.value).startswith(message)


def test_float64_weights_keep_a_float32_loss_float32():
    output, target = torch.zeros(4, 2), torch.ones(4, 2)
    loss = binary_cross_entropy_with_logits(output, target, pos_weight=torch.ones(2, dtype=F64), weight=torch.ones(2, dtype=F64))
    assert loss.dtype == torch.float32


@pytest.mark.parametrize("options, message", [
    pytest.param({"pos_weight": -4.0}, "Expected `pos_weight` to be finite and positive, but got -4.0.", id="negative-pos-weight"),
    pytest.param({"pos_weight": 0}, "Expected `pos_weight` to be finite and positive, but got 0.", id="zero-pos-weight"),
    pytest.param({"pos_weight": torch.tensor([1.0, float("inf")])}, "Expected `pos_weight` to be finite and positive, but got tensor([1., inf]).",
                 id="infinite-pos-weight"),
    pytest.param({"weight": float("nan")}, "Expected `weight` to be finite and non-negative, but got nan.", id="nan-weight"),
    pytest.param({"weight": torch.tensor([[1.0, -0.5]])}, "Expected `weight` to be finite and non-negative, but got tensor([[ 1.0000, -0.5000]]).",
                 id="negative-weight"),
])
@pytest.mark.parametrize("fn", [binary_cross_entropy_with_logits, binary_cross_entropy_reference], ids=["handwritten", "reference"])
def test_weights_that_would_reward_mistakes_or_give_nan_are_refused_when_called_directly(fn, options, message):
    # a negative pos_weight makes every confident mistake on a positive lower the loss; torch computes it silently
    with pytest.raises(ValueError) as info:
        fn(torch.zeros(3, 2), torch.ones(3, 2), **options)
    assert str(info.value) == message


def test_zero_weights_on_some_elements_are_allowed_and_the_value_checks_switch_turns_the_weight_checks_off():
    from lossbench.losses import value_checks

    z, y = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    masked = binary_cross_entropy_with_logits(z, y, weight=torch.tensor([1.0, 0.0]), reduction="none")
    assert masked[1] == 0 and masked[0] > 0
    with value_checks(False):  # the runner's training step: checked once before, then never again
        assert torch.isfinite(binary_cross_entropy_with_logits(z, y, pos_weight=-1.0))


@pytest.mark.parametrize("fn", [binary_cross_entropy_with_logits, binary_cross_entropy_reference], ids=["handwritten", "reference"])
def test_a_list_of_weights_is_a_value_error_naming_the_option(fn):
    with pytest.raises(ValueError, match="Expected `pos_weight` to be"):
        fn(torch.zeros(4, 2), torch.ones(4, 2), pos_weight=[1.0, 2.0])


def test_an_infinite_logit_gives_nan_as_documented_where_torch_keeps_a_finite_gradient():
    z, y = torch.tensor([float("inf"), float("inf"), -float("inf"), -float("inf")]), torch.tensor([1.0, 0.0, 1.0, 0.0])
    ours, d_ours = value_and_grad(lambda o, t: binary_cross_entropy_with_logits(o, t, reduction="none").sum(), z, y)
    torch_value, d_torch = value_and_grad(lambda o, t: F.binary_cross_entropy_with_logits(o, t, reduction="none").sum(), z, y)
    assert torch.isnan(ours) and torch.isnan(d_ours).all()
    nan = float("nan")
    torch.testing.assert_close(F.binary_cross_entropy_with_logits(z, y, reduction="none"), torch.tensor([nan, float("inf"), nan, nan]), equal_nan=True)
    torch.testing.assert_close(d_torch, torch.tensor([0.0, 1.0, -1.0, 0.0]))
    assert torch.isnan(torch_value)
    # one logit short of infinity is a finite loss of the logit's size
    big = torch.finfo(torch.float32).max / 4
    torch.testing.assert_close(binary_cross_entropy_with_logits(torch.tensor([big, -big]), torch.tensor([0.0, 1.0]), reduction="none"), torch.tensor([big, big]))
    # torch's value is inf at z = +inf for every y < 1, a soft target included
    assert F.binary_cross_entropy_with_logits(torch.tensor([float("inf")]), torch.tensor([0.5])).isinf()
    # each loss is finite; their mean sums past the largest float first, and overflows, as torch's does
    huge = torch.tensor([2e38, 2e38])
    assert binary_cross_entropy_with_logits(huge, torch.zeros(2), reduction="none").isfinite().all()
    assert binary_cross_entropy_with_logits(huge, torch.zeros(2)).isinf() and F.binary_cross_entropy_with_logits(huge, torch.zeros(2)).isinf()


@pytest.mark.parametrize("dtype, first_inf", [(torch.float32, 17.0), (torch.float64, 37.0)], ids=["f32", "f64"])
def test_the_naive_form_overflows_where_its_docstring_says(dtype, first_inf):
    # sigmoid(z) rounds to exactly 1 from this z on (on a grid of 0.5), so a confident mistake costs -log(0)
    z = torch.arange(0.0, 60.0, 0.5, dtype=dtype)
    losses = torch.stack([binary_cross_entropy_naive(zi.reshape(1), torch.zeros(1, dtype=dtype)) for zi in z])
    assert z[torch.isinf(losses)].min().item() == first_inf
    assert torch.isfinite(losses[z < first_inf]).all()


def test_the_naive_form_takes_a_soft_target_for_a_zero_as_its_docstring_and_notebook_1_say():
    z, y = torch.tensor([2.0], dtype=F64), torch.tensor([0.7], dtype=F64)
    as_zero = -torch.log(1 - torch.sigmoid(z))  # 2.1269: the loss of a label 0
    formula = -(y * torch.log(torch.sigmoid(z)) + (1 - y) * torch.log(1 - torch.sigmoid(z)))  # 0.7269
    torch.testing.assert_close(binary_cross_entropy_naive(z, y), as_zero.mean())
    torch.testing.assert_close(binary_cross_entropy_with_logits(z, y), formula.mean())
    # for labels 0 and 1 the picked form is the formula
    hard = torch.tensor([0.0, 1.0], dtype=F64)
    torch.testing.assert_close(binary_cross_entropy_naive(z.expand(2), hard), binary_cross_entropy_with_logits(z.expand(2), hard))


def test_a_tiny_or_huge_weight_given_as_a_number_is_checked_as_given_not_as_a_float32():
    # torch.as_tensor(1e-300) is float32 0.0, and 1e39 float32 inf: "finite and positive" was untrue of both
    z = torch.tensor([0.5, -1.0], dtype=torch.float64)
    y = torch.tensor([1.0, 0.0], dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(z, y, pos_weight=torch.tensor(1e-300, dtype=torch.float64))
    assert binary_cross_entropy_with_logits(z, y, pos_weight=1e-300).item() == pytest.approx(expected.item(), rel=1e-12)
    assert torch.isfinite(binary_cross_entropy_with_logits(z, y, weight=1e39))
