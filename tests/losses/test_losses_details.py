"""Finer rules of the loss families: option checks when a loss is bound, and the dtypes, shapes and limits
of the less travelled paths."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbench import losses
from lossbench.losses import bce, focal, mse, softmax_ce, stable

F64 = torch.float64


# every family


@pytest.mark.parametrize("family", ["softmax_ce", "mse", "focal"])
def test_get_refuses_an_unknown_reduction_when_it_binds_it(family):
    # every family's check_options checks the reduction, so a typo fails when the loss is chosen
    with pytest.raises(ValueError) as info:
        losses.get(family, reduction="avg")
    assert str(info.value) == "Expected `reduction` to be one of 'mean', 'sum', 'none', but got 'avg'."


# bce


def test_bce_reference_turns_a_float_option_into_a_tensor_of_the_outputs_dtype():
    # 1/3 rounded to float32 would move a float64 loss in its 8th digit; the reference must equal torch's exactly
    z, y = torch.tensor([0.3, -1.2, 2.5], dtype=F64), torch.tensor([1.0, 0.0, 1.0], dtype=F64)
    third = torch.tensor(1 / 3, dtype=F64)
    got = bce.binary_cross_entropy_reference(z, y, pos_weight=1 / 3, weight=1 / 3)
    want = F.binary_cross_entropy_with_logits(z, y, pos_weight=third, weight=third)
    assert got.dtype == F64
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    torch.testing.assert_close(got, bce.binary_cross_entropy_with_logits(z, y, pos_weight=1 / 3, weight=1 / 3), atol=1e-15, rtol=0)


def test_bce_loss_of_probability_keeps_its_digits_for_a_tiny_p():
    # -log(1 - p) for p = 1e-10 is 1e-10 to 16 digits only through log1p; log(1 - p) keeps 7
    p = torch.tensor([1e-10, 1e-14], dtype=F64)
    z = torch.log(p) - torch.log1p(-p)  # logit(p)
    want = bce.binary_cross_entropy_with_logits(z, torch.zeros(2, dtype=F64), reduction="none")
    torch.testing.assert_close(bce.loss_of_probability(p, 0.0), want, atol=0, rtol=1e-12)


@pytest.mark.parametrize("options, message", [
    pytest.param({"pos_weight": -4.0}, "Expected `pos_weight` to be finite and positive, but got -4.0.", id="negative-pos-weight"),
    pytest.param({"weight": torch.tensor([1.0, -1.0])}, "Expected `weight` to be finite and non-negative, but got tensor([ 1., -1.]).",
                 id="negative-weight"),
    pytest.param({"weight": "0.5"}, "Expected `weight` to be a float or a torch.Tensor, but got '0.5'.", id="string-weight"),
])
def test_bce_get_refuses_bad_weights_when_it_binds_them(options, message):
    # a bad value must fail when the loss is chosen, not at the first training step (where the runner has
    # switched the value checks off and a negative weight would silently reward mistakes)
    with pytest.raises(ValueError) as info:
        losses.get("bce", **options)
    assert str(info.value) == message


# softmax_ce


@pytest.mark.parametrize("weight, got", [
    pytest.param(torch.ones(1, 3), "shape (1, 3), dtype torch.float32", id="row-of-three"),
    pytest.param(torch.tensor([1, 2, 3]), "shape (3,), dtype torch.int64", id="integer"),
])
def test_softmax_ce_class_weights_must_be_a_float_vector_of_length_c(weight, got):
    # a (1, C) row or integer weights are not what torch's cross_entropy takes: name the problem, not crash later
    with pytest.raises(ValueError) as info:
        softmax_ce.cross_entropy(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]), weight=weight)
    assert str(info.value) == (
        f"Expected `weight` to be a floating-point tensor of shape (3,), one weight per class, but got {got}."
    )


@pytest.mark.parametrize("options, message", [
    pytest.param({"weight": torch.ones(1, 2)},
                 "Expected `weight` to be a floating-point tensor of shape (C,), one weight per class, but got shape (1, 2), dtype torch.float32.",
                 id="2d-weight"),
])
def test_softmax_ce_get_refuses_a_class_weight_that_is_not_a_vector(options, message):
    # the number of classes is not known when the loss is bound, the weights' being a vector is
    with pytest.raises(ValueError) as info:
        losses.get("softmax_ce", **options)
    assert str(info.value) == message


def test_softmax_ce_refuses_boolean_class_indices():
    # torch refuses a bool target; reading True/False as classes 1/0 would hide a multi-hot mask given by mistake
    with pytest.raises(ValueError) as info:
        softmax_ce.cross_entropy(torch.zeros(4, 3), torch.tensor([True, False, True, False]))
    assert str(info.value) == (
        "Expected `target` of shape (4,) to hold integer class indices, but got dtype torch.bool; convert it with "
        "`target.long()`, or give probabilities of shape (4, 3)."
    )


def test_softmax_ce_reference_leaves_the_weight_values_unchecked_when_value_checks_are_off():
    # as the handwritten form: reading the weights' values is what value_checks(False) switches off
    output, index = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
    with losses.value_checks(False):
        assert torch.isnan(softmax_ce.cross_entropy_reference(output, index, weight=torch.zeros(3)))
    with pytest.raises(ValueError, match="Expected `weight` to hold finite class weights >= 0, not all zero"):
        softmax_ce.cross_entropy_reference(output, index, weight=torch.zeros(3))


@pytest.mark.parametrize("curve", [softmax_ce.loss_of_probability, softmax_ce.grad_wrt_logit], ids=["loss", "grad"])
def test_softmax_ce_curves_check_their_weight_shape_and_label_smoothing(curve):
    # a 2-logit head has two class weights; three would silently drop one, a smoothing of 1.5 flip the target
    p = torch.tensor([0.5, 0.9])
    with pytest.raises(ValueError) as info:
        curve(p, 1.0, weight=torch.ones(3))
    assert str(info.value) == "Expected `weight` to be a tensor of shape (2,) for a 2-logit head, but got tensor([1., 1., 1.])."
    with pytest.raises(ValueError) as info:
        curve(p, 1.0, label_smoothing=1.5)
    assert str(info.value) == "Expected `label_smoothing` to be a float in [0, 1] (0: no smoothing), but got 1.5."


def test_softmax_ce_one_example_with_a_float_1_element_target_names_the_shape_it_was_given():
    # only an integer (1,) target is one class index; a float one is reported as it came, shape (1,)
    with pytest.raises(ValueError) as info:
        softmax_ce.cross_entropy(torch.zeros(3), torch.tensor([1.0]))
    assert str(info.value).endswith("but got dtype float32 and shape (1,).")


# mse


def test_mse_reference_refuses_an_unknown_on_when_called_directly():
    # without the check, any word but "probability" would silently square the raw output
    with pytest.raises(ValueError) as info:
        mse.mse_reference(torch.zeros(2), torch.zeros(2), on="logit")
    assert str(info.value).startswith("Expected `on` to be 'probability' (square sigmoid(output) - target, classification) or 'raw'")


@pytest.mark.parametrize("on", [None, "Probability"])
def test_mse_refuses_an_on_that_is_not_one_of_the_two_words(on):
    with pytest.raises(ValueError, match="Expected `on` to be 'probability'"):
        mse.mse(torch.zeros(2), torch.zeros(2), on=on)



# focal


@pytest.mark.parametrize("alpha, weights", [(0.0, [0.0, 1.0]), (1.0, [1.0, 0.0])], ids=["alpha-0", "alpha-1"])
@pytest.mark.parametrize("fn", [focal.focal_loss, focal.focal_loss_reference], ids=["handwritten", "reference"])
def test_focal_alpha_at_either_end_of_0_1_weighs_one_class_only(fn, alpha, weights):
    # alpha = 0 and alpha = 1 are valid weights (not "no alpha", which is None or a negative number):
    # at z = 0 every example's loss without alpha is (1/2)^2 log 2
    z, y = torch.zeros(2, dtype=F64), torch.tensor([1.0, 0.0], dtype=F64)
    plain = 0.25 * torch.log(torch.tensor(2.0, dtype=F64))
    torch.testing.assert_close(fn(z, y, alpha=alpha, reduction="none"), plain * torch.tensor(weights, dtype=F64))


@pytest.mark.parametrize("curve", ["loss_of_probability", "grad_wrt_logit"])
@pytest.mark.parametrize("options, message", [
    pytest.param({"gamma": -1.0}, "Expected `gamma` to be a finite float >= 0 (0: plain cross-entropy), but got -1.0.", id="negative-gamma"),
    pytest.param({"alpha": 1.5}, "Expected `alpha` to be a float in [0, 1] (the weight of the positive class)", id="alpha-above-1"),
])
def test_focal_curves_check_their_options(curve, options, message):
    # the curves drawn for the loss shapes plot must refuse what the loss itself refuses
    with pytest.raises(ValueError) as info:
        getattr(losses.family("focal"), curve)(torch.tensor([0.3, 0.8], dtype=F64), 1.0, **options)
    assert str(info.value).startswith(message)


def test_focal_keeps_the_shape_of_a_one_logit_head():
    # (N, 1): the binary tasks' one-logit head; a size-1 dim dropped on the way would broadcast (N,) against
    # (N, 1) into an (N, N) table of losses
    z = torch.tensor([[2.0], [-1.0], [0.5]], dtype=F64)
    y = torch.tensor([[1.0], [1.0], [0.0]], dtype=F64)
    got = focal.focal_loss(z, y, reduction="none")
    assert got.shape == (3, 1)
    torch.testing.assert_close(got, focal.focal_loss_reference(z, y, reduction="none"))
    torch.testing.assert_close(focal.focal_loss(z, y), focal.focal_loss_reference(z, y))


# stable


def test_logsumexp_removes_only_the_reduced_dim():
    x = torch.tensor([[[0.0], [1.0], [2.0]]], dtype=F64)  # (1, 3, 1)
    got = stable.logsumexp(x, dim=1)
    assert got.shape == (1, 1)
    torch.testing.assert_close(got, torch.logsumexp(x, dim=1))
