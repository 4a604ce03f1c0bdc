"""The value-check switch: it turns off exactly the checks that read tensor values, and restores itself."""
from __future__ import annotations

import threading

import pytest
import torch

from lossbench.losses import value_checks
from lossbench.losses.bce import binary_cross_entropy_with_logits
from lossbench.losses.checks import check_broadcasts_to, reduce, value_checks_enabled
from lossbench.losses.softmax_ce import cross_entropy


def test_on_by_default_off_inside_the_block_and_restored_after_an_exception():
    assert value_checks_enabled()
    with pytest.raises(RuntimeError):
        with value_checks(False):
            assert not value_checks_enabled()
            raise RuntimeError("boom")
    assert value_checks_enabled()


def test_blocks_nest():
    with value_checks(False):
        with value_checks(True):
            assert value_checks_enabled()
        assert not value_checks_enabled()
    assert value_checks_enabled()


def test_the_setting_is_per_thread():
    seen = []
    with value_checks(False):
        thread = threading.Thread(target=lambda: seen.append(value_checks_enabled()))
        thread.start()
        thread.join()
    assert seen == [True]


def test_value_checks_off_skip_range_checks_but_not_shape_checks():
    z = torch.zeros(3)
    with pytest.raises(ValueError, match=r"Expected `target` to hold values in \[0, 1\]"):
        binary_cross_entropy_with_logits(z, torch.tensor([0.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="Expected `target` to hold class indices in 0..2"):
        cross_entropy(torch.zeros(2, 3), torch.tensor([0, 5]))
    with value_checks(False):
        assert torch.isfinite(binary_cross_entropy_with_logits(z, torch.tensor([0.0, 2.0, 1.0])))  # no value check
        with pytest.raises(ValueError, match="Expected `target` to have the shape of `output`"):
            binary_cross_entropy_with_logits(z, torch.zeros(4))
        with pytest.raises(ValueError, match="Expected `output` to be a floating-point tensor"):
            binary_cross_entropy_with_logits(torch.zeros(3, dtype=torch.long), torch.zeros(3))


def test_value_checks_cannot_run_under_vmap_which_is_why_the_switch_exists():
    outputs, targets = torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.raises(RuntimeError, match="data-dependent control flow"):
        torch.func.vmap(binary_cross_entropy_with_logits)(outputs, targets)
    with value_checks(False):
        torch.testing.assert_close(
            torch.func.vmap(binary_cross_entropy_with_logits)(outputs, targets), torch.full((2,), 0.6931), atol=1e-4, rtol=0
        )


def test_enabled_must_be_a_bool():
    with pytest.raises(ValueError, match=r"Expected `enabled` to be True or False, but got 0"):
        with value_checks(0):
            pass


def test_reduce_and_broadcast_check():
    loss = torch.tensor([[1.0, 2.0], [3.0, 6.0]])
    assert reduce(loss, "mean").item() == 3.0 and reduce(loss, "sum").item() == 12.0
    assert reduce(loss, "none") is loss
    check_broadcasts_to(torch.ones(2), loss, "pos_weight", "one value per column")  # fine: (2,) with (2, 2)
    check_broadcasts_to(2.0, loss, "pos_weight", "one value per column")
    with pytest.raises(ValueError, match=r"Expected `pos_weight` to be a float or a torch.Tensor, but got bool"):
        check_broadcasts_to(True, loss, "pos_weight", "one value per column")


def test_a_nan_target_is_refused_and_counted():
    target = torch.tensor([0.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match=r"but got 1 NaN of 3\.$"):
        binary_cross_entropy_with_logits(torch.zeros(3), target)
    with value_checks(False):  # not read while value checks are off: the loss is NaN, as torch's is
        assert torch.isnan(binary_cross_entropy_with_logits(torch.zeros(3), target))


@pytest.mark.parametrize(
    "edge, away",
    [pytest.param(1.0, 2.0, id="one-step-above-1"), pytest.param(0.0, -1.0, id="one-step-below-0")],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_a_target_one_float_step_outside_0_1_is_refused(edge, away, dtype):
    """[0, 1] is checked exactly: the nearest float past either end is refused, with no tolerance."""
    outside = torch.nextafter(torch.tensor(edge, dtype=dtype), torch.tensor(away, dtype=dtype))
    assert outside != edge
    target = torch.tensor([0.5, outside.item(), 0.5], dtype=dtype)
    with pytest.raises(ValueError, match=r"Expected `target` to hold values in \[0, 1\]"):
        binary_cross_entropy_with_logits(torch.zeros(3, dtype=dtype), target)
    binary_cross_entropy_with_logits(torch.zeros(3, dtype=dtype), torch.tensor([0.0, 0.5, 1.0], dtype=dtype))  # the ends are fine
