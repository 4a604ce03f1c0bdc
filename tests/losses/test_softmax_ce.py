"""Softmax cross-entropy: the handwritten form equals torch's everywhere, stays finite, and the naive one breaks."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from lossbench.losses.softmax_ce import (
    cross_entropy,
    cross_entropy_naive,
    cross_entropy_reference,
    grad_wrt_logit,
    loss_of_probability,
)

from .helpers import value_and_grad

F64 = torch.float64


def _inputs(shape: tuple[int, ...], kind: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of ``shape`` (class dim 1, or 0 for one example) and a target of ``kind``: "index" or "prob"."""
    g = torch.Generator().manual_seed(seed)
    output = 3 * torch.randn(shape, generator=g, dtype=F64)
    class_dim = 1 if len(shape) > 1 else 0
    n_classes = shape[class_dim]
    index = torch.randint(0, n_classes, shape[:1] + shape[2:] if len(shape) > 1 else (), generator=g)
    if kind == "index":
        return output, index
    if kind == "onehot":  # hard targets as probabilities
        return output, F.one_hot(index, n_classes).movedim(-1, class_dim).to(F64)
    return output, torch.softmax(torch.randn(shape, generator=g, dtype=F64), dim=class_dim)


SHAPES = {"N,C": (6, 4), "N,C,d1,d2": (3, 4, 2, 3), "N,2": (5, 2), "C": (4,)}
CASES = [
    pytest.param(shape, kind, weighted, smoothing, reduction, id=f"{name}-{kind}-{'w' if weighted else 'nw'}-ls{smoothing}-{reduction}")
    for (name, shape), kind, weighted, smoothing, reduction in itertools.product(
        SHAPES.items(), ("index", "prob", "onehot"), (False, True), (0.0, 0.2, 1.0), ("mean", "sum", "none")
    )
]


@pytest.mark.parametrize("shape, kind, weighted, smoothing, reduction", CASES)
def test_handwritten_equals_torch_on_value_and_gradient(shape, kind, weighted, smoothing, reduction):
    output, target = _inputs(shape, kind)
    n_classes = shape[1] if len(shape) > 1 else shape[0]
    options = dict(label_smoothing=smoothing, reduction=reduction)
    if weighted:
        options["weight"] = torch.linspace(0.2, 3.0, n_classes, dtype=F64)
    got, got_grad = value_and_grad(cross_entropy, output, target, **options)
    want, want_grad = value_and_grad(F.cross_entropy, output, target, **options)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-10, rtol=0)


def test_weighted_mean_divides_by_the_picked_weights_for_indices_and_by_n_for_probabilities():
    output = torch.tensor([[0.0, 0.0], [0.0, 0.0]], dtype=F64)  # every loss is log 2
    weight = torch.tensor([1.0, 3.0], dtype=F64)
    index = torch.tensor([0, 1])
    log2 = torch.log(torch.tensor(2.0, dtype=F64))
    # indices: (1 log2 + 3 log2) / (1 + 3) = log 2
    torch.testing.assert_close(cross_entropy(output, index, weight=weight), log2)
    # probabilities: (1 log2 + 3 log2) / 2 = 2 log 2
    probs = F.one_hot(index, 2).to(F64)
    torch.testing.assert_close(cross_entropy(output, probs, weight=weight), 2 * log2)


def test_uint8_class_indices_are_accepted_as_torch_does():
    output, target = _inputs((5, 3), "index")
    torch.testing.assert_close(cross_entropy(output, target.to(torch.uint8)), F.cross_entropy(output, target))


@pytest.mark.parametrize("kind", ["index", "prob"])
@pytest.mark.parametrize("weighted, smoothing", [(False, 0.0), (True, 0.0), (False, 0.3), (True, 0.3)])
def test_gradcheck(kind, weighted, smoothing):
    output, target = _inputs((4, 3, 2), kind)
    weight = torch.tensor([0.5, 1.0, 2.0], dtype=F64) if weighted else None
    z = output.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda z: cross_entropy(z, target, weight=weight, label_smoothing=smoothing), (z,))


def _extreme(dtype: torch.dtype, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Huge logits of mixed signs: confident right and confident wrong answers, one exact tie."""
    output = torch.tensor(
        [[scale, -scale, 0.0], [-scale, scale, 1.0], [scale, scale, -scale], [0.5 * scale, -scale, scale]], dtype=dtype
    )
    return output, torch.tensor([0, 0, 1, 2])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scale", [1e3, 1e4])
@pytest.mark.parametrize("kind", ["index", "prob"])
def test_extreme_logits_handwritten_is_finite_and_equals_torch(dtype, scale, kind):
    output, target = _extreme(dtype, scale)
    if kind == "prob":
        target = 0.9 * F.one_hot(target, 3).to(dtype) + 0.1 / 3
    got, got_grad = value_and_grad(cross_entropy, output, target, reduction="none")
    want, want_grad = value_and_grad(F.cross_entropy, output, target, reduction="none")
    assert torch.isfinite(got).all() and torch.isfinite(got_grad).all()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    if kind == "index":  # a confident mistake costs the logit gap: row 1 picks -scale against +scale
        assert got[1].item() == pytest.approx(2 * scale)


@pytest.mark.parametrize("dtype, big", [(torch.float32, 3e38), (torch.float16, 4e4)], ids=["f32", "f16"])
def test_logits_further_apart_than_the_largest_float_cost_as_index_targets_do(dtype, big):
    # z0 - z1 overflows to inf, so log p1 = -inf: a one-hot target gives that class no weight, and adds 0
    output = torch.tensor([[big, -big], [0.5, 0.0]], dtype=dtype)
    one_hot = torch.tensor([[1.0, 0.0], [1.0, 0.0]], dtype=dtype)
    got, got_grad = value_and_grad(cross_entropy, output, one_hot)
    want, want_grad = value_and_grad(cross_entropy, output, torch.tensor([0, 0]))
    assert torch.isfinite(got) and torch.isfinite(got_grad).all()
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got_grad, want_grad)
    assert got.item() == pytest.approx(F.cross_entropy(output[1:].double(), torch.tensor([0])).item() / 2, rel=1e-3)
    # weight on the far class (label smoothing) is a loss beyond the float range: inf, as documented
    assert cross_entropy(output[:1], torch.tensor([0]), label_smoothing=0.1).isinf()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("scale", [1e3, 1e4])
def test_naive_softmax_ce_is_nan_at_large_logits_which_is_why_we_subtract_the_max(dtype, scale):
    output, target = _extreme(dtype, scale)
    # exp(1000) is inf in both dtypes, and inf / inf is nan: log-sum-exp subtracts the max logit first.
    assert torch.isnan(cross_entropy_naive(output, target))
    assert torch.isfinite(cross_entropy(output, target))


@pytest.mark.parametrize("kind", ["index", "prob"])
def test_naive_equals_handwritten_on_ordinary_logits(kind):
    output, target = _inputs((8, 3, 2), kind)
    got, got_grad = value_and_grad(cross_entropy_naive, output, target)
    want, want_grad = value_and_grad(cross_entropy, output, target)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    torch.testing.assert_close(got_grad, want_grad, atol=1e-12, rtol=0)


def test_reference_passes_every_option_to_torch():
    output, target = _inputs((6, 4), "index")
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5], dtype=F64)
    options = dict(weight=weight, label_smoothing=0.1, reduction="sum")
    torch.testing.assert_close(cross_entropy_reference(output, target, **options), F.cross_entropy(output, target, **options))


# Analytic curves of a 2-logit head: loss and dL/dz1 as functions of p = softmax(z)[1].

P_GRID = torch.linspace(0.001, 0.999, 41, dtype=F64)


@pytest.mark.parametrize("y", [0, 1])
@pytest.mark.parametrize(
    "options",
    [{}, {"weight": torch.tensor([0.3, 2.0], dtype=F64)}, {"label_smoothing": 0.2},
     {"weight": torch.tensor([0.3, 2.0], dtype=F64), "label_smoothing": 0.2}],
    ids=["plain", "weight", "smoothing", "weight+smoothing"],
)
def test_analytic_curves_equal_autograd_of_the_two_logit_head(y, options):
    logit = torch.log(P_GRID) - torch.log1p(-P_GRID)  # z1 - z0 = logit(p)
    z = torch.stack([-logit / 2, logit / 2], dim=1).requires_grad_(True)  # (points, 2): function-matched head
    target = torch.full((len(P_GRID),), y)
    loss = cross_entropy(z, target, reduction="none", **options)
    (grad,) = torch.autograd.grad(loss.sum(), z)
    torch.testing.assert_close(loss_of_probability(P_GRID, float(y), **options), loss.detach(), atol=1e-12, rtol=0)
    analytic = grad_wrt_logit(P_GRID, float(y), **options)
    torch.testing.assert_close(analytic, grad[:, 1], atol=1e-12, rtol=0)
    torch.testing.assert_close(-analytic, grad[:, 0], atol=1e-12, rtol=0)  # equal and opposite


def test_two_logit_gradient_without_options_is_p_minus_y():
    torch.testing.assert_close(grad_wrt_logit(P_GRID, 1.0), P_GRID - 1)
    torch.testing.assert_close(grad_wrt_logit(P_GRID, 0.0), P_GRID)


# Bad inputs: one clear ValueError each.

WEIGHT_VALUES = (
    "Expected `weight` to hold finite class weights >= 0, not all zero "
    "(the weighted mean divides by the weights of the target classes), but got "
)
BAD = [
    pytest.param(torch.zeros(4, 3, dtype=torch.long), torch.tensor([0, 1, 2, 0]), {},
                 "Expected `output` to be a floating-point tensor of logits, but got dtype torch.int64", id="integer-logits"),
    pytest.param(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), {},
                 "Expected `output` to be a non-empty batch, but got shape (0, 3)", id="empty-batch"),
    pytest.param(torch.zeros(()), torch.tensor(0), {}, "Expected `output` to be logits of shape (N, C)", id="0-dim-output"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0, 1, 2]), {},
                 "Expected `target` to be class indices of shape (4,) or class probabilities of shape (4, 3) (the output's), but got shape (3,)",
                 id="index-wrong-length"),
    pytest.param(torch.zeros(4, 3), torch.zeros(4, 2), {},
                 "Expected `target` to be class indices of shape (4,) or class probabilities of shape (4, 3)", id="prob-wrong-shape"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0.0, 1.0, 2.0, 0.0]), {},
                 "Expected `target` of shape (4,) to hold integer class indices, but got dtype torch.float32; convert it with `target.long()`",
                 id="float-indices"),
    pytest.param(torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.long), {},
                 "Expected `target` of the output's shape (4, 3) to hold class probabilities (floating point), but got dtype torch.int64",
                 id="integer-probabilities"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0, 1, 3, 0]), {},
                 "Expected `target` to hold class indices in 0..2 (3 classes), but got values from 0 to 3", id="index-too-large"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0, -1, 2, 0]), {},
                 "Expected `target` to hold class indices in 0..2 (3 classes), but got values from -1 to 2", id="index-negative"),
    pytest.param(torch.zeros(2, 2), torch.tensor([[0.5, 0.5], [1.5, -0.5]]), {},
                 "Expected `target` to hold values in [0, 1] (labels or probabilities), but got values from -0.5 to 1.5", id="prob-out-of-range"),
    pytest.param(torch.zeros(3), [0, 1, 2], {}, "Expected `target` to be a torch.Tensor, but got list.", id="list-target"),
    pytest.param(torch.zeros(3), torch.tensor([1, 2]), {},
                 "Expected `target` for the logits of one example, shape (3,), to be one class index (an integer tensor of shape () "
                 "or (1,)) or class probabilities of shape (3,), but got dtype int64 and shape (2,).", id="one-example-two-indices"),
    pytest.param(torch.zeros(3), torch.tensor(1.0), {},
                 "Expected `target` for the logits of one example, shape (3,), to be one class index (an integer tensor of shape () "
                 "or (1,)) or class probabilities of shape (3,), but got dtype float32 and shape ().", id="one-example-float-index"),
    pytest.param(torch.zeros(3), torch.tensor([[1]]), {}, "Expected `target` for the logits of one example, shape (3,)", id="one-example-2d-target"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), {"reduction": "avg"},
                 "Expected `reduction` to be one of 'mean', 'sum', 'none', but got 'avg'", id="unknown-reduction"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), {"weight": torch.ones(2)},
                 "Expected `weight` to be a floating-point tensor of shape (3,), one weight per class, but got shape (2,)", id="weight-shape"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), {"label_smoothing": 1.5},
                 "Expected `label_smoothing` to be a float in [0, 1] (0: no smoothing), but got 1.5", id="smoothing-range"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), {"label_smoothing": float("nan")},
                 "Expected `label_smoothing` to be a float in [0, 1] (0: no smoothing), but got nan", id="smoothing-nan"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), {"weight": torch.tensor([1.0, -1.0, 1.0])},
                 WEIGHT_VALUES + "[1.0, -1.0, 1.0]", id="weight-negative"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), {"weight": torch.zeros(3)},
                 WEIGHT_VALUES + "[0.0, 0.0, 0.0]", id="weight-all-zero"),
    pytest.param(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), {"weight": torch.tensor([1.0, float("nan"), 1.0])},
                 WEIGHT_VALUES + "[1.0, nan, 1.0]", id="weight-nan"),
]


@pytest.mark.parametrize("output, target, options, message", BAD)
def test_bad_inputs_raise_a_clear_value_error(output, target, options, message):
    with pytest.raises(ValueError) as info:
        cross_entropy(output, target, **options)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("target", [torch.tensor(2), torch.tensor([2]), torch.tensor([0.2, 0.3, 0.5])], ids=["index", "index-(1,)", "probabilities"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_one_example_takes_one_index_or_probabilities(target, reduction):
    z = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    ours = cross_entropy(z, target, reduction=reduction)
    # torch's forward takes a (1,) index too, but its backward then fails ("size mismatch"): compared as ()
    theirs = F.cross_entropy(z, target if target.is_floating_point() else target.reshape(()), reduction=reduction)
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(torch.autograd.grad(ours.sum(), z)[0], torch.autograd.grad(theirs.sum(), z)[0])


def test_float64_class_weights_keep_a_float32_loss_float32():
    loss = cross_entropy(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), weight=torch.ones(3, dtype=F64), label_smoothing=0.1)
    assert loss.dtype == torch.float32


def test_weight_values_are_a_value_check_skipped_under_vmap():
    # reading the weights' values is what value_checks(False) switches off (vmap, CUDA graph capture);
    # lossbench.losses.get checks them once, when it binds them
    from lossbench.losses import value_checks

    output, index = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
    with value_checks(False):
        loss = cross_entropy(output, index, weight=torch.tensor([1.0, 0.0, 1.0]))  # one zero weight is fine
        assert torch.isfinite(loss)
        assert torch.isnan(cross_entropy(output, index, weight=torch.zeros(3)))  # not checked here


def test_numpy_scalar_label_smoothing_is_a_number_and_a_bool_is_not():
    np = pytest.importorskip("numpy")
    output, index = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    torch.testing.assert_close(cross_entropy(output, index, label_smoothing=np.float32(0.25)), cross_entropy(output, index, label_smoothing=0.25))
    with pytest.raises(ValueError, match="Expected `label_smoothing` to be a float in"):
        cross_entropy(output, index, label_smoothing=True)


@pytest.mark.parametrize("weight", [[-1.0, 1.0], [0.0, 0.0], [1.0, float("inf")]], ids=["negative", "all-zero", "inf"])
def test_the_reference_refuses_class_weights_the_handwritten_form_refuses(weight):
    output, index = torch.tensor([[0.0, 3.0]]), torch.tensor([0])
    for fn in (cross_entropy, cross_entropy_reference):
        with pytest.raises(ValueError, match="Expected `weight` to hold finite class weights >= 0, not all zero"):
            fn(output, index, weight=torch.tensor(weight), reduction="sum")
